"""The replication report (benchmarks/replication.py): report.md, report.json and plots from the cached cells.

Reads only cells/*.json, so it can be rebuilt at any time; a cell that does not exist yet is shown as
"not run" and listed. Classification scores are test accuracy per network (chance = 1 / classes: splits are
class-balanced); regression scores are R^2 (Kendall tau beside it), the learning rate on a log10 scale.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pandas as pd

from meta import metrics
from popnet import progress
from popnet.zoo import Zoo

ZOO_COLUMNS = ('dataset', 'optimizer', 'activation', 'init', 'batch_size', 'augment', 'learning_rate')


# --- the zoo ----------------------------------------------------------------------------------------------------
def zoo_summary(zoo: Zoo) -> dict:
  """The final snapshot's test accuracy per hyper-parameter value, and how the zoo was built."""
  m = zoo.metadata
  final = m[m['snapshot'] == m.groupby('member_id')['snapshot'].transform('max')].copy()
  quarter = pd.qcut(final['learning_rate'], 4, labels=False)
  edges = final.groupby(quarter)['learning_rate'].agg(['min', 'max'])
  final['learning_rate'] = [f'q{q + 1}: {edges.loc[q, "min"]:.1e}-{edges.loc[q, "max"]:.1e}' for q in quarter]
  per_value = {}
  for col in ZOO_COLUMNS:
    g = final.groupby(col, observed=True)['test_accuracy']
    per_value[col] = {str(k): _quartiles(v) for k, v in g}
  glorot = final[final['init'].astype(str).str.startswith('glorot')]
  per_dataset_glorot = {str(k): _quartiles(v) for k, v in glorot.groupby('dataset')['test_accuracy']}
  manifest = zoo.manifest if hasattr(zoo, 'manifest') else {}
  return {'path': zoo.path, 'networks': int(final['member_id'].nunique()), 'rows': int(len(m)),
          'snapshots': int(m['snapshot'].nunique()), 'epochs': int(m['epoch'].max()),
          'architectures': sorted(set(m['arch'])), 'all': _quartiles(final['test_accuracy']),
          'diverged': int((final['status'] != 'ok').sum()), 'per_value': per_value,
          'glorot_per_dataset': per_dataset_glorot,
          'build': dict({k: manifest.get(k) for k in ('timings', 'devices', 'backend', 'host', 'machine', 'versions',
                                                   'complete')},
                        whole=progress.build_totals(manifest['processes']) if manifest.get('processes') else None)}


def _quartiles(v: pd.Series) -> dict:
  v = v.dropna().to_numpy(np.float64)
  if not len(v):
    return {'n': 0}
  q = np.quantile(v, (0.1, 0.25, 0.5, 0.75, 0.9))
  return {'n': int(len(v)), 'p10': q[0], 'p25': q[1], 'median': q[2], 'p75': q[3], 'p90': q[4]}


# --- cells ------------------------------------------------------------------------------------------------------
def cell_score(cell: dict) -> float | None:
  return None if 'error' in cell else metrics.score(cell['test'])


def cell_score_text(cell: dict) -> str:
  if 'error' in cell:
    return f'n/a ({cell["error"]})'
  t = cell['test']
  if 'accuracy' in t:
    return f'accuracy {t["accuracy"]:.3f} (chance {cell["chance"]:.3f}, n {t["networks"]})'
  return f'R² {t["r2"]:.3f}, τ {t["kendall_tau"]:.3f} (n {t["networks"]})'


def num_text(x, digits=3) -> str:
  return 'nan' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'


def table_cell(cells: dict, target: str, model: str) -> dict | None:
  """mean +- sd over the splits that exist of (target, model), or one split's 95% interval."""
  return prefix_cell(cells, f'table/{target}/{model}')


def prefix_cell(cells: dict, prefix: str) -> dict | None:
  """mean +- sd over the splits <prefix>/split<i> that exist, or one split's 95% interval."""
  runs = [c for k, c in sorted(cells.items()) if re.fullmatch(re.escape(prefix) + r'/split\d+', k)]
  if not runs:
    return None
  if any('error' in c for c in runs):
    return {'error': next(c['error'] for c in runs if 'error' in c)}
  s = metrics.summarize([cell_score(c) for c in runs])
  out = {'score': s, 'networks': [c['test']['networks'] for c in runs], 'ci95': runs[0]['test'].get('ci95'),
         'chance': runs[0]['chance'], 'regression': 'accuracy' not in runs[0]['test'],
         'seconds': sum(c.get('cell_seconds', 0) for c in runs)}
  if out['regression']:
    out['kendall_tau'] = metrics.summarize([c['test']['kendall_tau'] for c in runs])
  windows = [c.get('test_per_window') for c in runs]
  if all(windows):
    out['window_score'] = metrics.summarize([metrics.score(w) for w in windows])
  return out


