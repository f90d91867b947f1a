"""One preallocated .npy weights file written row by row with regular file I/O.

Rows are written with os.pwrite at header offset + row * row_bytes, not through a memory map: a full disk or an
I/O error then raises OSError (a memory-mapped store would kill the process with SIGBUS). New files get real
blocks up front (os.posix_fallocate), so a disk too small for the zoo is reported when the file is created."""
from __future__ import annotations

import errno
import os

import numpy as np

from popnet.zoo.names import check_regular
from popnet.zoo.schema import WEIGHTS_DTYPE, ZooError, npy_header, read_npy_header

_NO_FALLOCATE = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)


class WeightsFile:
  """float32 [rows, values] rows of one architecture in `path`, opened read-write."""

  def __init__(self, path: str, shape: tuple[int, int], offset: int):
    self.path, self.shape, self.offset = path, shape, offset
    self.row_bytes = shape[1] * WEIGHTS_DTYPE.itemsize
    self.fd = os.open(path, os.O_RDWR)

  @classmethod
  def create(cls, path: str, shape: tuple[int, int]) -> 'WeightsFile':
    """A new file of `shape` (zeros), preallocated under a temp name and renamed into place."""
    header = npy_header(shape)
    size = len(header) + shape[0] * shape[1] * WEIGHTS_DTYPE.itemsize
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
      fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
      try:
        os.write(fd, header)
        _preallocate(fd, size)
        os.fsync(fd)
      finally:
        os.close(fd)
      os.replace(tmp, path)
    except OSError as e:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise ZooError(f'{path}: cannot be created ({size:,} bytes for {shape[0]} rows of {shape[1]} values): '
                     f'{e.strerror or e}') from e
    return cls(path, shape, len(header))

  @classmethod
  def open(cls, path: str, shape: tuple[int, int] | None, recover: str) -> 'WeightsFile':
    """An existing file, which must hold exactly `shape` float32 values (None: the shape its header declares);
    `recover` says how to regenerate it."""
    check_regular(path)  # a FIFO in its place would block the open
    try:
      found, dtype, fortran, offset = read_npy_header(path)
    except (OSError, ValueError, EOFError) as e:
      raise ZooError(f'{path}: not a readable .npy file ({e}); {recover}') from e
    shape = tuple(found) if shape is None else tuple(shape)
    if tuple(found) != shape or len(shape) != 2 or dtype != WEIGHTS_DTYPE or fortran:
      raise ZooError(f'{path}: has shape {tuple(found)} {dtype}, expected {tuple(shape)} float32; {recover}')
    size, expected = os.path.getsize(path), offset + shape[0] * shape[1] * WEIGHTS_DTYPE.itemsize
    if size != expected:
      raise ZooError(f'{path}: {size:,} bytes, but {shape[0]} rows of {shape[1]} float32 values need '
                     f'{expected:,}: the file is truncated or damaged; {recover}')
    return cls(path, shape, offset)

  def write_rows(self, rows: np.ndarray, weights: np.ndarray) -> None:
    """Writes weights[i] to row rows[i] (runs of consecutive rows in one call each), then fsyncs the file."""
    rows = np.asarray(rows, np.int64)
    weights = np.ascontiguousarray(weights, WEIGHTS_DTYPE)
    order = np.argsort(rows, kind='stable')
    starts = np.flatnonzero(np.diff(rows[order], prepend=-2) != 1)
    try:
      for a, b in zip(starts, list(starts[1:]) + [len(order)]):
        data = memoryview(np.ascontiguousarray(weights[order[a:b]])).cast('B')
        position, done = self.offset + int(rows[order[a]]) * self.row_bytes, 0
        while done < len(data):
          done += os.pwrite(self.fd, data[done:], position + done)
      os.fsync(self.fd)
    except OSError as e:
      raise ZooError(f'{self.path}: writing {len(rows)} weight rows failed: {e.strerror or e}; the rows '
                     f'committed before are intact, rerun the same command to resume') from e

  def read_rows(self, rows: np.ndarray) -> np.ndarray:
    out = np.empty((len(rows), self.shape[1]), WEIGHTS_DTYPE)
    for i, row in enumerate(np.asarray(rows, np.int64)):
      data = os.pread(self.fd, self.row_bytes, self.offset + int(row) * self.row_bytes)
      if len(data) != self.row_bytes:
        raise ZooError(f'{self.path}: row {int(row)} is cut short ({len(data)} of {self.row_bytes} bytes)')
      out[i] = np.frombuffer(data, WEIGHTS_DTYPE)
    return out

  def close(self) -> None:
    if self.fd >= 0:
      os.close(self.fd)
      self.fd = -1


def _preallocate(fd: int, size: int) -> None:
  """Real blocks for `size` bytes (ENOSPC now rather than at a later write); sparse where unsupported."""
  if hasattr(os, 'posix_fallocate'):
    try:
      os.posix_fallocate(fd, 0, size)
      return
    except OSError as e:
      if e.errno not in _NO_FALLOCATE:
        raise
  os.ftruncate(fd, size)
