"""Throughput of popnet's population step against the loop a user would write without popnet.

    python -m benchmarks.throughput [--populations 1,8,32,128,512] [--archs smallcnnzoo,nws_fixed] [--out DIR]

Baseline: one jit-compiled single-model train step (same model code, Adam, batch) called once per member from a
Python loop. popnet: the population program of popnet.population (per-member learning rate in the optimizer state,
per-member data order from a device-resident dataset), sharded over all local devices. Both train on the same
synthetic uint8 data. Runs unchanged on CPU, GPU or TPU and records the device it used. On CPU, run it as
`XLA_FLAGS=--xla_force_host_platform_device_count=$(nproc) python -m benchmarks.throughput` to use every core
(the default when the flag is unset; see --host_devices).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time


def _parse():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--populations', default='1,8,32,128,512')
  p.add_argument('--archs', default='smallcnnzoo,nws_fixed')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--seconds', type=float, default=3.0, help='target seconds per timed measurement')
  p.add_argument('--memory_population', type=int, default=1024, help='population whose memory is measured')
  p.add_argument('--host_devices', type=int, default=-1,
                 help='CPU: XLA host devices (-1: one per core this process may use, up to 8)')
  p.add_argument('--conv_impl', default='auto')
  p.add_argument('--member_chunk', type=int, default=0)
  p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results'))
  return p.parse_args()


def usable_cores() -> int:
  """Cores this process may run on (fewer than the machine's under taskset or a container's CPU set)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None and ARGS.host_devices != 0 and 'xla_force_host_platform_device_count' not in os.environ.get(
    'XLA_FLAGS', ''):
  n = min(usable_cores(), 8) if ARGS.host_devices < 0 else ARGS.host_devices
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from popnet import hparams, models, pipeline, population  # noqa: E402

SHAPES = {'smallcnnzoo': (28, 28, 1), 'nws_fixed': (32, 32, 3)}
N_DATA = 60000  # networks x epochs per hour are quoted for a 60k-image training set


def matmul_ceiling(n=2048, reps=5):
  """Measured fp32 GFLOP/s of a large jnp.dot: the practical ceiling of this machine."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    a = f(a) * 1e-3
  a.block_until_ready()
  return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def synthetic(mesh, shape, n=4096, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n,) + shape, dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.int32)
  data = pipeline.device_data(images, labels, np.arange(n), [np.arange(1000), [], []], 10, 1000, mesh)
  return data, images, labels


def population_table(p, batch, arch):
  space = dict(dataset='fashion_mnist', architecture=arch, batch_size=batch, optimizer='adam',
               learning_rate='loguniform(1e-4, 1e-2)', activation='relu', init='glorot_uniform')
  return hparams.sample_members(space, p, seed=0)


def calibrate(fn, seconds):
  """The number of steps k for which one call fn(k) takes at least seconds / 4 (fn is warm after this)."""
  k = 1
  while True:
    t = time.perf_counter()
    fn(k)
    if time.perf_counter() - t >= seconds / 4 or k >= 1 << 14:
      return k
    k *= 2


ROUNDS = 7  # best of 7 alternating calls per side: this VM's speed drifts by 10-30% between minutes


def interleaved_best(runs, rounds=ROUNDS):
  """Best wall time of each (fn, k) in `runs`, timed in alternation (a, b, a, b, ...) so that both sides of a
  ratio see the same drift of a shared or throttled machine."""
  best = [float('inf')] * len(runs)
  for _ in range(rounds):
    for i, (fn, k) in enumerate(runs):
      t = time.perf_counter()
      fn(k)
      best[i] = min(best[i], time.perf_counter() - t)
  return best


def timed(fn, seconds):
  """(k, best seconds of fn(k)) for one function on its own."""
  k = calibrate(fn, seconds)
  return k, interleaved_best([(fn, k)])[0]


def population_cohort(arch_name, p, batch, mesh, data, conv_impl='auto', member_chunk=0):
  """popnet's cohort of P members of `arch_name` (Adam, per-member learning rate) on `mesh`:
  (cohort, initial state, epoch-0 permutations)."""
  cohort = population.build_cohort(population_table(p, batch, arch_name), mesh, arch=models.resolve(arch_name),
                                   input_shape=SHAPES[arch_name], batch_size=batch,
                                   steps_per_epoch=data.n_train // batch, conv_impl=conv_impl,
                                   member_chunk=member_chunk)
  return cohort, cohort.init(), cohort.permutations(data, 0)


def bench_popnet(arch_name, p, batch, mesh, data, args):
  """popnet's population program, compiled and warm: (run(k) training k steps, facts about the program)."""
  n_dev = mesh.devices.size
  cohort, state, perm = population_cohort(arch_name, p, batch, mesh, data, args.conv_impl, args.member_chunk)
  program = cohort.spec
  local = cohort.padded_size // n_dev
  steps_per_epoch = program.steps_per_epoch
  t = time.perf_counter()
  state, _ = cohort.train(state, perm, data, 0, 0, 1)
  jax.block_until_ready(state)
  first_call = time.perf_counter() - t
  compile_seconds = cohort.population.compile_seconds
  holder = {'state': state}

  def run(k):
    start = 0
    while start < k:
      stop = min(k, start + steps_per_epoch)
      holder['state'], _ = cohort.train(holder['state'], perm, data, 0, 0, stop - start)
      start = stop
    jax.block_until_ready(holder['state'])

  compiled = cohort.population.executables['train']
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  xla_flops = float(cost.get('flops', 0.0)) if cost else 0.0
  # the train program is lax.map over member chunks (trip count local / chunk) around a loop over steps
  # (counted once per call): XLA's count covers one step of one chunk.
  chunks = -(-local // program.member_chunk)
  xla_flops_per_step = xla_flops * chunks * n_dev
  mem = compiled.memory_analysis()
  mem_bytes = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
               - mem.alias_size_in_bytes) if mem is not None else float('nan')
  return run, {
      'samples_per_step': p * batch,
      'compile_seconds': compile_seconds, 'first_call_seconds': first_call,
      'xla_flops_per_step': xla_flops_per_step,
      'analytic_flops_per_step': 3 * models.flops_per_example(program.arch, program.input_shape) * batch * p,
      'bytes_per_member': mem_bytes / p, 'member_chunk': program.member_chunk,
      'conv_impl': ','.join(models.conv_impls(program.arch, program.conv_impl)),
  }


