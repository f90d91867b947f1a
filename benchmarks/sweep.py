"""A throughput sweep of popnet's population program over population sizes, convolution formulations and
member-chunk sizes, under a deadline: one JSON line per configuration, appended as soon as it is measured, so
a sweep stopped from outside keeps every finished row. Part of the device check (benchmarks/device_check.py).

Each row: model-samples/s of popnet (best of --rounds calls), compile seconds, XLA GFLOP/s, the device's peak
memory so far (jax memory_stats; None on CPU), and, for the populations in --loop_populations, the per-member
loop in this process (benchmarks/programs.py bench_loop) timed in alternation with popnet. A configuration
that fails (e.g. out of device memory) is recorded with its error and the sweep goes on; one that would not
finish before the deadline (estimated from the previous one) is recorded as skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402
from benchmarks import timing  # noqa: E402


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(',') if x]


def parse_args(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.sweep', description=__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           epilog='example: python -m benchmarks.sweep --arch smallcnnzoo --populations 128,512 '
                                  '--out rows.jsonl')
  p.add_argument('--arch', default='smallcnnzoo', choices=['smallcnnzoo', 'nws_fixed'])
  p.add_argument('--populations', default='128,512,2048,8192', help='comma-separated population sizes')
  p.add_argument('--conv_impls', default='xla,im2col', help='comma-separated convolution formulations')
  p.add_argument('--member_chunks', default='0', help='comma-separated member chunks (0: automatic); sizes other '
                 'than 0 run at the largest population with the first formulation')
  p.add_argument('--loop_populations', default='', help='populations at which the per-member loop is also timed')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--seconds', type=float, default=0.5, help='target seconds per timed call')
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--deadline_s', type=float, default=300.0, help='stop starting configurations after this')
  p.add_argument('--out', required=True, help='JSON-lines file the rows are appended to')
  args = p.parse_args(argv)
  usage.check_ranges(p, args, (('batch', dict(low=1)), ('rounds', dict(low=1)), ('seconds', dict(low=0, low_open=True)),
                               ('deadline_s', dict(low=0, low_open=True))))
  for name, low in (('populations', 1), ('member_chunks', 0), ('loop_populations', 1)):
    try:
      values = _ints(getattr(args, name))
    except ValueError:
      values = [low - 1]
    if values and min(values) < low or (name == 'populations' and not values):
      p.error(f'--{name}: comma-separated integers >= {low}, got {getattr(args, name)!r}')
  return args


def configurations(args) -> list[dict]:
  """In order of importance: every population with each formulation (automatic chunk), then other chunks."""
  pops, impls = _ints(args.populations), args.conv_impls.split(',')
  configs = [dict(population=p, conv_impl=impl, member_chunk=0) for impl in impls for p in pops]
  configs += [dict(population=max(pops), conv_impl=impls[0], member_chunk=c)
              for c in _ints(args.member_chunks) if 0 < c < max(pops)]
  return configs


def measure(args, config, mesh, data, images, labels) -> dict:
  import jax
  from benchmarks import programs
  p = config['population']
  pop_run, pop = programs.bench_popnet(args.arch, p, args.batch, mesh, data, config['conv_impl'],
                                       config['member_chunk'])
  runs = [(pop_run, timing.calibrate(pop_run, args.seconds))]
  if p in _ints(args.loop_populations):
    loop_run, _ = programs.bench_loop(args.arch, range(p), args.batch, images, labels)
    runs.append((loop_run, timing.calibrate(loop_run, args.seconds)))
  best = timing.interleaved_best(runs, args.rounds)
  rates = [p * args.batch * k / t for (_, k), t in zip(runs, best)]
  stats = jax.local_devices()[0].memory_stats() or {}
  row = {'popnet_model_samples_per_s': rates[0], 'compile_seconds': pop['compile_seconds'],
         'first_call_seconds': pop['first_call_seconds'], 'member_chunk_used': pop['member_chunk'],
         'conv_impl_per_layer': pop['conv_impl'],
         'achieved_gflops': pop['xla_flops_per_step'] * runs[0][1] / best[0] / 1e9,
         'mib_per_member_compiled': pop['bytes_per_member'] / 2**20,
         'device_peak_bytes_so_far': stats.get('peak_bytes_in_use')}
  if len(rates) > 1:
    row.update(loop_model_samples_per_s=rates[1], speedup_vs_loop=rates[0] / rates[1])
  return row


def main(argv=None) -> int:
  args = parse_args(argv)
  start = time.monotonic()
  from benchmarks import programs
  from popnet import population
  import jax
  mesh = population.make_mesh()
  data, images, labels = programs.synthetic(mesh, programs.SHAPES[args.arch])
  last_wall = 0.0
  for config in configurations(args):
    row = {'arch': args.arch, 'batch': args.batch, 'backend': jax.default_backend(),
           'devices': mesh.devices.size, **config}
    remaining = args.deadline_s - (time.monotonic() - start)
    t = time.monotonic()
    if remaining < 2 * last_wall:
      row.update(status='skipped', reason=f'{remaining:.0f} s left, the previous configuration took {last_wall:.0f} s')
    else:
      try:
        row.update(status='ok', **measure(args, config, mesh, data, images, labels))
      except Exception as e:  # noqa: BLE001  a failed configuration (e.g. out of memory) is a result
        row.update(status='failed', error=f'{type(e).__name__}: {str(e)[:500]}')
        traceback.print_exc()
      last_wall = time.monotonic() - t
    row['wall_seconds'] = time.monotonic() - t
    with open(args.out, 'a') as f:
      f.write(json.dumps(row) + '\n')
    print(json.dumps(row), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
