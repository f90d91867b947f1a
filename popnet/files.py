"""Atomic file writes: the one write-temp, fsync, rename that every file a reader may see goes through (zoo
tables and manifests, layouts, run records, the decoded-dataset cache)."""
from __future__ import annotations

import os


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes a temp file beside `path`, fsyncs it and renames it over `path`: readers see the old or the new file,
  never a partial one. An OSError (e.g. a full disk) leaves `path` as it was and removes the temp file."""
  tmp = f'{path}.tmp-{os.getpid()}'
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


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode())
