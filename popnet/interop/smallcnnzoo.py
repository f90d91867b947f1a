"""Small CNN Zoo directory -> popnet: opened in place as a Zoo (nothing copied), or converted into a popnet zoo.

docs/interchange.md describes the files and the mapping of every column.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet import zoo as zoo_schema
from popnet.interop import release
from popnet.interop.common import DEFAULT_BLOCK_BYTES, InteropError, rows_per_block
from popnet.interop.layout_csv import (is_smallcnnzoo, permutation, read_layout_csv, same_tensors,
                                       smallcnnzoo_name)
from popnet.interop.release import (ARCH_SIDECAR, HPARAM_COLUMNS, LAYOUT_FILE, METRICS_FILE, RELEASE_METRICS,
                                    WEIGHTS_FILE)
from popnet.layout import Layout
from popnet.zoo import Zoo, ZooWriter, arch_from_json, arch_to_json, read_metadata
from popnet.interop.target import output_directory
from popnet.zoo.names import safe_name

_MEMBER_DIR = re.compile(r'(?:^|/)member_(\d+)/?$')


def _member_ids(modeldir: pd.Series) -> np.ndarray:
  """Stable integer ids per modeldir: popnet's member_<n> when every modeldir has a distinct one, else the rank
  among the sorted distinct modeldirs."""
  uniq = list(pd.unique(modeldir))
  parsed = [_MEMBER_DIR.search(u) for u in uniq]
  if all(parsed) and len({int(m.group(1)) for m in parsed}) == len(uniq):
    ids = {u: int(m.group(1)) for u, m in zip(uniq, parsed)}
  else:
    ids = {u: i for i, u in enumerate(sorted(uniq))}
  return modeldir.map(ids).to_numpy(np.int64)


def _snapshot_index(member: np.ndarray, step: np.ndarray) -> np.ndarray:
  """0-based rank of each row's step among the rows of its member (ties in row order)."""
  order = np.lexsort((np.arange(len(member)), step, member))
  m = member[order]
  starts = np.r_[0, np.flatnonzero(m[1:] != m[:-1]) + 1] if len(m) else np.zeros(0, np.int64)
  lengths = np.diff(np.r_[starts, len(m)])
  rank = np.arange(len(m)) - np.repeat(starts, lengths)
  out = np.empty(len(m), np.int64)
  out[order] = rank
  return out


def release_metadata(table: pd.DataFrame, arch: str, weights_file: str, source: str) -> tuple[pd.DataFrame, list]:
  """The release's metrics table -> popnet metadata (docs/interchange.md) and notes."""
  notes = []
  for c in ('modeldir', 'step'):
    if c not in table:
      raise InteropError(f'{source}: missing column {c!r}; the Small CNN Zoo metrics table has config.<name>, '
                         f'modeldir, step, {", ".join(RELEASE_METRICS)}')
  n = len(table)
  member = _member_ids(table['modeldir'].astype(str))
  step = table['step'].to_numpy()
  snapshot = table['snapshot'].to_numpy(np.int64) if 'snapshot' in table else _snapshot_index(
      member, step.astype(np.float64))
  if 'epoch' in table:
    epoch = table['epoch'].to_numpy()
  elif 'config.epochs' in table and (step <= table['config.epochs'].to_numpy()).all():
    epoch = step.copy()
    notes.append('epoch = step: every step is <= config.epochs (the release records the checkpoint epoch in step)')
  else:
    epoch = np.full(n, np.nan)
    notes.append('epoch unknown (no epoch column, and step is not an epoch count): NaN')
  if 'status' in table:
    status = table['status'].astype(str).to_numpy()
  else:
    finite = np.ones(n, bool)
    for c in RELEASE_METRICS:
      if c in table:
        finite &= np.isfinite(table[c].to_numpy(np.float64))
    status = np.where(finite, 'ok', 'diverged').astype(object)
    notes.append(f'status from the metrics: {int((~finite).sum())} rows with a non-finite metric are "diverged"')
  meta = {'member_id': member, 'snapshot': snapshot, 'epoch': epoch, 'step': step, 'arch': np.full(n, arch, object)}
  for c in table.columns:
    if c in ('snapshot', 'epoch', 'step', 'status', 'member_id', 'arch', 'weights_file', 'weights_row'):
      continue
    name = c[len('config.'):] if c.startswith('config.') else c
    if c.startswith('config.') and name in HPARAM_COLUMNS and name not in table:
      meta[name] = table[c].to_numpy()
    else:
      meta[c] = table[c].to_numpy()
  meta['status'] = status
  meta['weights_file'] = np.full(n, weights_file, object)
  meta['weights_row'] = np.arange(n, dtype=np.int64)
  return pd.DataFrame(meta), notes