def table_text(entry: dict | None) -> str:
  if entry is None:
    return 'not run'
  if 'error' in entry:
    return 'n/a'
  s = entry['score']
  value = (f'{num_text(s["mean"])} ± {num_text(s["sd"])}' if s['splits'] > 1 else
           f'{num_text(s["mean"])} [{num_text(entry["ci95"][0], 2)}, {num_text(entry["ci95"][1], 2)}]')
  if entry['regression']:
    return f'R² {value}, τ {num_text(entry["kendall_tau"]["mean"], 2)}'
  return value


def _splits_text(entry: dict | None) -> str:
  if not entry or 'error' in entry:
    return ''
  return f'{entry["score"]["splits"]}×{min(entry["networks"])}'


def _cpu_text(build: dict) -> str:
  machine = build.get('machine') or {}
  return f', CPU {machine["cpu"]} x {machine["cores"]}' if machine.get('cpu') else ''


def _build_text(build: dict) -> str:
  """The whole build's totals over its processes, where the zoo records them (older zoos keep only the last
  process's timings)."""
  whole = build.get('whole')
  if not whole:
    return ''
  t = whole['timings']
  return (f'whole build over {whole["processes"]} process(es), {whole["first_started"]} to '
          f'{whole["last_updated"]}: ' + ', '.join(f'{k} {v:,.0f} s' for k, v in t.items()) + '; ')


# --- markdown ---------------------------------------------------------------------------------------------------
def zoo_section(zoo: dict | None) -> list[str]:
  if zoo is None:
    return ['## The zoo', '', 'not summarized yet (stage `zoo`).', '']
  b = zoo['build'] or {}
  t = b.get('timings') or {}
  lines = ['## The zoo', '',
           f'{zoo["networks"]:,} networks ({", ".join(zoo["architectures"])}), {zoo["snapshots"]} snapshots '
           f'each over {zoo["epochs"]} epochs, {zoo["rows"]:,} rows; built on {b.get("backend")} '
           f'({", ".join(b.get("devices") or [])}, host {b.get("host")}{_cpu_text(b)}); {_build_text(b)}'
           f'manifest timings (last process): ' + ', '.join(f'{k} {v:,.0f} s' for k, v in t.items())
           + f'; complete: {b.get("complete")}.', '',
           f'Final test accuracy, all networks: median {num_text(zoo["all"]["median"])} (p10 {num_text(zoo["all"]["p10"])}'
           f', p90 {num_text(zoo["all"]["p90"])}); diverged: {zoo["diverged"]}. Glorot-initialized networks: ' +
           '; '.join(f'{d} median {num_text(q["median"])} (n {q["n"]})' for d, q in zoo['glorot_per_dataset'].items())
           + '.', '', '| hyper-parameter | value | n | p10 | p25 | median | p75 | p90 |', '|---|---|---:|---:|---:|---:|---:|---:|']
  for col, values in zoo['per_value'].items():
    for v, q in values.items():
      lines.append(f'| {col} | {v} | {q["n"]} | ' + ' | '.join(num_text(q.get(k)) for k in
                                                                 ('p10', 'p25', 'median', 'p75', 'p90')) + ' |')
  return lines + ['']


def table_section(cells: dict, targets, models) -> list[str]:
  lines = ['## How much: each hyper-parameter from the weights', '',
           'Test networks never seen in training. Cell: mean ± sd over member splits, or [95% bootstrap interval '
           'over test networks] where one split ran; `splits×n` = splits × test networks per split (smallest). '
           'DMC: per-network prediction from 64 evenly spaced windows (probabilities averaged); '
           '"DMC, NWS score" = the fraction of those windows classified correctly (NWS\'s valid_avg).', '',
           '| target | chance | ' + ' | '.join(models) + ' | DMC, NWS score | splits×n |',
           '|---|---:|' + '---|' * (len(models) + 2)]
  for target in targets:
    entries = {m: table_cell(cells, target, m) for m in models}
    first = next((e for e in entries.values() if e and 'error' not in e), None)
    chance = '—' if not first or first['regression'] else num_text(first['chance'])
    dmc = entries.get('dmc')
    nws = (f'{num_text(dmc["window_score"]["mean"])}' if dmc and 'window_score' in dmc else '')
    lines.append(f'| {target} | {chance} | ' + ' | '.join(table_text(entries[m]) for m in models) +
                 f' | {nws} | ' + ', '.join(f'{m} {_splits_text(e)}' for m, e in entries.items() if e) + ' |')
  return lines + ['']


