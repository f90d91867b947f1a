"""Where in the network and when in training a target can be read off the weights.

  where_positions  per-position score of the DMC: each of the N evenly spaced test windows scored on its own,
                   placed at its centre as a fraction of the vector (comparable across architectures)
  parts            the same meta-model refitted on the conv part only and on the FC part only
  when_snapshots   one meta-model per snapshot k, trained and tested on snapshot k only (same member split)
  by_epoch         the main model's test score split by the snapshot epoch of the test rows (no refit)

Scores are accuracy (with chance) for classification and R^2 (with Kendall tau) for regression.
"""
from __future__ import annotations

import numpy as np

from meta import metrics, methods
from meta.data import MetaData, MetaDataError, resplit
from meta.weights import part_bounds


def _entry(target, y, out) -> dict:
  m = metrics.evaluate(target, y, out)
  d = {'score': metrics.score(m), 'n': m['n']}
  if target.is_classification:
    d['chance'] = m['chance']
  else:
    d['kendall_tau'] = m['kendall_tau']
  return d


def where_positions(result: methods.Result, data: MetaData, split: str = 'test') -> dict:
  """Per-position scores of a DMC result (needs result.window_output)."""
  if split not in result.window_output:
    raise ValueError(f'{result.method} has no per-window outputs; "where" by position needs the DMC')
  out, pos = result.window_output[split], result.window_position[split]
  y = data.y[result.index[split]]
  scores = [_entry(data.target, y, out[:, j]) for j in range(out.shape[1])]
  rows = result.index[split]
  conv_end = {a: part_bounds(l, 'conv')[1] / l.size if any(e.layer.startswith('conv_') for e in l.entries)
              else 0.0 for a, l in data.store.layouts.items()}
  return {'part': result.part, 'metric': 'accuracy' if data.target.is_classification else 'r2',
          'position': pos.mean(0).tolist(), 'score': [s['score'] for s in scores],
          'kendall_tau': [s.get('kendall_tau') for s in scores],
          'chance': data.target.chance,
          'conv_fraction': float(np.mean([conv_end[a] for a in data.store.arch[rows]])),
          'window': result.info.get('window')}


def parts(method: str, data: MetaData, opts: methods.Options, main: methods.Result | None = None) -> dict:
  """Test scores of `method` on the whole vector (main, if given), the conv part and the FC part."""
  out = {}
  if main is not None:
    out['all'] = _entry(data.target, data.y[main.index['test']], main.output['test'])
  for part in ('conv', 'fc'):
    try:
      r = methods.run(method, data, opts, part=part, eval_splits=('test',))
    except MetaDataError as e:  # e.g. an architecture without an FC part
      out[part] = {'skipped': str(e)}
      continue
    out[part] = _entry(data.target, data.y[r.index['test']], r.output['test'])
  return out


def when_snapshots(method: str, data: MetaData, opts: methods.Options, part: str = 'all',
                   snapshots=None, seed: int = 0) -> dict:
  """Train and test on snapshot k alone, for every selected snapshot k (or `snapshots`)."""
  snap = data.rows['snapshot'].to_numpy()
  ks = sorted(set(snap.tolist())) if snapshots is None else list(snapshots)
  out = {'snapshot': [], 'epoch': [], 'score': [], 'kendall_tau': [], 'n': [], 'skipped': {},
         'metric': 'accuracy' if data.target.is_classification else 'r2', 'chance': data.target.chance}
  for k in ks:
    mask = snap == k
    try:
      sub = resplit(data, mask, seed)
      r = methods.run(method, sub, opts, part=part, eval_splits=('test',))
    except MetaDataError as e:
      out['skipped'][str(k)] = str(e)
      continue
    e = _entry(sub.target, sub.y[r.index['test']], r.output['test'])
    out['snapshot'].append(int(k))
    out['epoch'].append(float(data.rows['epoch'].to_numpy()[mask].mean()))
    out['score'].append(e['score'])
    out['kendall_tau'].append(e.get('kendall_tau'))
    out['n'].append(e['n'])
  return out


def by_epoch(result: methods.Result, data: MetaData, split: str = 'test') -> dict:
  """The main model's score on the test rows of each snapshot epoch (trained on all selected snapshots). The test
  split is balanced as a whole, so one epoch's rows are only roughly balanced."""
  rows = result.index[split]
  epochs = data.rows['epoch'].to_numpy()[rows]
  out = {'epoch': [], 'score': [], 'kendall_tau': [], 'n': [],
         'metric': 'accuracy' if data.target.is_classification else 'r2'}
  for ep in sorted(set(epochs.tolist())):
    m = epochs == ep
    if m.sum() < 2:
      continue
    e = _entry(data.target, data.y[rows[m]], result.output[split][m])
    out['epoch'].append(float(ep))
    out['score'].append(e['score'])
    out['kendall_tau'].append(e.get('kendall_tau'))
    out['n'].append(e['n'])
  return out
