"""ZooWriter: creates a zoo, or reopens it on resume, and commits snapshots into it.

Write order (a reader never sees a half-written snapshot): weight rows are written into the preallocated file
and fsynced, then metadata.csv, carrying each row's crc32, is replaced atomically. A row is part of the zoo only
once metadata lists it. Every other file a reader may see (manifest, layouts, evaluation subsets) is replaced
atomically too, and every sealed one through the seal (popnet.zoo.seal: the manifest records a file's new
sha256 before the file is replaced, so a kill at any point leaves a zoo whose seal holds).

On resume the writer trusts nothing it has not checked, and writes nothing into a zoo it finds damaged: the
seal must hold over the manifest, metadata, layouts and evaluation subsets (an unsealed zoo of an older popnet
is refused until `python -m popnet.zoo sign` seals it), each layout must be the one the run's architecture
gives, each weights file must have exactly its expected size (a truncated file is refused, never zero-filled),
the metadata's row mapping must hold and every committed row must carry its checksum and match it. A weights file that was deleted is recreated, and the rows metadata listed in it are
dropped, so the caller writes them again.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any, Iterable

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet.zoo import integrity
from popnet.zoo import networks, seal
from popnet import files
from popnet.files import atomic_write_bytes
from popnet.layout import Layout
from popnet.zoo.names import inside, safe_name
from popnet.zoo.schema import (CHECKSUM_COLUMN, FORMAT_VERSION, LAYOUTS_DIR, MANIFEST_FILE, METADATA_FILE, ROW_RULE,
                               WEIGHTS_DIR, ZooError, arch_to_json, atomic_write_text, layout_file, read_metadata,
                               row_checksums, weights_file)
from popnet.zoo.storage import WeightsFile

RUN_RECORD_KEYS = ('timings', 'summary')  # what a run that wrote nothing keeps from the previous manifest


def remove_stale_temp_files(path: str) -> list[str]:
  """Removes the temp files (`<file>.tmp-<pid>...`) interrupted atomic writes left in the zoo; the caller holds
  the zoo's lock (a training workdir's, or an import's), so no other writer is using them. Returns them."""
  return files.remove_temp_files(path, os.path.join(path, LAYOUTS_DIR), os.path.join(path, WEIGHTS_DIR),
                                 os.path.join(path, networks.EVALUATION_DIR))


def previous_zoo(path: str) -> tuple[dict[str, Any], dict[str, bytes], dict[str, str]]:
  """(manifest, metadata and layout bytes, sha256 of every sealed file) of the zoo already at `path` (empty when
  there is none), after checking all of it against its seal: resume writes nothing into a zoo it finds damaged or
  unsealed (ZooError, one line naming the file and what recovers)."""
  if not os.path.lexists(os.path.join(path, MANIFEST_FILE)):
    if os.path.lexists(os.path.join(path, METADATA_FILE)):
      raise ZooError(f'{os.path.join(path, METADATA_FILE)}: a zoo\'s metadata without its {MANIFEST_FILE}; resume '
                     f'writes nothing into it: restore the manifest, or rerun with --overwrite')
    return {}, {}, {}
  advice = (f'; resume writes nothing into a damaged zoo: restore the damaged file, or rerun with --overwrite '
            f'to train {path} afresh')
  try:
    previous, contents, digests = seal.read_zoo_files(path)
  except ZooError as e:
    raise ZooError(f'{e}{advice}') from e
  if not seal.is_sealed(previous) and METADATA_FILE in contents:
    raise ZooError(f'{path}: written by popnet before zoos were sealed, so its metadata and layouts cannot '
                   f'be checked and resume writes nothing into it; once you have checked it, seal it '
                   f'({seal.SIGN_COMMAND} {path}) and rerun, or rerun with --overwrite')
  return previous, contents, digests


def check_resumable(path: str) -> None:
  """What resuming into the zoo at `path` checks without the run's member table, reading only: its seal
  (previous_zoo), each weights file its metadata lists against its own header (size: no byte cut or appended),
  and every committed row against its checksum. popnet.train runs it before it plans or prints anything; the
  ZooWriter checks the rest (the shapes the run's members give) when it opens the zoo."""
  previous, contents, _ = previous_zoo(path)
  if METADATA_FILE not in contents:
    return
  metadata = read_metadata(io.BytesIO(contents[METADATA_FILE]), previous.get('string_columns', ()))
  meta_file, opened = os.path.join(path, METADATA_FILE), {}
  if len(metadata) and 'weights_file' not in metadata:
    raise ZooError(f'{meta_file}: has no weights_file column; rerun with --overwrite')
  try:
    for file in metadata['weights_file'].unique():
      full = inside(path, str(file), meta_file)
      if os.path.lexists(full):  # a deleted file: the writer drops its rows, to be written again
        opened[file] = WeightsFile.open(full, None, recover_advice(path))
    check_rows(metadata[metadata['weights_file'].isin(list(opened))], opened, path)
  finally:
    for weights in opened.values():
      weights.close()


