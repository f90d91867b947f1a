"""The device check: one command that measures popnet on an accelerator and writes everything under --out.

    python -m benchmarks.device_check --out DIR            # full: <= 8 minutes on one GPU
    python -m benchmarks.device_check --out DIR --quick    # tiny sizes on CPU, for CI

Stages, each a subprocess with its own time limit (a share of the --budget_s global deadline; a stage that
overruns is killed and recorded, the next one starts), output in DIR/<stage>.log:
  tests          pytest of the accelerator-relevant tests (tests/test_accelerator_path.py, test_population.py,
                 test_conv.py) on the default backend; JUnit XML in DIR/tests.xml
  sweep_*        popnet's throughput over populations, convolution formulations and member chunks, with the
                 per-member loop at some populations (benchmarks/sweep.py; rows in DIR/sweep_*.jsonl)
  default_run    `python -m popnet.train`'s default config (configs/default.py), on fashion_mnist if it is
                 prepared, else on synthetic data of its shape (benchmarks/config_run.py; nothing downloads)
  nws_fixed_run  a short nws_fixed config run on synthetic data (one dataset and batch size: one cohort)
  inr_fit_rate   INR fits per second of popnet and the loops without it (benchmarks/inr.py: DWS SIRENs, 1,000
                 steps, groups of 8,192) and the projected time to fit all 70,000 Fashion-MNIST INRs
Every stage records its status, seconds and results in DIR/summary.json and DIR/summary.md, rewritten after
each stage, so a check stopped at any point keeps what it measured. Run it from a clone of the repository.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ''):
  sys.path.insert(0, ROOT)
from popnet import usage  # noqa: E402
from benchmarks import device_stages, device_summary  # noqa: E402


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  pass


def parse_args(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.device_check', description=__doc__,
                           formatter_class=_Formatter,
                           epilog='example:\n  python -m benchmarks.device_check --out /tmp/device_check')
  p.add_argument('--out', required=True, help='folder for every result (created; must be empty or absent)')
  p.add_argument('--quick', action='store_true', help='tiny sizes on CPU (JAX_PLATFORMS=cpu), about a minute')
  p.add_argument('--budget_s', type=float, default=None,
                 help='global deadline in seconds (default: 470 full, 240 quick)')
  p.add_argument('--stages', default='', help='comma-separated subset of stages to run (default: all)')
  args = p.parse_args(argv)
  if args.budget_s is not None:
    usage.check_ranges(p, args, (('budget_s', dict(low=0, low_open=True)),))
  usage.check_out(p, args.out)
  if os.path.isdir(args.out) and os.listdir(args.out):
    p.error(f'--out {args.out} is not empty; give a new folder (nothing is overwritten)')
  known = [s.name for s in device_stages.stages(args.quick, args.out)]
  unknown = [s for s in args.stages.split(',') if s and s not in known]
  if unknown:
    p.error(f'--stages must be from {", ".join(known)}, got {", ".join(unknown)}')
  if args.budget_s is None:
    args.budget_s = 240.0 if args.quick else 470.0
  return args


def run_stage(stage, out: str, timeout: float, env: dict) -> dict:
  """Runs one stage's command with a time limit; never raises."""
  t0 = time.monotonic()
  argv = stage.command(timeout)
  record = {'stage': stage.name, 'command': ' '.join(argv), 'timeout_s': round(timeout, 1)}
  if timeout < 5:
    return {**record, 'status': 'skipped', 'reason': 'global deadline reached', 'seconds': 0.0}
  try:
    with open(os.path.join(out, f'{stage.name}.log'), 'w') as log:
      proc = subprocess.run(argv, cwd=ROOT, env={**env, **stage.env}, stdout=log, stderr=subprocess.STDOUT,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    record.update(status='ok' if proc.returncode == 0 else 'failed', returncode=proc.returncode)
  except subprocess.TimeoutExpired:
    record.update(status='timeout', reason=f'killed after {timeout:.0f} s')
  except Exception as e:  # noqa: BLE001  a stage that cannot even start is a recorded failure
    record.update(status='failed', reason=f'{type(e).__name__}: {e}')
  record['seconds'] = round(time.monotonic() - t0, 1)
  try:
    record['results'] = stage.collect(out)
  except Exception as e:  # noqa: BLE001
    record['results_error'] = f'{type(e).__name__}: {e}'
  return record


def main(argv=None) -> int:
  args = parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]),
             PYTHONUNBUFFERED='1')
  if args.quick:
    env['JAX_PLATFORMS'] = 'cpu'
  else:  # the largest sweep populations need more than JAX's default 75% of an accelerator's memory
    env.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.92')
  selected = [s for s in device_stages.stages(args.quick, args.out) if not args.stages or s.name in args.stages]
  deadline = time.monotonic() + args.budget_s
  summary = {'command': ' '.join(['python -m benchmarks.device_check'] + (sys.argv[1:] if argv is None else argv)),
             'quick': args.quick, 'budget_s': args.budget_s, 'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
             'machine': device_stages.machine_facts(env), 'stages': []}
  for i, stage in enumerate(selected):
    remaining = deadline - time.monotonic()
    reserved = sum(s.share for s in selected[i + 1:]) * args.budget_s
    timeout = min(remaining, max(stage.share * args.budget_s, remaining - reserved))
    print(f'device_check: {stage.name} (limit {timeout:.0f} s)', flush=True)
    summary['stages'].append(run_stage(stage, args.out, timeout, env))
    print(f"device_check: {stage.name} {summary['stages'][-1]['status']} in {summary['stages'][-1]['seconds']} s",
          flush=True)
    device_summary.write(summary, args.out)
  summary['finished'] = time.strftime('%Y-%m-%d %H:%M:%S %Z')
  summary['seconds'] = round(args.budget_s - (deadline - time.monotonic()), 1)
  device_summary.write(summary, args.out)
  print(open(os.path.join(args.out, 'summary.md')).read())
  return 0 if all(s['status'] == 'ok' for s in summary['stages']) else 1


if __name__ == '__main__':
  sys.exit(main())
