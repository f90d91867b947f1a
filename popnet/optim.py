"""Per-member optimizers built from optax transforms.

Every hyper-parameter lives in the optimizer state (`optax.inject_hyperparams`), so under vmap each member has
its own learning rate, momentum, betas, epsilon and weight decay. The learning rate is the member's own
schedule (`optax.exponential_decay`, staircase per epoch: learning_rate * lr_decay ** epoch), evaluated by
inject_hyperparams from the optimizer's step count, so the rate lives in one place.

The optimizer family is a per-member index
too: `select_family` runs Adam, RMSProp and SGD-with-momentum side by side and keeps the chosen update, so
members with different optimizers share one program. A program whose members all use one family passes it
as a Python int and gets that family alone.
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import optax

from popnet.hparams import OPTIMIZERS  # noqa: F401  (the allowed names live with every hyper-parameter's)


def _direction(family: int, beta1, beta2, rms_decay, momentum, eps) -> optax.GradientTransformation:
  if family == 0:
    return optax.scale_by_adam(beta1, beta2, eps)
  if family == 1:
    return optax.scale_by_rms(rms_decay, eps)
  return optax.trace(momentum)


def select_family(family, transforms: list[optax.GradientTransformation]) -> optax.GradientTransformation:
  """Applies transforms[family] (family: traced int scalar) and leaves the other transforms' states as they
  are. A real branch when members run one at a time; under vmap lax.switch computes all and selects."""

  def init_fn(params):
    return tuple(t.init(params) for t in transforms)

  def update_fn(updates, state, params=None):
    def branch(i):
      def run():
        new_updates, new_state = transforms[i].update(updates, state[i], params)
        return new_updates, state[:i] + (new_state,) + state[i + 1:]
      return run
    return jax.lax.switch(family, [branch(i) for i in range(len(transforms))])

  return optax.GradientTransformation(init_fn, update_fn)


def population_optimizer(learning_rate, beta1, beta2, rms_decay, momentum, eps, weight_decay, family):
  """weight decay (L2 added to the gradient) -> family's direction -> -learning_rate."""
  if isinstance(family, int):
    direction = _direction(family, beta1, beta2, rms_decay, momentum, eps)
  else:
    direction = select_family(family, [_direction(i, beta1, beta2, rms_decay, momentum, eps)
                                       for i in range(len(OPTIMIZERS))])
  return optax.chain(optax.add_decayed_weights(weight_decay), direction, optax.scale_by_learning_rate(learning_rate))


def learning_rate_schedule(learning_rate, lr_decay, steps_per_epoch: int) -> optax.Schedule:
  """learning_rate * lr_decay ** epoch, epoch = step // steps_per_epoch: optax.exponential_decay with
  staircase=True, written out because that one branches in Python on decay_rate (a per-member array here)."""

  def schedule(count):
    return learning_rate * lr_decay ** (count // steps_per_epoch).astype(jnp.float32)

  return schedule


def make(family, *, learning_rate, lr_decay, steps_per_epoch: int, **hyperparams) -> optax.GradientTransformation:
  """An optimizer for one member. `family` is a Python int (static) or a traced index into OPTIMIZERS."""
  schedule = learning_rate_schedule(learning_rate, lr_decay, steps_per_epoch)
  static = ('family',) if isinstance(family, int) else ()
  return optax.inject_hyperparams(population_optimizer, static_args=static)(
      family=family, learning_rate=schedule, **hyperparams)


# The member hyper-parameters (popnet/hparams.py) an optimizer reads: population_optimizer's and the schedule's.
MEMBER_HPARAMS = tuple(name for name in inspect.signature(population_optimizer).parameters if name != 'family') + (
    'lr_decay',)
