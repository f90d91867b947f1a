"""The programs the benchmarks time, each set up, compiled and warm: popnet's population program and the
per-member loop a user writes without popnet. Both train on the same synthetic uint8 data, batch `batch`,
Adam with a per-member learning rate (popnet) or a fixed one (loop: the same ops per step)."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from popnet import hparams, models, pipeline, population

SHAPES = {'smallcnnzoo': (28, 28, 1), 'nws_fixed': (32, 32, 3)}


def matmul_ceiling(n: int = 2048, reps: int = 5) -> float:
  """Measured fp32 GFLOP/s of a large jnp.dot: the practical ceiling of this machine."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    a = f(a) * 1e-3
  a.block_until_ready()
  return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def synthetic_images(shape, n: int = 4096, seed: int = 0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n,) + tuple(shape), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int32)


def synthetic(mesh, shape, n: int = 4096, seed: int = 0):
  """(device data, images, labels): n random images, all of them training examples."""
  images, labels = synthetic_images(shape, n, seed)
  data = pipeline.device_data(images, labels, np.arange(n), [np.arange(min(n, 1000)), [], []], 10, 1000, mesh)
  return data, images, labels


def population_table(p: int, batch: int, arch: str):
  space = dict(dataset='fashion_mnist', architecture=arch, batch_size=batch, optimizer='adam',
               learning_rate='loguniform(1e-4, 1e-2)', activation='relu', init='glorot_uniform')
  return hparams.sample_members(space, p, seed=0)


def population_cohort(arch_name: str, p: int, batch: int, mesh, data, conv_impl: str = 'auto',
                      member_chunk: int = 0):
  """popnet's cohort of P members of `arch_name` (Adam, per-member learning rate) on `mesh`:
  (cohort, initial state, epoch-0 permutations)."""
  cohort = population.build_program(population_table(p, batch, arch_name), mesh, network=models.resolve(arch_name),
                                   input_shape=SHAPES[arch_name], batch_size=batch,
                                   steps_per_epoch=data.n_train // batch, conv_impl=conv_impl,
                                   member_chunk=member_chunk)
  return cohort, cohort.init(), cohort.permutations(data, 0)


def bench_popnet(arch_name: str, p: int, batch: int, mesh, data, conv_impl: str = 'auto', member_chunk: int = 0):
  """popnet's population program, compiled and warm: (run(k) training k steps, facts about the program)."""
  n_dev = mesh.devices.size
  t = time.perf_counter()
  cohort, state, perm = population_cohort(arch_name, p, batch, mesh, data, conv_impl, member_chunk)
  spec = cohort.spec
  state, _ = cohort.train(state, perm, data, 0, 0, 1)
  jax.block_until_ready(state)
  first_call = time.perf_counter() - t
  holder = {'state': state}

  def run(k):
    start = 0
    while start < k:
      stop = min(k, start + spec.steps_per_epoch)
      holder['state'], _ = cohort.train(holder['state'], perm, data, 0, 0, stop - start)
      start = stop
    jax.block_until_ready(holder['state'])

  compiled = cohort.population.executables['train']
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  xla_flops = float(cost.get('flops', 0.0)) if cost else 0.0
  # the train program is lax.map over member chunks (trip count local / chunk) around a loop over steps
  # (counted once per call): XLA's count covers one step of one chunk.
  chunks = -(-(cohort.padded_size // n_dev) // spec.member_chunk)
  mem = compiled.memory_analysis()
  mem_bytes = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
               - mem.alias_size_in_bytes) if mem is not None else float('nan')
  return run, {
      'samples_per_step': p * batch, 'compile_seconds': cohort.population.compile_seconds,
      'first_call_seconds': first_call, 'xla_flops_per_step': xla_flops * chunks * n_dev,
      'analytic_flops_per_step': 3 * models.flops_per_example(spec.network.arch, spec.input_shape) * batch * p,
      'bytes_per_member': mem_bytes / p, 'member_chunk': spec.member_chunk,
      'conv_impl': ','.join(models.conv_impls(spec.network.arch, spec.network.conv_impl)),
  }


def single_model_step(arch_name: str):
  """One jitted single-model Adam step (XLA convolution): step(variables, opt_state, x, y)."""
  arch = models.resolve(arch_name)
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(variables, opt_state, x, y):
    def loss_fn(params):
      logits, stats = models.apply(arch, {'params': params, 'batch_stats': variables['batch_stats']},
                                   x.astype(jnp.float32) / 255.0, train=True, activation=0, conv_impl='xla')
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])
    updates, opt_state = optimizer.update(grads, opt_state, variables['params'])
    return {'params': optax.apply_updates(variables['params'], updates), 'batch_stats': stats}, opt_state, loss

  return arch, optimizer, step


def bench_loop(arch_name: str, member_ids, batch: int, images, labels):
  """The per-member loop: one jitted single-model step called for each member from Python, compiled and warm:
  (run(k) training k steps of every member, facts)."""
  arch, optimizer, step = single_model_step(arch_name)
  init = jax.jit(lambda key: models.init(arch, key, SHAPES[arch_name], 2))  # one dispatch per member
  members = []
  for i in member_ids:
    variables = init(jax.random.PRNGKey(int(i)))
    members.append([variables, optimizer.init(variables['params'])])
  x, y = jax.device_put(images[:batch]), jax.device_put(labels[:batch])
  t = time.perf_counter()
  jax.block_until_ready(step(*members[0], x, y))
  compile_seconds = time.perf_counter() - t

  def run(k):
    for _ in range(k):
      for m in members:
        m[0], m[1], _ = step(m[0], m[1], x, y)
    jax.block_until_ready(members[-1][0])

  return run, {'samples_per_step': len(members) * batch, 'compile_seconds': compile_seconds}
