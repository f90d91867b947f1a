"""Atomic file writes: the one write-temp, fsync, rename that every file a reader may see goes through (zoo
tables and manifests, layouts, run records, curves, the decoded-dataset cache), the clean-up of the temp files an
interrupted write leaves, and the check that an output directory can be written before anything is."""
from __future__ import annotations

import os
import tempfile
import threading

from popnet import faults

TEMP_MARK = '.tmp-'  # <file>.tmp-<pid>-<thread>: an atomic write in progress, or one a killed process left


def temp_path(path: str) -> str:
  return f'{path}{TEMP_MARK}{os.getpid()}-{threading.get_ident()}'


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes a temp file beside `path`, fsyncs it and renames it over `path`: readers see the old or the new file,
  never a partial one. On failure (a full disk) the temp file is removed and `path` is untouched."""
  tmp = temp_path(path)
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    faults.kill_point('atomic_write')  # the temp file is complete, the rename not done
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  _fsync_dir(os.path.dirname(path) or '.')


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode())


def _fsync_dir(path: str) -> None:
  """Makes a rename in `path` durable (no-op where directories cannot be opened)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError:
    pass
  finally:
    os.close(fd)


def remove_temp_files(*directories: str) -> list[str]:
  """Removes the temp files (`<file>.tmp-...`) that writes interrupted by a kill left in `directories`; the caller
  holds the lock of the tree they are in, so no other writer is using them. Returns them."""
  stale = []
  for directory in directories:
    if os.path.isdir(directory):
      stale += [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if TEMP_MARK in n]
  for file in stale:
    os.remove(file)
  return stale


def unwritable(path: str) -> str | None:
  """Why the directory `path` cannot be written (or created), or None when it can; creates nothing (a probe
  directory in the nearest existing ancestor is made and removed at once: permission bits alone do not tell,
  e.g. under /proc or on a read-only mount)."""
  if os.path.exists(path) and not os.path.isdir(path):
    return 'is a file, not a directory'
  ancestor = os.path.abspath(path)
  while not os.path.exists(ancestor):
    ancestor = os.path.dirname(ancestor)
  if not os.path.isdir(ancestor):
    return f'cannot be created: {ancestor} is a file, not a directory'
  try:
    os.rmdir(tempfile.mkdtemp(prefix='.popnet-probe-', dir=ancestor))
  except OSError as e:
    what = 'is not writable' if ancestor == os.path.abspath(path) else f'cannot be created in {ancestor}'
    return f'{what} ({e.strerror or e})'
  return None
