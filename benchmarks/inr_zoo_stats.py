"""What an INR zoo build reached (issue 28): per split, the fitted INRs' PSNR (min / p10 / median / p90 / max), the
fraction that reached the PSNR threshold and the steps they took; the build's wall time from its summary.

    python -m benchmarks.inr_zoo_stats --zoo runs/inr_dws --log runs/inr_dws.log --out DIR   # DIR/stats.{json,md}
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402

QUANTILES = {'min': 0.0, 'p10': 0.1, 'median': 0.5, 'p90': 0.9, 'max': 1.0}


def split_stats(rows) -> dict:
  import numpy as np
  psnr = rows['psnr'].to_numpy(np.float64)
  reached = rows['reached'].astype(bool).to_numpy()
  stop = rows.loc[reached, 'stop_step'].to_numpy()
  return {'fits': int(len(rows)), 'images': int(rows['image'].nunique()),
          'psnr_db': {k: round(float(np.quantile(psnr, q)), 2) for k, q in QUANTILES.items()} if len(psnr) else {},
          'reached_threshold': round(float(reached.mean()), 4) if len(rows) else float('nan'),
          'median_stop_step_of_those': int(np.median(stop)) if len(stop) else None,
          'not_ok': int((rows['status'] != 'ok').sum())}


def stats(zoo_path: str) -> dict:
  from popnet import Zoo
  zoo = Zoo.open(zoo_path)
  meta = zoo.metadata
  last = meta[meta['snapshot'] == meta['snapshot'].max()]
  ok = last[last['status'] == 'ok']
  out = {'zoo': zoo_path, 'architecture': sorted(last['architecture'].unique().tolist()),
         'steps': sorted(last['steps'].unique().tolist()), 'psnr_threshold': sorted(last['psnr_threshold'].unique().tolist()),
         'all': split_stats(last), 'ok': split_stats(ok)}
  return out | {s: split_stats(ok[ok['split'] == s]) for s in ('train', 'val', 'test')}


def summary_lines(log_path: str) -> list[str]:
  """The build's closing summary lines (wall time, PSNR, throughput) from its log."""
  keep = re.compile(r'^(members:|final PSNR|wall time:|throughput:|popnet: \d|1 programs|\d+ programs)')
  with open(log_path, errors='replace') as f:
    return [line.rstrip() for line in f if keep.match(line)]


def markdown(result: dict) -> str:
  head = '| rows | fits | images | PSNR min | p10 | median | p90 | max | reached threshold | median stop step |'
  lines = [head, '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
  for name in ('all', 'ok', 'train', 'val', 'test'):
    s = result[name]
    p = s['psnr_db']
    lines.append(f"| {name} | {s['fits']:,} | {s['images']:,} | " + ' | '.join(f'{p[k]:.2f}' for k in QUANTILES)
                 + f" | {100 * s['reached_threshold']:.2f}% | {s['median_stop_step_of_those']} |")
  return '\n'.join(lines + [''] + [f'    {line}' for line in result.get('summary', [])]) + '\n'


def main(argv=None) -> None:
  p = usage.ArgumentParser(prog='python -m benchmarks.inr_zoo_stats', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--zoo', required=True, help='an INR zoo or the workdir holding it')
  p.add_argument('--log', help="the build's log (its closing summary is quoted)")
  p.add_argument('--out', required=True)
  args = p.parse_args(argv)
  usage.check_input_dir(p, '--zoo', args.zoo)
  if args.log and not os.path.isfile(args.log):
    p.error(f'--log: {args.log} is not a file')
  usage.check_out(p, args.out)
  result = stats(args.zoo)
  if args.log:
    result['summary'] = summary_lines(args.log)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, 'stats.json'), 'w') as f:
    json.dump(result, f, indent=1)
  with open(os.path.join(args.out, 'stats.md'), 'w') as f:
    f.write(markdown(result))
  print(markdown(result))


if __name__ == '__main__':
  main()
