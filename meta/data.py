"""What a meta-model learns from: selected zoo snapshots, one target, a by-member split, and the weights.

Splits are drawn over *members*, never over rows: a member's snapshots are strongly correlated, so one member on
both sides of a split would leak (reference/nws.md section 6). Classification targets are balanced by truncation
inside every split, so chance is exactly 1/C on the test set (the paper's protocol, section 5).

Weights are never materialized whole: `WeightStore` gathers the selected rows (or only the windows asked for)
from the zoo's memory-mapped files, and keeps them in memory only when they fit a budget.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Sequence

import numpy as np
import pandas as pd

from popnet.layout import Layout
from popnet.zoo import Zoo

SPLITS = ('train', 'val', 'test')
DERIVED = {'generalization_gap': 'train_accuracy - test_accuracy'}
ALIASES = {'gap': 'generalization_gap', 'lr': 'learning_rate'}
# Columns the trainer draws from a finite set: always classes, even when numeric (batch size 32/64/128/256 is
# predicted as 4 classes in the paper).
CATEGORICAL = ('dataset', 'architecture', 'arch', 'optimizer', 'activation', 'init', 'augment', 'batch_norm',
               'batch_size', 'filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc', 'status')
CONTINUOUS = ('learning_rate', 'lr_decay', 'momentum', 'beta1', 'beta2', 'rms_decay', 'eps', 'weight_decay',
              'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy',
              'generalization_gap', 'step')
LOG_SCALE = ('learning_rate', 'eps')  # spans orders of magnitude: regressed as log10
MAX_AUTO_CLASSES = 10   # an unlisted numeric column with at most this many values is treated as classes
DEFAULT_MEMORY_BUDGET = 2 << 30  # bytes of selected weights kept in memory; beyond it, stream from the memmap


class MetaDataError(ValueError):
  """The selection or target cannot give a meaningful meta-learning problem; the message says why."""


# --- target ---------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Target:
  """The predicted column. Classification: labels index `classes`. Regression: `log` means log10 scale."""
  name: str
  kind: str                       # 'classification' | 'regression'
  classes: tuple[str, ...] = ()
  log: bool = False

  @property
  def is_classification(self) -> bool:
    return self.kind == 'classification'

  @property
  def num_outputs(self) -> int:
    return len(self.classes) if self.is_classification else 1

  @property
  def chance(self) -> float | None:
    """Accuracy of guessing on a balanced test set; None for regression."""
    return 1.0 / len(self.classes) if self.is_classification else None

  def to_json(self) -> dict:
    return {'name': self.name, 'kind': self.kind, 'classes': list(self.classes), 'log': self.log,
            'chance': self.chance}


def target_values(metadata: pd.DataFrame, name: str) -> pd.Series:
  """The raw target column, computing derived targets (generalization_gap = train_accuracy - test_accuracy)."""
  name = ALIASES.get(name, name)
  if name == 'generalization_gap':
    return (metadata['train_accuracy'] - metadata['test_accuracy']).rename(name)
  if name not in metadata:
    raise MetaDataError(f'target {name!r} is not a metadata column; have {sorted(metadata.columns)} '
                        f'and derived {sorted(DERIVED)}')
  return metadata[name]


def _numeric(values: pd.Series) -> bool:
  return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _class_key(v) -> str:
  """Class names as strings, with numbers written the same however pandas parsed them (32 vs 32.0)."""
  if isinstance(v, (bool, np.bool_)):
    return str(bool(v))
  if isinstance(v, (int, np.integer)):
    return str(int(v))
  if isinstance(v, (float, np.floating)):
    return str(int(v)) if float(v).is_integer() else repr(float(v))
  return str(v)


def _sort_key(c: str):
  try:
    return (0, float(c), c)
  except ValueError:
    return (1, 0.0, c)


def make_target(metadata: pd.DataFrame, name: str, kind: str | None = None) -> Target:
  """Decides classification vs regression from the column (or `kind`), and fixes the class order."""
  name = ALIASES.get(name, name)
  values = target_values(metadata, name)
  if kind is None:
    if name in CATEGORICAL or not _numeric(values):
      kind = 'classification'
    elif name in CONTINUOUS:
      kind = 'regression'
    else:
      kind = 'classification' if values.nunique() <= MAX_AUTO_CLASSES else 'regression'
  if kind == 'classification':
    classes = tuple(sorted({_class_key(v) for v in values}, key=_sort_key))
    return Target(name, kind, classes)
  if kind != 'regression':
    raise MetaDataError(f'kind must be classification or regression, got {kind!r}')
  if not _numeric(values):
    raise MetaDataError(f'target {name!r} ({values.dtype}) is not numeric; it cannot be regressed')
  log = name in LOG_SCALE
  if log and (values <= 0).any():
    raise MetaDataError(f'target {name!r} has non-positive values; cannot regress it on a log scale')
  return Target(name, kind, log=log)


def encode(target: Target, values: pd.Series) -> np.ndarray:
  """Labels (int32 indices into target.classes) or regression values (float32, log10 where target.log)."""
  if target.is_classification:
    index = {c: i for i, c in enumerate(target.classes)}
    keys = [_class_key(v) for v in values]
    unknown = sorted(set(keys) - set(index))
    if unknown:
      raise MetaDataError(f'values {unknown} of {target.name!r} are not among its classes {list(target.classes)}')
    return np.array([index[k] for k in keys], np.int32)
  y = values.to_numpy(np.float64)
  return (np.log10(y) if target.log else y).astype(np.float32)


# --- selection ------------------------------------------------------------------------------------------------
def parse_selection(spec: str | int | Sequence[int] | None, available: Sequence[int]) -> list[int] | None:
  """'all' | 'last' | 'first' | '3' | '0,2,5' | '10-19' (inclusive) | '-1' (from the end) -> sorted values.

  Values index `available` (the sorted snapshot indices or epochs present); negative numbers count from its end."""
  if spec is None or (isinstance(spec, str) and spec.strip().lower() in ('', 'all')):
    return None
  avail = sorted(int(a) for a in available)
  if not avail:
    return []

  def resolve(v: int) -> int:
    return avail[v] if v < 0 else v

  if isinstance(spec, (int, np.integer)):
    return [resolve(int(spec))]
  if not isinstance(spec, str):
    return sorted({resolve(int(v)) for v in spec})
  out: set[int] = set()
  for token in spec.split(','):
    token = token.strip().lower()
    if token == 'last':
      out.add(avail[-1])
    elif token == 'first':
      out.add(avail[0])
    elif re.fullmatch(r'-?\d+', token):
      out.add(resolve(int(token)))
    elif m := re.fullmatch(r'(-?\d+)(?:-|:|\.\.)(-?\d+)', token):
      lo, hi = resolve(int(m.group(1))), resolve(int(m.group(2)))
      out.update(a for a in avail if lo <= a <= hi)
    else:
      raise MetaDataError(f'cannot parse selection {token!r} of {spec!r}; use all, last, first, 3, 0,2,5 or 10-19')
  return sorted(out)


def select_rows(metadata: pd.DataFrame, snapshots=None, epochs=None, status: str | None = 'ok',
                archs: Sequence[str] | None = None) -> pd.DataFrame:
  """The metadata rows to learn from: snapshot indices and/or epochs (see parse_selection), status, archs."""
  rows = metadata
  if status is not None and status != 'all' and 'status' in rows:
    rows = rows[rows['status'] == status]
  if archs:
    rows = rows[rows['arch'].isin(list(archs))]
  chosen = parse_selection(snapshots, metadata['snapshot'].unique()) if snapshots is not None else None
  if chosen is not None:
    rows = rows[rows['snapshot'].isin(chosen)]
  chosen = parse_selection(epochs, metadata['epoch'].unique()) if epochs is not None else None
  if chosen is not None:
    rows = rows[rows['epoch'].isin(chosen)]
  if rows.empty:
    raise MetaDataError(f'no rows left after selecting snapshots={snapshots!r} epochs={epochs!r} '
                        f'status={status!r} archs={archs!r}')
  return rows.reset_index(drop=True)


# --- split ----------------------------------------------------------------------------------------------------
def _counts(total: int, fractions: Sequence[float]) -> list[int]:
  """Split sizes: a fraction < 1 of the total (rounded), or a count >= 1; train takes what is left."""
  val, test = [int(round(f * total)) if f < 1 else int(f) for f in fractions[1:]]
  if val + test >= total:
    raise MetaDataError(f'{total} members cannot give val={val} and test={test} members and a training set')
  return [total - val - test, val, test]


def _quota(sizes: np.ndarray, n: int) -> np.ndarray:
  """n spread over groups proportionally to sizes, by largest remainder, never above a group's size."""
  if n == 0 or sizes.sum() == 0:
    return np.zeros_like(sizes)
  exact = sizes * n / sizes.sum()
  q = np.minimum(np.floor(exact).astype(int), sizes)
  for i in np.argsort(-(exact - q), kind='stable'):
    if q.sum() >= n:
      break
    if q[i] < sizes[i]:
      q[i] += 1
  return q


