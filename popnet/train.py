"""Train a population of CNNs and write its zoo.

    python -m popnet.train [--config FILE] [--workdir DIR] [--config.field=value ...]

Members are sampled from the config's hyper-parameter space, grouped into cohorts by what changes program
shapes (architecture, dataset, batch size), and each cohort is trained by one compiled population program.
At every snapshot epoch each member is evaluated on train/val/test and its flattened weights are written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from typing import Any

import numpy as np

RESERVED_XLA_FLAG = '--xla_force_host_platform_device_count'


def _expose_host_cores(count: int) -> None:
  """On CPU, each XLA host device runs its own share of the population (perf.md): expose the cores as
  devices unless the user set XLA_FLAGS themselves. Must run before JAX initializes its backends; it has
  no effect on GPU/TPU devices."""
  flags = os.environ.get('XLA_FLAGS', '')
  if count > 0 and RESERVED_XLA_FLAG not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {RESERVED_XLA_FLAG}={count}'.strip()


import jax  # noqa: E402  (after the helper above, which main() calls before any backend use)

from popnet import config as config_lib  # noqa: E402
from popnet import data as data_lib  # noqa: E402
from popnet import engine, hparams, zoo as zoo_lib  # noqa: E402
from popnet.checkpoint import CohortCheckpoints  # noqa: E402


@dataclasses.dataclass
class Timings:
  """Wall-time split of a run (seconds)."""
  data: float = 0.0
  compile: float = 0.0
  train: float = 0.0
  evaluate: float = 0.0
  write: float = 0.0
  total: float = 0.0


def load_device_data(name: str, config, mesh) -> engine.DeviceData:
  """Loads a prepared dataset, converts it to the common input shape and puts it on every device."""
  raw = data_lib.load(name, config.data_dir or None)
  shape = tuple(config.input_shape)
  train_x, test_x = data_lib.to_common_shape(raw.train_x, shape), data_lib.to_common_shape(raw.test_x, shape)
  train_idx, val_idx = data_lib.split_train_val(len(train_x), config.val_fraction, config.split_seed)
  rng = np.random.default_rng(config.split_seed)

  def subset(indices, size):  # a fixed random subset (the same for every member), in index order
    return np.sort(rng.choice(indices, size, replace=False)) if 0 < size < len(indices) else np.asarray(indices)

  train_idx = subset(train_idx, config.max_train_examples)
  eval_train = subset(train_idx, config.eval_train_examples)
  val_idx = subset(val_idx, config.eval_val_examples)
  test_idx = subset(np.arange(len(test_x)), config.eval_test_examples) + len(train_x)
  eval_idx = np.concatenate([eval_train, np.sort(val_idx), test_idx]).astype(np.int32)
  eval_seg = np.concatenate([np.zeros(len(eval_train)), np.ones(len(val_idx)), np.full(len(test_idx), 2)])
  pad = -len(eval_idx) % config.eval_batch_size
  eval_idx = np.concatenate([eval_idx, np.zeros(pad, np.int32)])
  eval_seg = np.concatenate([eval_seg, np.full(pad, -1)]).astype(np.int32)
  arrays = engine.replicate((np.concatenate([train_x, test_x]), np.concatenate([raw.train_y, raw.test_y]).astype(
      np.int32), np.asarray(train_idx, np.int32), eval_idx, eval_seg), mesh)
  return engine.DeviceData(*arrays, num_classes=raw.num_classes)


class Progress:
  """A tqdm bar over model-samples with ETA and live model-samples/s (quiet when not a terminal)."""

  def __init__(self, total: int, enabled: bool):
    from tqdm.auto import tqdm
    self.bar = tqdm(total=total, unit='sample', unit_scale=True, dynamic_ncols=True, disable=not enabled,
                    smoothing=0.1, desc='train', file=sys.stderr)

  def update(self, samples: int, **postfix):
    self.bar.set_postfix(postfix, refresh=False)
    self.bar.update(samples)

  def close(self):
    self.bar.close()


def _records(cohort, epoch_index, epoch, step, metrics, diverged, diverged_step, steps_per_epoch, rows, arch):
  out = []
  for i, member in enumerate(cohort.to_dict('records')):
    loss_sum, correct, count = metrics[i]
    rec = dict(member)
    rec.update(snapshot=epoch_index, epoch=epoch, step=step, status='diverged' if diverged[i] else 'ok',
               diverged_epoch=int(diverged_step[i] // steps_per_epoch) if diverged[i] else -1,
               weights_file=f'weights/{arch}.npy', weights_row=int(rows[i]))
    for s, seg in enumerate(engine.EVAL_SEGMENTS):
      n = max(count[s], 1)
      rec[f'{seg}_loss'] = float(loss_sum[s] / n)
      rec[f'{seg}_accuracy'] = float(correct[s] / n)
    out.append(rec)
  return out


RUNTIME_ONLY_FIELDS = ('seconds_per_call', 'steps_per_call', 'checkpoint_every')  # may change between a run and its resume


class WorkdirError(RuntimeError):
  """The workdir holds a run of a different config."""


def _kill_point(name: str) -> None:
  """Fault injection for the resume tests: POPNET_KILL_AT=name:n SIGKILLs this process the n-th time `name`
  is reached (points: train_call, checkpoint_save, zoo_write)."""
  spec = os.environ.get('POPNET_KILL_AT', '')
  if not spec.startswith(name + ':'):
    return
  _KILL_COUNTS[name] = _KILL_COUNTS.get(name, 0) + 1
  if _KILL_COUNTS[name] == int(spec.split(':')[1]):
    os.kill(os.getpid(), 9)


_KILL_COUNTS: dict[str, int] = {}


def prepare_workdir(config, workdir: str, overwrite: bool) -> bool:
  """Creates the workdir, or checks that it holds a run of this same config. Returns True when resuming."""
  record = os.path.join(workdir, 'run_config.json')
  current = {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k not in RUNTIME_ONLY_FIELDS}
  if os.path.exists(record) and overwrite:
    for name in ('zoo', 'checkpoints'):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in ('run_config.json', 'members.csv'):
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
  if os.path.exists(record):
    with open(record) as f:
      previous = json.load(f)
    if previous != current:
      fields = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
      raise WorkdirError(f'{workdir} holds a run of a different config (fields that differ: {fields}); use another '
                         f'--workdir, or pass --overwrite to delete that run')
    return True
  if os.path.isdir(os.path.join(workdir, 'zoo')) and not overwrite:
    raise WorkdirError(f'{workdir}/zoo exists but {record} does not; refusing to mix runs (pass --overwrite)')
  os.makedirs(workdir, exist_ok=True)
  zoo_lib.atomic_write_text(record, json.dumps(current, indent=1, sort_keys=True))
  return False


def train(config, workdir: str, progress: bool = True, log=print, overwrite: bool = False) -> dict[str, Any]:
  """Trains the population of `config` into `workdir/zoo` and returns the run summary.

  Rerunning the same command on the same workdir resumes: finished cohorts are skipped, the others restart
  from their last complete checkpoint, and snapshots already in the zoo are not written again."""
  t_start = time.perf_counter()
  timings = Timings()
  config_lib.validate(config)
  table = hparams.sample_members(dict(config.hparams), config.population, config.seed)
  snapshot_epochs = config_lib.snapshot_epochs(config)
  groups = hparams.cohorts(table)
  for name in table['dataset'].unique():  # fail fast, before any compilation or data loading
    if not data_lib.is_prepared(name, config.data_dir or None):
      data_lib.load(name, config.data_dir or None)  # raises DatasetNotPreparedError naming the prepare command
  for row in table.drop_duplicates('arch').to_dict('records'):  # shapes checked before anything is written
    try:
      hparams.arch_of(row).layout(tuple(config.input_shape))
    except ValueError as e:
      raise config_lib.ConfigError(f'config.hparams.architecture: {row["architecture"]!r} cannot run on '
                                   f'config.input_shape {tuple(config.input_shape)}: {e}') from e
  resuming = prepare_workdir(config, workdir, overwrite)
  zoo_dir, checkpoint_dir = os.path.join(workdir, 'zoo'), os.path.join(workdir, 'checkpoints')
  process_count, process_index = jax.process_count(), jax.process_index()
  if process_count > 1:  # multi-controller: this process trains and writes its share of the members
    part = f'part-{process_index:05d}-of-{process_count:05d}'
    zoo_dir, checkpoint_dir = os.path.join(zoo_dir, part), os.path.join(checkpoint_dir, part)
    table = table[table['member_id'] % process_count == process_index].reset_index(drop=True)
    groups = hparams.cohorts(table)

  mesh = engine.make_mesh()
  n_devices = mesh.devices.size
  archs = {row['arch']: hparams.arch_of(row) for row in table.drop_duplicates('arch').to_dict('records')}
  ranks = dict(zip(table['member_id'], table.groupby('arch').cumcount()))  # member's rank within its architecture
  n_snap = len(snapshot_epochs)
  rows_per_arch = {a: int((table['arch'] == a).sum()) * n_snap for a in archs}
  manifest = {
      'config': json.loads(config.to_json_best_effort()), 'seed': config.seed, 'snapshot_epochs': snapshot_epochs,
      'members': len(table), 'versions': _versions(), 'devices': [str(d) for d in mesh.devices.flat],
      'backend': jax.default_backend(), 'host': platform.node(), 'process_index': process_index,
      'process_count': process_count,
  }
  writer = zoo_lib.ZooWriter(zoo_dir, archs, tuple(config.input_shape), rows_per_arch, manifest)
  if process_index == 0:
    zoo_lib.atomic_write_text(os.path.join(workdir, 'members.csv'),
                              hparams.sample_members(dict(config.hparams), config.population, config.seed).to_csv(
                                  index=False))
  written = writer.written()

  datasets: dict[str, engine.DeviceData] = {}
  total_samples, plans = 0, []
  for index, (key, cohort) in enumerate(groups):
    arch_name, dataset, batch_size = key
    if all((m, k) in written for m in cohort['member_id'] for k in range(n_snap)):
      continue  # finished in an earlier run
    if dataset not in datasets:
      t0 = time.perf_counter()
      datasets[dataset] = load_device_data(dataset, config, mesh)
      timings.data += time.perf_counter() - t0
    n_train = datasets[dataset].train_idx.shape[0]
    if batch_size > n_train:
      raise config_lib.ConfigError(
          f'config.hparams.batch_size: {batch_size} is larger than the training split of {dataset} ({n_train})')
    steps = n_train // batch_size
    plans.append((index, key, cohort, steps))
    total_samples += len(cohort) * steps * batch_size * config.epochs
  log(f'popnet: {len(table)} members in {len(groups)} cohort(s) on {n_devices} {jax.default_backend()} device(s); '
      f'{config.epochs} epochs, snapshots at epochs {snapshot_epochs}'
      + (f'; resuming ({len(groups) - len(plans)} cohort(s) already done)' if resuming else ''))

  bar = Progress(total_samples, progress)
  counters = {'samples': 0}
  for index, key, cohort, steps in plans:
    _train_cohort(config, checkpoint_dir, index, key, cohort, steps, archs, datasets[key[1]], mesh, writer, written,
                  ranks, snapshot_epochs, timings, bar, counters)
  bar.close()
  timings.total = time.perf_counter() - t_start

  summary = _summary(writer.metadata, snapshot_epochs, timings, counters['samples'], len(table))
  writer.write_manifest(complete=True, timings=dataclasses.asdict(timings), summary=summary)
  log(format_summary(summary))
  return summary


def _train_cohort(config, checkpoint_dir, index, key, cohort, steps, archs, data, mesh, writer, written, ranks,
                  snapshot_epochs, timings: Timings, bar: Progress, counters):
  """Trains one cohort from its last checkpoint (or from scratch), writing its snapshots."""
  arch_name, _, batch_size = key
  n, n_devices, n_snap = len(cohort), mesh.devices.size, len(snapshot_epochs)
  hp = engine.pad_members(engine.member_hparams(cohort), n_devices)
  local = len(hp['active']) // n_devices
  program = engine.Program(
      arch=archs[arch_name], input_shape=tuple(config.input_shape), batch_size=batch_size, steps_per_epoch=steps,
      conv_impl=config.conv_impl,
      member_chunk=config.member_chunk or engine.auto_member_chunk(batch_size, local, hp),
      augment_spec=config_lib.augment_spec(config), eval_batch_size=config.eval_batch_size,
      **engine.static_choices(hp))
  programs = engine.PopulationPrograms(program, mesh)
  hp_dev = engine.shard_members(hp, mesh)
  member_ids = cohort['member_id'].to_numpy()
  rows = np.array([ranks[m] for m in member_ids], np.int64) * n_snap
  compile_before = programs.compile_seconds
  checkpoints = CohortCheckpoints(os.path.join(checkpoint_dir, f'cohort_{index:04d}'))

  def timed(category, fn, *args):
    c0, t0 = programs.compile_seconds, time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    setattr(timings, category, getattr(timings, category) + time.perf_counter() - t0 -
            (programs.compile_seconds - c0))
    return out

  state = timed('train', programs.init, hp_dev)
  first_epoch = 0
  latest = checkpoints.latest_epoch()
  if latest is not None:
    restored = checkpoints.restore(latest, state, n)
    state = engine.shard_members(jax.tree.map(lambda x: engine.pad_rows(x, len(hp['active'])), restored), mesh)
    first_epoch = latest
    bar.update(n * steps * batch_size * latest, phase='restored')

  steps_per_call = config.steps_per_call or max(1, steps // 8)
  for epoch in range(first_epoch, config.epochs + 1):
    if epoch in snapshot_epochs:
      k = snapshot_epochs.index(epoch)
      if not all((m, k) in written for m in member_ids):
        metrics = np.asarray(timed('evaluate', programs.evaluate, state, hp_dev, data))
        weights = np.asarray(timed('evaluate', programs.flatten, state))
        diverged, diverged_step = np.asarray(state['diverged']), np.asarray(state['diverged_step'])
        t1 = time.perf_counter()
        writer.write(arch_name, rows + k, weights[:n],
                     _records(cohort, k, epoch, epoch * steps, metrics[:n], diverged[:n], diverged_step[:n], steps,
                              rows + k, arch_name), before_commit=lambda: _kill_point('zoo_write'))
        timings.write += time.perf_counter() - t1
    if epoch > first_epoch and config.checkpoint_every and (epoch % config.checkpoint_every == 0) \
        and epoch < config.epochs:
      t1 = time.perf_counter()
      checkpoints.save(epoch, state, n)
      _kill_point('checkpoint_save')  # the save is still being written here
      checkpoints.wait()  # a finished epoch is durable before training goes on
      timings.write += time.perf_counter() - t1
    if epoch == config.epochs:
      break
    perm = timed('train', programs.permutations, hp_dev, data, epoch)
    start = 0
    while start < steps:
      stop = min(steps, start + steps_per_call)
      c0, t0 = programs.compile_seconds, time.perf_counter()
      state, loss_sum = programs.train(state, hp_dev, perm, data, epoch, start, stop)
      loss_sum = np.asarray(loss_sum)
      compiled = programs.compile_seconds - c0
      elapsed = time.perf_counter() - t0 - compiled
      timings.train += elapsed
      if elapsed > 0 and not compiled and not config.steps_per_call:  # adapt the call length to ~seconds_per_call
        steps_per_call = max(1, int((stop - start) * config.seconds_per_call / elapsed))
      done = n * (stop - start) * batch_size
      counters['samples'] += done
      bar.update(done, epoch=epoch, loss=f'{np.nanmean(loss_sum[:n]) / (stop - start):.3f}',
                 model_samples_per_s=f'{counters["samples"] / max(timings.train, 1e-9):,.0f}')
      _kill_point('train_call')
      start = stop
  checkpoints.close()
  timings.compile += programs.compile_seconds - compile_before


def _versions() -> dict[str, str]:
  import flax
  import optax
  import popnet
  return {'popnet': popnet.__version__, 'jax': jax.__version__, 'jaxlib': jax.lib.__version__ if hasattr(
      jax.lib, '__version__') else '', 'flax': flax.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'python': platform.python_version()}


def _summary(metadata, snapshot_epochs, timings: Timings, samples: int, members: int):
  final = metadata[metadata['epoch'] == snapshot_epochs[-1]]
  ok = final[final['status'] == 'ok']
  acc = ok['test_accuracy'].to_numpy()
  quantiles = np.quantile(acc, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]).round(4).tolist() if len(acc) else []
  train_s = max(timings.train, 1e-9)
  return {
      'members': members,
      'diverged': int((final['status'] == 'diverged').sum()),
      'test_accuracy_quantiles': dict(zip(['min', 'p10', 'p25', 'median', 'p75', 'p90', 'max'], quantiles)),
      'test_accuracy_mean': float(acc.mean()) if len(acc) else float('nan'),
      'wall_seconds': round(timings.total, 2),
      'model_samples_per_second': round(samples / train_s, 1),
      'model_samples_per_second_per_model': round(samples / train_s / members, 1),
      'timings': {k: round(v, 2) for k, v in dataclasses.asdict(timings).items()},
  }


def format_summary(s: dict[str, Any]) -> str:
  q = s['test_accuracy_quantiles']
  lines = [
      f"members: {s['members']}   diverged: {s['diverged']}",
      'final test accuracy (non-diverged): ' + ', '.join(f'{k} {v:.3f}' for k, v in q.items())
      + f"   mean {s['test_accuracy_mean']:.3f}",
      f"wall time: {s['wall_seconds']:.1f} s  (" + ', '.join(f'{k} {v:.1f}' for k, v in s['timings'].items()
                                                        if k != 'total') + ')',
      f"throughput: {s['model_samples_per_second']:,.0f} model-samples/s in training "
      f"({s['model_samples_per_second_per_model']:,.0f} per model)",
  ]
  return '\n'.join(lines)


# --- command line ----------------------------------------------------------------------------------------------
def run(argv=None):
  """Entry point of `python -m popnet.train` (absl flags + ml_collections config overrides)."""
  from absl import app, flags
  from ml_collections import config_flags

  default = os.path.join(os.path.dirname(__file__), 'default_config.py')
  config_flag = config_flags.DEFINE_config_file('config', default, 'experiment config file (get_config())',
                                                lock_config=True)
  flags.DEFINE_string('workdir', 'runs/default', 'where the zoo, checkpoints and logs are written')
  flags.DEFINE_integer('host_devices', -1, 'on CPU, expose this many host devices to shard the population '
                       '(-1: one per core, up to 8; 0: leave XLA_FLAGS alone)')
  flags.DEFINE_bool('progress', True, 'show a progress bar')
  flags.DEFINE_string('coordinator_address', '', 'multi-host: host:port of process 0 (jax.distributed.initialize)')
  flags.DEFINE_integer('num_processes', 0, 'multi-host: number of processes')
  flags.DEFINE_integer('process_id', -1, 'multi-host: this process (0 .. num_processes - 1)')
  flags.DEFINE_bool('distributed', False, 'multi-host with auto-detection (SLURM, Cloud TPU, ...): '
                    'jax.distributed.initialize() with no arguments')
  flags.DEFINE_bool('overwrite', False, 'delete a previous run of a different config in --workdir')
  flags.DEFINE_string('compilation_cache', os.path.join(os.path.expanduser('~'), '.cache', 'popnet', 'xla'),
                      "JAX's persistent compilation cache (makes resumes and reruns start fast; '' disables)")

  def main(_):
    from absl import logging
    logging.set_verbosity(logging.WARNING)  # orbax / TFDS info lines would drown the progress bar
    f = flags.FLAGS
    _expose_host_cores(min(os.cpu_count() or 1, 8) if f.host_devices < 0 else f.host_devices)
    if f.coordinator_address:
      jax.distributed.initialize(coordinator_address=f.coordinator_address, num_processes=f.num_processes,
                                 process_id=f.process_id)
    elif f.distributed:
      jax.distributed.initialize()
    if f.compilation_cache and not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
      jax.config.update('jax_compilation_cache_dir', f.compilation_cache)
    try:
      train(config_flag.value, f.workdir, progress=f.progress, overwrite=f.overwrite)
    except (config_lib.ConfigError, data_lib.DatasetNotPreparedError, WorkdirError, zoo_lib.ZooError) as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)

  app.run(main, argv=argv)


if __name__ == '__main__':
  run()
