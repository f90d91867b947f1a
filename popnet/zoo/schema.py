"""The zoo's on-disk schema: every file name, part name, row number and metadata column of a zoo, and the one
atomic-write helper every writer of the project uses.

    <zoo>/manifest.json          config, seeds, versions, devices, timings, throughput, architectures,
                                 processes (what each training process of a resumed build did)
    <zoo>/layouts/<arch>.json    the layout table of each architecture (popnet.layout)
    <zoo>/weights/<arch>.npy     float32 [members_of_arch * snapshots, values]; row = rank * snapshots + snapshot
    <zoo>/metadata.csv           one row per committed snapshot: member_id, snapshot, epoch, step, status,
                                 every hyper-parameter, train/val/test loss and accuracy, weights_file,
                                 weights_row, weights_crc32
"""
from __future__ import annotations

import io
import os
import re
import zlib
import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet.files import atomic_write_bytes, atomic_write_text  # noqa: F401  (part of the zoo's API)
FORMAT_VERSION = 2  # 2: sealed (popnet.zoo.seal); 1: written before seals existed
EVAL_SEGMENTS = ('train', 'val', 'test')  # the subsets every member is evaluated on (popnet.pipeline)
METRIC_COLUMNS = tuple(f'{seg}_{m}' for seg in EVAL_SEGMENTS for m in ('loss', 'accuracy'))
CHECKSUM_COLUMN = 'weights_crc32'  # zlib.crc32 of the row's float32 bytes, written with the row
ROW_RULE = 'rank * snapshots + snapshot'  # manifest['row_rule'] of zoos whose rows follow it (popnet.train)

MANIFEST_FILE = 'manifest.json'
METADATA_FILE = 'metadata.csv'
LAYOUTS_DIR = 'layouts'
WEIGHTS_DIR = 'weights'
WEIGHTS_DTYPE = np.dtype('<f4')


class ZooError(RuntimeError):
  """A zoo on disk is missing, truncated or inconsistent; the message names the file."""


def weights_file(arch: str) -> str:
  """The weights file of `arch`, relative to the zoo (the `weights_file` metadata column)."""
  return f'{WEIGHTS_DIR}/{arch}.npy'


def layout_file(arch: str) -> str:
  return f'{LAYOUTS_DIR}/{arch}.json'


def part_name(process_index: int, process_count: int) -> str:
  """The sub-zoo written by one process of a multi-process run."""
  return f'part-{process_index:05d}-of-{process_count:05d}'


SHARDS_DIR = 'shards'  # <workdir>/shards/<shard_name>/: one shard of a sharded run, a workdir of its own


SHARD_DIR = re.compile(r'shard-(\d{5})-of-(\d{5})')


def shard_name(index: int, count: int) -> str:
  """The workdir of shard `index` (0-based) of `count` under <workdir>/shards/ (popnet/shards.py)."""
  return f'shard-{index:05d}-of-{count:05d}'


def shard_dirs(workdir: str) -> dict[str, tuple[int, int]]:
  """{name: (index, count)} of the shard workdirs under <workdir>/shards/ (other entries are not shards)."""
  root = os.path.join(workdir, SHARDS_DIR)
  names = sorted(os.listdir(root)) if os.path.isdir(root) else []
  return {n: (int(m[1]), int(m[2])) for n in names if (m := SHARD_DIR.fullmatch(n))}


def snapshot_row(rank, snapshot, snapshots: int):
  """The documented row rule of a popnet zoo: row = rank of the member within its architecture * snapshots
  + snapshot index."""
  return rank * snapshots + snapshot


def row_checksums(weights: np.ndarray) -> np.ndarray:
  """crc32 of each row's float32 bytes: the `weights_crc32` column ([n] int64)."""
  rows = np.ascontiguousarray(weights, WEIGHTS_DTYPE).reshape(len(weights), -1)
  return np.array([zlib.crc32(memoryview(r)) for r in rows], np.int64)


def npy_header(shape: tuple[int, int]) -> bytes:
  """The .npy header of a float32 C-order array of `shape` (what numpy.lib.format.open_memmap writes)."""
  buffer = io.BytesIO()
  header = {'descr': np.lib.format.dtype_to_descr(WEIGHTS_DTYPE), 'fortran_order': False, 'shape': tuple(shape)}
  try:
    np.lib.format.write_array_header_1_0(buffer, header)
  except ValueError:  # a header over 64 KiB (an enormous shape) needs format 2.0
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, header)
  return buffer.getvalue()


def read_npy_header(path: str) -> tuple[tuple[int, ...], np.dtype, bool, int]:
  """(shape, dtype, fortran_order, data offset) of a .npy file."""
  with open(path, 'rb') as f:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    return shape, dtype, fortran, f.tell()


def read_metadata(path: str, string_columns=()) -> pd.DataFrame:
  """metadata.csv with floats parsed exactly (round trip), so rewriting it on resume changes no byte.
  string_columns (the manifest's `string_columns`) are read as text: an identifier '0001' stays '0001' and an
  empty one ''."""
  exact = {} if int(pd.__version__.split('.')[0]) >= 3 else {'float_precision': 'round_trip'}  # pandas 3: default
  table = pd.read_csv(path, dtype={c: str for c in string_columns}, keep_default_na=True, **exact)
  for column in string_columns:
    if column in table:
      table[column] = table[column].fillna('')
  return table


arch_to_json, arch_from_json = arch_lib.to_json, arch_lib.from_json  # part of the zoo's API
