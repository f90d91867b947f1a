"""Train a population of CNNs and write its zoo: `train(config, workdir)`.

    python -m popnet.train --config nws_fixed --workdir runs/a --config.population=512 --config.epochs=10
    python -m popnet.train --config smoke --print_config      # every field and hyper-parameter, allowed values

Reads top to bottom in stages: plan (members, every check that can fail) -> data (one pool of every dataset)
-> programs (popnet/buckets.py: members grouped by batch size into padded buckets of architectures) ->
workdir and zoo -> for each program: build -> resume -> epochs (snapshot, checkpoint, train) -> summary. Each
program is one compiled population (popnet/population.py); datasets are data, never a program key.
Rerunning the same command on the same workdir resumes. The command line is popnet/cli.py
(`python -m popnet.train`).
"""
from __future__ import annotations

if __name__ == '__main__':  # the command line first: --help and bad flags answer before JAX loads
  from popnet import cli
  cli.run()

import dataclasses
import json
import os
import platform
import time
from typing import Any, Callable

import jax
import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet import config as config_lib
from popnet import curves as curves_lib
from popnet import data as data_lib
from popnet import buckets as buckets_lib
from popnet import faults, files, hparams, models, pipeline, population, processes, resources
from popnet import shards as shards_lib
from popnet import progress as progress_lib
from popnet import summaries as summaries_lib
from popnet import task as task_lib
from popnet import workdir as workdir_lib
from popnet import zoo as zoo_lib
from popnet.checkpoint import ProgramCheckpoints
from popnet.planning import (ProgramPlan, cost_model, dry_plan, load_and_plan, nominal_examples,  # noqa: F401
                             plan_programs, plan_report, process_share)


@dataclasses.dataclass
class Run:
  """What every program of a run shares while it trains."""
  config: Any
  workdir: str
  mesh: Any
  snapshot_epochs: list[int]
  writer: zoo_lib.ZooWriter
  checkpoint_dir: str
  timings: progress_lib.Timings
  bar: progress_lib.Progress
  written: set[tuple[int, int]]
  started: str               # when this process started (UTC), naming its entry in manifest['processes']
  programs: int = 1          # programs of the run ('program i/N' in progress lines)
  summaries: summaries_lib.Summaries | None = None  # TensorBoard event files (config.tensorboard)

  def timed(self, category: str, program: population.Program, fn: Callable, *args):
    """Calls fn(*args), waits for its result, and adds its time (less any compilation) to `category`."""
    compiled, t0 = program.population.compile_seconds, time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    self.timings.add(category, time.perf_counter() - t0 - (program.population.compile_seconds - compiled))
    return out

  def report_process(self) -> None:
    """Records what this process has done so far in the manifest (once it has trained or written anything)."""
    if self.bar.samples or self.writer.rows_written:
      self.writer.record_process(progress_lib.process_record(self.started, self.timings, self.bar.samples))


