"""Paired comparisons on the replication cells (issue 30): two cells fitted on the same member split (same seed:
the same test networks, the same rows) compared network by network.

Every cell keeps its test predictions (meta.train `test_predictions`). The difference of two cells is score(a) -
score(b) on each split; its interval is a paired bootstrap over test networks when one split ran (one resample of
networks scores both), and a percentile bootstrap over splits of the mean difference when several ran. A
difference whose interval excludes 0 by less than MARGINAL is called marginal.

Sections: the control table (each model with and without the batch-norm running statistics, and StatNN given
them) and the model comparisons (neurons vs StatNN-GBT with and without the statistics, DMC in NWS's order vs
popnet's order, DMC vs StatNN-GBT).
"""
from __future__ import annotations

import re

import numpy as np

from benchmarks.replication_report import num_text, prefix_cell, table_text
from meta import metrics

MARGINAL = 0.02  # an interval that clears its reference (0, or chance) by less than this is "marginal"


def split_cells(cells: dict, prefix: str) -> dict[int, dict]:
  out = {}
  for k, c in cells.items():
    m = re.fullmatch(re.escape(prefix) + r'/split(\d+)', k)
    if m:
      out[int(m.group(1))] = c
  return out


def _same_rows(a: dict, b: dict) -> bool:
  return all(a[k] == b[k] for k in ('member_id', 'snapshot', 'y'))


def paired(cells: dict, prefix_a: str, prefix_b: str) -> dict | None:
  """score(a) - score(b) over the splits both ran, with its interval; None when they share no split."""
  a, b = split_cells(cells, prefix_a), split_cells(cells, prefix_b)
  common = sorted(set(a) & set(b))
  if not common:
    return None
  per_split = []
  for i in common:
    if 'error' in a[i] or 'error' in b[i]:
      return {'error': a[i].get('error') or b[i].get('error')}
    pa, pb = a[i].get('test_predictions'), b[i].get('test_predictions')
    if not pa or not pb:
      return {'error': 'a cell without per-network predictions (fitted before issue 30): refit it'}
    if not _same_rows(pa, pb):
      return {'error': f'split {i}: the two cells were not tested on the same rows'}
    classification = 'accuracy' in a[i]['test']
    per_split.append(metrics.paired_difference(classification, pa['y'], pa['prediction'], pb['prediction'],
                                               pa['member_id']))
  diffs = [d['difference'] for d in per_split]
  ci = per_split[0]['ci95'] if len(per_split) == 1 else metrics.percentile_interval(diffs)
  return {'difference': float(np.mean(diffs)), 'ci95': ci, 'splits': len(common), 'per_split': diffs,
          'networks': a[common[0]]['test']['networks'],
          'interval': 'paired bootstrap over test networks' if len(common) == 1 else 'percentile bootstrap over splits'}


def reading(d: dict | None) -> str:
  """'no difference' (interval holds 0), 'marginal' (excludes 0 by < MARGINAL), 'a higher' / 'b higher'."""
  if not d or 'error' in d:
    return ''
  lo, hi = d['ci95']
  if not (np.isfinite(lo) and np.isfinite(hi)):
    return 'no interval'
  if lo <= 0 <= hi:
    return 'no difference'
  edge = lo if lo > 0 else -hi
  return ('marginal, ' if edge < MARGINAL else '') + ('higher' if lo > 0 else 'lower')


def diff_text(d: dict | None) -> str:
  if d is None:
    return 'not run'
  if 'error' in d:
    return f'n/a ({d["error"]})'
  lo, hi = d['ci95']
  return f'{d["difference"]:+.3f} [{num_text(lo, 3)}, {num_text(hi, 3)}]'


