"""popnet zoo -> a Small CNN Zoo directory that the release's own loaders read unchanged.

docs/interchange.md describes the files, the `step` semantics, the split file and the
mapping of every column.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet.interop import release
from popnet.interop.common import DEFAULT_BLOCK_BYTES, InteropError, json_scalar, rows_per_block, write_gzip_csv
from popnet.interop.defaults import DEFAULT_SPLIT_SEED
from popnet.interop.layout_csv import export_layout, is_smallcnnzoo, permutation, varnames, write_layout_csv
from popnet.zoo import CHECKSUM_COLUMN, METADATA_FILE, Zoo, arch_to_json, atomic_write_text
from popnet.interop.target import output_directory
from popnet.zoo.names import safe_name

NFN_DATASET_NAMES = {'svhn_cropped': 'svhn'}   # NFN's split files: cifar10_split.csv, svhn_split.csv, ...
_POPNET_ONLY_SKIP = {'member_id', 'arch', 'weights_file', 'weights_row', CHECKSUM_COLUMN, 'step', release.CHECKPOINT}


def _arch_column(metadata: pd.DataFrame) -> pd.Series:
  if 'arch' in metadata:
    return metadata['arch'].astype(str)
  return metadata['weights_file'].map(lambda f: os.path.splitext(os.path.basename(str(f)))[0])


def release_steps(rows: pd.DataFrame, final_epoch: int, final_step_as: int | None, source: str) -> np.ndarray:
  """The release's `step` of each row: the snapshot's epoch; with `final_step_as`, rows at the zoo's final
  epoch get that number instead (the release's loaders look for step == 86)."""
  if 'epoch' not in rows or rows['epoch'].isna().any():
    raise InteropError(f'{source}: epoch is missing on some rows; the release records each checkpoint\'s epoch '
                       f'in step, so an export needs it')
  epoch = rows['epoch'].to_numpy(np.int64)
  if final_step_as is None:
    return epoch
  if isinstance(final_step_as, bool) or not isinstance(final_step_as, (int, np.integer)) or final_step_as < 0:
    raise InteropError(f'final_step_as: expected a non-negative integer (e.g. 86), got {final_step_as!r}')
  earlier = epoch[epoch != final_epoch]
  if len(earlier) and final_step_as <= earlier.max():
    raise InteropError(f'final_step_as: {final_step_as} must exceed every earlier snapshot epoch (the largest '
                       f'is {int(earlier.max())}), so that the final checkpoint stays the last one')
  return np.where(epoch == final_epoch, int(final_step_as), epoch)


def metrics_table(rows: pd.DataFrame, manifest: dict[str, Any], arch: arch_lib.Arch, step: np.ndarray):
  """popnet rows -> (the release's metrics table, indexed by checkpoint path; the export record for the
  sidecar). Columns: the release's, in its order, then popnet's own under their names."""
  n = len(rows)
  config, extra_config, renamed, derived = release.release_config(rows, manifest, arch)
  table = dict(config)
  if 'modeldir' in rows:
    table['modeldir'] = rows['modeldir'].astype(str).to_numpy()
  else:
    table['modeldir'] = np.array([f'popnet/member_{int(m)}' for m in rows['member_id']], dtype=object)
  table['step'] = step
  for c in release.RELEASE_METRICS:
    table[c] = rows[c].to_numpy() if c in rows else np.full(n, np.nan)
  table[release.OPTIMIZER_STEP] = rows['step'].to_numpy() if 'step' in rows else np.full(n, np.nan)
  table.update(extra_config)
  mapped = set(release.HPARAM_COLUMNS) | _POPNET_ONLY_SKIP
  for c in rows.columns:
    if c not in table and c not in mapped:
      table[c] = rows[c].to_numpy()
  index = release.checkpoint_paths(table['modeldir'], step)
  frame = pd.DataFrame(table, index=pd.Index(index, name=None))
  derived += ['step'] + [c for c in release.RELEASE_METRICS if c not in rows]
  return frame, {'version': release.EXPORT_VERSION, 'renamed': renamed, 'derived': derived}


def split_file_name(rows: pd.DataFrame) -> str:
  """`<dataset>_split.csv` as NFN names its split files (experiments/predict_gen_data_splits/), or split.csv."""
  datasets = pd.unique(rows['dataset'].astype(str)) if 'dataset' in rows else []
  if len(datasets) != 1:
    return 'split.csv'
  name = safe_name(NFN_DATASET_NAMES.get(datasets[0], datasets[0]), 'dataset', 'metadata.csv')
  return f'{name}_split.csv'


def split_permutation(member_id: np.ndarray, seed: int) -> np.ndarray:
  """A permutation of row indices that keeps each member's rows together: members in a seeded random order
  (np.random.default_rng(seed)), each member's rows in row order."""
  members, position = np.unique(member_id, return_inverse=True)
  rank = np.empty(len(members), np.int64)
  rank[np.random.default_rng(seed).permutation(len(members))] = np.arange(len(members))
  return np.lexsort((np.arange(len(member_id)), rank[position]))


def _select_rows(zoo: Zoo, arch: str | None, only_ok: bool) -> tuple[str, pd.DataFrame, int]:
  """(architecture, its rows to export ordered by member and snapshot, the zoo's final epoch for it)."""
  meta = zoo.metadata
  archs = _arch_column(meta)
  present = list(pd.unique(archs))
  if arch is None:
    if len(present) != 1:
      raise InteropError(f'{zoo.path}: holds architectures {present}; a Small CNN Zoo directory holds one, so '
                         f'export them one at a time with --arch NAME')
    arch = present[0]
  elif arch not in present:
    raise InteropError(f'{zoo.path}: no rows of architecture {arch!r}; it holds {present}')
  rows = meta[(archs == arch).to_numpy()]
  final_epoch = int(rows['epoch'].max()) if 'epoch' in rows and rows['epoch'].notna().any() else -1
  if only_ok and 'status' in rows:
    rows = rows[rows['status'] == 'ok']
  if not len(rows):
    raise InteropError(f'{zoo.path}: no rows of {arch!r} with status ok to export')
  return arch, rows.sort_values(['member_id', 'snapshot'], kind='stable'), final_epoch


def _write_weights(zoo: Zoo, rows: pd.DataFrame, perm: np.ndarray, path: str, block_bytes: int) -> None:
  """weights.npy, streamed `block_bytes` of rows at a time into a temp file renamed over `path`."""
  tmp = f'{path}.tmp-{os.getpid()}.npy'
  try:
    weights = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=(len(rows), len(perm)))
    step = rows_per_block(len(perm), 4, block_bytes)
    for start in range(0, len(rows), step):
      block = rows.iloc[start:start + step]
      weights[start:start + len(block)] = zoo.vectors(block)[:, perm]
    weights.flush()
    del weights
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  os.replace(tmp, path)


