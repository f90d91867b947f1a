"""Throughput of popnet's population program against the two ways to train the same networks without popnet.

Baselines, each training the same networks (same model code, Adam, batch, synthetic uint8 data):
  (a) loop_1proc:    one jitted single-model train step called for each member from a Python loop, in this process;
  (b) loop_per_core: the same loop as one process per usable core, each pinned to its core with its share of
                     the members, all timed at once; throughput = the sum of the processes' rates (CPU only);
  (c) popnet:        one population program (popnet/population.py), sharded over all local devices.
The three are timed in alternation, best of --rounds calls each, so their ratios come from one run; the table
compares popnet with the best baseline of each architecture and population size. Runs unchanged on CPU, GPU
or TPU and records the device it used. benchmarks/ is not installed with popnet: run it from a clone, as
`python -m benchmarks.throughput` in the clone's root or `python CLONE/benchmarks/throughput.py` anywhere.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

if __package__ in (None, ''):  # run as a file (python path/to/benchmarks/throughput.py): import from the clone
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402
from benchmarks import timing  # noqa: E402
from popnet import cli  # noqa: E402

N_DATA = 60000  # networks x epochs per hour are quoted for a 60k-image training set
EXAMPLE = """example:
  python -m benchmarks.throughput --populations 32,128,512 --archs smallcnnzoo,nws_fixed --seconds 2 \\
      --out benchmarks/results
(nothing is written without --out)"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  pass


def parse_args(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.throughput', description=__doc__, epilog=EXAMPLE,
                           formatter_class=_Formatter)
  p.add_argument('--populations', default='1,8,32,128,512', help='comma-separated population sizes P')
  p.add_argument('--archs', default='smallcnnzoo,nws_fixed', help='comma-separated architectures')
  p.add_argument('--batch', type=int, default=32, help='batch size of every network')
  p.add_argument('--seconds', type=float, default=3.0, help='target seconds per timed call')
  p.add_argument('--rounds', type=int, default=timing.ROUNDS, help='alternating timed calls per program (best of)')
  p.add_argument('--memory_population', type=int, default=1024,
                 help='smallcnnzoo population whose peak memory is measured first (0: skip)')
  p.add_argument('--host_devices', type=int, default=-1,
                 help='CPU: XLA host devices for popnet (-1: one per usable core, up to 8; 0: leave XLA_FLAGS)')
  p.add_argument('--core_processes', type=int, default=-1,
                 help='baseline (b) processes (-1: one per usable core; 0: skip (b)); CPU backends only')
  p.add_argument('--popnet_per_core', action='store_true',
                 help="also time popnet's program as one pinned process per core on its share (CPU only)")
  p.add_argument('--conv_impl', default='auto', help="popnet's convolution formulation (auto, xla, im2col, ...)")
  p.add_argument('--member_chunk', type=int, default=0, help='members vmapped together (0: automatic)')
  p.add_argument('--out', default=None, help='write throughput_<backend>.{md,json} in this folder (none: print only)')
  args = p.parse_args(argv)
  usage.check_ranges(p, args, (('batch', dict(low=1)), ('rounds', dict(low=1)), ('memory_population', dict(low=0)),
                               ('seconds', dict(low=0, low_open=True)), ('host_devices', dict(low=-1)),
                               ('core_processes', dict(low=-1)), ('member_chunk', dict(low=0))))
  if args.out:
    usage.check_out(p, args.out)
  try:
    args.population_list = [int(x) for x in args.populations.split(',')]
  except ValueError:
    p.error(f'--populations must be comma-separated integers, got {args.populations!r}')
  args.arch_list = args.archs.split(',')
  unknown = [a for a in args.arch_list if a not in ('smallcnnzoo', 'nws_fixed')]
  if unknown or min(args.population_list) < 1:
    p.error(f'--archs must be from smallcnnzoo, nws_fixed and --populations >= 1, got {args.archs!r}, '
            f'{args.populations!r}')
  return args