class SmallCNNZoo(Zoo):
  """A Small-CNN-Zoo-format directory opened in place as a popnet Zoo (see `open_smallcnnzoo`).

  weights(arch) is weights.npy memory-mapped read-only; its layout is layout.csv's order (bias before kernel)
  with popnet's tensor names, so zoo.unflatten / popnet.models.apply / meta work unchanged. Metrics may be NaN
  (the release keeps rows of runs that diverged): such rows have status 'diverged'."""

  def check(self) -> None:
    weights_file = os.path.join(self.path, WEIGHTS_FILE)
    meta_file = os.path.join(self.path, METRICS_FILE)
    try:
      weights = self._memmap(WEIGHTS_FILE)
    except (OSError, ValueError) as e:
      raise InteropError(f'{weights_file}: cannot be memory-mapped ({e}); the file is truncated or corrupted') from e
    (arch, layout), = self.layouts.items()
    if weights.ndim != 2 or weights.shape[1] != layout.size or weights.dtype.kind != 'f':
      raise InteropError(f'{weights_file}: shape {weights.shape} {weights.dtype} does not match '
                         f'{os.path.join(self.path, LAYOUT_FILE)} ({layout.size} values per row)')
    if weights.shape[0] != len(self.metadata):
      raise InteropError(f'{weights_file} has {weights.shape[0]} rows but {meta_file} has {len(self.metadata)}; '
                         f'the two must be row-aligned')
    if self.metadata.duplicated(['member_id', 'snapshot']).any():
      raise InteropError(f'{meta_file}: duplicated (modeldir, snapshot) rows')

  def weights(self, arch: str) -> np.ndarray:
    if arch not in self.layouts:
      raise KeyError(f'{self.path} holds architecture {self.architectures}, not {arch!r}')
    return self._memmap(WEIGHTS_FILE)


def _input_hw(metadata: pd.DataFrame) -> tuple[int, int]:
  from popnet import data
  names = [d for d in pd.unique(metadata['dataset'].astype(str))] if 'dataset' in metadata else []
  shapes = {data.DATASETS[d].shape[:2] for d in names if d in data.DATASETS}
  return shapes.pop() if len(shapes) == 1 else (32, 32)


def read_sidecar(path: str) -> dict | None:
  """popnet_arch.json of a popnet export (None for the release's own directories)."""
  sidecar = os.path.join(path, ARCH_SIDECAR)
  if not os.path.exists(sidecar):
    return None
  try:
    with open(sidecar) as f:
      d = json.load(f)
    d['arch'], d['input_shape'] = arch_from_json(d['arch']), tuple(int(s) for s in d['input_shape'])
    safe_name(d['arch'].name, 'architecture name', sidecar)  # it becomes the zoo's file names
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise InteropError(f'{sidecar}: invalid ({e})') from e
  return d


def _resolve_arch(path: str, layout: Layout, metadata: pd.DataFrame,
                  sidecar: dict | None) -> tuple[arch_lib.Arch, tuple[int, int, int]]:
  """The popnet architecture of a Small CNN Zoo directory: the sidecar's if present, else the release's CNN
  (output count and input channels read off layout.csv). Its tensors must be exactly layout.csv's."""
  layout_file = os.path.join(path, LAYOUT_FILE)
  if sidecar is not None:
    arch, input_shape = sidecar['arch'], sidecar['input_shape']
  else:
    try:
      channels = layout.entry('conv_0/kernel').shape[2]
      outputs = layout.entry('output/kernel').shape[-1]
    except KeyError as e:
      raise InteropError(f'{layout_file}: not the Small CNN Zoo CNN (3 conv layers and a dense output) and there '
                         f'is no {ARCH_SIDECAR} naming the architecture') from e
    # the release's Keras Conv2D layers use their default VALID padding
    arch, input_shape = arch_lib.smallcnnzoo_arch(outputs, padding='VALID'), (*_input_hw(metadata), channels)
  try:
    own = arch.layout(input_shape)
  except ValueError as e:  # e.g. VALID convolutions on images too small for them
    raise InteropError(f'{layout_file}: architecture {arch.name!r} cannot run on input {tuple(input_shape)} (from '
                       f'the dataset column; a popnet export carries {ARCH_SIDECAR}): {e}') from e
  missing, unexpected = same_tensors(layout, own)
  if missing or unexpected:
    raise InteropError(f'{layout_file}: tensors do not match popnet architecture {arch.name!r} on {input_shape}: '
                       f'missing {missing}, unexpected {unexpected}')
  return arch, input_shape


