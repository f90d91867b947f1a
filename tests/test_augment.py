"""On-device augmentation: exact identity when off, correct warps, ranges, determinism, vmap = loop."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popnet import augment

IDENTITY = augment.AugmentSpec(shift=0, rotate=0, zoom=0, shear=0, brightness=0, contrast=(1, 1), hue=0,
                               saturation=(1, 1), noise=0)


def images(shape=(4, 12, 12, 3), seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape, jnp.float32)


@pytest.mark.parametrize('channels', [1, 3])
def test_disabled_is_bitwise_identity_and_enabled_changes(channels):
  x = images((4, 10, 10, channels))
  out = jax.jit(augment.augment_batch)(jax.random.PRNGKey(1), x, jnp.array(False))
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))
  on = jax.jit(augment.augment_batch)(jax.random.PRNGKey(1), x, jnp.array(True))
  chex.assert_shape(on, x.shape)
  assert on.dtype == jnp.float32 and float(on.min()) >= 0 and float(on.max()) <= 1
  assert not np.allclose(on, x) and np.isfinite(np.asarray(on)).all()


def test_zero_ranges_are_identity():
  x = images()
  out = augment.augment_batch(jax.random.PRNGKey(3), x, True, IDENTITY)
  np.testing.assert_allclose(out, x, atol=1e-6)


def test_warp_shifts_by_whole_pixels():
  x = images((1, 9, 9, 1))[0]
  out = augment._warp(x, jnp.eye(2), jnp.array([-2.0, -1.0]))  # content moves down 2, right 1
  np.testing.assert_allclose(out[2:, 1:], x[:-2, :-1], atol=1e-6)
  np.testing.assert_allclose(out[0, 1:], x[0, :-1], atol=1e-6)  # nearest-edge fill at the top


def test_rotation_by_90_degrees_matches_rot90():
  x = images((1, 7, 7, 1))[0]
  out = augment._warp(x, augment._inverse_affine(jnp.pi / 2, 0.0, 1.0), jnp.zeros(2))
  np.testing.assert_allclose(out, np.rot90(np.asarray(x), k=1), atol=1e-5)


def test_deterministic_per_key():
  x = images()
  a = augment.augment_batch(jax.random.PRNGKey(5), x, True)
  b = augment.augment_batch(jax.random.PRNGKey(5), x, True)
  c = augment.augment_batch(jax.random.PRNGKey(6), x, True)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_vmap_over_members_equals_loop():
  keys = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jnp.stack([images(seed=i) for i in range(3)])
  flags = jnp.array([True, False, True])
  batched = jax.jit(jax.vmap(augment.augment_batch))(keys, x, flags)
  for i in range(3):
    single = augment.augment_batch(keys[i], x[i], flags[i])
    chex.assert_trees_all_close(batched[i], single, atol=1e-6)
  np.testing.assert_array_equal(batched[1], x[1])


def test_photometric_only_keeps_geometry_and_grayscale_skips_colour():
  spec = dataclasses.replace(IDENTITY, brightness=0.2)
  x = images((2, 6, 6, 1))
  out = augment.augment_batch(jax.random.PRNGKey(2), x, True, spec)
  diff = np.asarray(out - x)
  unclipped = (np.asarray(out) > 0) & (np.asarray(out) < 1)
  for i in range(2):  # a constant offset per image where nothing was clipped
    d = diff[i][unclipped[i]]
    assert np.ptp(d) < 1e-5


def test_hash_noise_is_close_to_standard_normal_and_seeded():
  z = np.asarray(augment._hash_noise(jnp.array([1, 2], jnp.uint32), (2, 100, 100, 3)))
  assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02 and abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 0.02
  assert (np.abs(z) < 3.5).all()  # Irwin-Hall tails are bounded
  np.testing.assert_array_equal(z, augment._hash_noise(jnp.array([1, 2], jnp.uint32), (2, 100, 100, 3)))
