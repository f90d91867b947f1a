"""ZooWriter: creates a zoo, or reopens it on resume, and commits snapshots into it.

Write order (a reader never sees a half-written snapshot): weight rows are written into the preallocated file
and fsynced, then metadata.csv, carrying each row's crc32, is replaced atomically. A row is part of the zoo only
once metadata lists it. Every other file a reader may see (manifest, layouts) is replaced atomically too.

On resume the writer trusts nothing it has not checked: each weights file must have exactly its expected size
(a truncated file is refused, never zero-filled), the metadata's row mapping must hold and every committed row
must match its checksum. A weights file that was deleted is recreated, and the rows metadata listed in it are
dropped, so the caller writes them again.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet.zoo import integrity
from popnet.zoo.schema import (CHECKSUM_COLUMN, FORMAT_VERSION, LAYOUTS_DIR, MANIFEST_FILE, METADATA_FILE, ROW_RULE,
                               WEIGHTS_DIR, ZooError, arch_to_json, atomic_write_text, layout_file, read_metadata,
                               row_checksums, weights_file)
from popnet.zoo.storage import WeightsFile

RUN_RECORD_KEYS = ('timings', 'summary')  # what a run that wrote nothing keeps from the previous manifest


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
      raise ZooError(f'{path}: cannot create the zoo directory ({e.strerror or e})') from e
    self.layouts = {name: arch.layout(input_shape) for name, arch in archs.items()}
    for name, layout in self.layouts.items():
      self._write_if_changed(layout_file(name), json.dumps(layout.to_json(), indent=1))
    self.previous = self._previous_manifest()
    self.manifest = dict(manifest, format_version=FORMAT_VERSION, complete=False,
                         architectures={n: arch_to_json(a) for n, a in archs.items()}, input_shape=list(input_shape))
    if row_rule:
      self.manifest['row_rule'] = ROW_RULE
    self.manifest['processes'] = list(self.previous.get('processes', []))  # every earlier process that trained
    self.manifest.update({k: self.previous[k] for k in ('complete',) + RUN_RECORD_KEYS if k in self.previous})
    self._own_process: int | None = None  # this process's position in manifest['processes'], once it reports
    meta_file = self._full(METADATA_FILE)
    strings = self.manifest.get('string_columns', ())
    self.metadata = read_metadata(meta_file, strings) if os.path.exists(meta_file) else None
    self.files = self._open_files(rows_per_arch)
    self._check_committed_rows()
    self._store_manifest()

  # --- opening ------------------------------------------------------------------------------------------------
  def _full(self, relative: str) -> str:
    return os.path.join(self.path, relative)

  def _previous_manifest(self) -> dict[str, Any]:
    try:
      with open(self._full(MANIFEST_FILE)) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}  # none yet, or damaged: it is rewritten from the caller's fields

  def _open_files(self, rows_per_arch: dict[str, int]) -> dict[str, WeightsFile]:
    files = {}
    recover = (f'delete it to regenerate its rows, or rerun with --overwrite to start {self.path} afresh '
               f'(a file that does not match its metadata is never extended)')
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
    atomic_write_text(self._full(METADATA_FILE), self.metadata.to_csv(index=False))

  def _check_committed_rows(self) -> None:
    """The row mapping holds and every committed row matches its checksum (rows of zoos written before
    checksums existed get theirs now, committed with the next write)."""
    if self.metadata is None or not len(self.metadata):
      return
    meta_file = self._full(METADATA_FILE)
    unknown = sorted(set(self.metadata['weights_file']) - {weights_file(n) for n in self.files})
    if unknown:
      raise ZooError(f'{meta_file}: lists rows in {unknown}, which this run does not write; rerun with --overwrite')
    by_file = {weights_file(n): f for n, f in self.files.items()}
    integrity.check_row_mapping(self.metadata, self.manifest, {k: f.shape[0] for k, f in by_file.items()},
                                meta_file)
    bad, _ = integrity.checksum_mismatches(self.metadata, lambda file, rows: by_file[file].read_rows(rows))
    if len(bad):
      raise ZooError(integrity.describe_mismatches(bad, meta_file) + f'; delete {bad.iloc[0].weights_file} '
                     f'under {self.path} to regenerate its rows, or rerun with --overwrite')
    missing = self.metadata[CHECKSUM_COLUMN].isna() if CHECKSUM_COLUMN in self.metadata else None
    if missing is None or missing.any():
      rows = self.metadata if missing is None else self.metadata[missing]
      sums = [row_checksums(by_file[f].read_rows(g['weights_row'].to_numpy())) for f, g in
              rows.groupby('weights_file', sort=False)]
      index = np.concatenate([g.index for _, g in rows.groupby('weights_file', sort=False)])
      self.metadata.loc[index, CHECKSUM_COLUMN] = np.concatenate(sums)
      self.metadata[CHECKSUM_COLUMN] = self.metadata[CHECKSUM_COLUMN].astype(np.int64)

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
    if self.manifest.get('complete'):  # a reader must not see a complete zoo while rows change
      self.manifest['complete'] = False
      self._store_manifest()
    self.files[arch].write_rows(rows, weights)
    if before_commit is not None:
      before_commit()
    new = pd.DataFrame(list(records))
    new[CHECKSUM_COLUMN] = row_checksums(weights)
    table = new if self.metadata is None else pd.concat([self.metadata, new], ignore_index=True)
    table = table.drop_duplicates(['member_id', 'snapshot'], keep='last')
    table = table.sort_values(['weights_file', 'weights_row'], kind='stable').reset_index(drop=True)
    try:
      atomic_write_text(self._full(METADATA_FILE), table.to_csv(index=False))
    except OSError as e:
      raise ZooError(f'{self._full(METADATA_FILE)}: cannot be written ({e.strerror or e}); the rows committed '
                     f'before are intact, rerun the same command to resume') from e
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

  def _store_manifest(self) -> None:
    self._write_if_changed(MANIFEST_FILE, json.dumps(self.manifest, indent=1, default=str))

  def _write_if_changed(self, relative: str, text: str) -> None:
    """Atomically replaces the file unless it already holds exactly `text` (readers never see a partial file)."""
    full = self._full(relative)
    try:
      with open(full) as f:
        if f.read() == text:
          return
    except (OSError, UnicodeDecodeError):
      pass
    try:
      atomic_write_text(full, text)
    except OSError as e:
      raise ZooError(f'{full}: cannot be written ({e.strerror or e})') from e

  def close(self) -> None:
    for f in self.files.values():
      f.close()
