"""Train a population of CNNs and write its zoo: `train(config, workdir)`.

Reads top to bottom in stages: plan (members, cohorts, every check that can fail) -> data -> workdir and zoo
-> for each cohort: build -> resume -> epochs (snapshot, checkpoint, train) -> summary. Members are grouped
into cohorts by what changes program shapes (architecture, dataset, batch size); each cohort is trained by
one compiled population program (popnet/population.py). Rerunning the same command on the same workdir
resumes. The command line is popnet/cli.py (`python -m popnet.train`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Any, Callable

import jax
import numpy as np
import pandas as pd

from popnet import config as config_lib
from popnet import data as data_lib
from popnet import buckets as buckets_lib
from popnet import faults, hparams, pipeline, population
from popnet import progress as progress_lib
from popnet import workdir as workdir_lib
from popnet import zoo as zoo_lib
from popnet.checkpoint import CohortCheckpoints
from popnet.member import EVAL_SEGMENTS


@dataclasses.dataclass(frozen=True)
class CohortPlan:
  """One program of the run: members sharing a batch size, of one architecture or padded into one
  (popnet/buckets.py), on any datasets of the pool."""
  index: int                 # position in the run's cohort list (names its checkpoint directory)
  bucket: buckets_lib.Bucket
  batch_size: int
  members: pd.DataFrame
  rows: np.ndarray           # each member's zoo row of snapshot 0 (zoo.snapshot_row)
  steps_per_epoch: int       # the longest epoch of its members
  member_steps: np.ndarray   # each member's steps per epoch (its dataset's training examples // batch size)


@dataclasses.dataclass
class Run:
  """What every cohort of a run shares while it trains."""
  config: Any
  mesh: Any
  snapshot_epochs: list[int]
  writer: zoo_lib.ZooWriter
  checkpoint_dir: str
  timings: progress_lib.Timings
  bar: progress_lib.Progress
  written: set[tuple[int, int]]

  def timed(self, category: str, cohort: population.Cohort, fn: Callable, *args):
    """Calls fn(*args), waits for its result, and adds its time (less any compilation) to `category`."""
    compiled, t0 = cohort.population.compile_seconds, time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    self.timings.add(category, time.perf_counter() - t0 - (cohort.population.compile_seconds - compiled))
    return out


def train(config, workdir: str, progress: bool = True, log=print, overwrite: bool = False) -> dict[str, Any]:
  """Trains the population of `config` into `workdir/zoo` and returns the run summary.

  Rerunning the same command on the same workdir resumes: finished cohorts are skipped, the others restart
  from their last intact checkpoint, and snapshots already in the zoo are not written again."""
  timings = progress_lib.Timings()
  # ---- plan: members, cohorts, and every check that can fail before anything is written -----------------------
  config_lib.validate(config)
  all_members = hparams.sample_members(dict(config.hparams), config.population, config.seed)
  members = process_share(all_members)
  snapshot_epochs = config_lib.snapshot_epochs(config)
  if config.plan_only:  # the grouping at nominal dataset sizes: no data, no compilation, nothing written
    report = plan_report(config, buckets_lib.plan(members, config.input_shape, config.epochs, nominal_examples(config),
                                                  config.grouping, cost_model(config)))
    log(buckets_lib.format_plan(report))
    return {'plan': report}
  check_inputs(config, members)
  mesh = population.make_mesh()
  # ---- data: every dataset of this process's members, in one pool on the devices -------------------------------
  with timings.measure('data'):
    data = pipeline.load_device_pool(list(members['dataset'].unique()), config, mesh)
  plans = plan_cohorts(config, members, data, len(snapshot_epochs))
  # ---- workdir and zoo ------------------------------------------------------------------------------------------
  resuming = workdir_lib.prepare_workdir(config, workdir, overwrite)
  zoo_dir, checkpoint_dir = run_dirs(workdir)
  writer = open_zoo(config, zoo_dir, members, snapshot_epochs, mesh)
  if jax.process_index() == 0:
    zoo_lib.atomic_write_text(os.path.join(workdir, 'members.csv'), all_members.to_csv(index=False))
  written = writer.written()
  todo = [p for p in plans if not all((m, k) in written for m in p.members['member_id']
                                      for k in range(len(snapshot_epochs)))]
  log(f'popnet: {len(members)} members in {len(plans)} cohort(s) on {mesh.devices.size} {jax.default_backend()} '
      f'device(s); {config.epochs} epochs, snapshots at epochs {snapshot_epochs}'
      + (f'; resuming ({len(plans) - len(todo)} cohort(s) already done)' if resuming else ''))
  # ---- train every cohort that is not finished ------------------------------------------------------------------
  total = sum(len(p.members) * p.steps_per_epoch * p.batch_size * config.epochs for p in todo)
  run = Run(config, mesh, snapshot_epochs, writer, checkpoint_dir, timings, progress_lib.Progress(total, progress),
            written)
  for plan in todo:
    train_cohort(run, plan, data)
  run.bar.close()
  # ---- summary --------------------------------------------------------------------------------------------------
  summary = progress_lib.summarize(writer.metadata, snapshot_epochs, timings, run.bar.samples, len(members))
  summary['plan'] = plan_report(config, [p.bucket for p in plans])
  writer.write_manifest(complete=True, timings=dataclasses.asdict(timings), summary=summary)
  log(progress_lib.format_summary(summary))
  return summary


# --- planning ------------------------------------------------------------------------------------------------------
def process_share(members: pd.DataFrame) -> pd.DataFrame:
  """The members this process trains: all of them, or member_id % process_count == process_index."""
  count, index = jax.process_count(), jax.process_index()
  return members if count == 1 else members[members['member_id'] % count == index].reset_index(drop=True)


def check_inputs(config, members: pd.DataFrame) -> None:
  """Datasets prepared and architectures that fit the input shape, before any data loading or compilation."""
  for name in members['dataset'].unique():
    if not data_lib.is_prepared(name, config.data_dir or None):
      data_lib.load(name, config.data_dir or None)  # raises DatasetNotPreparedError naming the prepare command
  for row in members.drop_duplicates('arch').to_dict('records'):
    try:
      hparams.arch_of(row).layout(tuple(config.input_shape))
    except ValueError as e:
      raise config_lib.ConfigError(f'config.hparams.architecture: {row["architecture"]!r} cannot run on '
                                   f'config.input_shape {tuple(config.input_shape)}: {e}') from e


def cost_model(config) -> buckets_lib.CostModel:
  return buckets_lib.CostModel(config.compile_seconds, config.flops_per_second, config.max_programs)


def nominal_examples(config) -> Callable[[str], int]:
  """A dry run's training examples per dataset (no data is read): max_train_examples, else 50,000."""
  return lambda dataset: config.max_train_examples or 50000