def read_metrics(file: str) -> pd.DataFrame:
  """metrics.csv.gz; its unnamed first column (the release's checkpoint path index) becomes `checkpoint`."""
  try:
    table = read_metadata(file)
  except (OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise InteropError(f'{file}: cannot be read ({e})') from e
  if len(table.columns) and str(table.columns[0]).startswith('Unnamed: 0'):
    table = table.rename(columns={table.columns[0]: release.CHECKPOINT})
  return table


def _map_config(table: pd.DataFrame) -> pd.DataFrame:
  """Just the hyper-parameter renames (for choosing the input shape before the full mapping)."""
  return table.rename(columns={c: c[len('config.'):] for c in table.columns
                               if c.startswith('config.') and c[len('config.'):] in HPARAM_COLUMNS})


def open_smallcnnzoo(path: str) -> SmallCNNZoo:
  """A Small CNN Zoo directory (weights.npy, metrics.csv.gz, layout.csv) as a popnet Zoo, in place: weights.npy
  is memory-mapped read-only (nothing is copied), metadata is mapped to popnet's columns."""
  files = {f: os.path.join(path, f) for f in (WEIGHTS_FILE, METRICS_FILE, LAYOUT_FILE)}
  for f in files.values():
    if not os.path.exists(f):
      raise InteropError(f'{f}: not found; a Small CNN Zoo directory holds {", ".join(files)}')
  layout, names = read_layout_csv(files[LAYOUT_FILE])
  table = read_metrics(files[METRICS_FILE])
  sidecar = read_sidecar(path)
  if sidecar is not None and 'export' in sidecar:  # a popnet export: restore popnet's own columns
    table = release.from_popnet_export(table, sidecar['export'])
  arch, input_shape = _resolve_arch(path, layout, _map_config(table), sidecar)
  metadata, notes = release_metadata(table, arch.name, WEIGHTS_FILE, files[METRICS_FILE])
  if 'architecture' not in metadata:
    metadata.insert(5, 'architecture', smallcnnzoo_name(arch) if is_smallcnnzoo(arch) else arch.name)
  manifest = {'format': 'smallcnnzoo', 'source': path, 'complete': True,
              'members': int(metadata['member_id'].nunique()), 'architectures': {arch.name: arch_to_json(arch)},
              'input_shape': list(input_shape), 'varnames': names, 'notes': notes}
  zoo = SmallCNNZoo(path, manifest, metadata, {arch.name: layout})
  zoo.check()
  return zoo


def import_smallcnnzoo(src: str, out: str, block_bytes: int = DEFAULT_BLOCK_BYTES, overwrite: bool = False) -> str:
  """Converts a Small CNN Zoo directory into a popnet zoo at `out` (popnet's weight order, float32 via ZooWriter),
  row i -> row i, `block_bytes` of rows at a time. Rerunning on the same `out` skips rows already written.

  NaN metric values (the release's diverged runs) stay NaN, on rows whose status is 'diverged'."""
  zoo = open_smallcnnzoo(src)
  (name,) = zoo.architectures
  meta = zoo.metadata.copy()
  meta['weights_file'] = zoo_schema.weights_file(name)
  notes = list(zoo.manifest['notes'])
  source = {'format': 'smallcnnzoo', 'path': os.path.basename(os.path.normpath(src))}  # no path of this machine
  manifest = {'imported_from': source, 'members': zoo.manifest['members'], 'notes': notes,
              'varnames': zoo.manifest['varnames']}
  with output_directory(out, 'import', overwrite, source):
    _import_rows(zoo, name, meta, out, manifest, block_bytes)
  return out


def _import_rows(zoo: SmallCNNZoo, name: str, meta: pd.DataFrame, out: str, manifest: dict, block_bytes: int):
  writer = ZooWriter(out, {name: zoo.arch(name)}, zoo.input_shape, {name: len(meta)}, manifest)
  perm = permutation(zoo.layout(name), writer.layouts[name])
  source = zoo.weights(name)
  done = writer.written()
  step = rows_per_block(source.shape[1], source.dtype.itemsize, block_bytes)
  for start in range(0, len(meta), step):
    block = meta.iloc[start:start + step]
    if done and all(k in done for k in zip(block['member_id'].tolist(), block['snapshot'].tolist())):
      continue
    rows = np.arange(start, start + len(block))
    writer.write(name, rows, np.asarray(source[start:start + len(block)])[:, perm], block.to_dict('records'))
  writer.write_manifest(complete=True)
  writer.close()
