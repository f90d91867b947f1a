"""The weights of selected zoo rows, read through `popnet.zoo.Zoo`: whole vectors, parts and windows.

`WeightStore` gathers the selected rows once into memory when they fit a budget (through `Zoo.vectors`); beyond
it, every batch reads only the rows and columns it asks for from the zoo's memory-mapped file (`Zoo.weights`).
Either way every selected row is checked against its recorded crc32 once (`Zoo.vectors` / `Zoo.verify`), so a
meta-model never trains on damaged weights.
The weights file itself is never converted to an array. Row i of the store is row i of the selected metadata.

`WeightStore.view(inputs, order)` is the same rows as one meta-model reads them: without the batch-norm running
statistics (or every batch-norm tensor), and/or in NWS's value order; its `layouts` describe the shorter vectors,
so every model (windows, statistics, neurons, equivariant layers) sees only what remains, with no copy of the
weights.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from meta.options import DEFAULT_MEMORY_BUDGET, INPUTS, PARTS  # noqa: F401  (re-exported: the command line's defaults)
from popnet.layout import Layout
from popnet.zoo import Zoo

CHUNK_BYTES = 64 << 20           # rows gathered per read when filling memory


class MetaDataError(ValueError):
  """The selection, target, split or part cannot give a meaningful meta-learning problem; the message says why."""


def part_bounds(layout: Layout, part: str) -> tuple[int, int]:
  """[lo, hi) of the conv part (conv_* layers) or the FC part (dense_* and output) in the flattened vector."""
  if part == 'all':
    return 0, layout.size
  conv = [e for e in layout.entries if e.layer.startswith('conv_')]
  split = conv[-1].end if conv else 0
  if part == 'conv':
    if not conv:
      raise MetaDataError('the architecture has no conv_* layers; there is no conv part')
    return 0, split
  if part == 'fc':
    if split == layout.size:
      raise MetaDataError('the architecture has no dense/output layers; there is no FC part')
    return split, layout.size
  raise MetaDataError(f'part must be one of {PARTS}, got {part!r}')


def dropped_entries(layout: Layout, inputs: str) -> list:
  """The layout entries an input control removes (INPUTS)."""
  if inputs == 'all':
    return []
  if inputs == 'no_running_stats':
    return layout.running_stats()
  if inputs == 'no_batchnorm':
    return layout.batchnorm()
  raise MetaDataError(f'inputs must be one of {INPUTS}, got {inputs!r}')


def _zoo_memmap(zoo: Zoo, arch: str) -> np.ndarray | None:
  """The zoo's memory-mapped weights of `arch`, or None where Zoo cannot give one file (a multi-part zoo):
  reads then go through `Zoo.vectors` (whole rows). Wanted in popnet.zoo: `Zoo.read(rows, starts, width)`."""
  try:
    return zoo.weights(arch)
  except ValueError:
    return None


class _Source:
  """The rows of one architecture: an in-memory block, the zoo's memmap, or (neither) `Zoo.vectors`."""

  def __init__(self, zoo: Zoo, rows: pd.DataFrame, array: np.ndarray | None, local: np.ndarray):
    self.zoo, self.rows, self.array, self.local = zoo, rows, array, local

  def columns(self, which: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """[len(which), hi - lo] values of the source's rows `which` (indices into self.rows)."""
    if self.array is None:
      return self.zoo.vectors(self.rows.iloc[which], verify=False)[:, lo:hi]  # verified by WeightStore
    local = self.local[which]
    order = np.argsort(local, kind='stable')  # sorted reads are sequential on disk
    out = np.empty((len(local), hi - lo), np.float32)
    out[order] = self.array[local[order], lo:hi]
    return out

  def take(self, which: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """[len(which), k] values at columns cols ([k], or [len(which), k] per row) of the source's rows `which`."""
    per_row = cols.ndim == 2
    if isinstance(self.array, np.ndarray) and not isinstance(self.array, np.memmap):
      return self.array[self.local[which][:, None], cols if per_row else cols[None, :]]
    lo, hi = int(cols.min()), int(cols.max()) + 1  # one contiguous read per batch of rows, then picked
    block = self.columns(which, lo, hi)
    return np.take_along_axis(block, cols - lo, 1) if per_row else block[:, cols - lo]

  def windows(self, which: np.ndarray, starts: np.ndarray, width: int, ends: np.ndarray) -> np.ndarray:
    out = np.zeros((len(which), width), np.float32)
    if isinstance(self.array, np.ndarray) and not isinstance(self.array, np.memmap):
      cols = starts[:, None] + np.arange(width, dtype=np.int64)
      vals = self.array[self.local[which][:, None], np.minimum(cols, self.array.shape[1] - 1)]
      return np.where(cols < ends[:, None], vals, 0.0).astype(np.float32)
    for j, (w, s, e) in enumerate(zip(which, starts, ends)):
      piece = self.columns(np.array([w]), s, min(s + width, e))[0]
      out[j, :len(piece)] = piece
    return out


class WeightStore:
  """Weights of the selected metadata rows, in memory when they fit `memory_budget`, else read per batch."""

  def __init__(self, zoo: Zoo, rows: pd.DataFrame, memory_budget: int = DEFAULT_MEMORY_BUDGET):
    self.zoo, self.rows = zoo, rows
    self.arch = rows['arch'].astype(str).to_numpy()
    self.layouts = {a: zoo.layout(a) for a in pd.unique(self.arch)}
    self.size = np.array([self.layouts[a].size for a in self.arch], np.int64)
    self.streaming = int((self.size * 4).sum()) > memory_budget
    self.position = np.empty(len(rows), np.int64)  # row i -> its index among its architecture's rows
    self.sources: dict[str, _Source] = {}
    self.columns: dict[str, np.ndarray] | None = None  # a view's columns of the stored vectors, per architecture
    self.view_of = ('all', 'popnet')
    for a, layout in self.layouts.items():
      mine = np.flatnonzero(self.arch == a)
      self.position[mine] = np.arange(len(mine))
      arch_rows = rows.iloc[mine]
      if self.streaming:  # windows are read straight from the weights file: its rows are verified here, once
        zoo.verify(arch_rows)
        self.sources[a] = _Source(zoo, arch_rows, _zoo_memmap(zoo, a), arch_rows['weights_row'].to_numpy(np.int64))
      else:
        block = np.empty((len(mine), layout.size), np.float32)
        chunk = max(1, CHUNK_BYTES // (4 * max(layout.size, 1)))
        for s in range(0, len(mine), chunk):
          block[s:s + chunk] = zoo.vectors(arch_rows.iloc[s:s + chunk])
        self.sources[a] = _Source(zoo, arch_rows, block, np.arange(len(mine)))

  def __len__(self) -> int:
    return len(self.rows)

  def view(self, inputs: str = 'all', order: str = 'popnet') -> 'WeightStore':
    """These rows without the entries `inputs` drops (dropped_entries), each tensor in `order` (popnet/layout.py
    ORDERS); the weights are shared, not copied. inputs='all', order='popnet': the store itself."""
    base = getattr(self, 'base', self)
    if (inputs, order) == base.view_of:
      return base
    if (inputs, order) == self.view_of:
      return self
    out = copy.copy(base)
    out.base, out.view_of, out.layouts, out.columns = base, (inputs, order), {}, {}
    for a, layout in base.layouts.items():
      drop = dropped_entries(layout, inputs)
      out.layouts[a], out.columns[a] = layout.without(drop), layout.columns(order, drop)
      if out.layouts[a].size == 0:
        raise MetaDataError(f'inputs={inputs!r} leaves no values of architecture {a!r}')
    out.size = np.array([out.layouts[a].size for a in out.arch], np.int64)
    return out

  def holds(self, rows: pd.DataFrame) -> bool:
    """Whether this store holds exactly these rows' weights (so another load of them can reuse it)."""
    return self.rows[['weights_file', 'weights_row']].equals(rows[['weights_file', 'weights_row']])

  @property
  def single_arch(self) -> bool:
    return len(self.layouts) == 1

  def bounds(self, part: str = 'all') -> tuple[np.ndarray, np.ndarray]:
    """Per row [lo, hi) of `part` ('all', 'conv', 'fc')."""
    per_arch = {a: part_bounds(l, part) for a, l in self.layouts.items()}
    lo = np.array([per_arch[a][0] for a in self.arch], np.int64)
    hi = np.array([per_arch[a][1] for a in self.arch], np.int64)
    return lo, hi

  def vectors(self, index: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """[n, hi - lo] whole vectors (or a slice of them) of rows that share one architecture."""
    index = np.asarray(index)
    archs = pd.unique(self.arch[index])
    if len(archs) > 1:
      raise MetaDataError(f'rows span architectures {list(archs)}; whole vectors need one architecture')
    if not len(index):
      return np.empty((0, 0 if hi is None else hi - lo), np.float32)
    hi = int(self.size[index[0]]) if hi is None else hi
    if self.columns is not None:
      return self.sources[archs[0]].take(self.position[index], self.columns[archs[0]][lo:hi])
    return self.sources[archs[0]].columns(self.position[index], lo, hi)

  def windows(self, index: np.ndarray, starts: np.ndarray, width: int, ends: np.ndarray | None = None) -> np.ndarray:
    """[n, width] values [start, start + width) of each row, zeros past `ends` (default: the vector's end)."""
    index, starts = np.asarray(index), np.asarray(starts, np.int64)
    ends = self.size[index] if ends is None else np.asarray(ends, np.int64)
    out = np.zeros((len(index), width), np.float32)
    for a, source in self.sources.items():
      mask = np.flatnonzero(self.arch[index] == a)
      if not len(mask):
        continue
      if self.columns is None:
        out[mask] = source.windows(self.position[index[mask]], starts[mask], width, ends[mask])
        continue
      cols = starts[mask][:, None] + np.arange(width, dtype=np.int64)
      inside = cols < ends[mask][:, None]
      stored = self.columns[a][np.minimum(cols, len(self.columns[a]) - 1)]
      out[mask] = np.where(inside, source.take(self.position[index[mask]], stored), 0.0)
    return out