def split_members(member_ids: Sequence[int], fractions=(0.7, 0.15, 0.15), seed: int = 0,
                  strata: Sequence | None = None) -> dict[str, np.ndarray]:
  """{'train','val','test': member ids}. Sizes as `fractions` ask (val and test rounded; train the rest) and,
  when `strata` (one label per member) is given, each split holds every stratum in proportion."""
  members = np.asarray(member_ids)
  if len(np.unique(members)) != len(members):
    raise MetaDataError('split_members takes each member id once')
  sizes = _counts(len(members), fractions)
  rng = np.random.default_rng(seed)
  order = rng.permutation(len(members))
  members = members[order]
  strata = np.zeros(len(members), int) if strata is None else np.asarray(strata)[order]
  groups = [np.flatnonzero(strata == s) for s in pd.unique(strata)]
  left = np.array([len(g) for g in groups])
  taken = np.zeros(len(groups), int)
  out: dict[str, list] = {s: [] for s in SPLITS}
  for split, n in (('test', sizes[2]), ('val', sizes[1])):
    q = _quota(left, n)
    for g, (idx, k) in enumerate(zip(groups, q)):
      out[split].extend(members[idx[taken[g]:taken[g] + k]])
      taken[g] += k
    left = left - q
  for g, idx in enumerate(groups):
    out['train'].extend(members[idx[taken[g]:]])
  return {s: np.sort(np.asarray(v, members.dtype)) for s, v in out.items()}


