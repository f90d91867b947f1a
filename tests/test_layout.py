"""Layouts: known parameter counts, forward order, flatten/unflatten round trips."""

import chex
import jax
import numpy as np

from popnet import models
from popnet.layout import Layout


def test_known_parameter_counts():
  assert models.smallcnnzoo_arch().layout((28, 28, 1)).size == 4970
  nws = models.resolve('nws_fixed')
  layout = nws.layout((32, 32, 3))
  assert layout.size == 92868  # reference/nws.md: exported values incl. batch norm
  assert sum(e.size for e in layout.entries if e.name in ('kernel', 'bias')) == 91876
  sizes = [models.nws_arch(f, dc, wc, df, wf).layout((32, 32, 3)).size
           for f in (3, 5, 7) for dc in (3, 4, 5) for wc in (4, 8, 12) for df in (2, 3, 4) for wf in (64, 128, 192)]
  assert (min(sizes), max(sizes), round(np.mean(sizes))) == (21260, 388172, 125270)


def test_layout_forward_order_not_sorted_keys():
  arch = models.Arch('deep', tuple(models.ConvLayer(4, 3) for _ in range(12)), (8,), 10, True)
  layout = arch.layout((8, 8, 1))
  layers = layout.layers
  assert layers == [f'conv_{i}' for i in range(12)] + ['dense_0', 'output']
  assert layers.index('conv_10') > layers.index('conv_2')
  names = [e.name for e in layout.entries if e.layer == 'conv_0']
  assert names == ['kernel', 'bias', 'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var']
  assert layout.entries[0].shape == (3, 3, 1, 4)  # HWIO


def test_flatten_unflatten_round_trip_batched():
  arch = models.nws_arch(3, 4, 4, 2, 16)
  layout = arch.layout((16, 16, 3))
  keys = jax.random.split(jax.random.PRNGKey(0), 5)
  variables = jax.vmap(lambda k: models.init(arch, k, (16, 16, 3), 2))(keys)
  variables['batch_stats'] = jax.tree.map(lambda x: x + jax.random.normal(keys[0], x.shape), variables['batch_stats'])
  flat = layout.flatten(variables)
  chex.assert_shape(flat, (5, layout.size))
  chex.assert_trees_all_equal(layout.unflatten(flat), variables)
  chex.assert_trees_all_equal(layout.unflatten(np.asarray(flat)[2]), jax.tree.map(lambda x: x[2], variables))
  again = Layout.from_json(layout.to_json())
  assert again == layout
  e = layout.entry('conv_1/kernel')
  np.testing.assert_array_equal(np.asarray(flat)[3, e.start:e.end],
                                np.asarray(variables['params']['conv_1']['kernel'][3]).ravel())
