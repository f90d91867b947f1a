"""What a meta-model learns from: selected zoo snapshots, one target, a by-member split, and the weights.

Splits are drawn over *members*, never over rows: a member's snapshots are strongly correlated, so one member on
both sides of a split would leak. Classification targets are balanced by truncation inside every split, so chance
is exactly 1/C on the test set (the protocol of NWS's meta_classifier.py, `load_uniform`). A test split too small
to support a number is refused (fewer than MIN_TEST_PER_CLASS networks of a class) or flagged with a loud warning
(fewer than WARN_TEST_PER_CLASS per class or WARN_TEST networks in all). Weights are read by meta.weights.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import sys
from typing import Sequence

import numpy as np
import pandas as pd

from meta.weights import DEFAULT_MEMORY_BUDGET, MetaDataError, WeightStore
from popnet.hparams import PARAMS
from popnet.zoo import Zoo

SPLITS = ('train', 'val', 'test')
DERIVED = {'generalization_gap': 'train_accuracy - test_accuracy'}
ALIASES = {'gap': 'generalization_gap', 'lr': 'learning_rate'}
# Hyper-parameters come from popnet.hparams.PARAMS: strings, booleans and integers (batch size 32/64/128/256,
# filter size, widths, depths) are drawn from finite sets and predicted as classes, as in the paper; floats are
# regressed. Metadata columns that are not hyper-parameters are listed here.
CATEGORICAL = (*(k for k, p in PARAMS.items() if p.allowed is not None or p.kind in (str, bool, int)),
               'arch', 'status')
CONTINUOUS = (*(k for k, p in PARAMS.items() if k not in CATEGORICAL),
              'train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy',
              'generalization_gap', 'step')
LOG_SCALE = ('learning_rate', 'eps')  # spans orders of magnitude: regressed as log10
MAX_AUTO_CLASSES = 10   # an unlisted numeric column with at most this many values is treated as classes
MIN_TEST_PER_CLASS = 2      # fewer test networks of a class than this: an error
WARN_TEST_PER_CLASS = 20    # fewer than this per class, or fewer than WARN_TEST in all: a loud warning
WARN_TEST = 30


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
    known = sorted(metadata.columns) + sorted(DERIVED)
    guess = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{guess[0]}'?)" if guess else ''
    raise MetaDataError(f'target {name!r} is not a metadata column{hint}; have {sorted(metadata.columns)} '
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
def parse_selection(spec: str | int | Sequence[int] | None, available: Sequence[int], name: str = 'snapshots',
                    contiguous: bool = True) -> list[int] | None:
  """'all' | 'last' | 'first' | '3' | '0,2,5' | '10-19' (inclusive) | '-1' (from the end) -> sorted values.

  Values index `available` (the sorted snapshot indices or epochs present); negative numbers count from its end.
  Asking for a value the zoo lacks is an error naming both lists; with `contiguous` (snapshot indices, numbered
  0..S-1) every value inside a range must exist too, while a range of epochs selects the epochs inside it."""
  if spec is None or (isinstance(spec, str) and spec.strip().lower() in ('', 'all')):
    return None
  avail = sorted(int(a) for a in available)
  if not avail:
    return []

  def resolve(v: int) -> int:
    return avail[v] if -len(avail) <= v < 0 else v

  if isinstance(spec, (int, np.integer)):
    spec = str(int(spec))
  elif not isinstance(spec, str):
    spec = ','.join(str(int(v)) for v in spec)
  asked: set[int] = set()
  for token in spec.split(','):
    token = token.strip().lower()
    if token in ('last', 'first'):
      asked.add(avail[-1 if token == 'last' else 0])
    elif re.fullmatch(r'-?\d+', token):
      asked.add(resolve(int(token)))
    elif m := re.fullmatch(r'(-?\d+)(?:-|:|\.\.)(-?\d+)', token):
      lo, hi = resolve(int(m.group(1))), resolve(int(m.group(2)))
      asked.update(range(lo, hi + 1) if contiguous else [a for a in avail if lo <= a <= hi] or [lo, hi])
    else:
      raise MetaDataError(f'cannot parse --{name} {token!r} of {spec!r}; use all, last, first, 3, 0,2,5 or 10-19')
  missing = sorted(asked - set(avail))
  if missing:
    raise MetaDataError(f'--{name} {spec!r} asks for {missing}, which the zoo does not have; it has {name} '
                        f'{_ranges(avail)}')
  return sorted(asked)


def _ranges(values: Sequence[int]) -> str:
  """[0, 1, 2, 5] -> '0-2, 5'."""
  out, start = [], None
  for i, v in enumerate(values):
    start = v if start is None else start
    if i + 1 == len(values) or values[i + 1] != v + 1:
      out.append(str(v) if v == start else f'{start}-{v}')
      start = None
  return ', '.join(out)


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
  chosen = (parse_selection(epochs, metadata['epoch'].unique(), 'snapshot_epochs', contiguous=False)
            if epochs is not None else None)
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


def target_rows(zoo: Zoo, target: str, snapshots=None, epochs=None, status: str | None = 'ok',
                archs: Sequence[str] | None = None, kind: str | None = None):
  """(rows, values, Target, notes) of a selection: the rows with a finite value of `target` (from the metadata
  alone, no weights read); a MetaDataError when the target does not vary there."""
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
  return rows, values, tgt, notes


def load(zoo: Zoo | str, target: str, snapshots=None, epochs=None, status: str | None = 'ok',
         fractions=(0.7, 0.15, 0.15), seed: int = 0, kind: str | None = None, balanced: bool = True,
         archs: Sequence[str] | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
         store: WeightStore | None = None) -> MetaData:
  """Selects rows, builds the target, splits members (stratified by class when the class is a member's own
  setting), balances classes per split, and opens the weights (or reuses `store`, the weights of an earlier
  load with the same selection: another member split costs no second read)."""
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  rows, values, tgt, notes = target_rows(zoo, target, snapshots, epochs, status, archs, kind)
  y = encode(tgt, values)
  member = rows['member_id'].to_numpy()
  ids = np.unique(member)
  strata = None
  if tgt.is_classification:
    per_member = pd.Series(y).groupby(member).nunique()
    if (per_member == 1).all():  # a member's own setting: stratify so every split sees every class
      strata = pd.Series(y).groupby(member).first().reindex(ids).to_numpy()
  members = split_members(ids, fractions, seed, strata)
  if store is not None and not store.holds(rows):
    raise MetaDataError('the weight store given to load() holds other rows than this selection')
  out = MetaData(rows, tgt, y, {}, members, store or WeightStore(zoo, rows, memory_budget), notes)
  out = resplit(out, seed=seed, balanced=balanced)
  warning = check_test_size(out)
  if warning:
    print(f'WARNING: {warning}', file=sys.stderr, flush=True)
    out.notes.append(f'WARNING: {warning}')
  return out


def count_test_networks(data: MetaData) -> tuple[int, dict[str, int]]:
  """Networks (members) in the test split, in all and per class (classification)."""
  test = data.splits['test']
  member = data.rows['member_id'].to_numpy()[test]
  per_class = {}
  if data.target.is_classification:
    labels = data.y[test]
    per_class = {c: len(np.unique(member[labels == i])) for i, c in enumerate(data.target.classes)}
  return len(np.unique(member)), per_class


def check_test_size(data: MetaData) -> str | None:
  """Raises when the test split cannot support a number (< MIN_TEST_PER_CLASS networks of a class, or < 3 networks
  for a regression); returns a warning when it is small (< WARN_TEST_PER_CLASS per class or < WARN_TEST in all)."""
  total, per_class = count_test_networks(data)
  fewest = min(per_class.values()) if per_class else total
  if (per_class and fewest < MIN_TEST_PER_CLASS) or total < 3:
    raise MetaDataError(f'the test split has {total} networks ({_per_class_text(per_class)}); at least '
                        f'{MIN_TEST_PER_CLASS} per class are needed: use more members or a larger --split test size')
  if fewest < WARN_TEST_PER_CLASS or total < WARN_TEST:
    return (f'the test split is small: {total} networks ({_per_class_text(per_class)}); a score on so few '
            f'networks is uncertain (see its 95% interval); aim for >= {WARN_TEST_PER_CLASS} per class and '
            f'>= {WARN_TEST} in all')
  return None


def _per_class_text(per_class: dict[str, int]) -> str:
  return ', '.join(f'{c}: {n}' for c, n in per_class.items()) if per_class else 'regression'


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
