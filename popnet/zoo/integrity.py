"""What a zoo's metadata promises about its weights files, checked: the row mapping (cheap, on every open) and
the per-row checksums (of the rows read, on every `Zoo.vectors`; of all rows, `Zoo.verify` /
`python -m popnet.zoo verify DIR`)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from popnet.zoo.schema import CHECKSUM_COLUMN, ROW_RULE, ZooError, row_checksums


def _where(row) -> str:
  return f'member {int(row.member_id)} snapshot {int(row.snapshot)}'


def check_row_mapping(metadata: pd.DataFrame, manifest: dict[str, Any], file_rows: dict[str, int],
                      meta_file: str) -> None:
  """Every metadata row points to its own row of its weights file: rows within bounds and unique per file and,
  for zoos whose manifest declares the row rule (popnet.train's), row = rank * snapshots + snapshot with rank
  the member's rank by member_id within the file (ranks may skip members not written yet while the zoo is
  incomplete; a complete zoo has every rank)."""
  for file, group in metadata.groupby('weights_file', sort=False):
    rows, size = group['weights_row'].to_numpy(np.int64), file_rows[file]
    outside = group[(rows < 0) | (rows >= size)]
    if len(outside):
      row = outside.iloc[0]
      raise ZooError(f'{meta_file}: {_where(row)} points to weights_row {int(row.weights_row)} of {file}, which '
                     f'holds rows 0..{size - 1}')
    shared = group[group.duplicated('weights_row', keep=False)].sort_values('weights_row')
    if len(shared):
      raise ZooError(f'{meta_file}: weights_row {int(shared.iloc[0].weights_row)} of {file} is listed for '
                     f'{_where(shared.iloc[0])} and {_where(shared.iloc[1])}; each snapshot has its own row')
    if manifest.get('row_rule') == ROW_RULE:
      _check_row_rule(group, len(manifest['snapshot_epochs']), bool(manifest.get('complete')), file, meta_file)


def _check_row_rule(group: pd.DataFrame, snapshots: int, complete: bool, file: str, meta_file: str) -> None:
  rule = f'the row rule of this zoo is row = {ROW_RULE} with {snapshots} snapshots'
  slot, offset = np.divmod(group['weights_row'].to_numpy(np.int64), snapshots)
  wrong = group[offset != group['snapshot'].to_numpy()]
  if len(wrong):
    row = wrong.iloc[0]
    raise ZooError(f'{meta_file}: {_where(row)} has weights_row {int(row.weights_row)} of {file}; {rule}')
  slots = pd.Series(slot, index=group.index).groupby(group['member_id']).agg(['min', 'max'])
  split = slots[slots['min'] != slots['max']]
  if len(split):
    low, high = int(split.iloc[0]['min']) * snapshots, int(split.iloc[0]['max']) * snapshots
    raise ZooError(f'{meta_file}: the snapshots of member {int(split.index[0])} lie in different row blocks of '
                   f'{file} (rows {low}.. and {high}..); {rule}')
  order = slots['min'].to_numpy()  # by member_id
  expected = np.arange(len(order))
  bad = np.flatnonzero(np.diff(order) <= 0) + 1 if not complete else np.flatnonzero(order != expected)
  if len(bad):
    member = int(slots.index[bad[0]])
    got = group[group['member_id'] == member].iloc[0]
    raise ZooError(f'{meta_file}: member {member} has weights_row {int(got.weights_row)} of {file} (block '
                   f'{int(order[bad[0]])}), out of member_id order; {rule} and rank = the member\'s rank by '
                   f'member_id (swapped, duplicated or faked weights_row values)')


def checksum_mismatches(metadata: pd.DataFrame, read_rows: Callable[[str, np.ndarray], np.ndarray],
                        block: int = 256) -> tuple[pd.DataFrame, int]:
  """(the metadata rows whose weights no longer match their recorded crc32, how many rows had a checksum).
  read_rows(weights_file, rows) -> float32 [len(rows), values]; rows are read `block` at a time."""
  if CHECKSUM_COLUMN not in metadata:
    return metadata.iloc[:0], 0
  recorded = metadata[metadata[CHECKSUM_COLUMN].notna()]
  bad = []
  for file, group in recorded.groupby('weights_file', sort=False):
    for start in range(0, len(group), block):
      part = group.iloc[start:start + block]
      actual = row_checksums(read_rows(file, part['weights_row'].to_numpy(np.int64)))
      bad.append(part[actual != part[CHECKSUM_COLUMN].to_numpy(np.int64)])
  return (pd.concat(bad) if bad else metadata.iloc[:0]), len(recorded)


def check_read_rows(rows: pd.DataFrame, vectors: np.ndarray, meta_file: str) -> None:
  """ZooError when a row just read (vectors[i] of rows.iloc[i]) differs from its recorded crc32."""
  if CHECKSUM_COLUMN not in rows:
    return
  recorded = rows[CHECKSUM_COLUMN].to_numpy()
  has = ~pd.isna(recorded)
  if not has.any():
    return
  mismatch = row_checksums(vectors[has]) != recorded[has].astype(np.int64)
  if mismatch.any():
    raise ZooError(describe_mismatches(rows[has][mismatch], meta_file))


def describe_mismatches(bad: pd.DataFrame, meta_file: str) -> str:
  first = bad.iloc[0]
  more = f' and {len(bad) - 1} more' if len(bad) > 1 else ''
  return (f'{first.weights_file}: row {int(first.weights_row)} ({_where(first)}){more} does not match its '
          f'{CHECKSUM_COLUMN} in {meta_file}: the weights were damaged after they were written')