def train(config, workdir: str, progress: bool = True, log=print, overwrite: bool = False,
          shard: shards_lib.Shard | None = None) -> dict[str, Any]:
  """Trains the population of `config` into `workdir/zoo` and returns the run summary; with `shard`, only that
  shard's members (popnet/shards.py) into workdir/shards/shard-<k>-of-<n>/, a workdir of its own.

  Rerunning the same command on the same workdir resumes: finished programs are skipped, the others restart
  from their last intact checkpoint, and snapshots already in the zoo are not written again."""
  timings, started = progress_lib.Timings(), progress_lib.utc_now()
  root, workdir = workdir, (shards_lib.directory(workdir, shard) if shard else workdir)
  # ---- plan: members, programs, and every check that can fail before anything is written -----------------------
  config_lib.validate(config)
  if config.tensorboard:
    summaries_lib.require_writer()
  if not config.plan_only:  # before the disk check (a workdir under /proc has 0 GiB free) and any line printed:
    # a workdir that cannot be written, holds another config's run, or a damaged zoo
    workdir_lib.check_usable(config, workdir, run_dirs(workdir)[0], (jax.process_index(), jax.process_count()),
                             overwrite)
    if shard:  # the other shards' configs (read only): a refused shard leaves no part of its own
      shards_lib.check_siblings(root, shard, config)
  try:
    resources.check(config, workdir, 1 / shard.count if shard else 1.0)
  except config_lib.ConfigError as e:
    if not config.plan_only:
      raise
    log(f'note: a real run in {workdir} would stop here: {e}')  # the plan is still worth printing
  task = task_lib.from_config(config)  # what the members learn (popnet/task.py)
  all_members = task.member_table(config, log)
  members = process_share(all_members, shard)
  snapshot_epochs = config_lib.snapshot_epochs(config)
  if config.plan_only:  # the grouping at nominal dataset sizes: no data, no compilation, nothing written
    report = dry_plan(config, members, shard)
    log(buckets_lib.format_plan(report))
    return {'plan': report}
  check_inputs(config, members)
  mesh = population.make_mesh()
  # ---- data: every dataset of this process's members, in one pool on the devices -------------------------------
  data, plans = load_and_plan(config, members, shard, mesh, timings, len(snapshot_epochs))
  members = pd.concat([p.members for p in plans]).sort_values('member_id').reset_index(drop=True)
  log(f'data: {task.describe_data(data, members)} at {tuple(config.input_shape)} ({timings.data:.1f} s)')
  check_device_memory(config, plans, mesh)
  log(buckets_lib.format_plan(plan_report(config, [p.planned for p in plans])))
  # ---- workdir and zoo: one run per workdir (an OS lock, released if this process dies) ---------------------------
  with workdir_lib.WorkdirLock(workdir, jax.process_index(), jax.process_count()):
    zoo_dir, checkpoint_dir = run_dirs(workdir)
    # process 0 prepares the workdir the processes share (a killed run's temp files, --overwrite, the run record);
    # the others check it once it is there (each holds only its own part's lock: popnet/processes.py)
    if processes.first():
      resuming = workdir_lib.prepare_workdir(config, workdir, overwrite)
    processes.meet('workdir')
    if not processes.first():
      resuming = workdir_lib.check_record(config, workdir) and os.path.isdir(zoo_dir)
    writer = open_zoo(config, zoo_dir, members, snapshot_epochs, mesh,
                      shard=shards_lib.record(shard, all_members) if shard else None)
    if processes.first():
      files.atomic_write_text(os.path.join(workdir, 'members.csv'), all_members.to_csv(index=False))
      if task.evaluation_sets:
        record_evaluation_sets(config, workdir, all_members['dataset'].unique(), writer)
    written = writer.written()
    todo = [p for p in plans if not all((m, k) in written for m in p.members['member_id']
                                        for k in range(len(snapshot_epochs)))]
    log(f'popnet: {len(members)} members in {len(plans)} program(s) on {mesh.devices.size} {jax.default_backend()} '
        f'device(s); {config.epochs} epochs, snapshots at epochs {snapshot_epochs}'
        + (f'; resuming: {len(plans) - len(todo)} of {len(plans)} program(s) already complete' if resuming else ''))
    # ---- train every program that is not finished ---------------------------------------------------------------
    total = sum(len(p.members) * p.steps_per_epoch * p.batch_size * config.epochs for p in todo)
    run = Run(config, workdir, mesh, snapshot_epochs, writer, checkpoint_dir, timings,
              progress_lib.Progress(total, progress, log), written, started, len(plans),
              summaries_lib.Summaries(tensorboard_dir(workdir)) if config.tensorboard else None)
    for plan in todo:
      train_program(run, plan, data)
    run.bar.close()
    if run.summaries:
      run.summaries.close()
    # ---- summary: only a complete zoo is marked complete; a rerun with nothing to do keeps the recorded one ------
    check_complete(writer, members, len(snapshot_epochs), workdir)
    summary = progress_lib.summarize(writer.metadata, snapshot_epochs, timings, run.bar.samples, len(members),
                                     task.quality)
    summary['plan'] = plan_report(config, [p.planned for p in plans])
    run.report_process()
    summary['build'] = progress_lib.build_totals(writer.manifest['processes'])
    summary = writer.write_manifest(complete=True, timings=dataclasses.asdict(timings), summary=summary)['summary']
    writer.close()
  log(progress_lib.format_summary(summary))
  log(next_steps(workdir, zoo_dir) if shard is None else shard_next_steps(root, shard))
  return summary


