"""The population: a member alone equals the member in a population, 2 devices equal 1, step splitting
changes nothing, divergence is isolated, members learn."""

import chex
import jax
import numpy as np
import pytest

from popnet import hparams, population
from tests.helpers import run_cohort, space, synthetic_data, uniform_space


@pytest.fixture(scope='module')
def mesh1():
  return population.make_mesh(jax.devices()[:1])


@pytest.fixture(scope='module')
def mesh2():
  assert len(jax.devices()) >= 2, 'conftest sets two host devices'
  return population.make_mesh(jax.devices()[:2])


@pytest.fixture(scope='module')
def data1(mesh1):
  return synthetic_data(mesh1)


def test_training_identical_across_conv_formulations(mesh1, data1):
  table = hparams.sample_members(uniform_space(), 4, seed=3)
  a, *_ = run_cohort(table, mesh1, data1, conv_impl='im2col', steps=5)
  for impl in ('xla', 'xla_canonical', 'auto'):
    b, *_ = run_cohort(table, mesh1, data1, conv_impl=impl, steps=5)
    chex.assert_trees_all_close(a.variables, b.variables, rtol=1e-4, atol=1e-5)


def test_member_alone_equals_member_in_mixed_population(mesh1, data1):
  table = hparams.sample_members(space(), 9, seed=11)
  table['optimizer'] = ['adam', 'rmsprop', 'sgd'] * 3
  table['activation'] = ['relu', 'elu', 'sigmoid', 'tanh', 'relu', 'elu', 'sigmoid', 'tanh', 'elu']
  assert table['init'].nunique() > 1 and table['augment'].nunique() == 2 and table['dropout'].nunique() == 2
  together, *_ = run_cohort(table, mesh1, data1, steps=8, member_chunk=3, static=False)  # vmapped selects
  for i in (0, 4, 7):
    alone, *_ = run_cohort(table.iloc[[i]].reset_index(drop=True), mesh1, data1, steps=8, member_chunk=1)
    member = jax.tree.map(lambda x: x[i], together)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], alone.variables), member.variables,
                                rtol=1e-5, atol=1e-6)


def test_two_devices_equal_one(mesh1, mesh2, data1):
  table = hparams.sample_members(uniform_space(), 5, seed=5)  # odd: padded to 6 on two devices
  one, *_ = run_cohort(table, mesh1, data1, steps=6)
  two, *_ = run_cohort(table, mesh2, synthetic_data(mesh2), steps=6)
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[:5], two.variables), one.variables,
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
  assert state.diverged.tolist() == [False, False, True, False]
  assert 0 <= state.diverged_step[2] < 10 and state.diverged_step[[0, 1, 3]].tolist() == [-1, -1, -1]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.variables))
  clean, *_ = run_cohort(table.drop(index=2).reset_index(drop=True), mesh1, data1, steps=10)
  keep = np.array([0, 1, 3])
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[keep], state.variables), clean.variables,
                              rtol=1e-5, atol=1e-6)


def test_members_learn_on_synthetic_data(mesh1, data1):
  table = hparams.sample_members(space(optimizer='adam', learning_rate=3e-3, activation='relu', augment=False,
                                       dropout=0.0), 2, seed=0)
  state, program, dev_state = run_cohort(table, mesh1, data1, steps=4 * 36, steps_per_epoch=36, call_sizes=[36] * 4)
  metrics = np.asarray(program.evaluate(dev_state, data1))
  acc = metrics[:, 1] / metrics[:, 2]
  assert (acc[:, 2] > 0.5).all(), acc  # test accuracy well above chance (0.1)