def plan_report(config, buckets: list[buckets_lib.Bucket]) -> dict:
  return dict(buckets_lib.summary(buckets, cost_model(config)), grouping=config.grouping)


def plan_cohorts(config, members: pd.DataFrame, data: pipeline.DeviceData, snapshots: int) -> list[CohortPlan]:
  """The run's programs (popnet/buckets.py), with their zoo rows and epoch lengths; batch sizes checked."""
  for row in members.drop_duplicates(['dataset', 'batch_size']).to_dict('records'):
    if row['batch_size'] > data.size_of(row['dataset']):
      raise config_lib.ConfigError(f'config.hparams.batch_size: {row["batch_size"]} is larger than the training '
                                   f'split of {row["dataset"]} ({data.size_of(row["dataset"])})')
  ranks = members.groupby('arch').cumcount().to_numpy()  # a member's rank within its architecture
  rank_of = dict(zip(members['member_id'], ranks))
  buckets = buckets_lib.plan(members, config.input_shape, config.epochs, data.size_of, config.grouping,
                             cost_model(config))
  plans = []
  for index, bucket in enumerate(buckets):
    cohort = bucket.members.sort_values('member_id', kind='stable').reset_index(drop=True)
    steps = np.array([data.size_of(d) // bucket.batch_size for d in cohort['dataset']], np.int64)
    rows = zoo_lib.snapshot_row(np.array([rank_of[m] for m in cohort['member_id']], np.int64), 0, snapshots)
    plans.append(CohortPlan(index, bucket, bucket.batch_size, cohort, rows, int(steps.max()), steps))
  return plans


def run_dirs(workdir: str) -> tuple[str, str]:
  """(zoo dir, checkpoint dir) of this process: a part of each in multi-process runs."""
  zoo_dir, checkpoint_dir = os.path.join(workdir, 'zoo'), os.path.join(workdir, 'checkpoints')
  if jax.process_count() > 1:
    part = zoo_lib.part_name(jax.process_index(), jax.process_count())
    zoo_dir, checkpoint_dir = os.path.join(zoo_dir, part), os.path.join(checkpoint_dir, part)
  return zoo_dir, checkpoint_dir


def open_zoo(config, zoo_dir: str, members: pd.DataFrame, snapshot_epochs: list[int], mesh) -> zoo_lib.ZooWriter:
  """Creates this process's zoo (or reopens it to resume) with one weights file per architecture."""
  archs = {row['arch']: hparams.arch_of(row) for row in members.drop_duplicates('arch').to_dict('records')}
  rows_per_arch = {a: int((members['arch'] == a).sum()) * len(snapshot_epochs) for a in archs}
  manifest = {
      'config': json.loads(config.to_json_best_effort()), 'seed': config.seed, 'snapshot_epochs': snapshot_epochs,
      'members': len(members), 'versions': progress_lib.versions(), 'devices': [str(d) for d in mesh.devices.flat],
      'backend': jax.default_backend(), 'host': platform.node(), 'process_index': jax.process_index(),
      'process_count': jax.process_count(),
  }
  return zoo_lib.ZooWriter(zoo_dir, archs, tuple(config.input_shape), rows_per_arch, manifest)


# --- one cohort ----------------------------------------------------------------------------------------------------
def train_cohort(run: Run, plan: CohortPlan, data: pipeline.DeviceData) -> None:
  """Trains one cohort from its last checkpoint (or from scratch), writing its snapshots."""
  config = run.config
  cohort = population.build_cohort(
      plan.members, run.mesh, arch=plan.bucket.archs[0], input_shape=tuple(config.input_shape),
      batch_size=plan.batch_size, steps_per_epoch=plan.steps_per_epoch, conv_impl=config.conv_impl,
      member_chunk=config.member_chunk, augment_spec=config_lib.augment_spec(config),
      eval_batch_size=config.eval_batch_size, supernet=plan.bucket.supernet)
  checkpoints = CohortCheckpoints(os.path.join(run.checkpoint_dir, f'cohort_{plan.index:04d}'))
  state = run.timed('train', cohort, cohort.init)
  first_epoch = checkpoints.latest_epoch() or 0
  if first_epoch:
    state = cohort.place(checkpoints.restore(first_epoch, state, cohort.size))
    run.bar.restored(cohort.size * plan.steps_per_epoch * plan.batch_size * first_epoch)
  steps_per_call = config.steps_per_call or max(1, plan.steps_per_epoch // 8)
  for epoch in range(first_epoch, config.epochs + 1):
    if epoch in run.snapshot_epochs:
      write_snapshot(run, plan, cohort, state, data, epoch)
    if epoch > first_epoch and config.checkpoint_every and epoch % config.checkpoint_every == 0 \
        and epoch < config.epochs:
      with run.timings.measure('write'):
        checkpoints.save(epoch, state, cohort.size)
        faults.kill_point('checkpoint_save')  # the save is still being written here
        checkpoints.wait()  # a finished epoch is durable before training goes on
    if epoch == config.epochs:
      break
    state, steps_per_call = train_epoch(run, plan, cohort, state, data, epoch, steps_per_call)
  checkpoints.close()
  run.timings.add('compile', cohort.population.compile_seconds)


def write_snapshot(run: Run, plan: CohortPlan, cohort: population.Cohort, state, data, epoch: int) -> None:
  """Evaluates every member and writes its weights and metadata row (unless already in the zoo)."""
  k = run.snapshot_epochs.index(epoch)
  if all((m, k) in run.written for m in plan.members['member_id']):
    return
  n = cohort.size
  metrics = np.asarray(run.timed('evaluate', cohort, cohort.evaluate, state, data))[:n]
  own_rows = run.timed('evaluate', cohort, cohort.own_rows, state)  # each architecture's rows in its own layout
  with run.timings.measure('write'):
    records = snapshot_records(plan, k, epoch, metrics, np.asarray(state.diverged)[:n],
                               np.asarray(state.diverged_step)[:n])
    for arch, (positions, weights) in own_rows.items():
      run.writer.write(arch, plan.rows[positions] + k, weights, [records[i] for i in positions],
                       before_commit=lambda: faults.kill_point('zoo_write'))


def snapshot_records(plan: CohortPlan, k: int, epoch: int, metrics, diverged, diverged_step) -> list[dict]:
  """The metadata rows of snapshot k: the member's table row, where and when, status and metrics."""
  out = []
  for i, member in enumerate(plan.members.to_dict('records')):
    loss_sum, correct, count = metrics[i]
    rec = dict(member)
    steps = int(plan.member_steps[i])
    rec.update(snapshot=k, epoch=epoch, step=epoch * steps, status='diverged' if diverged[i] else 'ok',
               diverged_epoch=int(diverged_step[i] // steps) if diverged[i] else -1,
               weights_file=zoo_lib.weights_file(member['arch']), weights_row=int(plan.rows[i] + k))
    for s, segment in enumerate(EVAL_SEGMENTS):
      rec[f'{segment}_loss'] = float(loss_sum[s] / max(count[s], 1))
      rec[f'{segment}_accuracy'] = float(correct[s] / max(count[s], 1))
    out.append(rec)
  return out


def train_epoch(run: Run, plan: CohortPlan, cohort: population.Cohort, state, data, epoch: int, steps_per_call: int):
  """One epoch in calls of ~config.seconds_per_call each; returns (state, the adapted steps per call)."""
  config = run.config
  perm = run.timed('train', cohort, cohort.permutations, data, epoch)
  start = 0
  while start < plan.steps_per_epoch:
    stop = min(plan.steps_per_epoch, start + steps_per_call)
    compiled, t0 = cohort.population.compile_seconds, time.perf_counter()
    state, loss_sum = cohort.train(state, perm, data, epoch, start, stop)
    loss_sum = np.asarray(loss_sum)[:cohort.size]
    compiling = cohort.population.compile_seconds - compiled
    elapsed = time.perf_counter() - t0 - compiling
    run.timings.add('train', elapsed)
    if elapsed > 0 and not compiling and not config.steps_per_call:  # adapt the call length to ~seconds_per_call
      steps_per_call = max(1, int((stop - start) * config.seconds_per_call / elapsed))
    run.bar.trained(cohort.size * (stop - start) * plan.batch_size, epoch=epoch,
                    loss=f'{np.nanmean(loss_sum) / (stop - start):.3f}')
    faults.kill_point('train_call')
    start = stop
  return state, steps_per_call


if __name__ == '__main__':
  from popnet import cli
  cli.run()