def bench_baseline(arch_name, p, batch, images, labels, args):
  """One jitted single-model Adam step, called for each member from a Python loop: (run(k), facts)."""
  arch = models.resolve(arch_name)
  shape = SHAPES[arch_name]
  optimizer = optax.adam(1e-3)

  @jax.jit
  def step(variables, opt_state, x, y):
    def loss_fn(p):
      logits, stats = models.apply(arch, {'params': p, 'batch_stats': variables['batch_stats']},
                                   x.astype(jnp.float32) / 255.0, train=True, activation=0, conv_impl='xla')
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), stats
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables['params'])
    updates, opt_state = optimizer.update(grads, opt_state, variables['params'])
    return {'params': optax.apply_updates(variables['params'], updates), 'batch_stats': stats}, opt_state, loss

  members = []
  for i in range(p):
    variables = models.init(arch, jax.random.PRNGKey(i), shape, 2)
    members.append([variables, optimizer.init(variables['params'])])
  x = jax.device_put(images[:batch])
  y = jax.device_put(labels[:batch])
  t = time.perf_counter()
  jax.block_until_ready(step(*members[0], x, y))
  compile_seconds = time.perf_counter() - t

  def run(k):
    for s in range(k):
      for m in members:
        m[0], m[1], _ = step(m[0], m[1], x, y)
    jax.block_until_ready(members[-1][0])

  return run, {'samples_per_step': p * batch, 'compile_seconds': compile_seconds}


