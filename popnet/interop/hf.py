"""popnet zoo -> a Hugging Face dataset directory: Parquet shards and a dataset card (pip install popnet[hf]).

    python -m popnet.zoo export --format hf --zoo runs/default --out hf/
    datasets.load_dataset('hf/')                     # offline; one config per architecture

A row is one snapshot: `weights` (list<float32>, the zoo's row in its layout's order) and the metadata columns
but `weights_file` / `weights_row` (where the row lay in the zoo). Splits: the zoo's `split` column when it has
one (INR zoos: train / val / test, `val` written as `validation`), else by member (`member_splits`). Files:
data/<arch>/<split>-<i>-of-<n>.parquet, layouts/<arch>.json, popnet_export.json, README.md (hf_card.py).
Everything is written into a staging directory inside --out first and moved into place once every row has been
read and checked against its crc32, so a damaged zoo leaves no partial export. docs/pytorch.md describes it.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import pandas as pd

from popnet.interop import hf_card
from popnet.interop.common import DEFAULT_BLOCK_BYTES, InteropError, json_scalar, rows_per_block
from popnet.interop.defaults import DEFAULT_SHARD_BYTES, DEFAULT_SPLIT_SEED
from popnet.interop.target import output_directory, remove_entries
from popnet.zoo import METADATA_FILE, Zoo, arch_to_json

SPLIT_NAMES = {'train': 'train', 'val': 'validation', 'validation': 'validation', 'test': 'test'}
MEMBER_FRACTIONS = (0.7, 0.15, 0.15)  # train, validation, test: the split rule of zoos without a split column
DROPPED = ('weights_file', 'weights_row')
OWN_ENTRIES = ('README.md', 'data', 'layouts', 'popnet_export.json')
EXPORT_FORMAT = 'popnet hf export'


def member_splits(member_id: np.ndarray, seed: int) -> np.ndarray:
  """'train' / 'validation' / 'test' of each row, by member: the sorted member ids in the order
  np.random.default_rng(seed).permutation gives them, the first round(15%) test, the next round(15%) validation,
  the rest train; every snapshot of a member lands in its member's split."""
  members = np.unique(member_id)
  order = members[np.random.default_rng(seed).permutation(len(members))]
  n_test, n_val = (int(round(f * len(members))) for f in MEMBER_FRACTIONS[2:0:-1])
  split_of = {m: 'test' for m in order[:n_test]} | {m: 'validation' for m in order[n_test:n_test + n_val]}
  return np.array([split_of.get(m, 'train') for m in member_id], dtype=object)


def row_splits(rows: pd.DataFrame, seed: int, source: str) -> tuple[np.ndarray, str]:
  """(each row's split, the rule that gave it)."""
  if 'split' not in rows:
    return member_splits(rows['member_id'].to_numpy(), seed), f'by member (seed {seed}, popnet.interop.hf.member_splits)'
  values = rows['split'].astype(str)
  bad = sorted(set(values) - set(SPLIT_NAMES))
  if bad:
    raise InteropError(f'{source}: split column holds {bad}; allowed: {sorted(SPLIT_NAMES)}')
  return values.map(SPLIT_NAMES).to_numpy(), "the zoo's split column (val written as validation)"


def _select(zoo: Zoo, arch: str | None, only_ok: bool) -> dict[str, pd.DataFrame]:
  """{architecture: its rows ordered by member and snapshot}."""
  meta = zoo.metadata
  archs = meta['arch'].astype(str) if 'arch' in meta else pd.Series([zoo.architectures[0]] * len(meta))
  if arch is not None and arch not in set(archs):
    raise InteropError(f'{zoo.path}: no rows of architecture {arch!r}; it holds {sorted(set(archs))}')
  if only_ok and 'status' in meta:
    meta, archs = meta[meta['status'] == 'ok'], archs[(meta['status'] == 'ok').to_numpy()]
  out = {}
  for name in pd.unique(archs):
    if arch in (None, name):
      rows = meta[(archs == name).to_numpy()].sort_values(['member_id', 'snapshot'], kind='stable')
      out[name] = rows.dropna(axis=1, how='all')  # another architecture's columns (the NWS family's) go
  if not out or not any(len(r) for r in out.values()):
    raise InteropError(f'{zoo.path}: no rows to export')
  return out


def metadata_schema(rows: pd.DataFrame):
  """The Arrow schema of the exported metadata columns (one for every split of an architecture)."""
  import pyarrow as pa
  return pa.Schema.from_pandas(rows.drop(columns=[c for c in DROPPED if c in rows]), preserve_index=False)\
      .remove_metadata()