# --- the control table ------------------------------------------------------------------------------------------
def control_rows(cells: dict) -> list[dict]:
  """One row per (target, model, control) that has cells: the table cell, the control cell and the gain from the
  running statistics (the model that reads them minus the one that does not, on the same splits)."""
  keys = sorted({tuple(k.split('/')[1:4]) for k in cells if re.fullmatch(r'control/[^/]+/[^/]+/[^/]+/split\d+', k)})
  rows = []
  for target, model, control in keys:
    table, ctl = f'table/{target}/{model}', f'control/{target}/{model}/{control}'
    gain = paired(cells, table, ctl) if control == 'no_running_stats' else paired(cells, ctl, table)
    rows.append({'target': target, 'model': model, 'control': control, 'table': prefix_cell(cells, table),
                 'control_cell': prefix_cell(cells, ctl), 'gain': gain, 'reading': reading(gain)})
  return rows


CONTROL_NAMES = {'no_running_stats': 'without running statistics', 'running_stats': 'given running statistics'}


def controls_section(cells: dict) -> list[str]:
  lines = ['## Controls: batch-norm running statistics', '']
  rows = control_rows(cells)
  if not rows:
    return lines + ['not run yet (stage `controls`).', '']
  lines += ['Each model refitted on the table\'s splits without the batch-norm running means and variances '
            '(`--inputs no_running_stats`: removed from every model\'s input, from the layout; the DMC\'s windows '
            'run over the remaining values), and StatNN / StatNN-GBT given them (`--statnn_running_stats`). '
            '"Gain" = score of the model that reads the running statistics minus the one that does not, on the '
            'same test networks; interval: paired bootstrap over test networks (one split) or percentile '
            f'bootstrap over splits (several); "marginal": the interval excludes 0 by less than {MARGINAL}.', '',
            '| target | model | control | table (all inputs) | control | gain from the running statistics | '
            'reading | splits×n |', '|---|---|---|---:|---:|---:|---|---|']
  for r in rows:
    g = r['gain']
    n = f'{g["splits"]}×{g["networks"]}' if g and 'error' not in g else ''
    lines.append(f'| {r["target"]} | {r["model"]} | {CONTROL_NAMES.get(r["control"], r["control"])} | '
                 f'{table_text(r["table"])} | {table_text(r["control_cell"])} | {diff_text(g)} | {r["reading"]} | '
                 f'{n} |')
  return lines + ['']


# --- models against each other ----------------------------------------------------------------------------------
PAIRS = (('table/{t}/neurons', 'table/{t}/statnn_gbt', 'neurons − StatNN-GBT'),
         ('control/{t}/neurons/no_running_stats', 'table/{t}/statnn_gbt',
          'neurons without running statistics − StatNN-GBT'),
         ('table/{t}/dmc', 'table/{t}/statnn_gbt', 'DMC − StatNN-GBT'),
         ('control/{t}/dmc/no_running_stats', 'table/{t}/statnn_gbt', 'DMC without running statistics − StatNN-GBT'),
         ('table/{t}/dmc_nws', 'table/{t}/dmc', 'DMC in NWS order − DMC in popnet order'))


def model_pairs(cells: dict, targets) -> list[dict]:
  out = []
  for t in targets:
    for a, b, name in PAIRS:
      d = paired(cells, a.format(t=t), b.format(t=t))
      if d is not None:
        out.append({'target': t, 'comparison': name, 'difference': d, 'reading': reading(d)})
  return out


def pairs_section(cells: dict, targets) -> list[str]:
  lines = ['## Models against each other, on the same splits', '']
  rows = model_pairs(cells, targets)
  if not rows:
    return lines + ['no two models share a split yet.', '']
  lines += ['Paired differences on the splits both models ran (the DMC: split 0), same test networks; interval as '
            'in the control table.', '', '| target | comparison | difference [95%] | reading | splits×n |',
            '|---|---|---:|---|---|']
  for r in rows:
    d = r['difference']
    n = f'{d["splits"]}×{d["networks"]}' if 'error' not in d else ''
    lines.append(f'| {r["target"]} | {r["comparison"]} | {diff_text(d)} | {r["reading"]} | {n} |')
  return lines + ['']
