"""The device check's summary (benchmarks/device_check.py): summary.json as recorded, summary.md for reading,
with the issue's accelerator targets checked against the measured sweep rows."""
from __future__ import annotations

import json
import os

# the targets of issue 15: popnet / the per-member loop, at this population
TARGETS = {'smallcnnzoo': (512, 10.0), 'nws_fixed': (256, 3.0)}


def _gib(x) -> str:
  return '-' if x is None else f'{x / 2**30:.2f}'


def _num(x, fmt=',.0f') -> str:
  return '-' if x is None else format(x, fmt)


def stage_table(stages: list[dict]) -> list[str]:
  lines = ['| stage | status | seconds | limit s | note |', '|---|---|---:|---:|---|']
  for s in stages:
    note = s.get('reason') or s.get('results_error') or ''
    lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['timeout_s']} | {note} |")
  return lines


def tests_lines(results: dict) -> list[str]:
  lines = [f"Tests: {results['tests']} run, {results['failures']} failures, {results['errors']} errors, "
           f"{results['skipped']} skipped, {results['seconds']:.0f} s."]
  return lines + [f'- failed: `{name}`' for name in results['failed']]


def sweep_lines(rows: list[dict]) -> list[str]:
  lines = ['| arch | P | conv | chunk | status | popnet model-samples/s | loop | popnet / loop | compile s '
           '| GFLOP/s | device peak GiB (so far) |', '|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|']
  for r in rows:
    lines.append(f"| {r['arch']} | {r['population']} | {r['conv_impl']} | {r.get('member_chunk_used', r['member_chunk'])} "
                 f"| {r['status']}{': ' + r.get('error', r.get('reason', ''))[:80] if r['status'] != 'ok' else ''} "
                 f"| {_num(r.get('popnet_model_samples_per_s'))} | {_num(r.get('loop_model_samples_per_s'))} "
                 f"| {_num(r.get('speedup_vs_loop'), '.2f')} | {_num(r.get('compile_seconds'), '.1f')} "
                 f"| {_num(r.get('achieved_gflops'), '.1f')} | {_gib(r.get('device_peak_bytes_so_far'))} |")
  return lines


def target_lines(rows: list[dict]) -> list[str]:
  """popnet's best configuration at the target population against the loop measured there."""
  lines = []
  for arch, (p, factor) in TARGETS.items():
    at = [r for r in rows if r['arch'] == arch and r['population'] == p and r['status'] == 'ok']
    loops = [r['loop_model_samples_per_s'] for r in at if 'loop_model_samples_per_s' in r]
    if not at or not loops:
      lines.append(f'- {arch} P = {p}: not measured (target {factor:g}x the loop)')
      continue
    best = max(at, key=lambda r: r['popnet_model_samples_per_s'])
    ratio = best['popnet_model_samples_per_s'] / max(loops)
    lines.append(f"- {arch} P = {p}: popnet {best['popnet_model_samples_per_s']:,.0f} ({best['conv_impl']}, chunk "
                 f"{best['member_chunk_used']}) vs loop {max(loops):,.0f} model-samples/s = {ratio:.2f}x; target "
                 f"{factor:g}x: {'met' if ratio >= factor else 'NOT met'}")
  return lines


def fastest_lines(rows: list[dict]) -> list[str]:
  """The fastest formulation and chunk per architecture and population: what `auto` should pick there."""
  lines = []
  for key in sorted({(r['arch'], r['population']) for r in rows}):
    ok = [r for r in rows if (r['arch'], r['population']) == key and r['status'] == 'ok']
    if ok:
      best = max(ok, key=lambda r: r['popnet_model_samples_per_s'])
      others = ', '.join(f"{r['conv_impl']}/{r['member_chunk_used']} {r['popnet_model_samples_per_s']:,.0f}"
                         for r in ok if r is not best)
      lines.append(f"- {key[0]} P = {key[1]}: {best['conv_impl']}, chunk {best['member_chunk_used']} "
                   f"({best['popnet_model_samples_per_s']:,.0f})" + (f'; others: {others}' if others else ''))
  return lines


