"""Zoo: a zoo opened for reading, checked on open (files, shapes, row mapping) and verifiable in full."""
from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet.layout import Layout
from popnet.zoo import integrity, networks
from popnet.zoo import seal
from popnet.zoo.names import check_regular, inside
from popnet.zoo.schema import CHECKSUM_COLUMN
from popnet.zoo.schema import (MANIFEST_FILE, METADATA_FILE, METRIC_COLUMNS, SHARDS_DIR, ZooError,
                               arch_from_json, layout_file, read_metadata, weights_file)


WEIGHTS_FILE = re.compile(r'((part-\d{5}-of-\d{5}|shards/shard-\d{5}-of-\d{5}/zoo)/)?weights/'
                          r'[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}\.npy')


class Zoo:
  """A zoo opened for reading: `Zoo.open(dir)`.

  zoo.metadata             pandas DataFrame, one row per snapshot
  zoo.weights(arch)        read-only np.memmap [rows, values] of one architecture
  zoo.vectors(rows)        weight vectors [n, values] of metadata rows (one architecture), each checked
                           against its recorded crc32 (ZooError on damage; verify=False skips the check)
  zoo.layout(arch)         the Layout; zoo.unflatten(vectors, arch) -> {'params', 'batch_stats'}
  zoo.arch(name)           the popnet.arch.Arch, to run the network with popnet.models.apply
  zoo.verify(rows)         reads every row (default: all) and compares it with its recorded crc32
  zoo.select(**filters)    metadata rows by hyper-parameters, epoch ('last'), status, ...
  zoo.predict(rows, x)     logits of the rows' networks on raw images; zoo.evaluate(rows, 'test') accuracies
  zoo.render(rows)         the images an INR zoo's rows encode, [n, H, W, C] (popnet/zoo/render.py)

  A zoo written by several processes (multi-host runs) is a directory of parts `part-<i>-of-<n>/`, each a zoo of
  its own members; `Zoo.open` on the parent sees one zoo, with `weights_file` paths relative to the parent. A
  sharded workdir (`--shard k/n`: `shards/shard-<k>-of-<n>/zoo/`) opens as one zoo once every shard is complete
  and all of them agree (popnet/zoo/sharded.py).
  """

  def __init__(self, path: str, manifest: dict[str, Any], metadata: pd.DataFrame, layouts: dict[str, Layout]):
    self.path, self.manifest, self.metadata, self.layouts = path, manifest, metadata, layouts
    self.sealed = seal.is_sealed(manifest)  # False for zoos written before seals existed (popnet.zoo.seal)
    self.evaluation_dir = path  # where evaluation/<dataset>.npz is (a sharded zoo: its first shard's zoo)
    self._files: dict[str, np.ndarray] = {}

  @classmethod
  def open(cls, path: str, check_seal: bool = True) -> 'Zoo':
    """Opens and checks the zoo at `path` (or the zoo/ of a training workdir): every file against the zoo's
    seal, the layouts against their architectures, the files' shapes, the row mapping (ZooError naming the file).
    check_seal=False is for sealing a zoo (popnet.zoo.signing) only."""
    path = zoo_directory(path)
    parts = sorted(p for p in os.listdir(path) if p.startswith('part-')) if os.path.isdir(path) else []
    if parts and not os.path.exists(os.path.join(path, MANIFEST_FILE)):
      return cls._open_parts(path, parts, check_seal)
    if os.path.isdir(os.path.join(path, SHARDS_DIR)) and not os.path.exists(os.path.join(path, MANIFEST_FILE)):
      return cls._open_shards(path)
    manifest, metadata, layouts = read_part(path, check_seal)
    zoo = cls(path, manifest, metadata, layouts)
    zoo.check()
    return zoo

  @classmethod
  def _open_parts(cls, path: str, parts: list[str], check_seal: bool = True) -> 'Zoo':
    manifests, tables, layouts = [], [], {}
    for part in parts:
      manifest, metadata, part_layouts = read_part(os.path.join(path, part), check_seal)
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
    if check_seal:
      _check_shared_evaluation(path, manifests)
    metadata = pd.concat(tables, ignore_index=True).sort_values(['member_id', 'snapshot'], kind='stable')
    zoo = cls(path, manifest, metadata.reset_index(drop=True), layouts)
    zoo.sealed = all(seal.is_sealed(m) for m in manifests)
    zoo.check()
    return zoo

  @classmethod
  def _open_shards(cls, path: str) -> 'Zoo':
    from popnet.zoo import sharded
    parts = sharded.read_parts(path)
    manifest, metadata, layouts = sharded.combined(parts)
    zoo = cls(path, manifest, metadata, layouts)
    zoo.evaluation_dir = parts[0].path
    zoo.check()
    return zoo

  def check(self) -> None:
    """Verifies that every weights file matches its layout and that metadata maps each snapshot to its own row
    (within bounds, unique, and following the row rule where the manifest declares it)."""
    meta_file = os.path.join(self.path, METADATA_FILE)
    missing = [c for c in ('member_id', 'snapshot', 'weights_file', 'weights_row') if c not in self.metadata]
    if missing:
      raise ZooError(f'{meta_file}: missing columns {missing}')
    present = [c for c in ('member_id', 'snapshot', 'weights_row', 'status') if c in self.metadata]
    metrics = [c for c in METRIC_COLUMNS if c in self.metadata]
    ok = self.metadata['status'] == 'ok' if 'status' in self.metadata else True
    # a metric may be NaN only on a row that says why (diverged runs of imported zoos)
    if self.metadata[present].isna().any().any() or (self.metadata[metrics].isna().any(axis=1) & ok).any():
      raise ZooError(f'{meta_file}: rows with missing values (a truncated or hand-edited file)')
    if self.sealed:
      _check_checksums_present(self.metadata, meta_file)
    self._check_layouts()
    file_rows = {}
    for file in self.metadata['weights_file'].unique():
      file_rows[file] = self._check_file(file)
    if self.metadata.duplicated(['member_id', 'snapshot']).any():
      raise ZooError(f'{meta_file}: duplicated (member_id, snapshot) rows')
    integrity.check_row_mapping(self.metadata, self.manifest, file_rows, meta_file)
    if self.manifest.get('complete') and 'snapshot_epochs' in self.manifest:
      expected = self.manifest['members'] * len(self.manifest['snapshot_epochs'])
      if len(self.metadata) != expected:
        raise ZooError(f'{meta_file}: holds {len(self.metadata)} rows; the manifest says the complete zoo has '
                       f'{expected}')

  def _check_layouts(self) -> None:
    """Each layout is the one its architecture (as the manifest records it) gives at the zoo's input shape:
    same tensors, shapes, order and total length, so a vector is cut where the network expects it."""
    for name, layout in self.layouts.items():
      where = os.path.join(self.path, layout_file(name))
      if self.manifest.get('architectures', {}).get(name, {}).get('kind') == 'module':
        continue  # a user's module: its layout is sealed, and compared with the module when predict rebuilds it
      try:
        expected = self.arch(name).layout(self.input_shape)
      except (KeyError, TypeError, ValueError) as e:
        raise ZooError(f'{os.path.join(self.path, MANIFEST_FILE)}: the architecture {name!r} or input_shape is '
                       f'malformed ({e!r})') from e
      if layout != expected:
        raise ZooError(f'{where}: does not match the architecture {name!r} the manifest records '
                       f'({_first_difference(layout, expected)}); the rows would be cut in the wrong places')

  def _check_file(self, file: str) -> int:
    """The number of rows of `file`, after checking it against its architecture's layout."""
    meta_file = os.path.join(self.path, METADATA_FILE)
    if not isinstance(file, str) or not WEIGHTS_FILE.fullmatch(file):
      raise ZooError(f'{meta_file}: weights_file {file!r} is not a weights file of a zoo '
                     f'([part-<i>-of-<n>/]weights/<architecture>.npy)')
    arch = os.path.splitext(os.path.basename(file))[0]
    layout = self.layouts.get(arch)
    full = inside(self.path, file, meta_file)
    check_regular(full)
    try:
      weights = self._memmap(file)
    except (OSError, ValueError) as e:
      raise ZooError(f'{full}: cannot be memory-mapped ({e}); the file is truncated or corrupted') from e
    if layout is None or weights.ndim != 2 or weights.shape[1] != layout.size or weights.dtype != np.float32:
      raise ZooError(f'{full}: shape {weights.shape} {weights.dtype} does not match the layout of {arch!r}')
    size, expected = os.path.getsize(full), weights.offset + weights.nbytes
    if size != expected:  # bytes appended after the rows its header declares (resume refuses the same file)
      raise ZooError(f'{full}: {size:,} bytes, but its header\'s {weights.shape[0]} rows of {weights.shape[1]} '
                     f'float32 values need {expected:,}: the file is damaged')
    return weights.shape[0]

  def verify(self, rows: pd.DataFrame | None = None) -> dict[str, int]:
    """Reads the given metadata rows (default: all) and compares each with the crc32 recorded when it was
    written. Returns {'rows': n, 'checksummed': k} (k = 0 for zoos written without checksums: imports of other
    formats, older zoos); raises ZooError naming the file, row, member and snapshot of the first damaged row."""
    rows = self.metadata if rows is None else rows
    bad, checked = integrity.checksum_mismatches(rows, lambda file, index: self._memmap(file)[index])
    if len(bad):
      meta_file = os.path.join(self.path, METADATA_FILE)
      raise seal.DamagedZoo([integrity.describe_mismatches(bad.iloc[[i]], meta_file) for i in range(len(bad))])
    return {'rows': len(rows), 'checksummed': checked}

  def add_column(self, name: str, values) -> 'Zoo':
    """Adds a metadata column of your own (one value per row, in `zoo.metadata`'s order) and seals the zoo again;
    returns the zoo reopened. The only way to edit a sealed zoo's metadata that keeps it verifiable."""
    from popnet.zoo import signing
    signing.add_column(self.path, name, values)
    return Zoo.open(self.path)

  def _memmap(self, file: str) -> np.ndarray:
    if file not in self._files:
      self._files[file] = np.load(os.path.join(self.path, file), mmap_mode='r')
    return self._files[file]

  @property
  def architectures(self) -> list[str]:
    return list(self.layouts)

  def layout(self, arch: str) -> Layout:
    return self.layouts[arch]

  def arch(self, name: str) -> arch_lib.Arch:
    return arch_from_json(self.manifest['architectures'][name])

  @property
  def input_shape(self) -> tuple[int, int, int]:
    return tuple(self.manifest['input_shape'])

  def weights(self, arch: str) -> np.ndarray:
    """The memory-mapped weights file of `arch` (for a multi-part zoo, use `vectors`)."""
    files = [f for f in self.metadata['weights_file'].unique() if os.path.basename(f) == f'{arch}.npy']
    if not files:
      files = [weights_file(arch)]
    if len(files) > 1:
      raise ValueError(f'{arch} is spread over {len(files)} files of a multi-part zoo; use zoo.vectors(rows)')
    return self._memmap(files[0])

  def vectors(self, rows: pd.DataFrame | None = None, verify: bool = True, order: str = 'popnet') -> np.ndarray:
    """Weight vectors of the given metadata rows (default: all), which must share one architecture. With
    `verify`, every row read is compared with its recorded crc32 first (ZooError on damage), so damaged weights
    never reach a caller; rows without a checksum (imports of other formats, older zoos) are read as they are.
    order='nws': each tensor's values as NWS's exporter writes them (each output unit's weights contiguous;
    popnet/layout.py `Layout.columns`)."""
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
    if out is None:
      return np.empty((0, 0), np.float32)
    if verify:
      integrity.check_read_rows(rows, out, os.path.join(self.path, METADATA_FILE))
    if order != 'popnet':
      layout = self.layouts[str(archs[0])] if archs[0] is not None else next(iter(self.layouts.values()))
      out = out[:, layout.columns(order)]
    return out

  def unflatten(self, vectors, arch: str | None = None):
    if arch is None:
      if len(self.layouts) != 1:
        raise ValueError(f'zoo has several architectures {self.architectures}; name one')
      arch = self.architectures[0]
    return self.layouts[arch].unflatten(vectors)

  def select(self, **filters) -> pd.DataFrame:
    """Metadata rows matching every filter (popnet/zoo/networks.py select), e.g.
    zoo.select(activation=['relu', 'elu'], epoch='last', status='ok', test_accuracy=lambda a: a > 0.8)."""
    return networks.select(self.metadata, **filters)

  def predict(self, rows: pd.DataFrame, images, batch_size: int = 1000) -> np.ndarray:
    """Logits [len(rows), N, classes] of the rows' networks on raw uint8 (or [0, 1] float) images."""
    return networks.predict(self, rows, images, batch_size)

  def evaluate(self, rows: pd.DataFrame, split: str = 'test', data_dir: str | None = None) -> np.ndarray:
    """Each row's accuracy on the exact `split` subset the trainer evaluated (its recorded accuracy)."""
    return networks.evaluate(self, rows, split, data_dir)

  def render(self, rows: pd.DataFrame, scale: str = 'pixels') -> np.ndarray:
    """[len(rows), H, W, C] float32 images the rows' SIRENs encode, at the zoo's coordinates and pixel order:
    scale 'pixels' on the source images' 0..255 scale, 'family' the SIREN outputs as fitted (DWS [0, 1], NFN
    [-1, 1]); unclipped. Imports jax (popnet/zoo/render.py)."""
    from popnet.zoo.render import render
    return render(self, rows, scale)

  def __len__(self) -> int:
    return len(self.metadata)

  def __repr__(self) -> str:
    return (f'Zoo({self.path!r}: {len(self)} snapshots of {self.metadata["member_id"].nunique()} members, '
            f'architectures {self.architectures})')


