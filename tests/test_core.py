"""Core engine: layout order and round trip, conv formulations, sampling, population equivalences, divergence."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from popnet import conv, engine, hparams, models
from popnet import zoo as zoo_lib
from popnet.layout import Layout
from tests.helpers import run_cohort, space, synthetic_data, uniform_space


@pytest.fixture(scope='module')
def mesh1():
  return engine.make_mesh(jax.devices()[:1])


@pytest.fixture(scope='module')
def mesh2():
  assert len(jax.devices()) >= 2, 'conftest sets two host devices'
  return engine.make_mesh(jax.devices()[:2])


@pytest.fixture(scope='module')
def data1(mesh1):
  return synthetic_data(mesh1)


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


def test_training_identical_across_conv_formulations(mesh1, data1):
  table = hparams.sample_members(uniform_space(), 4, seed=3)
  a, *_ = run_cohort(table, mesh1, data1, conv_impl='im2col', steps=5)
  for impl in ('xla', 'xla_canonical', 'auto'):
    b, *_ = run_cohort(table, mesh1, data1, conv_impl=impl, steps=5)
    chex.assert_trees_all_close(a['variables'], b['variables'], rtol=1e-4, atol=1e-5)


def test_sampling_deterministic_and_stable():
  s = space(learning_rate='uniform(1e-3, 5e-3)', batch_size='choice(16, 32)')
  a = hparams.sample_members(s, 20, seed=7)
  pd.testing.assert_frame_equal(a, hparams.sample_members(s, 20, seed=7))
  assert not a.equals(hparams.sample_members(s, 20, seed=8))
  bigger = hparams.sample_members(s, 40, seed=7)
  pd.testing.assert_frame_equal(bigger.iloc[:20].reset_index(drop=True), a)  # member ids are stable
  assert a['learning_rate'].between(1e-3, 5e-3).all()
  assert set(a['batch_size']) <= {16, 32} and a['seed'].nunique() == 20
  keys = {k for k, _ in hparams.cohorts(a)}
  assert keys == {('smallcnnzoo', 'fashion_mnist', 16), ('smallcnnzoo', 'fashion_mnist', 32)}


def test_member_alone_equals_member_in_mixed_population(mesh1, data1):
  table = hparams.sample_members(space(), 9, seed=11)
  table['optimizer'] = ['adam', 'rmsprop', 'sgd'] * 3
  table['activation'] = ['relu', 'elu', 'sigmoid', 'tanh', 'relu', 'elu', 'sigmoid', 'tanh', 'elu']
  assert table['init'].nunique() > 1 and table['augment'].nunique() == 2 and table['dropout'].nunique() == 2
  together, *_ = run_cohort(table, mesh1, data1, steps=8, member_chunk=3, static=False)  # vmapped selects
  for i in (0, 4, 7):
    alone, *_ = run_cohort(table.iloc[[i]].reset_index(drop=True), mesh1, data1, steps=8, member_chunk=1)
    member = jax.tree.map(lambda x: x[i], together)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], alone['variables']), member['variables'],
                                rtol=1e-5, atol=1e-6)


def test_two_devices_equal_one(mesh1, mesh2, data1):
  table = hparams.sample_members(uniform_space(), 5, seed=5)  # odd: padded to 6 on two devices
  one, *_ = run_cohort(table, mesh1, data1, steps=6)
  two, *_ = run_cohort(table, mesh2, synthetic_data(mesh2), steps=6)
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[:5], two['variables']), one['variables'],
                              rtol=1e-5, atol=1e-6)


def test_splitting_steps_into_calls_does_not_change_results(mesh1, data1):
  table = hparams.sample_members(uniform_space(), 3, seed=2)
  whole, *_ = run_cohort(table, mesh1, data1, steps=9, steps_per_epoch=9)
  parts, *_ = run_cohort(table, mesh1, data1, steps_per_epoch=9, call_sizes=[2, 7])
  chex.assert_trees_all_equal(whole, parts)


def test_divergent_member_is_frozen_and_others_unaffected(mesh1, data1):
  table = hparams.sample_members(uniform_space(optimizer='sgd', momentum=0.9, activation='relu'), 4, seed=1)
  bad = table.copy()
  bad.loc[2, 'learning_rate'] = 1e12
  state, *_ = run_cohort(bad, mesh1, data1, steps=10)
  assert state['diverged'].tolist() == [False, False, True, False]
  assert 0 <= state['diverged_step'][2] < 10 and state['diverged_step'][[0, 1, 3]].tolist() == [-1, -1, -1]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state['variables']))
  clean, *_ = run_cohort(table.drop(index=2).reset_index(drop=True), mesh1, data1, steps=10)
  keep = np.array([0, 1, 3])
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[keep], state['variables']), clean['variables'],
                              rtol=1e-5, atol=1e-6)


def test_members_learn_on_synthetic_data(mesh1, data1):
  table = hparams.sample_members(space(optimizer='adam', learning_rate=3e-3, activation='relu', augment=False,
                                       dropout=0.0), 2, seed=0)
  state, programs, hp, dev_state = run_cohort(table, mesh1, data1, steps=4 * 36, steps_per_epoch=36,
                                              call_sizes=[36] * 4)
  metrics = np.asarray(programs.evaluate(dev_state, hp, data1))
  acc = metrics[:, 1] / metrics[:, 2]
  assert (acc[:, 2] > 0.5).all(), acc  # test accuracy well above chance (0.1)


def test_bad_hyperparameters_are_named():
  with pytest.raises(ValueError, match='hparams.optimizer.*adagrad.*adam'):
    hparams.sample_members(space(optimizer='adagrad'), 2, 0)
  with pytest.raises(ValueError, match='unknown hyper-parameter'):
    hparams.sample_members(dict(space(), learnig_rate=0.1), 2, 0)
  with pytest.raises(ValueError, match='hparams.learning_rate.*> 0'):
    hparams.sample_members(space(learning_rate=-1.0), 2, 0)
  with pytest.raises(ValueError, match='loguniform'):
    hparams.sample_members(space(learning_rate='loguniform(0, 1)'), 2, 0)
