"""The neuron-set meta-model's features and network do not depend on the order of hidden neurons (meta/neurons.py).

A real NWS-family network is permuted the way that leaves its function unchanged (a hidden layer's filters or
units together with the next layer's matching inputs); the logits stay equal, each layer's feature set is the
same set of rows, and NeuronSet's output is equal.
"""
import jax
import jax.numpy as jnp
import numpy as np

from meta import models as meta_models
from meta import neurons
from popnet import models

SHAPE = (12, 12, 1)


def _network():
  arch = models.nws_arch(filter_size=3, depth_conv=3, width_conv=2, depth_fc=2, width_fc=8)
  variables = models.init(arch, jax.random.key(0), SHAPE, 2)  # Glorot uniform
  # batch-norm parameters and statistics away from their initial constants, so each neuron's are its own
  variables = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.1 * jnp.abs(jax.random.normal(jax.random.key(len(str(p))), x.shape)), variables)
  return arch, variables


def _permute(arch, variables, layer: str, nxt: str, perm: np.ndarray):
  """The same function with `layer`'s neurons in order `perm` (its kernel's out axis, bias and batch norm; the
  next layer's matching inputs, channel fastest when a dense layer reads the flattened conv maps)."""
  v = jax.tree_util.tree_map(np.asarray, variables)
  for coll in ('params', 'batch_stats'):
    v[coll][layer] = {k: x[..., perm] for k, x in v[coll][layer].items()}
  k = v['params'][nxt]['kernel']
  if k.ndim == 4:
    v['params'][nxt]['kernel'] = k[:, :, perm, :]
  else:
    units = len(perm)
    idx = (np.arange(k.shape[0]).reshape(-1, units)[:, perm]).reshape(-1)
    v['params'][nxt]['kernel'] = k[idx]
  return v


def _logits(arch, variables, images):
  return models.apply(arch, variables, images, train=False, activation=0)[0]


def test_features_and_model_ignore_neuron_order():
  arch, variables = _network()
  layout = arch.layout(SHAPE)
  images = jax.random.uniform(jax.random.key(1), (4,) + SHAPE)
  rng = np.random.default_rng(0)
  permuted = variables
  for layer, nxt, units in (('conv_1', 'conv_2', 4), ('conv_2', 'dense_0', 8), ('dense_0', 'dense_1', 8)):
    permuted = _permute(arch, permuted, layer, nxt, rng.permutation(units))
  logits = _logits(arch, variables, images)
  assert np.isfinite(logits).all()
  np.testing.assert_allclose(_logits(arch, permuted, images), logits, atol=1e-5)
  a = neurons.features(layout, np.asarray(layout.flatten(variables))[None])
  b = neurons.features(layout, np.asarray(layout.flatten(permuted))[None])
  assert not np.allclose(a, b)  # the rows moved ...
  start = 0
  for block in neurons.blocks(layout):
    rows_a = a[0, start:start + block.units * block.dim].reshape(block.units, block.dim)
    rows_b = b[0, start:start + block.units * block.dim].reshape(block.units, block.dim)
    np.testing.assert_allclose(np.sort(rows_a, axis=0), np.sort(rows_b, axis=0), atol=1e-6)  # ... as a set
    start += block.units * block.dim
  net = meta_models.NeuronSet(3, tuple((b.units, b.dim) for b in neurons.blocks(layout)))
  params = net.init(jax.random.key(2), jnp.asarray(a))
  np.testing.assert_allclose(net.apply(params, jnp.asarray(b)), net.apply(params, jnp.asarray(a)), atol=1e-5)


def test_blocks_describe_every_neuron():
  arch, variables = _network()
  layout = arch.layout(SHAPE)
  blocks = neurons.blocks(layout)
  assert [b.layer for b in blocks] == ['conv_0', 'conv_1', 'conv_2', 'dense_0', 'dense_1', 'output']
  assert [b.units for b in blocks] == [2, 4, 8, 8, 4, 20]
  conv0 = blocks[0]
  assert conv0.dim == 8 + 8 + 9 + 5 and 'spatial:1,1' in conv0.names and 'bn_var' in conv0.names
  assert blocks[-1].names == tuple(f'in:{s}' for s in neurons.STATS) + ('bias',)
  f = neurons.features(layout, np.asarray(layout.flatten(variables))[None])
  assert f.shape == (1, sum(b.units * b.dim for b in blocks)) and np.isfinite(f).all()
  # conv_0 filter 1's own numbers: its incoming mean and its bias
  kernel = np.asarray(variables['params']['conv_0']['kernel'])
  row = f[0, conv0.dim:2 * conv0.dim]
  assert np.isclose(row[0], kernel[..., 1].mean(), atol=1e-6)
  assert np.isclose(row[conv0.names.index('bias')], variables['params']['conv_0']['bias'][1], atol=1e-6)
