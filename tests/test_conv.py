"""Convolution formulations: values and gradients agree; auto picks per layer; padding presets."""

import chex
import jax
import jax.numpy as jnp
import pytest

from popnet import conv, models
from popnet import zoo as zoo_lib


@pytest.mark.parametrize('padding', ['SAME', 'VALID'])
@pytest.mark.parametrize('channels', [3, 8])  # <= 4: im2col's channel-major patches; 8: channel-last patches
@pytest.mark.parametrize('kernel,stride,size', [(3, 1, 9), (3, 2, 28), (5, 1, 8), (7, 2, 11), (1, 1, 4)])
def test_conv_formulations_agree(kernel, stride, size, channels, padding):
  kx, kk, kg = jax.random.split(jax.random.PRNGKey(kernel * 10 + stride + channels), 3)
  x = jax.random.normal(kx, (3, 2, size, size, channels))
  k = jax.random.normal(kk, (3, kernel, kernel, channels, 5))
  impls = ('xla', 'im2col', 'xla_canonical')
  y = {impl: jax.jit(jax.vmap(lambda a, b: conv.conv2d(a, b, stride, impl, padding)))(x, k) for impl in impls}
  out = conv.output_size(size, kernel, stride, padding)
  g = jax.random.normal(kg, y['xla'].shape)
  grads = {impl: jax.jit(jax.grad(lambda a, b: jnp.sum(g * jax.vmap(
      lambda u, v: conv.conv2d(u, v, stride, impl, padding))(a, b)), argnums=(0, 1)))(x, k) for impl in impls}
  # and without vmap: the member loop's form, where xla_canonical's own gradient convolutions run as written
  grads_single = jax.jit(jax.grad(lambda a, b: jnp.sum(g[0] * conv.conv2d(a, b, stride, 'xla_canonical', padding)),
                                  argnums=(0, 1)))(x[0], k[0])
  for impl in impls[1:]:
    chex.assert_shape(y[impl], (3, 2, out, out, 5))
    chex.assert_trees_all_close(y[impl], y['xla'], rtol=1e-5, atol=1e-4)  # sums of up to 392 products ~ 1e1
    chex.assert_trees_all_close(grads[impl], grads['xla'], rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(grads_single, jax.tree.map(lambda a: a[0], grads['xla']), rtol=1e-4, atol=1e-4)


def test_conv_auto_picks_per_layer():
  cpu = jax.default_backend() == 'cpu'
  assert conv.resolve_impl('auto', 1) == ('xla_canonical' if cpu else 'xla')
  assert conv.resolve_impl('auto', 2) == ('im2col' if cpu else 'xla')
  assert conv.resolve_impl('im2col', 1) == 'im2col'
  with pytest.raises(ValueError, match=r"conv_impl must be one of .*'xla_canonical'.*got 'fft'"):
    conv.resolve_impl('fft')


def test_valid_padding_preset_and_errors():
  same, valid = models.resolve('smallcnnzoo'), models.resolve('smallcnnzoo_valid')
  assert valid.layout((28, 28, 1)) == same.layout((28, 28, 1))  # the same tensors: 4,970 values
  # 28 -> 13 -> 6 -> 2 pixels (VALID) instead of 14 -> 7 -> 4 (SAME)
  assert models.flops_per_example(valid, (28, 28, 1)) == 2 * (13 * 13 * 9 * 16 + (36 + 4) * 9 * 16 * 16 + 16 * 10)
  assert zoo_lib.arch_from_json(zoo_lib.arch_to_json(valid)) == valid
  assert zoo_lib.arch_from_json({**zoo_lib.arch_to_json(same), 'conv': [
      {k: v for k, v in c.items() if k != 'padding'} for c in zoo_lib.arch_to_json(same)['conv']]}) == same
  with pytest.raises(ValueError, match=r"padding must be one of \('SAME', 'VALID'\), got 'valid'"):
    models.ConvLayer(16, 3, padding='valid')
  with pytest.raises(ValueError, match='VALID convolution needs inputs of at least 5 pixels, got 4'):
    conv.output_size(4, 5, 1, 'VALID')