def _part_text(cell: dict | None, planned: bool) -> str:
  """A DMC cell's score with its 95% interval; 'not run' when the preset plans the cell, '—' when it does not."""
  if cell is None:
    return 'not run' if planned else '—'
  if 'error' in cell:
    return f'n/a ({cell["error"]})'
  lo, hi = cell['test'].get('ci95') or (float('nan'), float('nan'))
  return f'{num_text(cell_score(cell))} [{num_text(lo, 2)}, {num_text(hi, 2)}]'


WHERE_PARTS = ('conv', 'fc', 'fc_equal')  # fc_equal: the FC part with the conv part's window length


def missing_where(cells: dict, where_targets) -> list[str]:
  return [f'where/{t}/dmc/{part}' for t in where_targets for part in WHERE_PARTS
          if f'where/{t}/dmc/{part}' not in cells]


def where_section(cells: dict, where_targets=()) -> list[str]:
  lines = ['## Where: window position, conv part vs FC part', '']
  dmc_main = {k.split('/')[1]: c for k, c in cells.items()
              if re.fullmatch(r'table/[^/]+/dmc/split0', k) and 'where' in c}
  parts = {}
  for k, c in cells.items():
    m = re.fullmatch(r'where/([^/]+)/dmc/(conv|fc|fc_equal)', k)
    if m:
      parts.setdefault(m.group(1), {})[m.group(2)] = c
  if not dmc_main and not parts:
    return lines + ['not run yet (stages `table` with the DMC, `where`).', '']
  lines += ['The whole-vector DMC is the table\'s; conv-only and FC-only DMCs are refitted for the preset\'s '
            '"where" targets (score [95% bootstrap interval over test networks]; — : not refitted by this preset). '
            'The conv part is shorter than one window, so its windows are the whole conv part; "FC, conv\'s '
            'window" is the FC-only DMC with windows of that same length (the comparison the claims use).', '',
            '| target | whole vector | conv part only | FC part only | FC, conv\'s window | chance |',
            '|---|---:|---:|---:|---:|---:|']
  for target in sorted(set(dmc_main) | set(parts) | set(where_targets)):
    p = parts.get(target, {})
    chance = next((c['chance'] for c in [dmc_main.get(target), *p.values()] if c and 'chance' in c), None)
    part = {k: _part_text(p.get(k), target in where_targets) for k in WHERE_PARTS}
    lines.append(f'| {target} | {_part_text(dmc_main.get(target), True)} | {part["conv"]} | {part["fc"]} | '
                 f'{part["fc_equal"]} | {num_text(chance) if chance else "—"} |')
  lines += ['', 'Single-window score by window position (centre, fraction of the vector; the conv part ends at '
            'the marked fraction):', '']
  for target, c in sorted(dmc_main.items()):
    w = c['where']
    if 'skipped' in w:
      lines.append(f'- {target}: {w["skipped"]}')
      continue
    pos, score = np.asarray(w['position']), np.asarray(w['score'], np.float64)
    bins = np.linspace(0, 1, 9)
    txt = ', '.join(f'{lo:.2f}-{hi:.2f}: {num_text(float(np.nanmean(score[(pos >= lo) & (pos < hi)])), 2)}'
                    for lo, hi in zip(bins[:-1], bins[1:]) if ((pos >= lo) & (pos < hi)).any())
    lines.append(f'- {target} (window {w["window"]}, conv part ends at {w["conv_fraction"]:.3f}): {txt}')
  return lines + ['']


def when_series(cells: dict) -> dict:
  out = {}
  for k, c in sorted(cells.items()):
    m = re.fullmatch(r'when/([^/]+)/([^/]+)/snapshot(\d+)', k)
    if m and 'error' not in c:
      out.setdefault((m.group(1), m.group(2)), []).append((int(m.group(3)), cell_score(c), c['test'].get('ci95')))
  return out


def when_section(cells: dict, zoo: dict | None) -> list[str]:
  series = when_series(cells)
  lines = ['## When: one model per snapshot, trained and tested on it', '']
  if not series:
    return lines + ['not run yet (stage `when`).', '']
  snaps = sorted({k for s in series.values() for k, _, _ in s})
  lines += ['| target | model | ' + ' | '.join(f's{k}' for k in snaps) + ' |', '|---|---|' + '---:|' * len(snaps)]
  for (target, model), s in series.items():
    by = {k: v for k, v, _ in s}
    lines.append(f'| {target} | {model} | ' + ' | '.join(num_text(by.get(k), 2) if k in by else '' for k in snaps) +
                 ' |')
  return lines + ['', 'Snapshot k is the k-th of the zoo\'s evenly spaced snapshots (0 = initialization).', '']