def _write_split(zoo: Zoo, rows: pd.DataFrame, schema, folder: str, split: str, shard_bytes: int,
                 block_bytes: int) -> int:
  """<split>-<i>-of-<n>.parquet shards of `rows`, `block_bytes` of weights read (and checked) at a time; returns
  the split's size in Arrow bytes (dataset_info's num_bytes)."""
  import pyarrow as pa
  import pyarrow.parquet as pq
  values = zoo.layout(str(rows['arch'].iloc[0]) if 'arch' in rows else zoo.architectures[0]).size
  per_shard = rows_per_block(values, 4, shard_bytes)
  per_block = min(per_shard, rows_per_block(values, 4, block_bytes))
  n_shards, nbytes = -(-len(rows) // per_shard), 0
  for shard in range(n_shards):
    stop_shard = min(len(rows), (shard + 1) * per_shard)
    path = os.path.join(folder, f'{split}-{shard:05d}-of-{n_shards:05d}.parquet')
    with pq.ParquetWriter(path, schema.insert(0, pa.field('weights', pa.list_(pa.float32())))) as writer:
      for start in range(shard * per_shard, stop_shard, per_block):
        block = rows.iloc[start:min(start + per_block, stop_shard)]
        vectors = zoo.vectors(block)  # every row checked against its crc32
        weights = pa.ListArray.from_arrays(pa.array(np.arange(len(block) + 1, dtype=np.int32) * values),
                                           pa.array(vectors.ravel(), pa.float32()))
        table = pa.Table.from_pandas(block, schema=schema, preserve_index=False).add_column(0, 'weights', weights)
        writer.write_table(table)
        nbytes += table.nbytes
  return nbytes


def export_hf(zoo: Zoo | str, out: str, arch: str | None = None, only_ok: bool = False, overwrite: bool = False,
              split_seed: int = DEFAULT_SPLIT_SEED, license: str = 'unknown',
              shard_bytes: int = DEFAULT_SHARD_BYTES, block_bytes: int = DEFAULT_BLOCK_BYTES) -> dict[str, Any]:
  """Writes the zoo's rows (one architecture with `arch`) as a Hugging Face dataset directory (module docstring);
  refuses an `out` that holds anything but an earlier export's files unless overwrite."""
  try:
    import pyarrow  # noqa: F401
  except ImportError as e:
    raise InteropError('--format hf: needs pyarrow (pip install popnet[hf])') from e
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  hf_card.check_license(license)
  by_arch = _select(zoo, arch, only_ok)
  source = os.path.join(zoo.path, METADATA_FILE)
  splits = {name: row_splits(rows, split_seed, source) for name, rows in by_arch.items()}
  if os.path.isdir(out) and not overwrite and set(os.listdir(out)) - {'.lock'}:
    raise InteropError(f'{out}: is not empty; give a new directory, or pass --overwrite to replace the files of '
                       f'this export ({", ".join(OWN_ENTRIES)}) there')
  created = not os.path.exists(out)
  with output_directory(out, 'export'):
    stage = os.path.join(out, f'.staging-{os.getpid()}')
    try:
      configs = [_write_config(zoo, name, rows, splits[name][0], stage, shard_bytes, block_bytes)
                 for name, rows in by_arch.items()]
      rule = next(iter(splits.values()))[1]
      record = {'format': EXPORT_FORMAT, 'source_zoo_digest': _zoo_digest(zoo), 'input_shape': list(zoo.input_shape),
                'architectures': {name: arch_to_json(zoo.arch(name)) for name in by_arch}, 'split_rule': rule,
                'dropped_columns': list(DROPPED)}
      with open(os.path.join(stage, 'popnet_export.json'), 'w') as f:
        json.dump(record, f, indent=1, default=json_scalar)
      with open(os.path.join(stage, 'README.md'), 'w', encoding='utf-8') as f:
        f.write(hf_card.card(zoo, configs, record, license))
      _move_into_place(stage, out)
    except BaseException:  # damaged rows found while streaming them: nothing of this export is left behind
      shutil.rmtree(stage, ignore_errors=True)
      if created and set(os.listdir(out)) <= {'.lock'}:
        shutil.rmtree(out)
      raise
    shutil.rmtree(stage, ignore_errors=True)
  return {'out': out, 'configs': [c['name'] for c in configs], 'rows': sum(c['rows'] for c in configs),
          'splits': {c['name']: c['splits'] for c in configs}, 'split_rule': rule}


def _write_config(zoo, name, rows, split, stage, shard_bytes, block_bytes) -> dict[str, Any]:
  """One architecture's shards and layout; returns what the card says of it."""
  folder = os.path.join(stage, 'data', name)
  os.makedirs(folder)
  os.makedirs(os.path.join(stage, 'layouts'), exist_ok=True)
  zoo.layout(name).save(os.path.join(stage, 'layouts', f'{name}.json'))
  counts, schema = {}, metadata_schema(rows)
  for s in ('train', 'validation', 'test'):
    mask = split == s
    if mask.any():
      counts[s] = {'num_examples': int(mask.sum()),
                   'num_bytes': _write_split(zoo, rows[mask], schema, folder, s, shard_bytes, block_bytes)}
  return {'name': name, 'rows': len(rows), 'splits': counts, 'schema': schema,
          'values': zoo.layout(name).size, 'members': int(rows['member_id'].nunique())}


def _move_into_place(stage: str, out: str) -> None:
  """Replaces this export's own entries in `out` with the staged ones (nothing else in `out` is touched)."""
  remove_entries(out, OWN_ENTRIES)
  for entry in OWN_ENTRIES:
    os.replace(os.path.join(stage, entry), os.path.join(out, entry))


def _zoo_digest(zoo: Zoo) -> str | None:
  digest = zoo.manifest.get('seal', {}).get('manifest')
  return f'sha256:{digest}' if digest else None