def zoo_directory(path: str) -> str:
  """The zoo itself: `path`, or the zoo/ directory of the training workdir `path`."""
  return os.path.join(path, 'zoo') if os.path.isdir(os.path.join(path, 'zoo')) else path


def _check_shared_evaluation(path: str, manifests: list[dict[str, Any]]) -> None:
  """The evaluation subsets beside the parts of a multi-process zoo are sealed by a part (process 0's)."""
  listed = {k for m in manifests for k in m.get(seal.SEAL_KEY, {}).get('files', {})}
  unlisted = sorted(seal.evaluation_files(path, '../') - listed)
  if unlisted and all(seal.is_sealed(m) for m in manifests):
    raise seal.DamagedZoo([f'{os.path.join(path, f[len("../"):])}: not sealed by any part of this zoo '
                           f'(added or renamed after it was sealed)' for f in unlisted])


def _check_checksums_present(metadata: pd.DataFrame, meta_file: str) -> None:
  """Every row of a sealed zoo carries its crc32: a missing one is damage, never filled in over existing bytes."""
  if CHECKSUM_COLUMN not in metadata:
    if not len(metadata):  # a zoo killed before its first snapshot was committed: no rows yet
      return
    raise ZooError(f'{meta_file}: has no {CHECKSUM_COLUMN} column; every row of a sealed zoo carries one')
  missing = metadata[metadata[CHECKSUM_COLUMN].isna()]
  if len(missing):
    row = missing.iloc[0]
    raise ZooError(f'{meta_file}: member {row.member_id} snapshot {row.snapshot} has no {CHECKSUM_COLUMN} '
                   f'({len(missing)} rows lack one); every row of a sealed zoo carries one')


