"""The accelerator code path, run on CPU: the whole local population vmapped in one chunk, XLA's convolution
(grouped under vmap), and per-member choices as arrays (lax.switch / cond under vmap become selects). A member
trained there equals the member trained alone, and two devices equal one."""

import chex
import jax
import pytest

from popnet import hparams
from tests.helpers import run_cohort, space, synthetic_data

STEPS = 6
# Rounding differs between programs (XLA's grouped convolution under vmap vs its plain one, switch vs constant
# choices), and Adam / RMSprop divide near-zero gradients by ~eps, which turns it into ~1e-5 absolute after 6
# steps (measured 2.5e-5 for an Adam + ReLU member on CPU). A wrong branch or a member mixed with another moves
# weights by about a learning rate (>= 1e-3) per step: test_tolerance_detects_a_wrong_optimizer checks that
# these tolerances see it.
RTOL, ATOL = 1e-5, 1e-4


@pytest.fixture(scope='module')
def mixed_table():
  table = hparams.sample_members(space(), 6, seed=21)
  table['optimizer'] = ['adam', 'rmsprop', 'sgd', 'sgd', 'adam', 'rmsprop']
  table['activation'] = ['relu', 'elu', 'sigmoid', 'tanh', 'tanh', 'relu']
  table['init'] = ['glorot_uniform', 'glorot_normal', 'he_normal', 'glorot_uniform', 'he_normal', 'glorot_normal']
  table['augment'] = [True, False, True, False, False, True]
  table['dropout'] = [0.0, 0.2, 0.2, 0.0, 0.2, 0.0]
  return table


def accelerator_path(table, mesh, data):
  """Trains `table` as an accelerator does: member_chunk = the whole local population, conv 'xla', choices
  as per-member arrays. Returns the state as numpy."""
  local = -(-len(table) // mesh.devices.size)
  state, program, _ = run_cohort(table, mesh, data, steps=STEPS, conv_impl='xla', member_chunk=local, static=False)
  assert program.spec.member_chunk == local and program.spec.network.conv_impl == 'xla'
  assert (program.spec.optimizer, program.spec.activation, program.spec.init, program.spec.augment,
          program.spec.dropout) == (None,) * 5  # every choice is a per-member array
  return state


@pytest.fixture(scope='module')
def mesh1():
  from popnet import population
  return population.make_mesh(jax.devices()[:1])


@pytest.fixture(scope='module')
def together(mixed_table, mesh1):
  return accelerator_path(mixed_table, mesh1, synthetic_data(mesh1))


def test_vmapped_member_equals_member_alone(mixed_table, mesh1, together):
  data = synthetic_data(mesh1)
  for i in (0, 2, 4):  # adam / sgd / adam with augmentation, dropout and activations mixed
    alone, *_ = run_cohort(mixed_table.iloc[[i]].reset_index(drop=True), mesh1, data, steps=STEPS, conv_impl='xla',
                           member_chunk=1)
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], alone.variables),
                                jax.tree.map(lambda x: x[i], together.variables), rtol=RTOL, atol=ATOL)
  assert not together.diverged.any()


def test_tolerance_detects_a_wrong_optimizer(mixed_table, mesh1, together):
  wrong = mixed_table.iloc[[0]].reset_index(drop=True)
  wrong['optimizer'] = 'rmsprop'  # member 0 is an Adam member
  alone, *_ = run_cohort(wrong, mesh1, synthetic_data(mesh1), steps=STEPS, conv_impl='xla', member_chunk=1)
  with pytest.raises(AssertionError):
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], alone.variables),
                                jax.tree.map(lambda x: x[0], together.variables), rtol=RTOL, atol=ATOL)


def test_two_devices_equal_one_on_the_accelerator_path(mixed_table, together):
  if len(jax.devices()) < 2:
    pytest.skip(f'needs two {jax.default_backend()} devices, this machine has {len(jax.devices())}')
  from popnet import population
  mesh2 = population.make_mesh(jax.devices()[:2])
  table = mixed_table.iloc[:5].reset_index(drop=True)  # odd: padded to 6 on two devices, 3 vmapped per device
  two = accelerator_path(table, mesh2, synthetic_data(mesh2))
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[:5], two.variables),
                              jax.tree.map(lambda x: x[:5], together.variables), rtol=RTOL, atol=ATOL)
