"""On-device augmentation: exact identity when off, correct warps and colour maps, ranges, determinism,
vmap over members = a loop of per-member calls. Every call goes through a few shared jitted functions so
the file compiles a handful of programs (eager op-by-op dispatch would compile hundreds)."""
import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popnet import augment

IDENTITY = augment.AugmentSpec(shift=0, rotate=0, zoom=0, shear=0, brightness=0, contrast=(1, 1), hue=0,
                               saturation=(1, 1), noise=0)
SHAPE = (4, 12, 12, 3)



def augment_if(key, x, enabled, spec=augment.AugmentSpec()):
  """A member's augmentation switch as popnet/member.py `augment` runs it for a per-member flag."""
  return jax.lax.cond(enabled, lambda: augment.augment_batch(key, x, spec), lambda: x)


augment_jit = jax.jit(augment_if, static_argnames='spec')
augment_members = jax.jit(jax.vmap(augment_if))
warp_jit = jax.jit(augment._warp)


def images(shape=SHAPE, seed=0):
  return jax.random.uniform(jax.random.PRNGKey(seed), shape, jnp.float32)


def key(seed):
  return jax.random.PRNGKey(seed)


def test_spec_defaults_are_the_papers_and_hashable():
  spec = augment.AugmentSpec()
  assert (spec.shift, spec.rotate, spec.zoom, spec.shear, spec.brightness, spec.contrast, spec.hue,
          spec.saturation, spec.noise) == (3.0, 15.0, 0.1, 3.0, 0.2, (0.5, 1.5), 0.08, (0.3, 1.5), 0.03)
  assert hash(spec) == hash(augment.AugmentSpec()) and spec != IDENTITY


@pytest.mark.parametrize('channels', [1, 3])
def test_disabled_is_bitwise_identity_and_enabled_is_a_valid_change(channels):
  x = images(SHAPE[:3] + (channels,))
  off = augment_jit(key(1), x, jnp.array(False))
  np.testing.assert_array_equal(np.asarray(off), np.asarray(x))
  on = augment_jit(key(1), x, jnp.array(True))
  chex.assert_shape(on, x.shape)
  chex.assert_type(on, jnp.float32)
  chex.assert_tree_all_finite(on)
  assert float(on.min()) >= 0 and float(on.max()) <= 1
  diff = np.abs(np.asarray(on - x)).reshape(x.shape[0], -1).max(axis=1)
  assert (diff > 1e-2).all()  # every image changed


def test_members_under_jit_vmap_with_mixed_flags_match_a_loop():
  p = 4
  keys = jax.random.split(key(0), p)
  x = jnp.stack([images(seed=i) for i in range(p)])
  flags = jnp.array([True, False, True, False])
  batched = augment_members(keys, x, flags)
  chex.assert_shape(batched, x.shape)
  for i in range(p):
    if flags[i]:
      single = augment_jit(keys[i], x[i], flags[i])
      chex.assert_trees_all_close(batched[i], single, atol=1e-5)
      assert not np.allclose(batched[i], x[i])
    else:  # off members are returned bitwise, whatever the others do
      np.testing.assert_array_equal(np.asarray(batched[i]), np.asarray(x[i]))
  # members draw different parameters from their own keys: the same images augment differently
  same = augment_members(keys, jnp.broadcast_to(x[0], x.shape), jnp.ones(p, bool))
  assert not np.allclose(same[0], same[2])


def test_deterministic_per_key_and_per_image_parameters():
  x = images()
  a = augment_jit(key(5), x, jnp.array(True))
  b = augment_jit(key(5), x, jnp.array(True))
  c = augment_jit(key(6), x, jnp.array(True))
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert not np.allclose(a, c)
  # identical images in one batch get different transforms
  same = augment_jit(key(5), jnp.broadcast_to(x[:1], x.shape), jnp.array(True))
  assert not np.allclose(same[0], same[1])


def test_zero_ranges_are_identity():
  x = images()
  out = augment_jit(key(3), x, jnp.array(True), spec=IDENTITY)
  chex.assert_trees_all_close(out, x, atol=1e-6)


def test_warp_shifts_by_whole_pixels_with_nearest_edge_fill():
  x = images((9, 9, 1))
  out = warp_jit(x, jnp.eye(2), jnp.array([-2.0, -1.0]))  # samples 2 up, 1 left: content moves down 2, right 1
  chex.assert_trees_all_close(out[2:, 1:], x[:-2, :-1], atol=1e-6)
  chex.assert_trees_all_close(out[0, 1:], x[0, :-1], atol=1e-6)  # top rows repeat the edge row
  chex.assert_trees_all_close(out[1, 1:], x[0, :-1], atol=1e-6)
  chex.assert_trees_all_close(out[2:, 0], x[:-2, 0], atol=1e-6)  # left column repeats the edge column


def test_rotation_by_90_degrees_matches_rot90():
  x = images((7, 7, 1))
  out = warp_jit(x, augment._inverse_affine(jnp.pi / 2, 0.0, 1.0), jnp.zeros(2))
  chex.assert_trees_all_close(out, np.rot90(np.asarray(x), k=1), atol=1e-5)


