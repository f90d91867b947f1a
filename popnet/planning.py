"""Planning a run: the members this process trains and the programs they run in (popnet/buckets.py), before any
data is on a device or anything is written.

    process_share      the members a process plans with (all; a jax.distributed process's share)
    shard_programs     a shard's share of the plan (popnet/shards.py), each part with its whole program
    plan_programs      ProgramPlans: programs with their zoo rows and epoch lengths
    load_and_plan      the device pool of this process's datasets and its programs
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
import pandas as pd

from popnet import buckets as buckets_lib
from popnet import config as config_lib
from popnet import pipeline, population
from popnet import shards as shards_lib
from popnet import task as task_lib
from popnet import zoo as zoo_lib


@dataclasses.dataclass(frozen=True)
class ProgramPlan:
  """One program of the run: members sharing a batch size, of one architecture or padded into one
  (popnet/buckets.py), on any datasets of the pool."""
  index: int                 # position in the run's program list (names its checkpoint directory)
  planned: buckets_lib.PlannedProgram
  batch_size: int
  members: pd.DataFrame
  rows: np.ndarray           # each member's zoo row of snapshot 0 (zoo.snapshot_row)
  steps_per_epoch: int       # the longest epoch of its members (a shard's: of the whole program's)
  member_steps: np.ndarray   # each member's steps per epoch (its dataset's training examples // batch size)
  whole: pd.DataFrame        # the whole program's members (a shard trains `members` of them; else the same)


def process_share(members: pd.DataFrame, shard: shards_lib.Shard | None = None) -> pd.DataFrame:
  """The members this process plans with: all of them (one process, or a shard: it plans the whole table and
  takes its share of the plan, shard_programs), or member_id % process_count == process_index."""
  count, index = jax.process_count(), jax.process_index()
  if shard is not None and count > 1:
    raise config_lib.ConfigError(f'--shard {shard}: a shard is one process; this is process {index} of a '
                                 f'{count}-process jax.distributed job')
  return members if count == 1 else members[members['member_id'] % count == index].reset_index(drop=True)


def shard_programs(config, planned: list[buckets_lib.PlannedProgram], shard: shards_lib.Shard | None):
  """[(whole program, this process's part of it)]: every program whole, or the shard's share (popnet/shards.py)
  with its members and its share of the work."""
  if shard is None:
    return [(p, p) for p in planned]
  out = []
  for j, members in shards_lib.share(planned, shard, cost_model(config)):
    whole, part = planned[j], len(members) / len(planned[j].members)
    out.append((whole, dataclasses.replace(whole, members=members, own_work=whole.own_work * part,
                                           padded_work=whole.padded_work * part)))
  return out


def load_and_plan(config, members: pd.DataFrame, shard: shards_lib.Shard | None, mesh, timings, snapshots: int):
  """(the device pool of this process's datasets, its programs). A shard plans the whole table at the datasets'
  real sizes (read on the host) and loads only its own members' datasets."""
  sizes = None if shard is None else pipeline.training_sizes(members['dataset'].unique(), config).__getitem__
  plans = None if shard is None else plan_programs(config, members, sizes, snapshots, shard)
  mine = members if shard is None else pd.concat([p.members for p in plans])
  with timings.measure('data'):
    data = pipeline.load_device_pool(list(mine['dataset'].unique()), config, mesh)
  return data, plans or plan_programs(config, members, data.size_of, snapshots)


def cost_model(config) -> buckets_lib.CostModel:
  return buckets_lib.CostModel(config.compile_seconds, config.flops_per_second, config.max_programs,
                               population.one_member_at_a_time(config.member_chunk))


def nominal_examples(config) -> Callable[[str], int]:
  """A dry run's training examples per dataset (no data is read): max_train_examples, else 50,000."""
  return lambda dataset: config.max_train_examples or 50000


def epoch_examples(config, size_of: Callable[[str], int]) -> Callable[[str], int]:
  """What the cost model counts per member-epoch, by dataset: the task's examples (an INR fit's are its steps'
  pixels, not the dataset's images)."""
  task = task_lib.from_config(config)
  return lambda dataset: task.examples_per_epoch(size_of(dataset), config.input_shape)


def plan_report(config, planned: list[buckets_lib.PlannedProgram]) -> dict:
  return dict(buckets_lib.summary(planned, cost_model(config)), grouping=config.grouping)


def dry_plan(config, members: pd.DataFrame, shard: shards_lib.Shard | None) -> dict:
  """The plan (this shard's share of it) at nominal dataset sizes: no data read, nothing compiled or written."""
  examples = epoch_examples(config, nominal_examples(config))
  planned = buckets_lib.plan(members, config.input_shape, config.epochs, examples, config.grouping, cost_model(config))
  return plan_report(config, [own for _, own in shard_programs(config, planned, shard)])


def plan_programs(config, members: pd.DataFrame, size_of: Callable[[str], int], snapshots: int,
                  shard: shards_lib.Shard | None = None) -> list[ProgramPlan]:
  """The run's programs (popnet/buckets.py; a shard's share of them), with their zoo rows and epoch lengths;
  batch sizes checked. size_of(dataset): its training examples."""
  for row in members.drop_duplicates(['dataset', 'batch_size']).to_dict('records'):
    if row['batch_size'] > size_of(row['dataset']):
      raise config_lib.ConfigError(f'config.hparams.batch_size: {row["batch_size"]} is larger than the training '
                                   f'split of {row["dataset"]} ({size_of(row["dataset"])})')
  planned = shard_programs(config, buckets_lib.plan(members, config.input_shape, config.epochs,
                                                    epoch_examples(config, size_of), config.grouping,
                                                    cost_model(config)), shard)
  mine = pd.concat([own.members for _, own in planned]).sort_values('member_id', kind='stable')
  rank_of = dict(zip(mine['member_id'], mine.groupby('arch').cumcount()))  # a member's rank within its architecture
  task = task_lib.from_config(config)
  plans = []
  for index, (whole, program) in enumerate(planned):
    def steps_of(table):
      return np.array([task.host_steps_per_epoch(size_of(d), program.batch_size) for d in table['dataset']], np.int64)
    members_of = program.members.sort_values('member_id', kind='stable').reset_index(drop=True)
    rows = zoo_lib.snapshot_row(np.array([rank_of[m] for m in members_of['member_id']], np.int64), 0, snapshots)
    plans.append(ProgramPlan(index, program, program.batch_size, members_of, rows, int(steps_of(whole.members).max()),
                             steps_of(members_of), whole.members))
  return plans
