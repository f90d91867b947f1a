"""Atomic file writes: the one write-temp, fsync, rename that every file a reader may see goes through (zoo
tables and manifests, layouts, run records, curves, the decoded-dataset cache)."""
from __future__ import annotations

import os
import threading


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes a temp file beside `path`, fsyncs it and renames it over `path`: readers see the old or the new file,
  never a partial one. On failure (a full disk) the temp file is removed and `path` is untouched."""
  tmp = f'{path}.tmp-{os.getpid()}-{threading.get_ident()}'
  try:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
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
