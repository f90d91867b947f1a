"""The JAX sides of the INR fit-rate benchmark (benchmarks/inr.py): popnet's population program, and the jitted
one-INR-at-a-time loops a JAX user writes without popnet. Every fitter takes a `Work` (benchmarks/inr.py: the
images, their targets and the initial weights of a group of fits) and returns the fits' loss curves."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popnet import configs, hparams, pipeline, population, siren
from popnet import config as config_lib
from popnet import task as task_lib


def dws_config(input_shape):
  """popnet's inr_dws_fmnist config at the images' shape: what `python -m popnet.train --config inr_dws_fmnist`
  runs (Adam 5e-4, betas 0.9 / 0.999, eps 1e-8, every pixel per step), no early stopping."""
  config = configs.load('inr_dws_fmnist')
  config.input_shape = tuple(input_shape)
  config.hparams.batch_size = int(np.prod(input_shape[:2]))
  return config


def adam(config) -> optax.GradientTransformation:
  hp = config.hparams
  return optax.adam(hp.learning_rate, b1=hp.beta1, b2=hp.beta2, eps=hp.eps)


class Popnet:
  """popnet's population program (popnet/population.py build_program with the InrFit task, as popnet.train builds
  it for inr_dws_fmnist) on `group` images at a time, every member's initial weights set to the given ones.
  Steps run in calls of `every` steps (one program epoch each, as popnet.train calls its program); a call's
  summed losses / `every` is the curve's point."""
  name = 'popnet'

  def __init__(self, arch, input_shape, group: int, every: int, mesh, member_chunk: int = 0):
    self.config = dws_config(input_shape)
    self.arch, self.input_shape, self.group, self.every, self.mesh = arch, tuple(input_shape), group, every, mesh
    self.member_chunk, self.compile_seconds, self.program = member_chunk, 0.0, None

  def _build(self, n: int, steps: int):
    members = hparams.sample_members(config_lib.space(self.config), n, self.config.seed)
    members['image'], members['steps'], members['psnr_threshold'] = np.arange(n), steps, np.inf
    program = population.build_program(
        members, self.mesh, network=self.arch.network(self.input_shape), input_shape=self.input_shape,
        batch_size=self.config.hparams.batch_size, steps_per_epoch=self.every, member_chunk=self.member_chunk,
        eval_batch_size=n, task=task_lib.InrFit(self.every))
    self.program = program
    return program

  def fit(self, work, steps: int) -> np.ndarray:
    """[n, steps // every] mean pre-update losses of each call."""
    n = len(work.images)
    pool = pipeline.device_data(work.images, np.zeros(n, np.int32), np.arange(n), [np.arange(n)] * 3, 10, n,
                                self.mesh)
    program = self._build(n, steps)
    compiled = program.population.compile_seconds
    state = program.init()
    host = jax.tree.map(np.asarray, state)
    state = program.place(host._replace(variables={'params': work.weights, 'batch_stats': {}}))
    perm = program.permutations(pool, 0)
    curves = []
    for epoch in range(steps // self.every):
      state, loss_sum = program.train(state, perm, pool, epoch, 0, self.every)
      curves.append(np.asarray(loss_sum)[:n] / self.every)
    self.compile_seconds += program.population.compile_seconds - compiled
    return np.stack(curves, axis=1).astype(np.float64)


def _step_fn(arch, tx, coords):
  def loss(params, target):
    return jnp.mean(jnp.square(siren.apply(arch, params, coords) - target))

  def step(params, opt_state, target):
    value, grads = jax.value_and_grad(loss)(params, target)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step


def _one(weights, i):
  return jax.tree.map(lambda x: jnp.asarray(x[i]), weights)


class JaxLoop:
  """One INR at a time: a jitted Adam step (jax.jit, AOT-compiled once, timed apart) called `steps` times from
  Python per image, the losses kept on the device until the fit ends."""
  name = 'jax_loop'
  group = 1

  def __init__(self, arch, coords, config):
    self.arch, self.tx, self.compile_seconds = arch, adam(config), 0.0
    self.step = jax.jit(_step_fn(arch, self.tx, jnp.asarray(coords)))
    self.compiled = None

  def _compile(self, params, target):
    t = time.perf_counter()
    self.compiled = self.step.lower(params, self.tx.init(params), target).compile()
    self.compile_seconds += time.perf_counter() - t

  def fit(self, work, steps: int) -> np.ndarray:
    curves = []
    for i in range(len(work.targets)):
      params, target = _one(work.weights, i), jnp.asarray(work.targets[i])
      if self.compiled is None:
        self._compile(params, target)
      opt_state, losses = self.tx.init(params), []
      for _ in range(steps):
        params, opt_state, loss = self.compiled(params, opt_state, target)
        losses.append(loss)
      curves.append(np.asarray(jnp.stack(losses)))
    return np.asarray(curves, np.float64)


class JaxScan:
  """One INR at a time, each whole fit one jitted program (lax.scan over its steps), called from Python per image:
  the per-step dispatch of JaxLoop gone, one INR's arithmetic left."""
  name = 'jax_scan'
  group = 1

  def __init__(self, arch, coords, config):
    self.tx, self.compile_seconds, self.compiled = adam(config), 0.0, {}
    step = _step_fn(arch, self.tx, jnp.asarray(coords))

    def fit(params, target, steps):
      def body(carry, _):
        params, opt_state, loss = step(*carry, target)
        return (params, opt_state), loss
      return jax.lax.scan(body, (params, self.tx.init(params)), None, length=steps)[1]

    self.fit_fn = jax.jit(fit, static_argnums=2)

  def fit(self, work, steps: int) -> np.ndarray:
    curves = []
    for i in range(len(work.targets)):
      params, target = _one(work.weights, i), jnp.asarray(work.targets[i])
      if steps not in self.compiled:
        t = time.perf_counter()
        self.compiled[steps] = self.fit_fn.lower(params, target, steps).compile()
        self.compile_seconds += time.perf_counter() - t
      curves.append(np.asarray(self.compiled[steps](params, target)))
    return np.asarray(curves, np.float64)
