"""Per-member optimizers built from optax transforms.

Every hyper-parameter lives in the optimizer state (`optax.inject_hyperparams`), so under vmap each member has
its own learning rate, momentum, betas, epsilon and weight decay. The optimizer family is a per-member index
too: `select_family` runs Adam, RMSProp and SGD-with-momentum side by side and keeps the chosen update, so
members with different optimizers share one program. A cohort whose members all use one family passes it
as a Python int and gets that family alone.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ('adam', 'rmsprop', 'sgd')
HYPERPARAMS = ('learning_rate', 'beta1', 'beta2', 'rms_decay', 'momentum', 'eps', 'weight_decay')


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


def make(family, **hyperparams) -> optax.GradientTransformation:
  """An optimizer for one member. `family` is a Python int (static) or a traced index into OPTIMIZERS."""
  if isinstance(family, int):
    return optax.inject_hyperparams(population_optimizer, static_args=('family',))(family=family, **hyperparams)
  return optax.inject_hyperparams(population_optimizer)(family=family, **hyperparams)


def set_learning_rate(state, learning_rate):
  """Returns the inject_hyperparams state with a new learning rate (per-epoch decay is set from outside)."""
  hyperparams = dict(state.hyperparams)
  hyperparams['learning_rate'] = jnp.asarray(learning_rate, hyperparams['learning_rate'].dtype)
  return state._replace(hyperparams=hyperparams)