def balance(labels: np.ndarray, index: np.ndarray, num_classes: int, rng: np.random.Generator,
            split: str = '') -> np.ndarray:
  """Truncates `index` (rows of one split) to the same number of rows per class, so chance is 1/C."""
  if len(index) == 0:
    return index
  per_class = [index[labels[index] == c] for c in range(num_classes)]
  n = min(len(p) for p in per_class)
  if n == 0:
    missing = [c for c, p in enumerate(per_class) if len(p) == 0]
    raise MetaDataError(f'the {split} split has no rows of classes {missing}; the zoo has too few members per '
                        f'class for this split (use more members, or fewer snapshots/classes)')
  return np.sort(np.concatenate([rng.choice(p, n, replace=False) for p in per_class]))


# --- weights --------------------------------------------------------------------------------------------------
PARTS = ('all', 'conv', 'fc')


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


class WeightStore:
  """Gathers weights of the selected metadata rows, in memory when they fit `memory_budget`, else from the memmap.

  Row i of the store is row i of `rows`. The streaming path reads only the rows (or windows) a batch asks for:
  the weights file itself is never converted to an array."""

  def __init__(self, zoo: Zoo, rows: pd.DataFrame, memory_budget: int = DEFAULT_MEMORY_BUDGET):
    self.zoo, self.rows = zoo, rows
    self.arch = rows['arch'].astype(str).to_numpy()
    self.layouts = {a: zoo.layout(a) for a in pd.unique(self.arch)}
    self.size = np.array([self.layouts[a].size for a in self.arch], np.int64)
    files = rows['weights_file'].astype(str).to_numpy()
    self.files = list(pd.unique(files))
    self.file_of = pd.Index(self.files).get_indexer(files).astype(np.int64)
    self.local = rows['weights_row'].to_numpy(np.int64).copy()
    self.sources = [np.load(os.path.join(zoo.path, f), mmap_mode='r') for f in self.files]
    nbytes = int((self.size * 4).sum())
    self.streaming = nbytes > memory_budget
    if not self.streaming:  # gather the selected rows once, in chunks, straight from the memmap
      sources = []
      for k, src in enumerate(self.sources):
        mine = np.flatnonzero(self.file_of == k)
        uniq, inverse = np.unique(self.local[mine], return_inverse=True)
        block = np.empty((len(uniq), src.shape[1]), np.float32)
        chunk = max(1, (64 << 20) // (4 * max(src.shape[1], 1)))  # ~64 MB of rows per read
        for s in range(0, len(uniq), chunk):
          block[s:s + chunk] = src[uniq[s:s + chunk]]
        sources.append(block)
        self.local[mine] = inverse
      self.sources = sources

  def __len__(self) -> int:
    return len(self.rows)

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
    hi = int(self.size[index[0]]) if hi is None and len(index) else hi
    out = np.empty((len(index), (hi or 0) - lo), np.float32)
    for k, src in enumerate(self.sources):
      mask = self.file_of[index] == k
      if mask.any():
        local = self.local[index[mask]]
        if self.streaming:  # sorted reads are sequential on disk
          order = np.argsort(local, kind='stable')
          block = np.empty((len(local), hi - lo), np.float32)
          block[order] = src[local[order], lo:hi]
          out[mask] = block
        else:
          out[mask] = src[local, lo:hi]
    return out

  def windows(self, index: np.ndarray, starts: np.ndarray, width: int, ends: np.ndarray | None = None) -> np.ndarray:
    """[n, width] values [start, start + width) of each row, zeros past `ends` (default: the vector's end)."""
    index, starts = np.asarray(index), np.asarray(starts, np.int64)
    ends = self.size[index] if ends is None else np.asarray(ends, np.int64)
    out = np.zeros((len(index), width), np.float32)
    offsets = np.arange(width, dtype=np.int64)
    for k, src in enumerate(self.sources):
      mask = np.flatnonzero(self.file_of[index] == k)
      if not len(mask):
        continue
      local = self.local[index[mask]]
      if self.streaming:
        for j, r, s, e in zip(mask, local, starts[mask], ends[mask]):
          piece = src[r, s:min(s + width, e)]
          out[j, :len(piece)] = piece
      else:
        cols = starts[mask, None] + offsets
        valid = cols < ends[mask, None]
        vals = src[local[:, None], np.minimum(cols, src.shape[1] - 1)]
        out[mask] = np.where(valid, vals, 0.0)
    return out


# --- the assembled problem ------------------------------------------------------------------------------------
@dataclasses.dataclass
class MetaData:
  """Selected rows, their encoded target `y`, split row indices and the weight store."""
  rows: pd.DataFrame
  target: Target
  y: np.ndarray
  splits: dict[str, np.ndarray]          # row indices into `rows`
  members: dict[str, np.ndarray]         # member ids per split
  store: WeightStore
  notes: list[str]

  def summary(self) -> dict:
    out = {'rows': int(len(self.rows)), 'target': self.target.to_json(), 'notes': list(self.notes),
           'architectures': sorted(self.store.layouts), 'streaming': bool(self.store.streaming)}
    for s in SPLITS:
      out[f'{s}_rows'] = int(len(self.splits[s]))
      out[f'{s}_members'] = int(len(self.members[s]))
    return out


def load(zoo: Zoo | str, target: str, snapshots=None, epochs=None, status: str | None = 'ok',
         fractions=(0.7, 0.15, 0.15), seed: int = 0, kind: str | None = None, balanced: bool = True,
         archs: Sequence[str] | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> MetaData:
  """Selects rows, builds the target, splits members (stratified by class when the class is a member's own
  setting), balances classes per split, and opens the weights."""
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  rows = select_rows(zoo.metadata, snapshots, epochs, status, archs)
  values = target_values(rows, target)
  valid = values.notna().to_numpy()
  if _numeric(values):
    valid = valid & np.isfinite(values.to_numpy(np.float64))
  notes = []
  if not valid.all():  # e.g. the loss of a diverged network
    notes.append(f'dropped {int((~valid).sum())} rows without a finite value of {target}')
    rows, values = rows[valid].reset_index(drop=True), values[valid].reset_index(drop=True)
  tgt = make_target(rows, target, kind)
  if tgt.is_classification and len(tgt.classes) < 2:
    raise MetaDataError(f'target {tgt.name!r} does not vary in the selected rows (only {list(tgt.classes)})')
  if not tgt.is_classification and values.nunique() < 2:
    raise MetaDataError(f'target {tgt.name!r} does not vary in the selected rows')
  y = encode(tgt, values)
  member = rows['member_id'].to_numpy()
  ids = np.unique(member)
  strata = None
  if tgt.is_classification:
    per_member = pd.Series(y).groupby(member).nunique()
    if (per_member == 1).all():  # a member's own setting: stratify so every split sees every class
      strata = pd.Series(y).groupby(member).first().reindex(ids).to_numpy()
  members = split_members(ids, fractions, seed, strata)
  out = MetaData(rows, tgt, y, {}, members, WeightStore(zoo, rows, memory_budget), notes)
  return resplit(out, seed=seed, balanced=balanced)


def resplit(data: MetaData, mask: np.ndarray | None = None, seed: int = 0, balanced: bool = True) -> MetaData:
  """The rows of `data.members`' splits (only those in `mask`, when given), balanced per split. The same rows,
  store and member split: analyses that look at a subset (one snapshot) compare like with like."""
  member = data.rows['member_id'].to_numpy()
  keep = np.ones(len(member), bool) if mask is None else np.asarray(mask, bool)
  rng = np.random.default_rng([seed, 1])
  notes = list(data.notes) if mask is None else []
  splits = {}
  for s in SPLITS:
    idx = np.flatnonzero(np.isin(member, data.members[s]) & keep)
    if data.target.is_classification and balanced:
      before = len(idx)
      idx = balance(data.y, idx, len(data.target.classes), rng, s)
      if len(idx) < before and mask is None:
        notes.append(f'{s}: balanced by truncation to {len(idx) // len(data.target.classes)} rows per class '
                     f'({before - len(idx)} rows dropped)')
    splits[s] = idx
  if len(splits['train']) == 0 or len(splits['test']) == 0:
    raise MetaDataError(f'empty train or test split ({len(np.unique(member[keep]))} members); use more members')
  return dataclasses.replace(data, splits=splits, notes=notes)
