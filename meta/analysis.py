"""Where in the network and when in training a target can be read off the weights.

  where_positions  per-position score of the DMC: each of the N evenly spaced test windows scored on its own,
                   placed at its centre as a fraction of the vector (comparable across architectures)
  parts            the same meta-model refitted on the conv part only and on the FC part only
  when_snapshots   one meta-model per snapshot k, trained and tested on snapshot k only (same member split)
  by_epoch         the main model's test score split by the snapshot epoch of the test rows (no refit)

Scores are accuracy (with chance) for classification and R^2 (with Kendall tau) for regression, each with the
number of test networks and a 95% bootstrap interval over them (meta.metrics.score_interval).
"""
from __future__ import annotations

import numpy as np

from meta import fit, metrics, methods
from meta.data import MetaData, MetaDataError, resplit
from meta.weights import part_bounds


def _entry(data: MetaData, rows: np.ndarray, out) -> dict:
  target, y, groups = data.target, data.y[rows], data.rows['member_id'].to_numpy()[rows]
  m = metrics.evaluate(target, y, out)
  d = {'score': metrics.score(m), 'n': m['n'], 'networks': int(len(np.unique(groups))),
       'ci95': metrics.score_interval(target, y, out, groups)}
  if target.is_classification:
    d['chance'] = m['chance']
  else:
    d['kendall_tau'] = m['kendall_tau']
  return d


def where_positions(result: methods.Result, data: MetaData, split: str = 'test') -> dict:
  """Per-position scores of a DMC result (needs result.window_output)."""
  if split not in result.window_output:
    raise ValueError(f'{result.method} has no per-window outputs; "where" by position needs the DMC')
  if result.info.get('whole_vectors'):
    return {'skipped': f'every window ({result.info["window"]} weights) covers the whole '
                       f'{"vector" if result.part == "all" else result.part + " part"} of its network, so windows '
                       f'cannot be placed along it; use a --window shorter than the vectors'}
  out, pos = result.window_output[split], result.window_position[split]
  rows = result.index[split]
  scores = [_entry(data, rows, out[:, j]) for j in range(out.shape[1])]
  conv_end = {a: part_bounds(l, 'conv')[1] / l.size if any(e.layer.startswith('conv_') for e in l.entries)
              else 0.0 for a, l in data.store.layouts.items()}
  return {'part': result.part, 'metric': 'accuracy' if data.target.is_classification else 'r2',
          'position': pos.mean(0).tolist(), 'score': [s['score'] for s in scores],
          'kendall_tau': [s.get('kendall_tau') for s in scores], 'ci95': [s['ci95'] for s in scores],
          'networks': scores[0]['networks'] if scores else 0,
          'chance': data.target.chance,
          'conv_fraction': float(np.mean([conv_end[a] for a in data.store.arch[rows]])),
          'window': result.info.get('window')}


def parts(method: str, data: MetaData, opts: methods.Options, main: methods.Result | None = None) -> dict:
  """Test scores of `method` on the whole vector (main, if given), the conv part and the FC part."""
  out = {}
  if main is not None:
    out['all'] = _entry(data, main.index['test'], main.output['test'])
  bar = fit.progress_bar(2, f'where: {method} on parts', 'parts')
  for part in ('conv', 'fc'):
    try:
      r = methods.run(method, data, opts, part=part, eval_splits=('test',))
      out[part] = _entry(data, r.index['test'], r.output['test'])
    except MetaDataError as e:  # e.g. an architecture without an FC part
      out[part] = {'skipped': str(e)}
    bar.update()
  bar.close()
  return out


def when_snapshots(method: str, data: MetaData, opts: methods.Options, part: str = 'all',
                   snapshots=None, seed: int = 0) -> dict:
  """Train and test on snapshot k alone, for every selected snapshot k (or `snapshots`)."""
  snap = data.rows['snapshot'].to_numpy()
  ks = sorted(set(snap.tolist())) if snapshots is None else list(snapshots)
  out = _series(data, snapshot=[], skipped={}, chance=data.target.chance)
  bar = fit.progress_bar(len(ks), f'when: {method} per snapshot', 'snapshots')
  for k in ks:
    mask = snap == k
    bar.update()
    try:
      sub = resplit(data, mask, seed)
      r = methods.run(method, sub, opts, part=part, eval_splits=('test',))
    except MetaDataError as e:
      out['skipped'][str(k)] = str(e)
      continue
    out['snapshot'].append(int(k))
    _append(out, float(data.rows['epoch'].to_numpy()[mask].mean()), _entry(sub, r.index['test'], r.output['test']))
  bar.close()
  return out


def _series(data: MetaData, **extra) -> dict:
  return {'epoch': [], 'score': [], 'kendall_tau': [], 'n': [], 'networks': [], 'ci95': [],
          'metric': 'accuracy' if data.target.is_classification else 'r2', **extra}


def _append(series: dict, epoch: float, entry: dict) -> None:
  series['epoch'].append(epoch)
  for k in ('score', 'n', 'networks', 'ci95'):
    series[k].append(entry[k])
  series['kendall_tau'].append(entry.get('kendall_tau'))


def by_epoch(result: methods.Result, data: MetaData, split: str = 'test') -> dict:
  """The main model's score on the test rows of each snapshot epoch (trained on all selected snapshots). The test
  split is balanced as a whole, so one epoch's rows are only roughly balanced."""
  rows = result.index[split]
  epochs = data.rows['epoch'].to_numpy()[rows]
  out = _series(data)
  for ep in sorted(set(epochs.tolist())):
    m = epochs == ep
    if m.sum() >= 2:
      _append(out, float(ep), _entry(data, rows[m], result.output[split][m]))
  return out
