"""The DMC's windows (meta/methods.py `dmc`): where a window starts (evenly spaced for evaluation, drawn at random
for training, as NWS's meta_classifier.py), how long it is, the evaluation order of windows, and the training
windows of randomly permuted networks (weight_augment)."""
from __future__ import annotations

import sys

import numpy as np


def evenly_spaced_starts(lo: np.ndarray, hi: np.ndarray, width: int, n: int) -> np.ndarray:
  """[rows, n] window starts spread evenly over [lo, hi - width] (all at lo when the part is shorter)."""
  span = np.maximum(hi - lo - width, 0)
  frac = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
  return lo[:, None] + np.round(span[:, None] * frac[None, :]).astype(np.int64)


def random_starts(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, width: int) -> np.ndarray:
  """One window start per row drawn uniformly from [lo, hi - width] (lo when the part is shorter): NWS's
  training windows."""
  return lo + (rng.random(len(lo)) * (np.maximum(hi - lo - width, 0) + 1)).astype(np.int64)


def mixed_batches(count: int, batch: int, seed: int) -> np.ndarray:
  """An evaluation order of `count` windows in whole batches of `batch`, each batch a random mix of networks
  and positions like a training batch (the DMC normalizes with batch statistics); the last batch is filled up
  with randomly chosen repeats. Fixed by `seed`, so a network's outputs do not change between calls."""
  rng = np.random.default_rng([seed, count])
  order = rng.permutation(count)
  return np.concatenate([order, rng.choice(count, -count % batch)]) if count else order


def dmc_window(window: int, lengths: np.ndarray, part: str) -> tuple[int, dict]:
  """The window length used: `window`, clipped to the shortest vector (or part) of the selected rows, so that no
  window is padded; info says so, and whether every window then covers its whole vector (no "where")."""
  shortest = int(lengths.min())
  width = min(int(window), shortest)
  info = {'window': width, 'window_requested': int(window), 'notes': [],
          'whole_vectors': bool(np.all(lengths == width))}
  if width < window:
    where = 'vector' if part == 'all' else f'{part} part'
    info['notes'].append(f'the DMC window ({window} weights) is longer than the shortest {where} of the selected '
                         f'networks ({shortest} weights); clipped to {width}')
    print(f'note: {info["notes"][-1]}', file=sys.stderr, flush=True)
  return width, info


def permuted_windows(store, spaces: dict, rng: np.random.Generator, rows: np.ndarray, starts: np.ndarray,
                     width: int, ends: np.ndarray) -> np.ndarray:
  """[n, width] training windows of randomly permuted networks (weight_augment): each row's whole vector with its
  hidden units reordered (spaces: arch -> meta.equivariant.WeightSpace), then [start, start + width), zeros past
  `ends`. A permutation moves values within their tensor, so a part's bounds still hold."""
  out = np.zeros((len(rows), width), np.float32)
  for a, space in spaces.items():
    mine = np.flatnonzero(store.arch[rows] == a)
    if len(mine):
      v = np.take_along_axis(store.vectors(rows[mine]), space.random_indices(rng, len(mine)), 1)
      cols = starts[mine, None] + np.arange(width, dtype=np.int64)
      vals = np.take_along_axis(v, np.minimum(cols, v.shape[1] - 1), 1)
      out[mine] = np.where(cols < ends[mine, None], vals, 0.0)
  return out