def _remove_export(out: str, created: bool) -> None:
  """The export directory this export created, while it holds nothing but its lock (_write_weights removes its
  own temp file)."""
  if created and set(os.listdir(out)) <= {'.lock'}:
    shutil.rmtree(out)  # the lock file goes with it (popnet.interop.target)


def export_smallcnnzoo(zoo: Zoo | str, out: str, arch: str | None = None, only_ok: bool = False,
                       block_bytes: int = DEFAULT_BLOCK_BYTES, overwrite: bool = False,
                       final_step_as: int | None = None, split_seed: int = DEFAULT_SPLIT_SEED) -> dict[str, Any]:
  """Writes the rows of one architecture as a Small CNN Zoo directory: weights.npy, metrics.csv.gz, layout.csv,
  the NFN split file and popnet_arch.json; rows ordered by (member_id, snapshot). `final_step_as` writes the
  final snapshot's `step` (and checkpoint name) as that number (86 for loaders written for the release).
  Weights are streamed from the zoo's memory-mapped files; nothing the size of the weights file is held."""
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  arch, rows, final_epoch = _select_rows(zoo, arch, only_ok)
  try:
    arch_obj = zoo.arch(arch)
  except KeyError as e:
    raise InteropError(f'{zoo.path}: the manifest does not describe architecture {arch!r}') from e
  step = release_steps(rows, final_epoch, final_step_as, os.path.join(zoo.path, METADATA_FILE))
  try:
    metrics, export = metrics_table(rows, zoo.manifest, arch_obj, step)
  except ValueError as e:
    raise InteropError(f'{zoo.path}: {e}') from e
  layout = zoo.layout(arch)
  out_layout = export_layout(layout)
  split_name = split_file_name(rows)
  files = [release.WEIGHTS_FILE, release.METRICS_FILE, release.LAYOUT_FILE, split_name, release.ARCH_SIDECAR]
  targets = [os.path.join(out, f) for f in files]
  if not overwrite and any(os.path.exists(t) for t in targets):
    raise InteropError(f'{out}: already holds a Small CNN Zoo export; give a new directory or overwrite=True '
                       f'(--overwrite)')
  created = not os.path.exists(out)
  with output_directory(out, 'export'):
    try:
      _write_weights(zoo, rows, permutation(layout, out_layout), targets[0], block_bytes)  # first: tables follow
    except BaseException:  # damaged rows found while streaming them: no partial export is left behind
      _remove_export(out, created)
      raise
    _write_tables(zoo, targets, arch_obj, rows, metrics, export, out_layout, final_epoch, final_step_as,
                  split_seed)
  return {'out': out, 'architecture': arch, 'rows': int(len(rows)), 'members': int(rows['member_id'].nunique()),
          'values': int(layout.size), 'varnames': 'keras (release)' if is_smallcnnzoo(arch_obj) else 'popnet',
          'split_file': split_name}


def _write_tables(zoo, targets, arch_obj, rows, metrics, export, out_layout, final_epoch, final_step_as,
                  split_seed) -> None:
  """metrics.csv.gz, layout.csv, the split file and popnet_arch.json, after weights.npy."""
  write_gzip_csv(targets[1], metrics, index=True)
  keras = is_smallcnnzoo(arch_obj)
  write_layout_csv(targets[2], out_layout, varnames(out_layout, keras=keras))
  split = split_permutation(rows['member_id'].to_numpy(), split_seed)
  atomic_write_text(targets[3], ''.join(f'{i}\n' for i in split))
  export.update(step='epoch' if final_step_as is None else f'epoch; the final epoch {final_epoch} as '
                f'{final_step_as}', final_epoch=final_epoch, final_step_as=final_step_as, split_file=os.path.basename(targets[3]),
                split_seed=split_seed)
  sidecar = {'format': 'popnet arch sidecar of a Small CNN Zoo export', 'arch': arch_to_json(arch_obj),
             'input_shape': list(zoo.input_shape), 'source_zoo_digest': _zoo_digest(zoo), 'export': export}
  atomic_write_text(targets[4], json.dumps(sidecar, indent=1, default=json_scalar))


def _zoo_digest(zoo: Zoo) -> str | None:
  """The exported zoo's digest (its seal), so an export names its source without a path of this machine."""
  digest = zoo.manifest.get('seal', {}).get('manifest')
  return f'sha256:{digest}' if digest else None