# --- planning ------------------------------------------------------------------------------------------------------
# --- checks ------------------------------------------------------------------------------------------------------
def check_inputs(config, members: pd.DataFrame) -> None:
  """Datasets prepared and architectures that fit the input shape, before any data loading or compilation."""
  for name in members['dataset'].unique():
    if not data_lib.is_prepared(name, config.data_dir or None):
      data_lib.load(name, config.data_dir or None)  # raises DatasetNotPreparedError naming the prepare command
  task = task_lib.from_config(config)
  for row in members.drop_duplicates(['arch', 'dataset']).to_dict('records'):
    config_lib.member_layout(row, config.input_shape)
    task.check(config, row)
  own_init = members['init'] == 'module'
  if (own_init & ~members['architecture'].map(arch_lib.is_module_spec)).any():
    raise config_lib.ConfigError(f"config.hparams.init: 'module' (a user module's own initializers) is not allowed "
                                 f"for the built-in architectures; choose from {list(arch_lib.CNN_INITS)}")


def check_device_memory(config, plans: list[ProgramPlan], mesh) -> None:
  """The largest program's training state must fit one device (accelerators report their memory; CPUs do not)."""
  stats = mesh.devices.flat[0].memory_stats() or {}
  for plan in plans:
    values = plan.planned.network.layout.size
    resources.check_device_memory(-(-len(plan.members) // mesh.devices.size), values, stats.get('bytes_limit'))


def check_complete(writer: zoo_lib.ZooWriter, members: pd.DataFrame, snapshots: int, workdir: str) -> None:
  """Raises ZooError listing the snapshot rows that are still missing (e.g. metadata lost after the checkpoints
  that could regenerate them were rotated away)."""
  missing = writer.missing(members['member_id'], snapshots)
  if missing:
    shown = ', '.join(f'member {m} snapshot {k}' for m, k in missing[:5]) + (', ...' if len(missing) > 5 else '')
    raise zoo_lib.ZooError(
        f'{writer.path}: {len(missing)} of {len(members) * snapshots} snapshot rows are missing ({shown}) and no '
        f'remaining checkpoint can regenerate them; the zoo is not marked complete. Retrain them with '
        f'--overwrite (deletes {workdir}) or train into another --workdir')


def record_evaluation_sets(config, workdir: str, datasets, writer: zoo_lib.ZooWriter) -> None:
  """Writes the exact evaluation subsets of every dataset into the zoo (zoo.evaluate reproduces accuracies),
  sealed by this process's writer."""
  for name in datasets:
    raw = data_lib.load(name, config.data_dir or None)
    _, segments = pipeline.split_indices(config, len(raw.train_x), len(raw.test_x))
    writer.write_evaluation_sets(os.path.join(workdir, 'zoo'), name, len(raw.train_x), segments)


def next_steps(workdir: str, zoo_dir: str) -> str:
  """Where the zoo is and what to run on it. Measured on the default zoo, 2-core CPU shared with other work:
  meta.report's defaults (2 cheap models x 7 targets) 143 s; one DMC cell (--targets activation --models dmc)
  had done 187 of 2,050 steps after 6 min 24 s (its ETA then: 1 h 03 min)."""
  return (f'zoo: {zoo_dir}\n'
          f'  open it:      python -c "from popnet import Zoo; print(Zoo.open(\'{workdir}\'))"\n'
          f'  meta-models:  python -m meta.report --zoo {workdir} --out {os.path.join(workdir, "meta")}\n'
          f'                (2-3 min on the default zoo on a 2-core CPU; --models statnn_gbt,statnn,dmc adds the\n'
          f'                deep meta-classifier: about an hour per target there)')


def run_dirs(workdir: str) -> tuple[str, str]:
  """(zoo dir, checkpoint dir) of this process: a part of each in multi-process runs."""
  zoo_dir, checkpoint_dir = os.path.join(workdir, 'zoo'), os.path.join(workdir, 'checkpoints')
  if jax.process_count() > 1:
    part = zoo_lib.part_name(jax.process_index(), jax.process_count())
    zoo_dir, checkpoint_dir = os.path.join(zoo_dir, part), os.path.join(checkpoint_dir, part)
  return zoo_dir, checkpoint_dir


def tensorboard_dir(workdir: str) -> str:
  """<workdir>/tensorboard (this process's part of it in multi-process runs)."""
  path = os.path.join(workdir, summaries_lib.DIRECTORY)
  return path if jax.process_count() == 1 else os.path.join(path, zoo_lib.part_name(jax.process_index(),
                                                                                   jax.process_count()))


def shard_next_steps(root: str, shard: shards_lib.Shard) -> str:
  return (f'shard {shard} done: {shards_lib.directory(root, shard)}\n'
          f'  every shard:  python -m popnet.zoo status {root}\n'
          f'  all done:     python -m popnet.zoo merge {root} --out {os.path.join(root, "merged")}  '
          f'(or Zoo.open(\'{root}\') reads the shards as one zoo)')


def open_zoo(config, zoo_dir: str, members: pd.DataFrame, snapshot_epochs: list[int], mesh,
             shard: dict | None = None) -> zoo_lib.ZooWriter:
  """Creates this process's zoo (or reopens it to resume) with one weights file per architecture; `shard`: the
  manifest's record of the shard it is (popnet/shards.py record)."""
  archs = {row['arch']: hparams.arch_of(row) for row in members.drop_duplicates('arch').to_dict('records')}
  rows_per_arch = {a: int((members['arch'] == a).sum()) * len(snapshot_epochs) for a in archs}
  manifest = {
      'config': json.loads(config.to_json_best_effort()), 'seed': config.seed, 'snapshot_epochs': snapshot_epochs,
      'members': len(members), 'versions': progress_lib.versions(), 'devices': [str(d) for d in mesh.devices.flat],
      'backend': jax.default_backend(), 'host': platform.node(), 'machine': progress_lib.machine(mesh.devices.flat),
      'process_index': jax.process_index(),
      'process_count': jax.process_count(), 'bn_epsilon': models.BN_EPSILON, 'bn_momentum': models.BN_MOMENTUM,
      **({'shard': shard} if shard else {}),
  }
  return zoo_lib.ZooWriter(zoo_dir, archs, tuple(config.input_shape), rows_per_arch, manifest, row_rule=True)


# --- one program ----------------------------------------------------------------------------------------------------
def train_program(run: Run, plan: ProgramPlan, data: pipeline.DeviceData) -> None:
  """Trains one program from its last checkpoint (or from scratch), writing its snapshots."""
  config = run.config
  program = population.build_program(
      plan.members, run.mesh, network=plan.planned.network, input_shape=tuple(config.input_shape),
      batch_size=plan.batch_size, steps_per_epoch=plan.steps_per_epoch, conv_impl=config.conv_impl,
      member_chunk=config.member_chunk, augment_spec=config_lib.augment_spec(config),
      eval_batch_size=config.eval_batch_size, task=task_lib.from_config(config), choices_of=plan.whole)
  checkpoints = ProgramCheckpoints(os.path.join(run.checkpoint_dir, f'cohort_{plan.index:04d}'), log=run.bar.message)
  label = f'program {plan.index + 1}/{run.programs}'
  name = f'{label} ({plan.planned.describe()}, batch {plan.batch_size})'
  program.population.on_compile = lambda function, seconds: run.bar.compiling(label, function, seconds)
  state = run.timed('train', program, program.init)
  first_epoch, restored = checkpoints.restore_latest(state, program.size) or (0, None)
  if first_epoch:
    state = program.place(restored)
    run.bar.restored(program.size * plan.steps_per_epoch * plan.batch_size * first_epoch)
    run.bar.message(f'{name}: resumed from its epoch-{first_epoch} checkpoint')
  else:
    run.bar.message(f'{name}: starting at epoch 0')
  curves = curves_lib.ProgramCurves(os.path.join(run.workdir, curves_lib.DIRECTORY), plan.index,
                                   plan.members['member_id'])
  steps_per_call = config.steps_per_call or max(1, plan.steps_per_epoch // 8)
  for epoch in range(first_epoch, config.epochs + 1):
    evaluate_and_snapshot(run, plan, program, state, data, epoch, curves)
    if epoch > first_epoch and config.checkpoint_every and epoch % config.checkpoint_every == 0 \
        and epoch < config.epochs:
      with run.timings.measure('write'):
        checkpoints.save(epoch, state, program.size)
        faults.kill_point('checkpoint_save')  # the save is still being written here
        checkpoints.wait()  # a finished epoch is durable before training goes on
      run.report_process()
    if epoch == config.epochs:
      break
    state, steps_per_call, loss_sum = train_epoch(run, plan, program, state, data, epoch, steps_per_call)
    curves.record(epoch + 1, np.asarray(state.diverged)[:program.size],
                  minibatch_loss=np.where(np.asarray(state.diverged)[:program.size], np.nan,
                                          loss_sum / plan.member_steps))
  checkpoints.close()
  run.timings.add('compile', program.population.compile_seconds)
  run.bar.message(f'{name}: done ({program.population.compile_seconds:.1f} s compiling or loading its programs '
                  'from the compilation cache)')


def evaluate_and_snapshot(run: Run, plan: ProgramPlan, program: population.Program, state, data, epoch: int,
                          curves: curves_lib.ProgramCurves) -> None:
  """At snapshot epochs (unless already in the zoo) and every config.eval_every epochs (unless already in the
  curves): evaluates every member; writes its weights and metadata row at snapshots; records its curves."""
  k = run.snapshot_epochs.index(epoch) if epoch in run.snapshot_epochs else None
  snapshot = k is not None and not all((m, k) in run.written for m in plan.members['member_id'])
  every = run.config.eval_every
  curve_epoch = k is not None or bool(every and epoch % every == 0)
  task = program.spec.task
  if not snapshot and (not curve_epoch or curves.has(epoch, task.curve_column)):
    return curves.save()
  n, evaluated = program.size, run.timings.evaluate
  with run.bar.evaluating(f'epoch {epoch} of program {plan.index + 1}/{run.programs}',
                          lambda: run.timings.evaluate - evaluated):
    metrics = np.asarray(run.timed('evaluate', program, program.evaluate, state, data))[:n]
  flags = {name: np.asarray(getattr(state, name))[:n] for name in ('diverged', 'diverged_step', 'stop_step')}
  with run.timings.measure('write'):
    task.record_curves(curves, epoch, metrics, flags['diverged'])
    curves.save()
    if run.summaries:
      run.summaries.evaluation(plan.index, epoch, [curves.rows[(int(m), epoch)] for m in curves.member_ids],
                               run.bar.rate.per_second())
  if snapshot:
    own_rows = run.timed('evaluate', program, program.own_rows, state)  # each architecture's rows in its own layout
    with run.timings.measure('write'):
      records = task.records(plan.members, k, epoch, metrics, flags, plan.member_steps, plan.rows + k)
      for arch, (positions, weights) in own_rows.items():
        run.writer.write(arch, plan.rows[positions] + k, weights, [records[i] for i in positions],
                         before_commit=lambda: faults.kill_point('zoo_write'))
      run.report_process()


def train_epoch(run: Run, plan: ProgramPlan, program: population.Program, state, data, epoch: int, steps_per_call: int):
  """One epoch in calls of ~config.seconds_per_call each; returns (state, the adapted steps per call, each member's
  summed minibatch loss)."""
  config = run.config
  perm = run.timed('train', program, program.permutations, data, epoch)
  start, loss_sum, before = 0, None, np.zeros(program.size, np.float32)
  while start < plan.steps_per_epoch:
    stop = min(plan.steps_per_epoch, start + steps_per_call)
    compiled, t0 = program.population.compile_seconds, time.perf_counter()
    state, loss_sum = program.train(state, perm, data, epoch, start, stop, loss_sum)  # the epoch's running sum
    running = np.asarray(loss_sum)[:program.size]
    compiling = program.population.compile_seconds - compiled
    elapsed = time.perf_counter() - t0 - compiling
    run.timings.add('train', elapsed)
    if elapsed > 0 and not compiling and not config.steps_per_call:  # adapt the call length to ~seconds_per_call
      steps_per_call = max(1, int((stop - start) * config.seconds_per_call / elapsed))
    run.bar.trained(program.size * (stop - start) * plan.batch_size, elapsed, epoch=epoch,
                    loss=f'{np.nanmean(running - before) / (stop - start):.3f}')
    faults.kill_point('train_call')
    start, before = stop, running
  return state, steps_per_call, before.astype(np.float64)

