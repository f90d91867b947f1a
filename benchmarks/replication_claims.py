"""The paper's qualitative claims checked on the replication cells (benchmarks/replication_report.py writes the
section): each claim gets a verdict from explicit rules on the cells' 95% intervals, so the report says plainly
where the numbers agree or disagree. An interval is a cell's 95% bootstrap interval over test networks (one
split), or mean +- 1.96 sd over splits (the spread of one split's score, comparable to the one-split interval).
"""
from __future__ import annotations

import re

import pandas as pd

from benchmarks.replication_report import num_text, table_cell, when_series
from meta import metrics


def interval(entry: dict | None) -> tuple[float, float, float] | None:
  """(score, low, high) of a table entry (table_cell)."""
  if not entry or 'error' in entry:
    return None
  s = entry['score']
  if s['splits'] > 1:
    return s['mean'], s['mean'] - 1.96 * s['sd'], s['mean'] + 1.96 * s['sd']
  lo, hi = entry['ci95'] or (float('nan'), float('nan'))
  return s['mean'], lo, hi


def _cell_interval(cell: dict | None, key: str = 'test') -> tuple[float, float, float] | None:
  if not cell or 'error' in cell or not cell.get(key):
    return None
  m = cell[key]
  lo, hi = m.get('ci95') or (float('nan'), float('nan'))
  return metrics.score(m), lo, hi


def _chance(cell: dict | None) -> float:
  """Chance score: 1 / classes (splits are class-balanced); R^2 0 for regression."""
  c = (cell or {}).get('chance')
  return 0.0 if c is None else float(c)


MARGINAL = 0.02  # benchmarks/replication_paired.py: an interval that clears its reference by less is "marginal"


def _above(iv, chance: float) -> bool:
  return iv is not None and iv[1] > chance


def _marginal(iv, chance: float) -> bool:
  """Above chance, but the interval's low end within MARGINAL of it."""
  return _above(iv, chance) and iv[1] - chance < MARGINAL


def _verdict_marginal(hits: int, n: int, marginal: int) -> str:
  verdict = _verdict(hits, n)
  return f'{verdict}; {marginal} of them marginal' if marginal and hits else verdict


def _iv_text(iv) -> str:
  return 'not run' if iv is None else f'{num_text(iv[0])} [{num_text(iv[1], 2)}, {num_text(iv[2], 2)}]'


def _verdict(hits: int, n: int) -> str:
  if n == 0:
    return 'not run yet'
  return 'agrees' if hits == n else ('disagrees' if hits == 0 else f'partly agrees ({hits} of {n})')


def claim_window(cells: dict, targets) -> tuple[str, list[str]]:
  """NWS: hyper-parameters are recoverable from a small random window of weights. Evidence: the DMC's
  single-window score (one 5,000-value window scored alone) with its interval above chance."""
  rows, hits, n, marginal = [], 0, 0, 0
  for t in [t for t in targets if t != 'test_accuracy']:
    cell = cells.get(f'table/{t}/dmc/split0')
    iv = _cell_interval(cell, 'test_per_window')
    if iv is None:
      continue
    n += 1
    hits += _above(iv, _chance(cell))
    marginal += _marginal(iv, _chance(cell))
    rows.append(f'{t} {_iv_text(iv)} vs chance {num_text(_chance(cell))}'
                f'{" (marginal)" if _marginal(iv, _chance(cell)) else ""}')
  return _verdict_marginal(hits, n, marginal), rows


def claim_layers(cells: dict) -> tuple[str, list[str]]:
  """NWS: some properties are encoded more in some layers. Evidence, per target: the DMC on the conv part only
  against the DMC on the FC part only with windows as long as the conv part's (`fc_equal`: window length held
  equal, so neither part is favoured by seeing more values per window); the two intervals apart (by at least
  MARGINAL, else marginal). The verdict counts targets; a target without its equal-window refit is not counted."""
  rows, differ, n, marginal = [], 0, 0, 0
  for k in sorted(cells):
    m = re.fullmatch(r'where/([^/]+)/dmc/conv', k)
    if not m:
      continue
    target = m.group(1)
    conv_iv, fc_iv = _cell_interval(cells[k]), _cell_interval(cells.get(f'where/{target}/dmc/fc_equal'))
    if conv_iv is None or fc_iv is None:
      rows.append(f'{target}: not counted (no FC-only refit with the conv part\'s window)')
      continue
    n += 1
    gap = max(conv_iv[1] - fc_iv[2], fc_iv[1] - conv_iv[2])
    differ += gap > 0
    marginal += 0 < gap < MARGINAL
    better = 'conv' if conv_iv[0] > fc_iv[0] else 'FC'
    window = (cells[k].get('model_info') or {}).get('window')
    rows.append(f'{target}: conv {_iv_text(conv_iv)}, FC {_iv_text(fc_iv)} (window {window} both) -> '
                + (f'{better} better{" (marginal)" if gap < MARGINAL else ""}' if gap > 0 else 'overlap'))
  return _verdict_marginal(differ, n, marginal), rows