def plot(cells: dict, out: str) -> str | None:
  """report.png: the DMC's single-window score along the vector per target (left) and the per-snapshot
  models' scores (right), chance dashed."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  where = {k.split('/')[1]: c['where'] for k, c in sorted(cells.items())
           if re.fullmatch(r'table/[^/]+/dmc/split0', k) and 'where' in c and 'skipped' not in c['where']}
  series = when_series(cells)
  if not where and not series:
    return None
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  for i, (target, w) in enumerate(where.items()):
    left.plot(w['position'], w['score'], '-', color=f'C{i}', label=target)
    if w.get('chance') is not None:
      left.axhline(w['chance'], color=f'C{i}', ls='--', lw=0.7)
  if where:
    left.axvline(np.mean([w['conv_fraction'] for w in where.values()]), color='gray', ls=':', label='conv | FC')
  left.set(xlabel='window centre (fraction of the vector)', ylabel='single-window score', title='where (DMC)')
  for i, ((target, model), s) in enumerate(series.items()):
    right.plot([k for k, _, _ in s], [v for _, v, _ in s], 'o-' if model == 'neurons' else 's--', ms=3,
               color=f'C{list(dict.fromkeys(t for t, _ in series)).index(target)}', label=f'{target} ({model})')
  right.set(xlabel='snapshot (0 = initialization)', ylabel='score', title='when (one model per snapshot)')
  for ax in (left, right):
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  path = os.path.join(out, 'report.png')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def planned_missing(cells: dict, preset, targets, models) -> list[str]:
  """The control and NWS-order cells the preset plans that do not exist yet."""
  from benchmarks import replication
  names = []
  for t in [t for t in preset.control_targets if t in targets]:
    for m in [m for m in preset.control_models if m in models]:
      for control in replication.CONTROLS:
        if control != 'running_stats' or m in replication.STATNN:
          names += [f'control/{t}/{m}/{control}/split{i}' for i in range(replication.splits(preset, m))]
  if 'dmc' in models:
    names += [f'table/{t}/dmc_nws/split{i}' for t in preset.nws_targets if t in targets
              for i in range(replication.splits(preset, 'dmc'))]
  return [n for n in names if n not in cells]


def write(cells: dict, out: str, *, preset: str, command: str, machine: str, preset_text: str,
          targets=None, models=None, where_targets=(), preset_obj=None) -> str:
  from benchmarks import replication, replication_claims, replication_deviations, replication_paired
  targets = targets or replication.TARGETS
  models = list(models or replication.MODELS)
  if 'dmc' in models and any(k.startswith('table/') and '/dmc_nws/' in k for k in cells):
    models.insert(models.index('dmc') + 1, 'dmc_nws')
  seconds = {}
  for k, c in cells.items():
    seconds[k.split('/')[0]] = seconds.get(k.split('/')[0], 0.0) + c.get('cell_seconds', 0.0)
  lines = ['# Replication report (issue 14)', '', f'Preset `{preset}`: `{preset_text}`', '',
           f'Command: `{command}`; machine: {machine}. Fitting time by stage (sum over cells, all sessions): ' +
           ', '.join(f'{k} {v / 60:.1f} min' for k, v in sorted(seconds.items())) + '.', '']
  lines += zoo_section(cells.get('zoo')) + table_section(cells, targets, models) + where_section(cells, where_targets)
  checked = replication_claims.claims(cells, targets)
  lines += (replication_paired.controls_section(cells) + replication_paired.pairs_section(cells, targets)
            + when_section(cells, cells.get('zoo')) + replication_claims.claims_section(checked)
            + replication_deviations.deviations_section())
  missing = [f'{t}/{m}' for t in targets for m in models if m != 'dmc_nws' and table_cell(cells, t, m) is None]
  missing += missing_where(cells, [t for t in where_targets if t in targets]) if 'dmc' in models else []
  missing += planned_missing(cells, preset_obj, targets, models) if preset_obj is not None else []
  if missing:
    lines += ['## Not run yet', '', ', '.join(missing), '']
  if plot(cells, out):
    lines += ['![where and when](report.png)', '']
  path = os.path.join(out, 'report.md')
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  with open(os.path.join(out, 'report.json'), 'w') as f:
    json.dump({'preset': preset, 'command': command, 'machine': machine,
               'table': {t: {m: table_cell(cells, t, m) for m in models} for t in targets},
               'when': {f'{t}/{m}': s for (t, m), s in when_series(cells).items()}, 'claims': checked,
               'controls': replication_paired.control_rows(cells),
               'pairs': replication_paired.model_pairs(cells, targets)}, f,
              indent=1, default=str)
  return path
