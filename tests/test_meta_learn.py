"""Every meta-model learns an easy property (activation) of a synthetic zoo, on networks it never saw.

Models and epochs are tiny; the DMC's compiled step is shared by every test that uses the same sizes."""
import dataclasses

import numpy as np
import pytest

from meta import analysis, data, methods, synthetic
from popnet.zoo import Zoo

FAST = methods.Options(epochs=20, batch_size=32, learning_rate=3e-3, window=256, windows=16, val_windows=4,
                       dmc_size='tiny', hidden=(64,), gbt_max_iter=30, min_steps=0)


@pytest.fixture(scope='module')
def activation(tmp_path_factory):
  zoo = Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('meta_learn')), members=96, snapshots=3, seed=1))
  return data.load(zoo, 'activation', snapshots='1-2', seed=0)  # snapshot 0 is the init: no activation in it


@pytest.mark.parametrize('model', methods.METHODS)
def test_learns_activation_above_chance(activation, model):
  d = activation
  r = methods.run(model, d, FAST)
  test_members = set(d.rows['member_id'].to_numpy()[r.index['test']].tolist())
  train_members = set(d.rows['member_id'].to_numpy()[d.splits['train']].tolist())
  assert test_members and not test_members & train_members
  m = r.metrics(d, 'test')
  assert m['chance'] == pytest.approx(0.25)
  assert m['accuracy'] >= 0.5, (model, m)
  assert np.allclose(r.output['test'].sum(1), 1.0, atol=1e-4)
  if model == 'dmc':  # per network = mean of the evenly spaced windows' probabilities
    w = r.window_output['test']
    assert w.shape == (len(r.index['test']), FAST.windows, 4)
    np.testing.assert_allclose(w.mean(1), r.output['test'], atol=1e-6)
    pos = r.window_position['test']
    assert (np.diff(pos, axis=1) > 0).all() and pos.min() > 0 and pos.max() < 1
    where = analysis.where_positions(r, d)
    assert len(where['score']) == FAST.windows and 0 < where['conv_fraction'] < 1
    assert r.window_metrics(d)['n'] == len(r.index['test']) * FAST.windows


def test_mixed_architectures_dmc_and_statnn(tmp_path_factory):
  zoo = Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('meta_mixed_learn')), members=96, snapshots=3,
                                    seed=2, mixed=True))
  assert len(zoo.architectures) == 2
  d = data.load(zoo, 'activation', snapshots='1-2')
  assert len(set(d.rows['arch'])) == 2
  for model in ('dmc', 'statnn'):
    m = methods.run(model, d, FAST).metrics(d)
    assert m['accuracy'] >= 0.5, (model, m)


def test_regression_learning_rate_log_scale(activation):
  zoo = activation.store.zoo
  d = data.load(zoo, 'learning_rate', snapshots='last')
  assert d.target.log
  r = methods.run('statnn_gbt', d, FAST)
  m = r.metrics(d)
  assert m['r2'] > 0.3 and m['kendall_tau'] > 0.3, m
  assert np.all(r.output['test'] < -1.5) and np.all(r.output['test'] > -4.5)  # log10 of lr in [1e-4, 1e-2]


def test_streaming_gives_the_same_model(activation):
  """Batches gathered from the memmap (data larger than the memory budget) train the very same DMC."""
  streamed = data.load(activation.store.zoo, 'activation', snapshots='1-2', seed=0, memory_budget=0)
  assert streamed.store.streaming and not activation.store.streaming
  opts = dataclasses.replace(FAST, epochs=2)
  a, b = methods.run('dmc', activation, opts), methods.run('dmc', streamed, opts)
  np.testing.assert_allclose(a.output['test'], b.output['test'], rtol=1e-5, atol=1e-6)
