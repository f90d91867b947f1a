"""Shards: a run's member table cut into n independent shares, each trained by `python -m popnet.train --shard k/n`
in a workdir of its own, <workdir>/shards/shard-<k>-of-<n>/ (its own lock, config record, checkpoints, zoo and
resume), needing no coordinator and no other shard at any time. `Zoo.open(workdir)` and `python -m popnet.zoo
merge` put the parts back together (popnet/zoo/sharded.py, popnet/zoo/merge.py).

The shard rule (RULE; docs/distributed.md), a function of the config and the datasets' sizes alone, so a rerun
gets the same share:
  1. plan the whole member table exactly as the unsharded run does (popnet/buckets.py); program j's work w_j is
     the cost model's padded training FLOPs / flops_per_second;
  2. cut program j into s_j = min(its members, ceil(4 n w_j / sum w)) slices of consecutive members by member_id
     (sizes differing by at most one, the larger first), so a slice holds at most about a quarter of a shard's
     ideal share; while there are fewer than n slices, the program with the most work per slice gets one more;
  3. hand the slices out, the costliest first (ties: the smallest first member_id), each to the shard where it
     ends earliest: its estimate so far + the slice's work + compile_seconds unless the shard already has a slice
     of that program (ties: the lowest shard index).
A shard trains its members of a program with that whole program's network, batch size, epoch length and compiled
choices, so each member computes what it computes in the unsharded run (docs/distributed.md: when that is bitwise).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
from typing import Mapping

import numpy as np
import pandas as pd

from popnet import workdir as workdir_lib
from popnet.zoo.schema import SHARDS_DIR, shard_dirs, shard_name

RULE = 'cost-balanced slices v1'  # recorded in every shard's manifest; shards of different rules never merge
SLURM_HELP = 'a range array (sbatch --array=0-N or 1-N[:step]); or pass --shard k/n'


class ShardError(ValueError):
  """A --shard value (or SLURM's array variables) that names no shard; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Shard:
  index: int  # 0 .. count - 1
  count: int

  @property
  def name(self) -> str:
    return shard_name(self.index, self.count)

  def __str__(self) -> str:
    return f'{self.index}/{self.count}'


def parse(text: str) -> Shard:
  """`k/n` with 0 <= k < n."""
  match = re.fullmatch(r'\s*(\d+)\s*/\s*(\d+)\s*', text)
  if not match or not int(match[1]) < int(match[2]) or int(match[2]) > 99999:
    raise ShardError(f'--shard: got {text!r}; expected k/n with 0 <= k < n <= 99999 (shard k of n, counted from '
                     f'0: --shard 0/4 ... --shard 3/4), or none')
  return Shard(int(match[1]), int(match[2]))


def from_slurm(env: Mapping[str, str]) -> Shard | None:
  """The shard of a SLURM array task (SLURM_ARRAY_TASK_ID, _MIN, _MAX, _COUNT, _STEP), or None outside arrays."""
  if 'SLURM_ARRAY_TASK_ID' not in env:
    return None
  try:
    task, low = int(env['SLURM_ARRAY_TASK_ID']), int(env.get('SLURM_ARRAY_TASK_MIN', '0'))
    step = int(env.get('SLURM_ARRAY_TASK_STEP', '1') or 1)
    span = (int(env['SLURM_ARRAY_TASK_MAX']) - low) // step + 1 if 'SLURM_ARRAY_TASK_MAX' in env else None
    count = int(env['SLURM_ARRAY_TASK_COUNT']) if 'SLURM_ARRAY_TASK_COUNT' in env else span
  except ValueError as e:
    raise ShardError(f'SLURM_ARRAY_TASK_*: not integers ({e}); expected {SLURM_HELP}') from None
  if count is None:
    raise ShardError(f'SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor _MAX; expected {SLURM_HELP}')
  if step < 1 or (task - low) % step or (span is not None and span != count) or not 0 <= (task - low) // step < count:
    raise ShardError(f'SLURM_ARRAY_TASK_ID={task} (MIN {low}, STEP {step}, COUNT {count}): the array is not a '
                     f'range; expected {SLURM_HELP}')
  return Shard((task - low) // step, count)


def resolve(flag: str, env: Mapping[str, str], distributed: bool) -> Shard | None:
  """The shard of this process: --shard k/n, else SLURM's array task (unless the run is a jax.distributed job),
  else None (one run of every member). --shard none ignores SLURM's variables."""
  if flag.strip().lower() == 'none':
    return None
  shard = parse(flag) if flag else (None if distributed else from_slurm(env))
  if shard is not None and distributed:
    raise ShardError(f'--shard {shard}: a shard is one process; it cannot also be a jax.distributed job '
                     f'(--coordinator_address / --distributed)')
  return shard


# --- the rule ------------------------------------------------------------------------------------------------------
SLICES_PER_SHARE = 4  # a slice holds at most about 1/4 of a shard's ideal share of the work


def work_seconds(program, cost) -> float:
  """The cost model's training seconds of one planned program (popnet/buckets.py), compilation aside."""
  return program.padded_work / cost.flops_per_second


def slice_counts(work: list[float], sizes: list[int], count: int) -> list[int]:
  """How many slices each program is cut into (rule step 2)."""
  total = sum(work)
  slices = [min(size, max(1, math.ceil(round(SLICES_PER_SHARE * count * w / total, 9)) if total else 1))
            for w, size in zip(work, sizes)]
  while sum(slices) < count:
    open_ = [j for j in range(len(slices)) if slices[j] < sizes[j]]
    slices[max(open_, key=lambda j: (work[j] / slices[j], -j))] += 1
  return slices


def assign(planned: list, count: int, cost) -> list[list[tuple[int, np.ndarray]]]:
  """Every shard's slices: [(program index in `planned`, member_ids of the slice)] (rule steps 2 and 3)."""
  ids = [np.sort(p.members['member_id'].to_numpy(np.int64)) for p in planned]
  if sum(len(i) for i in ids) < count:
    raise ShardError(f'--shard: {count} shards for {sum(len(i) for i in ids)} members; at most one shard per member')
  work = [work_seconds(p, cost) for p in planned]
  pieces = []
  for j, (members, s) in enumerate(zip(ids, slice_counts(work, [len(i) for i in ids], count))):
    pieces += [(work[j] * len(part) / len(members), int(part[0]), j, part) for part in np.array_split(members, s)]
  load, held, out = [0.0] * count, [set() for _ in range(count)], [[] for _ in range(count)]
  for seconds, _, j, part in sorted(pieces, key=lambda p: (-p[0], p[1])):
    ends = [load[k] + seconds + (0.0 if j in held[k] else cost.compile_seconds) for k in range(count)]
    k = min(range(count), key=lambda i: (ends[i], i))
    load[k], out[k] = ends[k], out[k] + [(j, part)]
    held[k].add(j)
  return out


def share(planned: list, shard: Shard, cost) -> list[tuple[int, pd.DataFrame]]:
  """(index in `planned`, this shard's members of that program by member_id) for every program the shard has
  members of, in plan order."""
  mine: dict[int, list[np.ndarray]] = {}
  for j, part in assign(planned, shard.count, cost)[shard.index]:
    mine.setdefault(j, []).append(part)
  out = []
  for j in sorted(mine):
    members = planned[j].members
    keep = members['member_id'].isin(np.concatenate(mine[j]))
    out.append((j, members[keep].sort_values('member_id', kind='stable').reset_index(drop=True)))
  return out


# --- the workdir of a shard ----------------------------------------------------------------------------------------
def directory(workdir: str, shard: Shard) -> str:
  return os.path.join(workdir, SHARDS_DIR, shard.name)


def listed(workdir: str) -> dict[str, Shard]:
  """The shard directories under <workdir>/shards/ by name (other entries are not shards)."""
  return {name: Shard(*where) for name, where in shard_dirs(workdir).items()}


def check_siblings(workdir: str, shard: Shard, config) -> None:
  """WorkdirError (one line) when <workdir> holds an unsharded run, shards of another split, or a shard of
  another config. Reads what is there; needs no other shard."""
  if os.path.exists(os.path.join(workdir, workdir_lib.RUN_CONFIG_FILE)) or os.path.isdir(os.path.join(workdir, 'zoo')):
    raise workdir_lib.WorkdirError(f'{workdir} holds an unsharded run ({os.path.join(workdir, "zoo")}); --shard '
                                   f'{shard} needs a workdir of its own (another --workdir)')
  current = workdir_lib.config_record(config)
  for name, other in listed(workdir).items():
    path = os.path.join(workdir, SHARDS_DIR, name)
    if other.count != shard.count:
      raise workdir_lib.WorkdirError(f'{path}: this workdir is split into {other.count} shards; --shard {shard} '
                                     f'splits it into {shard.count} (use --shard k/{other.count}, or another --workdir)')
    record = os.path.join(path, workdir_lib.RUN_CONFIG_FILE)
    if other != shard and os.path.exists(record):
      fields = workdir_lib.differing_fields(workdir_lib.read_record(record), current)
      if fields:
        raise workdir_lib.WorkdirError(f'{path}: shard {other} of this workdir trains another config (fields that '
                                       f'differ: {fields}); every shard of a workdir trains one config')


# --- what a shard records ------------------------------------------------------------------------------------------
def code_digest() -> str:
  """sha256 over popnet's Python source (every .py file under popnet/, by relative path): the code version that
  shards must share to merge."""
  package = os.path.dirname(os.path.abspath(__file__))
  h = hashlib.sha256()
  for folder, dirs, files in sorted(os.walk(package)):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith('.py')):
      path = os.path.join(folder, name)
      h.update(os.path.relpath(path, package).encode() + b'\0')
      with open(path, 'rb') as f:
        h.update(hashlib.sha256(f.read()).digest())
  return h.hexdigest()


def record(shard: Shard, all_members: pd.DataFrame) -> dict:
  """manifest['shard'] of a shard's zoo: which shard, of which member table, by which rule and code."""
  table = hashlib.sha256(all_members.to_csv(index=False).encode()).hexdigest()
  return {'index': shard.index, 'count': shard.count, 'rule': RULE, 'members': len(all_members),
          'member_table': table, 'code': code_digest()}

