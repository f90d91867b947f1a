"""StatNN features: per-tensor weight statistics (Unterthiner et al. 2020, "Predicting Neural Network Accuracy
from Weights").

Each kernel and bias tensor gives 7 numbers: mean, std and the 0/25/50/75/100 % quantiles. On a single-architecture
zoo the features are these statistics for every tensor of the layout, in layout order. Architectures of a mixed
zoo have different numbers of layers, so there the tensors are mapped to fixed *slots* (first and last conv layer,
first FC layer, output layer; kernel and bias each) plus pooled statistics of all conv / all FC kernels and
biases, and the log size of each part: a fixed-length vector for any architecture of the family.
"""
from __future__ import annotations

import numpy as np

from meta.weights import MetaDataError, WeightStore, part_bounds
from popnet.layout import Layout

STATS = ('mean', 'std', 'q0', 'q25', 'q50', 'q75', 'q100')
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
STAT_TENSORS = ('kernel', 'bias')
SLOTS = ('conv_first', 'conv_last', 'fc_first', 'output')


def tensor_stats(x: np.ndarray) -> np.ndarray:
  """[n, k] values of one tensor for n networks -> [n, 7] statistics (STATS order)."""
  x = np.asarray(x, np.float64)
  q = np.quantile(x, QUANTILES, axis=1).T
  return np.concatenate([x.mean(1, keepdims=True), x.std(1, keepdims=True), q], axis=1).astype(np.float32)


def _in_part(layout: Layout, entry, part: str) -> bool:
  lo, hi = part_bounds(layout, part)
  return lo <= entry.start and entry.end <= hi


def tensor_entries(layout: Layout, part: str = 'all', names=STAT_TENSORS):
  """The layout entries StatNN summarizes (kernels and biases of `part`)."""
  return [e for e in layout.entries if e.name in names and _in_part(layout, e, part)]


def _slot_entries(layout: Layout) -> dict[str, list]:
  """slot -> [kernel entry, bias entry] (empty when the architecture has no such layer)."""
  conv = [l for l in layout.layers if l.startswith('conv_')]
  dense = [l for l in layout.layers if l.startswith('dense_')]
  layers = {'conv_first': conv[0] if conv else None, 'conv_last': conv[-1] if conv else None,
            'fc_first': dense[0] if dense else None, 'output': 'output' if 'output' in layout.layers else None}
  out = {}
  for slot, layer in layers.items():
    out[slot] = [e for e in layout.entries if e.layer == layer and e.name in STAT_TENSORS] if layer else []
  return out


def feature_names(layout: Layout | None, mode: str, part: str = 'all', tensors=STAT_TENSORS) -> list[str]:
  if mode == 'tensor':
    return [f'{e.path}:{s}' for e in tensor_entries(layout, part, tensors) for s in STATS]
  names = []
  for slot in _slots_for(part):
    names += [f'{slot}/{t}:{s}' for t in STAT_TENSORS for s in STATS] + [f'{slot}:present']
  for group in _groups_for(part):
    names += [f'{group}:{s}' for s in STATS]
  return names + [f'{p}:log_size' for p in _parts_for(part)]


def _slots_for(part):
  return {'all': SLOTS, 'conv': SLOTS[:2], 'fc': SLOTS[2:]}[part]


def _groups_for(part):
  groups = ('conv/kernel', 'conv/bias', 'fc/kernel', 'fc/bias')
  return {'all': groups, 'conv': groups[:2], 'fc': groups[2:]}[part]


def _parts_for(part):
  return {'all': ('conv', 'fc'), 'conv': ('conv',), 'fc': ('fc',)}[part]


def _slot_features(layout: Layout, v: np.ndarray, part: str) -> np.ndarray:
  slots = _slot_entries(layout)
  cols = []
  n = len(v)
  for slot in _slots_for(part):
    entries = slots[slot]
    for t in STAT_TENSORS:
      e = next((e for e in entries if e.name == t), None)
      cols.append(tensor_stats(v[:, e.start:e.end]) if e is not None else np.zeros((n, len(STATS)), np.float32))
    cols.append(np.full((n, 1), float(bool(entries)), np.float32))
  for group in _groups_for(part):
    where, name = group.split('/')
    sel = [e for e in tensor_entries(layout, 'all', (name,))
           if e.layer.startswith('conv_') == (where == 'conv')]
    if sel:
      cols.append(tensor_stats(np.concatenate([v[:, e.start:e.end] for e in sel], axis=1)))
    else:
      cols.append(np.zeros((n, len(STATS)), np.float32))
  for p in _parts_for(part):
    try:
      lo, hi = part_bounds(layout, p)
    except MetaDataError:
      lo = hi = 0
    cols.append(np.full((n, 1), np.log(1 + hi - lo), np.float32))
  return np.concatenate(cols, axis=1)


def statnn_features(store: WeightStore, index: np.ndarray, part: str = 'all', mode: str = 'auto',
                    batch_bytes: int = 64 << 20, running_stats: bool = False) -> tuple[np.ndarray, list[str]]:
  """[len(index), F] features of the rows `index`, computed batch by batch from the store, and their names.

  mode: 'tensor' (every kernel/bias tensor; one architecture only), 'slots' (any mix), 'auto' (tensor when the
  store holds one architecture). running_stats: the batch-norm running statistics' tensors too (the reverse
  control of meta.methods' `inputs`; tensor mode)."""
  index = np.asarray(index)
  if mode == 'auto':
    mode = 'tensor' if store.single_arch else 'slots'
  if mode == 'tensor' and not store.single_arch:
    raise MetaDataError(f'per-tensor features need one architecture; the rows span {sorted(store.layouts)} '
                        f'(use mode="slots")')
  layout0 = next(iter(store.layouts.values()))
  if running_stats and mode != 'tensor':
    raise MetaDataError('StatNN with the running statistics needs one architecture (per-tensor features)')
  tensors = STAT_TENSORS + tuple(sorted({e.name for e in layout0.running_stats()})) if running_stats else STAT_TENSORS
  names = feature_names(layout0, mode, part, tensors)
  out = np.empty((len(index), len(names)), np.float32)
  for arch, layout in store.layouts.items():
    mine = np.flatnonzero(store.arch[index] == arch)
    batch = max(1, min(1024, batch_bytes // (4 * layout.size)))
    for s in range(0, len(mine), batch):
      chunk = mine[s:s + batch]
      v = store.vectors(index[chunk])
      if mode == 'tensor':
        entries = tensor_entries(layout, part, tensors)
        out[chunk] = np.concatenate([tensor_stats(v[:, e.start:e.end]) for e in entries], axis=1)
      else:
        out[chunk] = _slot_features(layout, v, part)
  return out, names
