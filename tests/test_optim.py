"""Per-member optimizers: the learning rate is the optimizer's own schedule (learning_rate * lr_decay ** epoch),
a per-member array under vmap, and the family choice runs the chosen optax transform."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from popnet import optim


def test_learning_rate_decays_per_epoch_inside_the_optimizer_state():
  params = {'w': jnp.ones(3)}

  def rates(learning_rate, lr_decay):
    tx = optim.make(0, learning_rate=learning_rate, lr_decay=lr_decay, steps_per_epoch=4, beta1=0.9, beta2=0.999,
                    rms_decay=0.9, momentum=0.9, eps=1e-7, weight_decay=0.0)
    state = tx.init(params)

    def step(state, _):
      _, state = tx.update({'w': jnp.ones(3)}, state, params)
      return state, state.hyperparams['learning_rate']
    return jax.lax.scan(step, state, None, length=10)[1]

  got = jax.jit(jax.vmap(rates))(jnp.array([1e-2, 1e-3]), jnp.array([0.5, 0.9]))
  # the state holds the rate that update k (0-based) used: epoch k // 4
  epochs = np.arange(10) // 4
  np.testing.assert_allclose(got, np.stack([1e-2 * 0.5**epochs, 1e-3 * 0.9**epochs]), rtol=1e-6)


def test_traced_family_equals_static_family():
  params = {'w': jnp.arange(4.0)}
  grads = {'w': jnp.array([0.1, -0.2, 0.3, 0.5])}
  kw = dict(learning_rate=1e-2, lr_decay=1.0, steps_per_epoch=1, beta1=0.9, beta2=0.999, rms_decay=0.9,
            momentum=0.95, eps=1e-7, weight_decay=1e-3)
  for family in range(len(optim.OPTIMIZERS)):
    static = optim.make(family, **kw)
    traced = jax.jit(lambda f: optim.make(f, **kw).update(grads, optim.make(f, **kw).init(params), params)[0])
    expected, _ = static.update(grads, static.init(params), params)
    chex.assert_trees_all_close(traced(jnp.int32(family)), expected, rtol=1e-6)
    assert not np.allclose(optax.apply_updates(params, expected)['w'], params['w'])
