"""What every interchange format shares: the error type, block sizes, and reading and writing CSV files with errors
that name the file (docs/interchange.md)."""
from __future__ import annotations

import gzip
import io
import os

import numpy as np
import pandas as pd

from popnet.interop.defaults import DEFAULT_BLOCK_BYTES  # noqa: F401  (the workers' block size; cli reads it)
from popnet.zoo import ZooError, atomic_write_bytes

_READ_ERRORS = (OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError)


class InteropError(ZooError):
  """A foreign file is missing or does not follow its format; the message names the file."""


def read_table(path: str, **kwargs) -> pd.DataFrame:
  """pd.read_csv, with a read or parse failure reported as an InteropError naming the file."""
  try:
    return pd.read_csv(path, **kwargs)
  except _READ_ERRORS as e:
    raise InteropError(f'{path}: cannot be read ({e})') from e


def rows_per_block(values: int, itemsize: int, block_bytes: int) -> int:
  return max(1, int(block_bytes) // max(1, values * itemsize))


def json_scalar(x):
  """json.dumps default= for numpy scalars."""
  if isinstance(x, np.generic):
    return x.item()
  raise TypeError(f'{type(x).__name__} is not JSON serializable')


def write_gzip_csv(path: str, table: pd.DataFrame, index: bool = False) -> None:
  """A .csv.gz, byte-reproducible (no timestamp; the member is named after the file without .gz), replaced
  atomically."""
  buffer = io.BytesIO()
  with gzip.GzipFile(filename=os.path.basename(path)[:-3], mode='wb', fileobj=buffer, mtime=0) as gz:
    with io.TextIOWrapper(gz, encoding='utf-8', newline='') as text:
      table.to_csv(text, index=index)
  atomic_write_bytes(path, buffer.getvalue())