def recover_advice(path: str) -> str:
  return (f'restore it from a copy, or rerun with --overwrite to train {path} afresh (a file that does not match '
          f'its metadata is never extended; deleting it loses the rows older than the checkpoints kept, which no '
          f'rerun can regenerate)')


def check_rows(metadata: pd.DataFrame, by_file: dict[str, WeightsFile], path: str) -> None:
  """Every committed row carries its checksum and matches it (a missing checksum is damage: it is never computed
  over bytes that may be damaged)."""
  meta_file = os.path.join(path, METADATA_FILE)
  missing = metadata[CHECKSUM_COLUMN].isna() if CHECKSUM_COLUMN in metadata else None
  if missing is None or missing.any():
    raise ZooError(f'{meta_file}: {"no" if missing is None else int(missing.sum())} rows have their '
                   f'{CHECKSUM_COLUMN}; every committed row must carry one (a missing one is damage); rerun with '
                   f'--overwrite')
  bad, _ = integrity.checksum_mismatches(metadata, lambda file, rows: by_file[file].read_rows(rows))
  if len(bad):
    raise ZooError(integrity.describe_mismatches(bad, meta_file) + '; resume writes nothing into a damaged zoo: '
                   f'rerun with --overwrite to train {path} afresh')


class ZooWriter:
  """Creates (or reopens, on resume) the zoo at `path` and writes snapshots into it.

  row_rule=True declares that rows follow popnet.zoo.snapshot_row (manifest['row_rule']); Zoo.open then checks
  the rule. manifest: the caller's fields (config, seeds, 'snapshot_epochs', 'members', ...)."""

  def __init__(self, path: str, archs: dict[str, arch_lib.Arch], input_shape, rows_per_arch: dict[str, int],
               manifest: dict[str, Any], row_rule: bool = False):
    self.path = path
    self.rows_written = 0
    self.dropped: list[tuple[int, int]] = []  # (member_id, snapshot) forgotten because their file was gone
    try:
      os.makedirs(os.path.join(path, LAYOUTS_DIR), exist_ok=True)
      os.makedirs(os.path.join(path, WEIGHTS_DIR), exist_ok=True)
    except OSError as e:
      raise ZooError(f'{path}: cannot be created as a zoo directory ({e.strerror or e})') from e
    self.layouts = {safe_name(name, 'architecture', path): arch.layout(input_shape) for name, arch in archs.items()}
    self.stale = remove_stale_temp_files(path)
    self._pending: dict[str, str | None] = {}  # files being replaced: their previous sha256 (popnet.zoo.seal)
    self.previous, contents, self._digests = previous_zoo(path)
    self.manifest = dict(manifest, format_version=FORMAT_VERSION, complete=False,
                         architectures={n: arch_to_json(a) for n, a in archs.items()}, input_shape=list(input_shape))
    if row_rule:
      self.manifest['row_rule'] = ROW_RULE
    self.manifest['processes'] = list(self.previous.get('processes', []))  # every earlier process that trained
    self.manifest.update({k: self.previous[k] for k in ('complete',) + RUN_RECORD_KEYS if k in self.previous})
    self._own_process: int | None = None  # this process's position in manifest['processes'], once it reports
    self._check_layouts_unchanged(contents)
    strings = self.manifest.get('string_columns', ())
    self.metadata = read_metadata(io.BytesIO(contents[METADATA_FILE]), strings) if METADATA_FILE in contents else None
    self.files = self._open_files(rows_per_arch)
    self._check_committed_rows()
    for name, layout in self.layouts.items():
      self._write_if_changed(layout_file(name), json.dumps(layout.to_json(), indent=1))
    self._store_manifest()

  # --- opening ------------------------------------------------------------------------------------------------
  def _full(self, relative: str) -> str:
    return os.path.join(self.path, relative)

  def _check_layouts_unchanged(self, contents: dict[str, bytes]) -> None:
    """A zoo's existing layout must be the one this writer's architecture gives: its rows were cut by it."""
    for name, layout in self.layouts.items():
      relative = layout_file(name)
      if relative not in contents:
        continue
      try:
        recorded = Layout.from_json(json.loads(contents[relative].decode('utf-8')))
      except (ValueError, KeyError, TypeError) as e:
        raise ZooError(f'{self._full(relative)}: invalid layout ({e!r}); rerun with --overwrite') from e
      if recorded != layout:
        raise ZooError(f'{self._full(relative)}: the zoo\'s rows of {name!r} were written in another layout than '
                       f'the one this run\'s architecture gives; use another --workdir, or rerun with --overwrite')

  def _open_files(self, rows_per_arch: dict[str, int]) -> dict[str, WeightsFile]:
    files, recover = {}, recover_advice(self.path)
    for name, layout in self.layouts.items():
      full, shape = self._full(weights_file(name)), (rows_per_arch[name], layout.size)
      if os.path.exists(full):
        files[name] = WeightsFile.open(full, shape, recover)
      else:
        self._forget_rows_of(weights_file(name))
        files[name] = WeightsFile.create(full, shape)
    return files

  def _forget_rows_of(self, file: str) -> None:
    """The weights file is gone: its rows leave metadata (committed now, before a new file exists)."""
    if self.metadata is None or not (self.metadata['weights_file'] == file).any():
      return
    gone = self.metadata['weights_file'] == file
    self.dropped += list(zip(self.metadata.loc[gone, 'member_id'].tolist(),
                             self.metadata.loc[gone, 'snapshot'].tolist()))
    self.metadata = self.metadata[~gone].reset_index(drop=True)
    self.manifest['complete'] = False
    self._store_manifest()  # before the rows leave metadata: a reader never sees a complete zoo lacking rows
    self._commit(METADATA_FILE, self.metadata.to_csv(index=False).encode())

  def _check_committed_rows(self) -> None:
    """The row mapping holds and every committed row has its checksum and matches it (a missing checksum is
    damage: it is never computed over bytes that may be damaged)."""
    if self.metadata is None or not len(self.metadata):
      return
    meta_file = self._full(METADATA_FILE)
    unknown = sorted(set(self.metadata['weights_file']) - {weights_file(n) for n in self.files})
    if unknown:
      raise ZooError(f'{meta_file}: lists rows in {unknown}, which this run does not write; rerun with --overwrite')
    by_file = {weights_file(n): f for n, f in self.files.items()}
    integrity.check_row_mapping(self.metadata, self.manifest, {k: f.shape[0] for k, f in by_file.items()},
                                meta_file)
    check_rows(self.metadata, by_file, self.path)

  # --- writing ------------------------------------------------------------------------------------------------
  def written(self) -> set[tuple[int, int]]:
    """(member_id, snapshot) pairs already in the zoo."""
    if self.metadata is None:
      return set()
    return set(zip(self.metadata['member_id'].tolist(), self.metadata['snapshot'].tolist()))

  def missing(self, member_ids: Iterable[int], snapshots: int) -> list[tuple[int, int]]:
    """The (member_id, snapshot) pairs of these members not in the zoo yet, in order."""
    done = self.written()
    return [(int(m), k) for m in member_ids for k in range(snapshots) if (int(m), k) not in done]

  def write(self, arch: str, rows: np.ndarray, weights: np.ndarray, records: Iterable[dict[str, Any]],
            before_commit=None) -> None:
    """Writes weight rows, fsyncs them, then commits their metadata rows (with their crc32) atomically."""
    weights = np.asarray(weights, np.float32)
    self.write_rows(arch, rows, weights)
    if before_commit is not None:
      before_commit()
    new = pd.DataFrame(list(records))
    new[CHECKSUM_COLUMN] = row_checksums(weights)
    self.commit_rows(new)

  def write_rows(self, arch: str, rows: np.ndarray, weights: np.ndarray) -> None:
    """Writes and fsyncs weight rows; they are part of the zoo once commit_rows lists them in metadata."""
    if self.manifest.get('complete'):  # a reader must not see a complete zoo while rows change
      self.manifest['complete'] = False
      self._store_manifest()
    self.files[arch].write_rows(rows, np.asarray(weights, np.float32))

  def commit_rows(self, new: pd.DataFrame) -> None:
    """Commits metadata rows (each with its crc32) of weight rows written before, atomically."""
    table = new if self.metadata is None else pd.concat([self.metadata, new], ignore_index=True)
    table = table.drop_duplicates(['member_id', 'snapshot'], keep='last')
    table = table.sort_values(['weights_file', 'weights_row'], kind='stable').reset_index(drop=True)
    self._commit(METADATA_FILE, table.to_csv(index=False).encode(),
                 'the rows committed before are intact, rerun the same command to resume')
    self.metadata = table
    self.rows_written += len(new)

  def write_manifest(self, work_done: bool | None = None, **updates) -> dict[str, Any]:
    """Updates and atomically rewrites manifest.json; returns the manifest as written.

    work_done (default: whether this writer wrote any row) False keeps the previous run's timings and summary
    (RUN_RECORD_KEYS) instead of `updates`' values, so a rerun with nothing left to do keeps what the run that
    did the work recorded. complete=True is refused (ZooError naming the count) unless metadata holds
    members * snapshots rows, when the manifest says how many it should hold."""
    if work_done is None:
      work_done = self.rows_written > 0
    if not work_done:
      for key in RUN_RECORD_KEYS:
        if key in self.previous:
          updates[key] = self.previous[key]
    if updates.get('complete'):
      self._check_complete()
    self.manifest.update(updates)
    self._store_manifest()
    return dict(self.manifest)

  def record_process(self, entry: dict[str, Any]) -> None:
    """Adds (first call) or replaces (later calls) this process's entry in manifest['processes'] and rewrites the
    manifest, so a process that is killed still leaves what it had done by its last report."""
    processes = self.manifest['processes']
    if self._own_process is None:
      self._own_process = len(processes)
      processes.append(entry)
    else:
      processes[self._own_process] = entry
    self._store_manifest()

  def _check_complete(self) -> None:
    if 'snapshot_epochs' not in self.manifest or 'members' not in self.manifest:
      return
    expected = self.manifest['members'] * len(self.manifest['snapshot_epochs'])
    have = 0 if self.metadata is None else len(self.metadata)
    if have != expected:
      raise ZooError(f'{self._full(METADATA_FILE)}: holds {have} of the {expected} rows of the complete zoo '
                     f'({self.manifest["members"]} members x {len(self.manifest["snapshot_epochs"])} snapshots); '
                     f'the zoo stays marked incomplete')

  def write_evaluation_sets(self, zoo_root: str, dataset: str, n_train_split: int,
                            segments: list[np.ndarray]) -> None:
    """Records the evaluation subsets of `dataset` (networks.evaluation_bytes) under zoo_root, this zoo or the
    parent directory of a multi-process zoo's parts, sealed by this writer."""
    self.write_evaluation_bytes(zoo_root, dataset, networks.evaluation_bytes(n_train_split, segments))

  def write_evaluation_bytes(self, zoo_root: str, dataset: str, data: bytes) -> None:
    """Records evaluation subsets already encoded (networks.evaluation_bytes), sealed by this writer."""
    full = os.path.join(zoo_root, networks.evaluation_file(safe_name(dataset, 'dataset', self.path)))
    os.makedirs(os.path.dirname(full), exist_ok=True)
    self._commit(os.path.relpath(full, self.path), data)

  def _store_manifest(self) -> None:
    """Writes the manifest sealed over every file this writer committed (and those in flight, as `pending`)."""
    text = json.dumps(seal.sealed(self.manifest, self._digests, self._pending), indent=1)
    self._write_if_changed(MANIFEST_FILE, text, sealed=False)
    self._pending = {}

  def _write_if_changed(self, relative: str, text: str, sealed: bool = True) -> None:
    """Atomically replaces the file unless it already holds exactly `text` (readers never see a partial file);
    a sealed file goes through the seal (_commit)."""
    if sealed:
      self._commit(relative, text.encode())
      return
    full = self._full(relative)
    try:
      with open(full, 'rb') as f:
        if f.read() == text.encode():
          return
    except OSError:
      pass
    try:
      atomic_write_text(full, text)
    except OSError as e:
      raise ZooError(f'{full}: cannot be written ({e.strerror or e})') from e

  def _commit(self, relative: str, data: bytes, after_failure: str = '') -> None:
    """Replaces a sealed file: the manifest first records its new sha256 (its previous one as pending), then the
    file is replaced atomically, so a kill at any point leaves a zoo whose seal holds (popnet.zoo.seal)."""
    new, previous = seal.digest(data), dict(self._digests)
    if self._digests.get(relative) == new and os.path.lexists(self._full(relative)):
      return
    self._pending[relative] = self._digests.get(relative)
    self._digests[relative] = new
    try:
      self._store_manifest()
      atomic_write_bytes(self._full(relative), data)
    except (OSError, ZooError) as e:
      self._digests, self._pending = previous, {}
      if isinstance(e, ZooError):
        raise
      raise ZooError(f'{self._full(relative)}: cannot be written ({e.strerror or e})'
                     + (f'; {after_failure}' if after_failure else '')) from e

  def close(self) -> None:
    for f in self.files.values():
      f.close()