def _first_difference(layout: Layout, expected: Layout) -> str:
  for i, (got, want) in enumerate(zip(layout.entries, expected.entries)):
    if got != want:
      return f'entry {i} is {got.path} {got.shape} at {got.start}, the architecture gives {want.path} {want.shape}'
  return f'{len(layout.entries)} entries ({layout.size} values), the architecture gives ' \
         f'{len(expected.entries)} ({expected.size} values)'


def read_part(path: str, check_seal: bool = True):
  """manifest, metadata and layouts of one single-process zoo directory, every file checked against the zoo's
  seal (popnet.zoo.seal.read_zoo_files); check_seal=False only to seal a zoo (popnet.zoo.signing)."""
  manifest, contents, _ = seal.read_zoo_files(path, check_seal)
  names = list(manifest.get('architectures', {}))
  return manifest, _parse_metadata(path, manifest, contents), _parse_layouts(path, names, contents)


def _parse_metadata(path: str, manifest: dict[str, Any], contents: dict[str, bytes]) -> pd.DataFrame:
  if METADATA_FILE not in contents:
    return pd.DataFrame(columns=['member_id', 'snapshot', 'weights_file', 'weights_row'])
  try:
    return read_metadata(io.BytesIO(contents[METADATA_FILE]), manifest.get('string_columns', ()))
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
    raise ZooError(f'{os.path.join(path, METADATA_FILE)}: cannot be parsed ({e})') from e


def _parse_layouts(path: str, names: list[str], contents: dict[str, bytes]) -> dict[str, Layout]:
  layouts = {}
  for name in names:
    relative = layout_file(name)
    try:
      layouts[name] = Layout.from_json(json.loads(contents[relative].decode('utf-8')))
    except (KeyError, ValueError, TypeError) as e:
      raise ZooError(f'{os.path.join(path, relative)}: missing or invalid layout ({e!r})') from e
  return layouts
