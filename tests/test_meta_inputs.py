"""Input controls of the meta-models (issue 30) and NWS's value order.

- `inputs='no_running_stats'` / `'no_batchnorm'` remove exactly the layout entries the layout marks as batch-norm
  running statistics / batch-norm tensors from what every model reads (meta.weights WeightStore.view);
- mutation check: replacing every running-statistic value of the zoo with noise changes no prediction of any
  model fitted with the control on, while the models that read them (DMC, neurons, StatNN given them) do change
  without it;
- `order='nws'` is NWS's exporter order, re-implemented here from gabrieleilertsen/nws model.py `print_all_vars`.
"""
import copy
import dataclasses

import numpy as np
import pytest

from meta import data as data_lib, methods, neurons, options
from meta.weights import dropped_entries
from popnet import layout as layout_lib
from popnet.layout import Layout
from popnet.zoo import Zoo

TINY = methods.Options(epochs=1, min_steps=4, batch_size=16, hidden=(8,), gbt_max_iter=5, dmc_size='tiny',
                       window=128, windows=4, val_windows=2, nfn_channels=(4,), nfn_head=8)


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
  from meta import synthetic
  return Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('zoo') / 'z'), members=96, snapshots=2,
                                     mixed=True, seed=3))


@pytest.fixture(scope='module')
def data(zoo):
  arch = zoo.architectures[0]  # the deeper one: conv 4-8-16, FC 16-8, batch norm everywhere
  return data_lib.load(zoo, 'planted', archs=[arch], fractions=(0.5, 0.2, 0.3))


def _flax_bn_layout() -> Layout:
  z = np.zeros
  return Layout.of_tree({'params': {'Conv_0': {'kernel': z((3, 3, 1, 4)), 'bias': z(4)},
                                    'BatchNorm_0': {'scale': z(4), 'bias': z(4)}, 'Dense_0': {'kernel': z((4, 2))}},
                         'batch_stats': {'BatchNorm_0': {'mean': z(4), 'var': z(4)}}})


def test_the_layout_names_the_running_statistics_and_batch_norm_tensors(zoo):
  layout = zoo.layout(zoo.architectures[0])
  assert {e.name for e in layout.running_stats()} == {'bn_mean', 'bn_var'}
  assert {e.name for e in layout.batchnorm()} == {'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var'}
  flax = _flax_bn_layout()  # a user's Flax network: BatchNorm is its own module
  assert [e.path for e in flax.running_stats()] == ['BatchNorm_0/mean', 'BatchNorm_0/var']
  assert sorted(e.path for e in flax.batchnorm()) == ['BatchNorm_0/bias', 'BatchNorm_0/mean', 'BatchNorm_0/scale',
                                                      'BatchNorm_0/var']
  assert options.ORDERS == layout_lib.ORDERS


@pytest.mark.parametrize('inputs', ['no_running_stats', 'no_batchnorm'])
def test_every_model_reads_the_vectors_without_exactly_those_entries(data, inputs):
  layout = next(iter(data.store.layouts.values()))
  drop = dropped_entries(layout, inputs)
  kept = [e for e in layout.entries if e not in drop]
  whole = data.store.vectors(np.arange(6))
  for model in options.METHODS:
    seen = methods.with_inputs(data, model, methods.Options(inputs=inputs)).store
    view = next(iter(seen.layouts.values()))
    assert [e.path for e in view.entries] == [e.path for e in kept], model
    expected = np.concatenate([whole[:, e.start:e.end] for e in kept], 1)
    np.testing.assert_array_equal(seen.vectors(np.arange(6)), expected)
    starts = np.array([0, 5, 17, 100, 300, 400])
    np.testing.assert_array_equal(seen.windows(np.arange(6), starts, 64),
                                  [expected[i, s:s + 64] for i, s in enumerate(starts)])
  names = [b.names for b in neurons.blocks(view)]
  assert not any(n in ('bn_mean', 'bn_var') for block in names for n in block)


def _mutated(data, entries, seed=0):
  """`data` on a copy of its store whose values at `entries` are replaced by noise (every row)."""
  store = copy.copy(data.store)
  store.sources = {}
  rng = np.random.default_rng(seed)
  for a, source in data.store.sources.items():
    source = copy.copy(source)
    source.array = np.array(source.array)
    for e in entries:
      source.array[:, e.start:e.end] = rng.normal(3.0, 2.0, (len(source.array), e.size))
    store.sources[a] = source
  return dataclasses.replace(data, store=store)


def _outputs(model, data, opts):
  return methods.run(model, data, opts).output['test']


@pytest.mark.parametrize('model', [m for m in options.METHODS if m != 'nfn_np'])  # nfn_np: nfn_hnp's code path
def test_mutating_running_statistics_changes_no_prediction_under_the_control(data, model):
  layout = next(iter(data.store.layouts.values()))
  mutated = _mutated(data, layout.running_stats())
  opts = dataclasses.replace(TINY, inputs='no_running_stats')
  np.testing.assert_array_equal(_outputs(model, data, opts), _outputs(model, mutated, opts))