def run_lines(runs: dict[str, dict]) -> list[str]:
  lines = ['| run | data | members | wall s | compile s | train s | train model-samples/s | device peak GiB '
           '| process RSS GiB | median test acc |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  for name, r in runs.items():
    s = r['summary']
    lines.append(f"| {name} ({r['config']} {' '.join(r['overrides'])}) | {r['data']} {','.join(r['datasets'])} "
                 f"| {s['members']} | {s['wall_seconds']:.1f} | {s['timings']['compile']:.1f} "
                 f"| {s['timings']['train']:.1f} | {s['model_samples_per_second']:,.0f} | {_gib(r['device_peak_bytes'])} "
                 f"| {_gib(r['process_max_rss_bytes'])} | {s['test_accuracy_quantiles'].get('median', '-')} |")
  return lines


def inr_lines(r: dict) -> list[str]:
  """The INR fit rates (benchmarks/inr.py) and the time each method would take for all 70,000 Fashion-MNIST INRs."""
  lines = [f"DWS SIRENs, {r['steps']} Adam steps per fit, {r['dataset']} images, popnet and torch_vmap on groups of "
           f"{r['group']} (benchmarks/inr.py; hours for 70k = 70,000 / fits per second).", '',
           '| method | fits/s | fits timed | popnet / method | hours for 70k | compile s | curve max rel. diff |',
           '|---|---:|---:|---:|---:|---:|---:|']
  for name, m in r['methods'].items():
    lines.append(f"| {name} | {_num(m['fits_per_s'], ',.2f')} | {_num(m['fits'], ',')} "
                 f"| {_num(m.get('popnet_speedup'), '.2f')} | {_num(m['hours_for_70k'], ',.2f')} "
                 f"| {_num(m['compile_seconds'], '.1f')} | {_num(m['curve_max_relative_difference'], '.1e')} |")
  return lines + [f"- popnet >= {t['target']:g}x {name}: {t['measured']:.2f}x, {'met' if t['met'] else 'NOT met'}"
                  for name, t in r['targets'].items()]


def markdown(summary: dict) -> str:
  m = summary['machine']
  lines = ['# popnet device check' + (' (quick mode)' if summary['quick'] else ''), '',
           f"Command: `{summary['command']}` (from a clone's root). Started {summary['started']}"
           + (f", {summary['seconds']} s of a {summary['budget_s']:.0f} s budget." if 'seconds' in summary else '.'),
           '', f"Machine: {m['host']}, {m['cpu']}, {m['cores']} cores, load {m['load_average']}; "
           f"GPUs: {m.get('nvidia_smi') or m['gpus']}; packages {m.get('packages')}; JAX_PLATFORMS="
           f"{m['JAX_PLATFORMS']!r}.", '', '## Stages', ''] + stage_table(summary['stages'])
  by_name = {s['stage']: s for s in summary['stages']}
  if isinstance(by_name.get('tests', {}).get('results'), dict):
    lines += ['', '## Tests', ''] + tests_lines(by_name['tests']['results'])
  rows = [r for s in summary['stages'] if s['stage'].startswith('sweep_') and isinstance(s.get('results'), list)
          for r in s['results']]
  if rows:
    lines += ['', '## Throughput sweep', '', 'Synthetic data, batch 32, Adam; each row best of a few calls; the '
              'loop (one jitted single-model step per member, this process) timed in alternation with popnet.', '']
    lines += sweep_lines(rows) + ['', 'Targets (issue 15):', ''] + target_lines(rows)
    lines += ['', 'Fastest configuration measured (conv_impl, member chunk; model-samples/s):', ''] + fastest_lines(rows)
  if isinstance(by_name.get('inr_fit_rate', {}).get('results'), dict):
    lines += ['', '## INR fit rate', ''] + inr_lines(by_name['inr_fit_rate']['results'])
  runs = {n: s['results'] for n, s in by_name.items() if n.endswith('_run') and isinstance(s.get('results'), dict)}
  if runs:
    lines += ['', '## Training runs (popnet.train.train)', ''] + run_lines(runs)
  return '\n'.join(lines) + '\n'


def write(summary: dict, out: str) -> None:
  with open(os.path.join(out, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=1, default=str)
  with open(os.path.join(out, 'summary.md'), 'w') as f:
    f.write(markdown(summary))