def machine():
  cpu = platform.processor()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
  except (OSError, StopIteration):
    pass
  devices = jax.local_devices()
  return {'backend': jax.default_backend(), 'devices': [d.device_kind for d in devices], 'device_count': len(devices),
          'cpu': cpu, 'cores': os.cpu_count(),
          'usable_cores': usable_cores(),
          'jax': jax.__version__, 'python': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def main(args):
  mesh = population.make_mesh()
  info = machine()
  info['fp32_matmul_gflops'] = matmul_ceiling()
  print(f"device: {info['backend']} x{info['device_count']} ({info['cpu']}); fp32 matmul ceiling "
        f"{info['fp32_matmul_gflops']:.0f} GFLOP/s", flush=True)
  memory = measure_large_population(args, mesh)  # first, so that the process's peak RSS is this population's
  rows = []
  for arch_name in args.archs.split(','):
    data, images, labels = synthetic(mesh, SHAPES[arch_name])
    for p in [int(x) for x in args.populations.split(',')]:
      pop_run, pop = bench_popnet(arch_name, p, args.batch, mesh, data, args)
      base_run, base = bench_baseline(arch_name, p, args.batch, images, labels, args)
      k_pop, k_base = calibrate(pop_run, args.seconds), calibrate(base_run, args.seconds)
      t_pop, t_base = interleaved_best([(pop_run, k_pop), (base_run, k_base)])
      pop.update(model_samples_per_s=pop['samples_per_step'] * k_pop / t_pop, step_seconds=t_pop / k_pop)
      base.update(model_samples_per_s=base['samples_per_step'] * k_base / t_base)
      row = {'arch': arch_name, 'input_shape': SHAPES[arch_name], 'population': p, 'batch': args.batch,
             'popnet_model_samples_per_s': pop['model_samples_per_s'],
             'baseline_model_samples_per_s': base['model_samples_per_s'],
             'speedup': pop['model_samples_per_s'] / base['model_samples_per_s'],
             'network_epochs_per_hour_60k': pop['model_samples_per_s'] / N_DATA * 3600,
             'xla_gflops_per_step': pop['xla_flops_per_step'] / 1e9,
             'analytic_gflops_per_step': pop['analytic_flops_per_step'] / 1e9,
             'achieved_gflops': pop['xla_flops_per_step'] / pop['step_seconds'] / 1e9,
             'fraction_of_ceiling': pop['xla_flops_per_step'] / pop['step_seconds'] / 1e9 / info['fp32_matmul_gflops'],
             'compile_seconds': pop['compile_seconds'], 'baseline_compile_seconds': base['compile_seconds'],
             'mib_per_member': pop['bytes_per_member'] / 2**20, 'member_chunk': pop['member_chunk'],
             'conv_impl': pop['conv_impl']}
      rows.append(row)
      print(f"{arch_name:12s} P={p:4d}: popnet {row['popnet_model_samples_per_s']:>10,.0f}  baseline "
            f"{row['baseline_model_samples_per_s']:>9,.0f} model-samples/s  x{row['speedup']:.2f}  "
            f"{row['achieved_gflops']:.1f} GFLOP/s ({100 * row['fraction_of_ceiling']:.0f}% of ceiling)  "
            f"compile {row['compile_seconds']:.1f}s  {row['mib_per_member']:.2f} MiB/member", flush=True)

  result = {'machine': info, 'command': ' '.join(['python -m benchmarks.throughput'] + sys.argv[1:]), 'rows': rows,
            'memory': memory, 'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  os.makedirs(args.out, exist_ok=True)
  name = f"throughput_{info['backend']}"
  with open(os.path.join(args.out, name + '.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out, name + '.md'), 'w') as f:
    f.write(markdown(result))
  print(markdown(result))


def measure_large_population(args, mesh):
  """Trains a step of a population of `memory_population` small networks and reports peak memory."""
  data, _, _ = synthetic(mesh, SHAPES['smallcnnzoo'])
  run, pop = bench_popnet('smallcnnzoo', args.memory_population, args.batch, mesh, data, args)
  k, seconds = timed(run, 0.5)
  stats = jax.local_devices()[0].memory_stats() or {}
  return {'population': args.memory_population, 'compiled_bytes': pop['bytes_per_member'] * args.memory_population,
          'device_peak_bytes': stats.get('peak_bytes_in_use'),
          'process_max_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          'model_samples_per_s': pop['samples_per_step'] * k / seconds}


def markdown(result):
  m = result['machine']
  lines = [f"# Throughput: popnet vs a per-member loop ({m['backend']})", '',
           f"Machine: {m['cpu']}, {m['cores']} cores"
           + (f" (this process pinned to {m['usable_cores']})" if m.get('usable_cores', m['cores']) < m['cores'] else '')
           + f"; devices: {m['device_count']} x {m['devices'][0]}; "
           f"jax {m['jax']}; measured fp32 matmul ceiling {m['fp32_matmul_gflops']:.0f} GFLOP/s. "
           f"{result['date']}.", '', f"Command: `{result['command']}`", '',
           '| arch | P | popnet model-samples/s | loop baseline | speedup | net-epochs/h (60k) | GFLOP/step (XLA) '
           '| GFLOP/s | % of ceiling | compile s | MiB/member |',
           '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in result['rows']:
    lines.append(f"| {r['arch']} {tuple(r['input_shape'])} | {r['population']} | {r['popnet_model_samples_per_s']:,.0f} "
                 f"| {r['baseline_model_samples_per_s']:,.0f} | {r['speedup']:.2f}x | "
                 f"{r['network_epochs_per_hour_60k']:,.0f} | {r['xla_gflops_per_step']:.3f} | "
                 f"{r['achieved_gflops']:.1f} | {100 * r['fraction_of_ceiling']:.1f} | {r['compile_seconds']:.1f} | "
                 f"{r['mib_per_member']:.2f} |")
  mem = result['memory']
  impls = {r['arch']: r['conv_impl'] for r in result['rows']}
  lines += ['', 'popnet convolution formulation per layer: '
            + '; '.join(f'{arch} {impl}' for arch, impl in impls.items()) + '.',
            '', f"Population of {mem['population']} small networks (smallcnnzoo, batch 32): compiled program "
                f"{mem['compiled_bytes'] / 2**30:.2f} GiB, process peak RSS {mem['process_max_rss_bytes'] / 2**30:.2f} GiB"
                + (f", device peak {mem['device_peak_bytes'] / 2**30:.2f} GiB" if mem['device_peak_bytes'] else '')
                + f"; {mem['model_samples_per_s']:,.0f} model-samples/s.", '',
            'Baseline = one jitted single-model Adam step called per member from a Python loop (XLA convolution). '
            'popnet = one population program, Adam with a per-member learning rate, per-member data order. '
            'GFLOP/step from XLA cost analysis x loop trip counts (members / chunk). '
            f'Each side: best of {ROUNDS} calls, '
            'popnet and baseline timed in alternation.', '']
  return '\n'.join(lines)


if __name__ == '__main__':
  main(ARGS)
