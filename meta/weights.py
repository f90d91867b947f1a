"""The weights of selected zoo rows, read through `popnet.zoo.Zoo`: whole vectors, parts and windows.

`WeightStore` gathers the selected rows once into memory when they fit a budget (through `Zoo.vectors`); beyond
it, every batch reads only the rows and columns it asks for from the zoo's memory-mapped file (`Zoo.weights`).
Either way every selected row is checked against its recorded crc32 once (`Zoo.vectors` / `Zoo.verify`), so a
meta-model never trains on damaged weights.
The weights file itself is never converted to an array. Row i of the store is row i of the selected metadata.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from meta.options import DEFAULT_MEMORY_BUDGET, PARTS  # noqa: F401  (re-exported: the command line's defaults)
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
    return self.sources[archs[0]].columns(self.position[index], lo, hi)

  def windows(self, index: np.ndarray, starts: np.ndarray, width: int, ends: np.ndarray | None = None) -> np.ndarray:
    """[n, width] values [start, start + width) of each row, zeros past `ends` (default: the vector's end)."""
    index, starts = np.asarray(index), np.asarray(starts, np.int64)
    ends = self.size[index] if ends is None else np.asarray(ends, np.int64)
    out = np.zeros((len(index), width), np.float32)
    for a, source in self.sources.items():
      mask = np.flatnonzero(self.arch[index] == a)
      if len(mask):
        out[mask] = source.windows(self.position[index[mask]], starts[mask], width, ends[mask])
    return out