@pytest.mark.parametrize('model', ['neurons', 'dmc'])
def test_mutating_batch_norm_changes_no_prediction_without_batch_norm(data, model):
  mutated = _mutated(data, next(iter(data.store.layouts.values())).batchnorm(), seed=1)
  opts = dataclasses.replace(TINY, inputs='no_batchnorm')
  np.testing.assert_array_equal(_outputs(model, data, opts), _outputs(model, mutated, opts))


@pytest.mark.parametrize('model,opts', [('dmc', TINY), ('neurons', TINY),
                                        ('statnn_gbt', dataclasses.replace(TINY, statnn_running_stats=True))])
def test_without_the_control_the_running_statistics_do_reach_the_models(data, model, opts):
  """The mutation check can fail: the same noise changes the predictions of models that read the statistics."""
  mutated = _mutated(data, next(iter(data.store.layouts.values())).running_stats())
  assert not np.array_equal(_outputs(model, data, opts), _outputs(model, mutated, opts))


def test_statnn_reads_the_running_statistics_only_when_given_them(data):
  plain = methods.run('statnn_gbt', data, TINY).info['features']
  given = methods.run('statnn_gbt', data, dataclasses.replace(TINY, statnn_running_stats=True)).info['features']
  running = len(next(iter(data.store.layouts.values())).running_stats())
  assert given == plain + 7 * running
  with pytest.raises(data_lib.MetaDataError, match='contradicts inputs'):
    methods.run('statnn', data, dataclasses.replace(TINY, statnn_running_stats=True, inputs='no_running_stats'))


# --- NWS's value order ------------------------------------------------------------------------------------------
def nws_print_all_vars(model_vars: list[np.ndarray]) -> np.ndarray:
  """gabrieleilertsen/nws model.py `print_all_vars`, line for line on numpy arrays (the TF variables in creation
  order: per layer W, b, then TensorLayer BatchNormLayer's beta, gamma, moving_mean, moving_variance)."""
  arr = np.empty(sum(v.size for v in model_vars), dtype=np.float64)
  p = 0
  for var in model_vars:
    sh = var.shape
    if len(sh) > 1:
      for i in range(sh[-1]):
        if len(sh) > 2:
          for j in range(sh[-2]):
            var_sub = np.reshape(var[:, :, j, i], var[:, :, j, i].size)
            arr[p:p + len(var_sub)] = var_sub
            p += len(var_sub)
        else:
          var_sub = var[:, i]
          arr[p:p + len(var_sub)] = var_sub
          p += len(var_sub)
    else:
      var = np.reshape(var, var.size)
      for j in range(len(var)):
        arr[p] = var[j]
        p += 1
  return arr


NWS_VARIABLE_ORDER = ('kernel', 'bias', 'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var')  # conv2d / fc in model.py


def test_nws_order_is_nws_exporters_order(zoo):
  from popnet.interop.nws import nws_to_popnet
  for arch in zoo.architectures:
    rows = zoo.metadata[zoo.metadata['arch'] == arch].iloc[:3]
    layout = zoo.layout(arch)
    ours = zoo.vectors(rows, order='nws')
    for k, vector in enumerate(zoo.vectors(rows)):
      tree = layout.unflatten(vector)
      tensors = {**tree['params'], **{l: {**tree['params'].get(l, {}), **s} for l, s in tree['batch_stats'].items()}}
      model_vars = [tensors[l][n] for l in layout.layers for n in NWS_VARIABLE_ORDER if n in tensors[l]]
      np.testing.assert_array_equal(ours[k], nws_print_all_vars(model_vars).astype(np.float32))
    np.testing.assert_array_equal(nws_to_popnet(ours.astype(np.float64), layout), zoo.vectors(rows))  # inverse
  assert not np.array_equal(ours, zoo.vectors(rows))


def test_the_dmc_reads_windows_in_nws_order(data):
  seen = methods.with_inputs(data, 'dmc', methods.Options(dmc_order='nws')).store
  np.testing.assert_array_equal(seen.vectors(np.arange(4)), data.store.zoo.vectors(data.rows.iloc[:4], order='nws'))
  assert methods.with_inputs(data, 'statnn', methods.Options(dmc_order='nws')).store is data.store
  with pytest.raises(ValueError, match='NWS.s exporter writes only'):
    Layout.from_specs([('params', 'l', 'kernel', (2, 2, 2))]).columns('nws')




def test_a_streaming_store_gives_the_same_view(zoo, data):
  """Beyond the memory budget the store reads the zoo's memory-mapped file; its views read the same values."""
  streaming = data_lib.load(zoo, 'planted', archs=[zoo.architectures[0]], fractions=(0.5, 0.2, 0.3),
                            memory_budget=0).store
  assert streaming.streaming
  rows, starts = np.arange(0, 40, 7), np.array([0, 3, 250, 900, 1500, 2000])
  for inputs, order in (('no_running_stats', 'popnet'), ('no_batchnorm', 'nws'), ('all', 'nws')):
    a, b = data.store.view(inputs, order), streaming.view(inputs, order)
    np.testing.assert_array_equal(a.vectors(rows), b.vectors(rows))
    np.testing.assert_array_equal(a.windows(rows, starts, 100), b.windows(rows, starts, 100))
