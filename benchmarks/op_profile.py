"""Where a population train step spends its time: per-XLA-op times of popnet's train program, per member-step.

    python -m benchmarks.op_profile [--arch nws_fixed] [--population 4] [--steps 10] [--top 25] [--out FILE]

Traces one call of the compiled train program (`--steps` steps of `--population` members, one device) with
jax.profiler (a Perfetto trace, no TensorBoard needed), sums each HLO op's time and prints the largest ones
with the instruction that produced them (shape and, in the metadata, the JAX operation). Use it to see which
layer and which formulation a change should target; the numbers are wall time on this machine, so compare
runs made back to back.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from popnet import usage


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  pass


def _parse(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.op_profile', description=__doc__,
                           epilog='example:\n  python -m benchmarks.op_profile --arch nws_fixed --population 4 --steps 10',
                           formatter_class=_Formatter)
  p.add_argument('--arch', default='nws_fixed')
  p.add_argument('--population', type=int, default=4)
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--steps', type=int, default=10)
  p.add_argument('--top', type=int, default=25)
  p.add_argument('--conv_impl', default='auto')
  p.add_argument('--member_chunk', type=int, default=0, help='members vmapped together (0: popnet.population default)')
  p.add_argument('--out', default='', help='also write the table here (markdown)')
  args = p.parse_args(argv)
  usage.check_ranges(p, args, (*((name, dict(low=1)) for name in ('population', 'batch', 'steps', 'top')),
                               ('member_chunk', dict(low=0))))
  return args


def main(argv=None):
  args = _parse(argv)
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=1').strip()
  import jax

  from benchmarks import programs
  from popnet import models, population

  mesh = population.make_mesh(jax.local_devices()[:1])
  data, _, _ = programs.synthetic(mesh, programs.SHAPES[args.arch])
  cohort, state, perm = programs.population_cohort(args.arch, args.population, args.batch, mesh, data, args.conv_impl,
                                                   args.member_chunk)
  program = cohort.spec
  state, _ = cohort.train(state, perm, data, 0, 0, args.steps)
  jax.block_until_ready(state)
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      state, _ = cohort.train(state, perm, data, 0, 0, args.steps)
      jax.block_until_ready(state)
    (trace,) = glob.glob(os.path.join(trace_dir, '**', '*perfetto_trace.json.gz'), recursive=True)
    with gzip.open(trace) as f:
      events = json.load(f)
  events = events['traceEvents'] if isinstance(events, dict) else events
  hlo = cohort.population.executables['train'].as_text()
  instructions = {}
  for line in hlo.split('\n'):
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) (\w[\w\-]*)\(', line)
    if m:
      op_name = re.search(r'op_name="([^"]+)"', line)
      instructions[m.group(1)] = (m.group(2), m.group(3), op_name.group(1).split('/')[-1] if op_name else '')
  per_op, total = collections.Counter(), 0.0
  for e in events:
    if e.get('ph') == 'X' and e.get('name') in instructions:
      per_op[e['name']] += e.get('dur', 0)
      total += e.get('dur', 0)
  member_steps = args.population * args.steps
  lines = [f'# Per-op time of the {args.arch} train program ({jax.default_backend()}, 1 device)', '',
           f'Command: `python -m benchmarks.op_profile {" ".join(sys.argv[1:] if argv is None else argv)}`', '',
           f'P = {args.population}, batch {args.batch}, {args.steps} steps, conv '
           f'{", ".join(models.conv_impls(program.network.arch, program.network.conv_impl))}, member chunk '
           f'{program.member_chunk}. Sum over XLA ops: {total / member_steps / 1e3:.2f} ms per member-step.', '',
           '| ms / member-step | share | op | result | from |', '|---:|---:|---|---|---|']
  for name, us in per_op.most_common(args.top):
    result, kind, origin = instructions[name]
    lines.append(f'| {us / member_steps / 1e3:.3f} | {100 * us / total:.1f}% | {name} ({kind}) | `{result}` | '
                 f'{origin} |')
  shown = sum(us for _, us in per_op.most_common(args.top))
  lines += ['', f'The other {len(per_op) - min(args.top, len(per_op))} ops (of {len(per_op)}): '
            f'{(total - shown) / member_steps / 1e3:.2f} ms per member-step ({100 * (total - shown) / total:.0f}%).']
  text = '\n'.join(lines) + '\n'
  print(text)
  if args.out:
    with open(args.out, 'w') as f:
      f.write(text)


if __name__ == '__main__':
  main()