def measure(arch, p, args, mesh, data, images, labels, cores):
  """One row: popnet and every baseline on P members of `arch`, timed in alternation."""
  from benchmarks import core_loops, programs
  pop_run, pop = programs.bench_popnet(arch, p, args.batch, mesh, data, args.conv_impl, args.member_chunk)
  loop_run, loop = programs.bench_loop(arch, range(p), args.batch, images, labels)
  names, runs = ['popnet', 'loop_1proc'], [pop_run, loop_run]
  pools = {}
  try:
    ks = [timing.calibrate(fn, args.seconds) for fn in runs]
    if cores:
      pools['loop_per_core'] = core_loops.CoreLoops(arch, p, args.batch, cores)
    if cores and args.popnet_per_core:
      pools['popnet_per_core'] = core_loops.CoreLoops(arch, p, args.batch, cores, program='popnet')
    for name, pool in pools.items():
      names.append(name)
      runs.append(pool.run)
      ks.append(pool.calibrate(args.seconds))
    load = timing.load_average()
    best = timing.interleaved_best(list(zip(runs, ks)), args.rounds)
  finally:
    for pool in pools.values():
      pool.close()
  rates = {n: p * args.batch * k / t for n, k, t in zip(names, ks, best)}
  baselines = {n: r for n, r in rates.items() if n.startswith('loop')}
  pool = pools.get('loop_per_core')
  per_core_wall = p * args.batch * ks[names.index('loop_per_core')] / pool.best_wall if pool else None
  best_name = max(baselines, key=baselines.get)
  step_seconds = best[0] / ks[0]
  return {'arch': arch, 'input_shape': programs.SHAPES[arch], 'population': p, 'batch': args.batch,
          'model_samples_per_s': rates, 'best_baseline': best_name,
          'speedup_vs_best': rates['popnet'] / baselines[best_name],
          'speedup': {n: rates['popnet'] / r for n, r in baselines.items()},
          'popnet_per_core_vs_best': rates['popnet_per_core'] / baselines[best_name] if len(pools) > 1 else None,
          'core_processes': len(pool.cores) if pool else 0, 'loop_per_core_wall_model_samples_per_s': per_core_wall,
          'network_epochs_per_hour_60k': rates['popnet'] / N_DATA * 3600,
          'xla_gflops_per_step': pop['xla_flops_per_step'] / 1e9,
          'analytic_gflops_per_step': pop['analytic_flops_per_step'] / 1e9,
          'achieved_gflops': pop['xla_flops_per_step'] / step_seconds / 1e9,
          'compile_seconds': pop['compile_seconds'], 'loop_compile_seconds': loop['compile_seconds'],
          'mib_per_member': pop['bytes_per_member'] / 2**20, 'member_chunk': pop['member_chunk'],
          'conv_impl': pop['conv_impl'], 'load_average_before': load, 'load_average_after': timing.load_average()}


def measure_large_population(args, mesh):
  """Trains a population of `memory_population` small networks for a moment and reports peak memory."""
  import jax
  from benchmarks import programs
  data, _, _ = programs.synthetic(mesh, programs.SHAPES['smallcnnzoo'])
  run, pop = programs.bench_popnet('smallcnnzoo', args.memory_population, args.batch, mesh, data, args.conv_impl,
                                   args.member_chunk)
  k = timing.calibrate(run, 0.5)
  seconds = timing.interleaved_best([(run, k)], 1)[0]
  stats = jax.local_devices()[0].memory_stats() or {}
  return {'population': args.memory_population, 'compiled_bytes': pop['bytes_per_member'] * args.memory_population,
          'device_peak_bytes': stats.get('peak_bytes_in_use'),
          'process_max_rss_bytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
          'model_samples_per_s': pop['samples_per_step'] * k / seconds}


def main(argv=None) -> dict:
  args = parse_args(argv)
  cores = timing.usable_cores()
  cli.expose_host_cores(args.host_devices)
  import jax
  from benchmarks import programs, report
  from popnet import population
  mesh = population.make_mesh()
  info = timing.machine()
  info['fp32_matmul_gflops'] = programs.matmul_ceiling()
  info['load_average_start'] = timing.load_average()
  pool_cores = [] if args.core_processes == 0 or jax.default_backend() != 'cpu' else (
      cores if args.core_processes < 0 else (cores * args.core_processes)[:args.core_processes])
  print(f"device: {info['backend']} x{info['device_count']} ({info['cpu']}); fp32 matmul ceiling "
        f"{info['fp32_matmul_gflops']:.0f} GFLOP/s; load average {info['load_average_start']}", flush=True)
  memory = measure_large_population(args, mesh) if args.memory_population else None  # first: its RSS is the peak
  rows = []
  for arch in args.arch_list:
    data, images, labels = programs.synthetic(mesh, programs.SHAPES[arch])
    for p in args.population_list:
      rows.append(measure(arch, p, args, mesh, data, images, labels, pool_cores))
      print(report.row_line(rows[-1]), flush=True)
  info['load_average_end'] = timing.load_average()
  result = {'machine': info, 'command': ' '.join(['python -m benchmarks.throughput'] + sys.argv[1:] if argv is None
                                                 else ['python -m benchmarks.throughput'] + list(argv)),
            'rounds': args.rounds, 'rows': rows, 'memory': memory, 'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  text = report.markdown(result)
  print(text)
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    name = os.path.join(args.out, f"throughput_{info['backend']}")
    with open(name + '.json', 'w') as f:
      json.dump(result, f, indent=1)
    with open(name + '.md', 'w') as f:
      f.write(text)
  return result


if __name__ == '__main__':
  main()
