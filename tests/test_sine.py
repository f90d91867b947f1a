"""popnet/sine.py: sin and its derivative within 2 float32 units of 1 of float64's, over the arguments SIRENs see."""
import jax
import jax.numpy as jnp
import numpy as np

from popnet.sine import sine


def test_sine_and_its_derivative_match_float64_over_a_wide_range():
  x = np.concatenate([np.linspace(-1000, 1000, 400_001), np.linspace(-4, 4, 100_001)]).astype(np.float32)
  exact = x.astype(np.float64)
  values = np.asarray(jax.jit(sine)(x))
  slopes = np.asarray(jax.jit(jax.vmap(jax.grad(sine)))(x))
  assert np.abs(values - np.sin(exact)).max() < 1.5e-7
  assert np.abs(slopes - np.cos(exact)).max() < 2e-7
  assert values.dtype == np.float32


def test_sine_keeps_the_shape_and_works_under_vmap_and_second_derivatives():
  x = jnp.linspace(-7.0, 7.0, 24).reshape(2, 3, 4)
  np.testing.assert_allclose(jax.vmap(sine)(x), np.sin(np.asarray(x, np.float64)), atol=1.5e-7)
  second = jax.vmap(jax.grad(jax.grad(sine)))(x.ravel())
  np.testing.assert_allclose(second, -np.sin(np.asarray(x.ravel(), np.float64)), atol=2e-7)
