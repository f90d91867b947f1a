"""One member: pure functions of (program spec, member hyper-parameters, member state), no population axis.

The population (popnet/population.py) maps these over members with lax.map / vmap and shards them over
devices; nothing here knows about either. Every random draw is `fold_in(member key, purpose, counter)`, so a
member's trajectory depends only on its seed and hyper-parameters: not on the population around it, the
device count, or how steps are split into calls. A member whose loss or new weights are not finite is frozen
(its last finite state is kept) and flagged.

`hp` is one member's row of popnet.hparams.member_arrays: float32 scalars, choice indices, `seed`, `active`,
its `dataset` index (the member reads its own dataset's rows of the pool, popnet/pipeline.py) and whatever
per-member arrays its program's network needs (e.g. a padded network's geometry, popnet/supernet.py). The
network itself is reached only through its interface (popnet/network.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from popnet import augment as augment_lib
from popnet import optim
from popnet import task as task_lib
from popnet.network import Network
from popnet.zoo.schema import EVAL_SEGMENTS  # noqa: F401  (re-exported: the engine's evaluation segments)

EVAL_METRICS = task_lib.CLASSIFICATION_METRICS
# fold_in purposes of a member's key
_INIT, _PERMUTATION, _STEP = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
  """The static part of a program: everything that makes a distinct compiled program."""
  network: Network           # the members' network, configured for the program (popnet/network.py)
  input_shape: tuple[int, int, int]
  batch_size: int
  steps_per_epoch: int       # the longest epoch of any member (each member's is n_train // batch_size of its data)
  member_chunk: int
  augment_spec: augment_lib.AugmentSpec
  eval_batch_size: int = 1000
  task: Any = task_lib.CLASSIFICATION  # what members learn (popnet/task.py)
  # Per-member choices shared by the whole program become Python constants (None = per-member array).
  optimizer: int | None = None
  activation: int | None = None
  init: int | None = None
  augment: bool | None = None
  dropout: float | None = None

  def choice(self, hp, name):
    """The program's constant for `name` when it has one, else the member's own value."""
    static = getattr(self, name)
    return static if static is not None else hp[name]


class MemberState(NamedTuple):
  """Everything a member carries between training calls (and what a checkpoint saves)."""
  variables: Any          # {'params': ..., 'batch_stats': ...}
  opt_state: Any
  diverged: jax.Array     # bool
  diverged_step: jax.Array  # int32, -1 while finite
  stop_step: jax.Array      # int32: the step at which the task's goal was reached (popnet/task.py), -1 before


class TrainData(NamedTuple):
  """The device-resident pool a training step reads (popnet/pipeline.py DeviceData.train_data)."""
  images: jax.Array       # uint8 [N, H, W, C]
  labels: jax.Array       # int32 [N]
  train_idx: jax.Array    # int32 [D, n_max]: each dataset's training rows, padded
  n_train: jax.Array      # int32 [D]
  slot: jax.Array         # int32 [datasets]: a member's dataset index -> its row of train_idx


class EvalData(NamedTuple):
  images: jax.Array
  labels: jax.Array
  eval_idx: jax.Array     # int32 [D, M], each dataset's padded to evaluation batches
  eval_seg: jax.Array     # int32 [D, M]: index into EVAL_SEGMENTS, -1 for padding
  eval_batches: jax.Array  # int32 [D]
  slot: jax.Array


def _key(hp):
  return jax.random.PRNGKey(hp['seed'])


def steps_per_epoch(spec: ProgramSpec, hp, data: TrainData):
  """The member's own epoch length (its task's: popnet/task.py)."""
  return spec.task.steps_per_epoch(spec, hp, data)


def optimizer(spec: ProgramSpec, hp, epoch_steps) -> optax.GradientTransformation:
  return optim.make(spec.choice(hp, 'optimizer'), steps_per_epoch=epoch_steps,
                    **{name: hp[name] for name in optim.MEMBER_HPARAMS})


def init(spec: ProgramSpec, hp) -> MemberState:
  key, scheme = jax.random.fold_in(_key(hp), _INIT), spec.choice(hp, 'init')
  variables = spec.network.init(hp, key, scheme)
  # the optimizer's state does not depend on the epoch length
  return MemberState(variables, optimizer(spec, hp, 1).init(variables['params']), jnp.array(False),
                     jnp.array(-1, jnp.int32), jnp.array(-1, jnp.int32))


def permutation(spec: ProgramSpec, hp, data: TrainData, epoch):
  """This member's order of its training examples in `epoch` (its task's: popnet/task.py)."""
  return spec.task.permutation(hp, data, epoch, _PERMUTATION)


def _select(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


class _StepCarry(NamedTuple):
  state: MemberState
  loss_sum: jax.Array


def train(spec: ProgramSpec, state: MemberState, hp, perm, data: TrainData, epoch, start, stop, loss_sum=0.0):
  """Steps [start, stop) of `epoch` (those within the member's own epoch); returns (state, `loss_sum` plus the
  training loss of each step taken, added in step order: calls that continue one another's sum give the same
  float32 sum however the epoch is split). A task that stops early (popnet/task.py) freezes a member at the first step
  whose pre-update loss reaches its goal, or once its step budget `steps` is spent."""
  epoch_steps = steps_per_epoch(spec, hp, data)
  tx = optimizer(spec, hp, epoch_steps)
  key = jax.random.fold_in(_key(hp), _STEP)
  own = spec.network.own_values(hp)
  batch = spec.task.batches(spec, hp, data, perm, key)

  def step(s, carry: _StepCarry) -> _StepCarry:
    old = carry.state
    global_step = epoch * epoch_steps + s
    x, y, k_loss = batch(s, global_step)
    params = old.variables['params']
    (batch_loss, new_stats), grads = jax.value_and_grad(spec.task.loss, argnums=1, has_aux=True)(
        spec, params, old.variables['batch_stats'], hp, x, y, k_loss)
    updates, new_opt_state = tx.update(own(grads), old.opt_state, params)
    new_variables = own({'params': optax.apply_updates(params, updates), 'batch_stats': new_stats})
    finite = jnp.isfinite(batch_loss) & _all_finite(new_variables)
    training = ~old.diverged & hp['active']
    stop_step = old.stop_step
    if spec.task.stops_early:
      training = training & (old.stop_step < 0) & (global_step < hp['steps'])
      newly_stopped = training & jnp.isfinite(batch_loss) & spec.task.reached(spec, hp, batch_loss)
      stop_step = jnp.where(newly_stopped, global_step, old.stop_step)
      training = training & ~newly_stopped
    ok = finite & training
    newly_diverged = ~finite & training
    state = MemberState(_select(ok, new_variables, old.variables), _select(ok, new_opt_state, old.opt_state),
                        old.diverged | newly_diverged, jnp.where(newly_diverged, global_step, old.diverged_step),
                        stop_step)
    return _StepCarry(state, carry.loss_sum + jnp.where(ok, batch_loss, 0.0))

  out = jax.lax.fori_loop(start, jnp.minimum(stop, epoch_steps), step,
                          _StepCarry(state, jnp.asarray(loss_sum, hp['learning_rate'].dtype)))
  return out.state, out.loss_sum


def evaluate(spec: ProgramSpec, state: MemberState, hp, data: EvalData):
  """The member's task metrics (popnet/task.py): classification [EVAL_METRICS, EVAL_SEGMENTS] sums over its
  dataset's evaluation sets, an INR fit [mse, psnr] of its image; in evaluation mode."""
  return spec.task.evaluate(spec, state.variables, hp, data)
