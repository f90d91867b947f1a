"""Refuse impossible work before anything is written: the member table, the zoo's weights files and the
population state, estimated from a sample of the members and compared with what this machine has.

The first members of a member table do not depend on the population size (popnet/hparams.py), so a prefix
of up to SAMPLE members gives per-member sizes without sampling the whole table.
"""
from __future__ import annotations

import os
import shutil

import numpy as np

from popnet import config as config_lib
from popnet import hparams

SAMPLE = 256
MEMORY_FRACTION = 0.5   # the member table may take at most this share of the available memory
DISK_FRACTION = 0.95    # the zoo's weights files may take at most this share of the free disk
STATE_COPIES = 4        # weights, gradients and two optimizer moments per member while training


def available_memory() -> int | None:
  """Bytes of memory available to new allocations (Linux MemAvailable), or None when unknown."""
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def free_disk(path: str) -> int:
  """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return shutil.disk_usage(path).free


def _gib(n: float) -> str:
  return f'{n / 2**30:,.1f} GiB'


def estimate(config) -> dict[str, float]:
  """Estimated bytes of the member table, of the zoo's weights files and of the training state per member."""
  prefix = hparams.sample_members(config_lib.space(config), min(config.population, SAMPLE), config.seed)
  per_row = prefix.memory_usage(deep=True).sum() / len(prefix)
  values = np.mean([config_lib.member_layout(row, config.input_shape).size for row in prefix.to_dict('records')])
  snapshots = len(config_lib.snapshot_epochs(config))
  return {'member_table': per_row * config.population,
          'weights': 4.0 * values * snapshots * config.population}


def check(config, workdir: str, share: float = 1.0) -> dict[str, float]:
  """Raises ConfigError naming the number and the limit when the member table or the zoo cannot fit. share: the
  part of the zoo this process writes (a shard's, about 1 / shards)."""
  sizes = estimate(config)
  sizes['weights'] *= share
  memory = available_memory()
  if memory is not None and sizes['member_table'] > MEMORY_FRACTION * memory:
    raise config_lib.ConfigError(
        f'config.population: {config.population:,} members need a ~{_gib(sizes["member_table"])} member table; '
        f'this machine has {_gib(memory)} of memory available (limit {MEMORY_FRACTION:.0%} of it)')
  disk = free_disk(workdir)
  if sizes['weights'] > DISK_FRACTION * disk:
    raise config_lib.ConfigError(
        f'config.population: {config.population * share:,.0f} members x {len(config_lib.snapshot_epochs(config))} '
        f'snapshots need ~{_gib(sizes["weights"])} of weights files; {workdir} has {_gib(disk)} free')
  return sizes


def check_device_memory(members: int, values: int, device_bytes: int | None) -> None:
  """Raises ConfigError when one device cannot hold `members` states of `values` parameters."""
  need = 4.0 * values * STATE_COPIES * members
  if device_bytes and need > device_bytes:
    raise config_lib.ConfigError(
        f'config.population: a program of {members:,} members per device needs ~{_gib(need)} of state (weights, '
        f'gradients, optimizer moments); a device has {_gib(device_bytes)}')
