"""The zoo on disk: flattened weights as memory-mappable .npy files plus a row-aligned metadata table.

    <zoo>/manifest.json          config, seeds, versions, devices, timings, throughput, architectures
    <zoo>/layouts/<arch>.json    the layout table of each architecture (popnet.layout)
    <zoo>/weights/<arch>.npy     float32 [members_of_arch * snapshots, values]; row = rank * snapshots + snapshot
    <zoo>/metadata.csv           one row per written snapshot: member_id, snapshot, epoch, step, status,
                                 every hyper-parameter, train/val/test loss and accuracy, weights_file, weights_row

Writes are ordered so that a reader never sees a half-written snapshot: weight rows are written into the
pre-allocated file and flushed first, then metadata.csv is replaced atomically (write temp file, fsync,
os.replace). A row is part of the zoo only once metadata lists it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterable

import numpy as np
import pandas as pd

from popnet import models
from popnet.layout import Layout

FORMAT_VERSION = 1
METRIC_COLUMNS = ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy')


MANIFEST_FILE = 'manifest.json'
METADATA_FILE = 'metadata.csv'
LAYOUTS_DIR = 'layouts'
WEIGHTS_DIR = 'weights'


class ZooError(RuntimeError):
  """A zoo on disk is missing, truncated or inconsistent; the message names the file."""


# --- the on-disk schema: every path, part and row number of a zoo is built here ------------------------------
def weights_file(arch: str) -> str:
  """The weights file of `arch`, relative to the zoo (the `weights_file` metadata column)."""
  return f'{WEIGHTS_DIR}/{arch}.npy'


def layout_file(arch: str) -> str:
  return f'{LAYOUTS_DIR}/{arch}.json'


def part_name(process_index: int, process_count: int) -> str:
  """The sub-zoo written by one process of a multi-process run."""
  return f'part-{process_index:05d}-of-{process_count:05d}'


def snapshot_row(rank, snapshot, snapshots: int):
  """The documented row rule of a popnet zoo: row = rank of the member within its architecture * snapshots
  + snapshot index."""
  return rank * snapshots + snapshot


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes a temp file beside `path`, fsyncs it and renames it over `path`: readers see the old or the new file,
  never a partial one."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode())


def read_metadata(path: str) -> pd.DataFrame:
  """metadata.csv with floats parsed exactly (round trip), so rewriting it on resume changes no byte."""
  if int(pd.__version__.split('.')[0]) >= 3:  # pandas 3 parses floats exactly by default
    return pd.read_csv(path)
  return pd.read_csv(path, float_precision='round_trip')


def arch_to_json(arch: models.Arch) -> dict[str, Any]:
  return dataclasses.asdict(arch)


def arch_from_json(d: dict[str, Any]) -> models.Arch:
  return models.Arch(d['name'], tuple(models.ConvLayer(**c) for c in d['conv']), tuple(d['dense']),
                     d['num_outputs'], d['batch_norm'], d.get('global_pool', False))


class ZooWriter:
  """Creates (or reopens, on resume) a zoo and writes snapshots into it."""

  def __init__(self, path: str, archs: dict[str, models.Arch], input_shape, rows_per_arch: dict[str, int],
               manifest: dict[str, Any]):
    self.path = path
    os.makedirs(os.path.join(path, 'layouts'), exist_ok=True)
    os.makedirs(os.path.join(path, 'weights'), exist_ok=True)
    self.layouts = {name: arch.layout(input_shape) for name, arch in archs.items()}
    self.weights: dict[str, np.memmap] = {}
    for name, layout in self.layouts.items():
      layout.save(os.path.join(path, 'layouts', f'{name}.json'))
      file = os.path.join(path, 'weights', f'{name}.npy')
      shape = (rows_per_arch[name], layout.size)
      if os.path.exists(file):
        existing = np.load(file, mmap_mode='r+')
        if existing.shape != shape or existing.dtype != np.float32:
          raise ZooError(f'{file}: has shape {existing.shape} {existing.dtype}, expected {shape} float32')
        self.weights[name] = existing
      else:
        tmp = file + '.tmp'
        np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=shape).flush()
        os.replace(tmp, file)
        self.weights[name] = np.load(file, mmap_mode='r+')
    meta_file = os.path.join(path, 'metadata.csv')
    self.metadata = read_metadata(meta_file) if os.path.exists(meta_file) else None
    self.manifest = dict(manifest, format_version=FORMAT_VERSION, complete=False,
                         architectures={n: arch_to_json(a) for n, a in archs.items()},
                         input_shape=list(input_shape))
    self.write_manifest()

  def written(self) -> set[tuple[int, int]]:
    """(member_id, snapshot) pairs already in the zoo."""
    if self.metadata is None:
      return set()
    return set(zip(self.metadata['member_id'].tolist(), self.metadata['snapshot'].tolist()))

  def write(self, arch: str, rows: np.ndarray, weights: np.ndarray, records: Iterable[dict[str, Any]],
            before_commit=None) -> None:
    """Writes weight rows, flushes them, then commits their metadata rows atomically."""
    memmap = self.weights[arch]
    memmap[np.asarray(rows)] = np.asarray(weights, np.float32)
    memmap.flush()
    if before_commit is not None:
      before_commit()
    new = pd.DataFrame(list(records))
    table = new if self.metadata is None else pd.concat([self.metadata, new], ignore_index=True)
    table = table.drop_duplicates(['member_id', 'snapshot'], keep='last')
    self.metadata = table.sort_values(['weights_file', 'weights_row'], kind='stable').reset_index(drop=True)
    atomic_write_text(os.path.join(self.path, 'metadata.csv'), self.metadata.to_csv(index=False))

  def write_manifest(self, **updates) -> None:
    self.manifest.update(updates)
    atomic_write_text(os.path.join(self.path, 'manifest.json'), json.dumps(self.manifest, indent=1, default=str))


class Zoo:
  """A zoo opened for reading: `Zoo.open(dir)`.

  zoo.metadata             pandas DataFrame, one row per snapshot
  zoo.weights(arch)        read-only np.memmap [rows, values] of one architecture
  zoo.vectors(rows)        weight vectors [n, values] of metadata rows (one architecture)
  zoo.layout(arch)         the Layout; zoo.unflatten(vectors, arch) -> {'params', 'batch_stats'}
  zoo.arch(name)           the models.Arch, to run the network with popnet.models.apply

  A zoo written by several processes (multi-host runs) is a directory of parts `part-<i>-of-<n>/`, each a zoo of
  its own members; `Zoo.open` on the parent sees one zoo, with `weights_file` paths relative to the parent.
  """

  def __init__(self, path: str, manifest: dict[str, Any], metadata: pd.DataFrame, layouts: dict[str, Layout]):
    self.path, self.manifest, self.metadata, self.layouts = path, manifest, metadata, layouts
    self._files: dict[str, np.ndarray] = {}

  @classmethod
  def open(cls, path: str) -> 'Zoo':
    if os.path.isdir(os.path.join(path, 'zoo')):
      path = os.path.join(path, 'zoo')  # a training workdir
    parts = sorted(p for p in os.listdir(path) if p.startswith('part-')) if os.path.isdir(path) else []
    if parts and not os.path.exists(os.path.join(path, 'manifest.json')):
      return cls._open_parts(path, parts)
    manifest, metadata, layouts = _read_part(path)
    zoo = cls(path, manifest, metadata, layouts)
    zoo.check()
    return zoo

  @classmethod
  def _open_parts(cls, path: str, parts: list[str]) -> 'Zoo':
    manifests, tables, layouts = [], [], {}
    for part in parts:
      manifest, metadata, part_layouts = _read_part(os.path.join(path, part))
      metadata = metadata.assign(weights_file=part + '/' + metadata['weights_file'].astype(str))
      manifests.append(manifest)
      tables.append(metadata)
      layouts.update(part_layouts)
    total = manifests[0].get('process_count', len(parts))
    if len(parts) != total:
      raise ZooError(f'{path}: holds {len(parts)} of the {total} parts of this zoo')
    manifest = dict(manifests[0], members=sum(m.get('members', 0) for m in manifests),
                    complete=all(m.get('complete') for m in manifests), parts=parts,
                    architectures={k: v for m in manifests for k, v in m.get('architectures', {}).items()})
    metadata = pd.concat(tables, ignore_index=True).sort_values(['member_id', 'snapshot'], kind='stable')
    zoo = cls(path, manifest, metadata.reset_index(drop=True), layouts)
    zoo.check()
    return zoo

  def check(self) -> None:
    """Verifies that every weights file matches its layout and holds every row metadata points to."""
    meta_file = os.path.join(self.path, 'metadata.csv')
    missing = [c for c in ('member_id', 'snapshot', 'weights_file', 'weights_row') if c not in self.metadata]
    if missing:
      raise ZooError(f'{meta_file}: missing columns {missing}')
    present = [c for c in ('member_id', 'snapshot', 'weights_row', 'status') if c in self.metadata]
    metrics = [c for c in METRIC_COLUMNS if c in self.metadata]
    ok = self.metadata['status'] == 'ok' if 'status' in self.metadata else True
    # a metric may be NaN only on a row that says why (diverged runs of imported zoos)
    if self.metadata[present].isna().any().any() or (self.metadata[metrics].isna().any(axis=1) & ok).any():
      raise ZooError(f'{meta_file}: rows with missing values (a truncated or hand-edited file)')
    for file, rows in self.metadata.groupby('weights_file')['weights_row']:
      arch = os.path.splitext(os.path.basename(file))[0]
      layout = self.layouts.get(arch)
      full = os.path.join(self.path, file)
      try:
        weights = self._memmap(file)
      except (OSError, ValueError) as e:
        raise ZooError(f'{full}: cannot be memory-mapped ({e}); the file is truncated or corrupted') from e
      if layout is None or weights.ndim != 2 or weights.shape[1] != layout.size or weights.dtype != np.float32:
        raise ZooError(f'{full}: shape {weights.shape} {weights.dtype} does not match the layout of {arch!r}')
      if rows.max() >= weights.shape[0] or rows.min() < 0:
        raise ZooError(f'{full}: metadata points to row {rows.max()} but the file holds {weights.shape[0]} rows')
    if self.metadata.duplicated(['member_id', 'snapshot']).any():
      raise ZooError(f'{meta_file}: duplicated (member_id, snapshot) rows')
    if self.manifest.get('complete') and 'snapshot_epochs' in self.manifest:
      expected = self.manifest['members'] * len(self.manifest['snapshot_epochs'])
      if len(self.metadata) != expected:
        raise ZooError(f'{meta_file}: holds {len(self.metadata)} rows; the manifest says the complete zoo has '
                       f'{expected}')

  def _memmap(self, file: str) -> np.ndarray:
    if file not in self._files:
      self._files[file] = np.load(os.path.join(self.path, file), mmap_mode='r')
    return self._files[file]

  @property
  def architectures(self) -> list[str]:
    return list(self.layouts)

  def layout(self, arch: str) -> Layout:
    return self.layouts[arch]

  def arch(self, name: str) -> models.Arch:
    return arch_from_json(self.manifest['architectures'][name])

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return tuple(self.manifest['input_shape'])

  def weights(self, arch: str) -> np.ndarray:
    """The memory-mapped weights file of `arch` (for a multi-part zoo, use `vectors`)."""
    files = [f for f in self.metadata['weights_file'].unique() if os.path.basename(f) == f'{arch}.npy']
    if not files:
      files = [f'weights/{arch}.npy']
    if len(files) > 1:
      raise ValueError(f'{arch} is spread over {len(files)} files of a multi-part zoo; use zoo.vectors(rows)')
    return self._memmap(files[0])

  def vectors(self, rows: pd.DataFrame | None = None) -> np.ndarray:
    """Weight vectors of the given metadata rows (default: all), which must share one architecture."""
    rows = self.metadata if rows is None else rows
    archs = rows['arch'].unique() if 'arch' in rows else [None]
    if len(archs) != 1:
      raise ValueError(f'rows span architectures {list(archs)}; select one (metadata.arch == ...)')
    files, row_index = rows['weights_file'].to_numpy(), rows['weights_row'].to_numpy()
    out = None
    for file in pd.unique(files):
      mask = files == file
      block = self._memmap(file)[row_index[mask]]
      if out is None:
        out = np.empty((len(rows), block.shape[1]), np.float32)
      out[mask] = block
    return out if out is not None else np.empty((0, 0), np.float32)

  def unflatten(self, vectors, arch: str | None = None):
    if arch is None:
      if len(self.layouts) != 1:
        raise ValueError(f'zoo has several architectures {self.architectures}; name one')
      arch = self.architectures[0]
    return self.layouts[arch].unflatten(vectors)

  def __len__(self) -> int:
    return len(self.metadata)

  def __repr__(self) -> str:
    return (f'Zoo({self.path!r}: {len(self)} snapshots of {self.metadata["member_id"].nunique()} members, '
            f'architectures {self.architectures})')


def _read_part(path: str):
  """manifest, metadata and layouts of one single-process zoo directory, with errors naming the file."""
  manifest_file = os.path.join(path, 'manifest.json')
  if not os.path.exists(manifest_file):
    raise ZooError(f'{manifest_file}: not found; is {path!r} a popnet zoo (or a workdir holding zoo/)?')
  try:
    with open(manifest_file) as f:
      manifest = json.load(f)
  except json.JSONDecodeError as e:
    raise ZooError(f'{manifest_file}: corrupted JSON ({e})') from e
  meta_file = os.path.join(path, 'metadata.csv')
  if os.path.exists(meta_file):
    try:
      metadata = read_metadata(meta_file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
      raise ZooError(f'{meta_file}: cannot be parsed ({e})') from e
  else:
    metadata = pd.DataFrame(columns=['member_id', 'snapshot', 'weights_file', 'weights_row'])
  layouts = {}
  for name in manifest.get('architectures', {}):
    file = os.path.join(path, 'layouts', f'{name}.json')
    try:
      layouts[name] = Layout.load(file)
    except (OSError, ValueError, KeyError) as e:
      raise ZooError(f'{file}: missing or invalid layout ({e})') from e
  return manifest, metadata, layouts


if __name__ == '__main__':  # `python -m popnet.zoo export|import ...`: the interchange CLI (popnet.interop)
  import sys

  from popnet import interop
  sys.exit(interop.main())
