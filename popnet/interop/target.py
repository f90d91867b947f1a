"""The directory an import or export writes: held by one process at a time (popnet.workdir's lock), and never
one that holds something else unless the user said to replace it.

    with output_directory(out, kind='import', same=manifest_of_this_import, overwrite=False):
      ...   # write only under `out`

An import may resume its own earlier, interrupted import into `out` (same source format and source name); it
refuses a directory holding a trained zoo or another import, unless overwrite, which removes that zoo's files
first. An export refuses a popnet zoo as its target, and an earlier export unless overwrite.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil

from popnet.interop.common import InteropError
from popnet import files
from popnet.workdir import WorkdirError, WorkdirLock
from popnet.zoo import LAYOUTS_DIR, MANIFEST_FILE, METADATA_FILE, WEIGHTS_DIR
from popnet.zoo.seal import EVALUATION_DIR

ZOO_ENTRIES = (MANIFEST_FILE, METADATA_FILE, LAYOUTS_DIR, WEIGHTS_DIR, EVALUATION_DIR)


@contextlib.contextmanager
def output_directory(out: str, kind: str, overwrite: bool = False, same: dict | None = None):
  """Locks `out` for an import or export (kind) and checks what it holds (module docstring)."""
  if os.path.lexists(out) and not os.path.isdir(out):
    raise InteropError(f'{out}: is a file, not a directory; give --out a directory')
  holds_zoo = os.path.lexists(os.path.join(out, MANIFEST_FILE))
  if kind == 'export' and holds_zoo:
    raise InteropError(f'{out}: holds a popnet zoo; export into a new directory (an export never replaces a zoo)')
  try:
    lock = WorkdirLock(out).acquire()
  except WorkdirError as e:
    raise InteropError(str(e)) from e
  try:
    files.remove_temp_files(out)  # an earlier export's or import's writes a kill interrupted (we hold the lock)
    if kind == 'import' and holds_zoo and not _same_import(out, same):
      if not overwrite:
        raise InteropError(f'{out}: holds another zoo (a trained one, or an import of other files); give a new '
                           f'--out, or pass --overwrite to replace it')
      _remove_zoo(out)
    yield out
  finally:
    _remove_lock_file(lock)
    lock.release()


def _remove_lock_file(lock: WorkdirLock) -> None:
  """An export or zoo directory keeps no lock file once done (removed while still held)."""
  try:
    os.remove(lock.path)
  except OSError:
    pass


def _same_import(out: str, same: dict | None) -> bool:
  """Whether `out` holds an earlier import of the same files (its manifest's imported_from equals `same`)."""
  try:
    with open(os.path.join(out, MANIFEST_FILE), 'rb') as f:
      manifest = json.loads(f.read().decode('utf-8'))
  except (OSError, ValueError):
    return False
  return isinstance(manifest, dict) and same is not None and manifest.get('imported_from') == same \
      and 'config' not in manifest


def _remove_zoo(out: str) -> None:
  """The files of the zoo in `out` (nothing else of the directory)."""
  remove_entries(out, ZOO_ENTRIES)


def remove_entries(out: str, names) -> None:
  """The files and directories `names` of `out` (a link is removed, never followed)."""
  for name in names:
    full = os.path.join(out, name)
    if os.path.isdir(full) and not os.path.islink(full):
      shutil.rmtree(full)
    elif os.path.lexists(full):
      os.remove(full)