def claim_controls(cells: dict) -> tuple[str, list[str]]:
  """The scores do not rest on the batch-norm running statistics: per target and model, the gain from reading
  them (the paired difference of the control table) has an interval that holds 0."""
  from benchmarks import replication_paired
  rows, hits, n = [], 0, 0
  for r in replication_paired.control_rows(cells):
    g = r['gain']
    if not g or 'error' in g:
      continue
    n += 1
    hits += r['reading'] == 'no difference'
    rows.append(f'{r["target"]} ({r["model"]}, {r["control"]}): gain {replication_paired.diff_text(g)} -> '
                f'{r["reading"]}')
  return _verdict(hits, n), rows


def claim_training(cells: dict) -> tuple[str, list[str]]:
  """NWS: information builds up over training. Evidence: per target and model, the score on the final snapshot
  is above the score at initialization (intervals apart), and the scores rise with the snapshot (Kendall tau).
  Also a leakage check: at initialization only `init` can be recoverable."""
  rows, hits, n, leaks, init_seen = [], 0, 0, [], False
  for (target, model), s in when_series(cells).items():
    s = [x for x in s if x[1] is not None]
    if len(s) < 2:
      continue
    (k0, v0, ci0), (k1, v1, ci1) = s[0], s[-1]
    chance = _chance(cells.get(f'when/{target}/{model}/snapshot{k0:02d}'))
    tau = pd.Series([v for _, v, _ in s]).corr(pd.Series([k for k, _, _ in s]), method='kendall')
    if target != 'test_accuracy':
      n += 1
      rises = bool(ci0 and ci1 and ci1[0] > ci0[1] and tau > 0)
      hits += rises
      rows.append(f'{target} ({model}): snapshot {k0} {num_text(v0)} -> snapshot {k1} {num_text(v1)}, Kendall tau '
                  f'{num_text(tau, 2)}{"" if rises else " (no rise)"}')
    if k0 == 0 and target not in ('init', 'test_accuracy'):
      init_seen = True
      if ci0 and ci0[0] > chance:
        leaks.append(f'{target} ({model}) {num_text(v0)} > chance {num_text(chance)}')
  if init_seen:
    rows.append('at initialization every target but init is at chance (no leakage)' if not leaks else
                'ABOVE CHANCE AT INITIALIZATION (investigate): ' + '; '.join(leaks))
  return _verdict(hits, n), rows


def claim_statistics(cells: dict, targets) -> tuple[str, list[str]]:
  """Neighbouring work: per-tensor statistics with gradient boosted trees (StatNN / GBT) are strong on small zoos
  (Small CNN Zoo: accuracy R^2 ~0.98). Evidence: per target, StatNN-GBT against the DMC; GBT "at least as good"
  when its interval reaches the DMC's score."""
  rows, hits, n = [], 0, 0
  for t in targets:
    gbt, dmc = interval(table_cell(cells, t, 'statnn_gbt')), interval(table_cell(cells, t, 'dmc'))
    if gbt is None or dmc is None:
      continue
    n += 1
    ok = gbt[2] >= dmc[0]
    hits += ok
    rows.append(f'{t}: StatNN-GBT {_iv_text(gbt)} vs DMC {_iv_text(dmc)}'
                f' -> {"GBT better" if gbt[1] > dmc[2] else ("DMC better" if not ok else "tie")}')
  return _verdict(hits, n), rows


def claims(cells: dict, targets) -> list[dict]:
  """Each claim with its rule, verdict and evidence."""
  checks = [('Hyper-parameters are recoverable from a small random window of weights (NWS)',
             'DMC single-window score interval above chance', claim_window(cells, targets)),
            ('Some properties are encoded more in some layers (NWS)',
             'per target: conv-only and FC-only DMC intervals apart, both with the conv part\'s window length; '
             'counted over targets', claim_layers(cells)),
            ('Information builds up over training (NWS)',
             'final-snapshot interval above the initialization one and Kendall tau > 0', claim_training(cells)),
            ('Statistics + gradient boosted trees are strong on small zoos (Small CNN Zoo / StatNN)',
             'StatNN-GBT at least as good as the DMC', claim_statistics(cells, targets)),
            ('The scores do not rest on the batch-norm running statistics (control, issue 30)',
             'paired gain from reading them: interval holds 0', claim_controls(cells))]
  return [{'claim': c, 'rule': r, 'verdict': v, 'evidence': e} for c, r, (v, e) in checks]


def claims_section(checked: list[dict]) -> list[str]:
  lines = ['## The paper\'s claims, checked', '',
           'Verdicts follow the rule in the second column on 95% intervals (one split: bootstrap over test '
           'networks; several: mean ± 1.96 sd over splits); "marginal": the interval clears chance (or the other '
           f'interval) by less than {MARGINAL}.', '', '| claim | rule | verdict | evidence |',
           '|---|---|---|---|']
  for c in checked:
    lines.append(f'| {c["claim"]} | {c["rule"]} | **{c["verdict"]}** | {"; ".join(c["evidence"]) or "—"} |')
  return lines + ['']