def _bilinear_shift(image, dy, dx):
  """Reference: image [H, W] translated by (dy, dx) (content moves down/right), nearest-edge fill."""
  h, w = image.shape
  sy = np.clip(np.arange(h)[:, None] - dy, 0, h - 1) * np.ones((1, w))
  sx = np.clip(np.arange(w)[None, :] - dx, 0, w - 1) * np.ones((h, 1))
  y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  wy, wx = sy - y0, sx - x0
  return ((image[y0, x0] * (1 - wx) + image[y0, x1] * wx) * (1 - wy)
          + (image[y1, x0] * (1 - wx) + image[y1, x1] * wx) * wy)


def test_shift_only_spec_translates_each_image_within_range():
  shift, b, n = 2.0, 16, 16
  spec = dataclasses.replace(IDENTITY, shift=shift)
  # channels: a ramp in y and a ramp in x (bilinear sampling is exact on them, so they reveal each image's
  # shift), and a random image that must come out as the same shift of itself
  ramp = (0.05 + 0.05 * np.arange(n)).astype(np.float32)
  noise = np.asarray(images((b, n, n), seed=7))
  x = np.stack([np.broadcast_to(ramp[:, None], (b, n, n)), np.broadcast_to(ramp[None, :], (b, n, n)), noise], -1)
  out = np.asarray(augment_jit(key(4), jnp.asarray(x), jnp.array(True), spec=spec))
  inner = slice(3, n - 3)  # away from the edge fill
  shifts = []
  for i in range(b):
    dy = (x[i, inner, inner, 0] - out[i, inner, inner, 0]) / 0.05  # out(y, x) = in(y - dy, x - dx)
    dx = (x[i, inner, inner, 1] - out[i, inner, inner, 1]) / 0.05
    assert np.ptp(dy) < 1e-3 and np.ptp(dx) < 1e-3  # the same offset everywhere: a pure translation
    dy, dx = dy.mean(), dx.mean()
    expected = _bilinear_shift(noise[i], dy, dx)
    np.testing.assert_allclose(out[i, inner, inner, 2], expected[inner, inner], atol=1e-4)
    shifts.append((dy, dx))
  shifts = np.array(shifts)
  assert (np.abs(shifts) <= shift + 1e-3).all()
  assert np.abs(shifts).max() > 0.5 * shift and shifts.std(axis=0).min() > 0.3  # spread over the range
  assert not np.allclose(shifts, np.round(shifts))  # sub-pixel shifts are bilinear-interpolated


def test_hue_and_saturation_keep_luma_and_leave_grey_pixels_alone():
  spec = dataclasses.replace(IDENTITY, hue=0.08, saturation=(0.3, 1.5))
  x = 0.25 + 0.5 * images()  # mid-range colours: no clipping
  x = x.at[:, :3].set(x[:, :3].mean(axis=-1, keepdims=True))  # grey rows
  out = augment_jit(key(8), x, jnp.array(True), spec=spec)
  luma = lambda im: np.asarray(im) @ augment._RGB_TO_YIQ[0]
  np.testing.assert_allclose(luma(out), luma(x), atol=1e-5)
  chex.assert_trees_all_close(out[:, :3], x[:, :3], atol=1e-5)
  assert np.abs(np.asarray(out - x)[:, 3:]).max() > 1e-2


def test_brightness_and_contrast_on_grayscale():
  x = 0.3 + 0.4 * images(SHAPE[:3] + (1,))  # in [0.3, 0.7]: a +-0.2 offset and x0.5..1.5 stay mostly unclipped
  out = np.asarray(augment_jit(key(2), x, jnp.array(True), spec=dataclasses.replace(IDENTITY, brightness=0.2)))
  diff = out - np.asarray(x)
  for i in range(x.shape[0]):  # a constant offset per image in [-0.2, 0.2]
    d = diff[i][(out[i] > 0) & (out[i] < 1)]
    assert np.ptp(d) < 1e-5 and abs(d.mean()) <= 0.2 + 1e-6
  out = np.asarray(augment_jit(key(2), x, jnp.array(True), spec=dataclasses.replace(IDENTITY, contrast=(0.5, 1.5))))
  mean = np.asarray(x).mean(axis=(1, 2, 3), keepdims=True)
  scale = (out - mean) / (np.asarray(x) - mean)  # one factor per image in [0.5, 1.5] around the image mean
  assert (np.ptp(scale.reshape(4, -1), axis=1) < 1e-3).all()
  assert ((scale > 0.5 - 1e-4) & (scale < 1.5 + 1e-4)).all()


@pytest.mark.parametrize('value', [0.0, 1.0])
def test_constant_and_extreme_inputs_stay_finite_and_in_range(value):
  x = jnp.full(SHAPE, value, jnp.float32)
  out = augment_jit(key(9), x, jnp.array(True))
  chex.assert_tree_all_finite(out)
  assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_hash_noise_is_close_to_standard_normal_and_seeded():
  noise = jax.jit(augment._hash_noise, static_argnums=1)
  z = np.asarray(noise(jnp.array([1, 2], jnp.uint32), (2, 100, 100, 3)))
  assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
  assert abs(np.corrcoef(z[0].ravel(), z[1].ravel())[0, 1]) < 0.02
  assert abs(np.corrcoef(z[0].ravel()[1:], z[0].ravel()[:-1])[0, 1]) < 0.02  # neighbours independent
  assert (np.abs(z) < 3.5).all()  # Irwin-Hall tails are bounded
  np.testing.assert_array_equal(z, noise(jnp.array([1, 2], jnp.uint32), (2, 100, 100, 3)))
