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
import jax.numpy as jnp  # noqa: E402

from popnet import config as config_lib  # noqa: E402
from popnet import data as data_lib  # noqa: E402
from popnet import engine, hparams, zoo as zoo_lib  # noqa: E402


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
  n_eval_train = config.eval_train_examples or len(train_idx)
  eval_train = np.sort(rng.choice(train_idx, min(n_eval_train, len(train_idx)), replace=False))
  test_idx = np.arange(len(test_x)) + len(train_x)
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


def train(config, workdir: str, progress: bool = True, log=print) -> dict[str, Any]:
  """Trains the population of `config` into `workdir/zoo`; returns the run summary."""
  t_start = time.perf_counter()
  timings = Timings()
  config_lib.validate(config)
  table = hparams.sample_members(dict(config.hparams), config.population, config.seed)
  snapshot_epochs = config_lib.snapshot_epochs(config)
  groups = hparams.cohorts(table)
  for name in table['dataset'].unique():  # fail fast, before any compilation or data loading
    if not data_lib.is_prepared(name, config.data_dir or None):
      data_lib.load(name, config.data_dir or None)  # raises DatasetNotPreparedError naming the prepare command

  mesh = engine.make_mesh()
  n_devices = mesh.devices.size
  archs = {row['arch']: hparams.arch_of(row) for row in table.drop_duplicates('arch').to_dict('records')}
  ranks = table.groupby('arch').cumcount().to_numpy()  # member's rank within its architecture
  n_snap = len(snapshot_epochs)
  rows_per_arch = {a: int((table['arch'] == a).sum()) * n_snap for a in archs}
  os.makedirs(workdir, exist_ok=True)
  manifest = {
      'config': json.loads(config.to_json_best_effort()), 'seed': config.seed, 'snapshot_epochs': snapshot_epochs,
      'members': len(table), 'versions': _versions(), 'devices': [str(d) for d in mesh.devices.flat],
      'backend': jax.default_backend(), 'host': platform.node(),
  }
  writer = zoo_lib.ZooWriter(os.path.join(workdir, 'zoo'), archs, tuple(config.input_shape), rows_per_arch, manifest)
  table.to_csv(os.path.join(workdir, 'members.csv'), index=False)

  datasets: dict[str, engine.DeviceData] = {}
  total_samples, samples_done = 0, 0
  plans = []
  for key, cohort in groups:
    arch_name, dataset, batch_size = key
    if dataset not in datasets:
      t0 = time.perf_counter()
      datasets[dataset] = load_device_data(dataset, config, mesh)
      timings.data += time.perf_counter() - t0
    n_train = datasets[dataset].train_idx.shape[0]
    if batch_size > n_train:
      raise config_lib.ConfigError(
          f'config.hparams.batch_size: {batch_size} is larger than the training split of {dataset} ({n_train})')
    steps = n_train // batch_size
    plans.append((key, cohort, steps))
    total_samples += len(cohort) * steps * batch_size * config.epochs
  log(f'popnet: {len(table)} members in {len(groups)} cohort(s) on {n_devices} {jax.default_backend()} device(s); '
      f'{config.epochs} epochs, snapshots at epochs {snapshot_epochs}')

  bar = Progress(total_samples, progress)
  member_status: dict[int, tuple[str, int]] = {}
  for key, cohort, steps in plans:
    arch_name, dataset, batch_size = key
    data = datasets[dataset]
    hp = engine.member_hparams(cohort)
    hp_padded = engine.pad_members(hp, n_devices)
    local = len(hp_padded['active']) // n_devices
    program = engine.Program(
        arch=archs[arch_name], input_shape=tuple(config.input_shape), batch_size=batch_size, steps_per_epoch=steps,
        conv_impl=engine.conv_lib.resolve_impl(config.conv_impl),
        member_chunk=config.member_chunk or engine.auto_member_chunk(batch_size, local),
        augment_spec=config_lib.augment_spec(config), eval_batch_size=config.eval_batch_size,
        **engine.static_choices(hp_padded))
    programs = engine.PopulationPrograms(program, mesh)
    hp_dev = engine.shard_members(hp_padded, mesh)
    member_ids = cohort['member_id'].to_numpy()
    rows = ranks[member_ids] * n_snap
    compile_before = programs.compile_seconds

    c0, t0 = programs.compile_seconds, time.perf_counter()
    state = jax.block_until_ready(programs.init(hp_dev))
    timings.train += time.perf_counter() - t0 - (programs.compile_seconds - c0)
    steps_per_call = max(1, steps // 8)
    for epoch in range(config.epochs + 1):
      if epoch in snapshot_epochs:
        k = snapshot_epochs.index(epoch)
        c0, t0 = programs.compile_seconds, time.perf_counter()
        metrics = np.asarray(programs.evaluate(state, hp_dev, data))
        weights = np.asarray(programs.flatten(state))
        diverged = np.asarray(state['diverged'])
        diverged_step = np.asarray(state['diverged_step'])
        t1 = time.perf_counter()
        timings.evaluate += t1 - t0 - (programs.compile_seconds - c0)
        n = len(cohort)
        writer.write(arch_name, rows + k, weights[:n],
                     _records(cohort, k, epoch, epoch * steps, metrics[:n], diverged[:n], diverged_step[:n], steps,
                              rows + k, arch_name))
        timings.write += time.perf_counter() - t1
      if epoch == config.epochs:
        break
      c0, t0 = programs.compile_seconds, time.perf_counter()
      perm = jax.block_until_ready(programs.permutations(hp_dev, data, epoch))
      timings.train += time.perf_counter() - t0 - (programs.compile_seconds - c0)
      start = 0
      while start < steps:
        stop = min(steps, start + steps_per_call)
        c0 = programs.compile_seconds
        t0 = time.perf_counter()
        state, loss_sum = programs.train(state, hp_dev, perm, data, epoch, start, stop)
        loss_sum = np.asarray(loss_sum)
        elapsed = time.perf_counter() - t0 - (programs.compile_seconds - c0)
        timings.train += elapsed
        done = len(cohort) * (stop - start) * batch_size
        if elapsed > 0 and programs.compile_seconds == c0:  # adapt the call length to ~seconds_per_call
          steps_per_call = max(1, int((stop - start) * config.seconds_per_call / elapsed))
        samples_done += done
        bar.update(done, epoch=epoch, loss=f'{np.nanmean(loss_sum[:len(cohort)]) / (stop - start):.3f}',
                   model_samples_per_s=f'{samples_done / max(timings.train, 1e-9):,.0f}')
        start = stop
    diverged = np.asarray(state['diverged'])[:len(cohort)]
    diverged_step = np.asarray(state['diverged_step'])[:len(cohort)]
    for i, m in enumerate(member_ids):
      member_status[int(m)] = ('diverged', int(diverged_step[i] // steps)) if diverged[i] else ('ok', -1)
    timings.compile += programs.compile_seconds - compile_before
  bar.close()
  timings.total = time.perf_counter() - t_start

  summary = _summary(writer.metadata, member_status, snapshot_epochs, timings, samples_done, len(table))
  writer.write_manifest(complete=True, timings=dataclasses.asdict(timings), summary=summary)
  log(format_summary(summary))
  return summary


def _versions() -> dict[str, str]:
  import flax
  import optax
  import popnet
  return {'popnet': popnet.__version__, 'jax': jax.__version__, 'jaxlib': jax.lib.__version__ if hasattr(
      jax.lib, '__version__') else '', 'flax': flax.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'python': platform.python_version()}


def _summary(metadata, member_status, snapshot_epochs, timings: Timings, samples: int, members: int):
  final = metadata[metadata['epoch'] == snapshot_epochs[-1]]
  ok = final[final['status'] == 'ok']
  acc = ok['test_accuracy'].to_numpy()
  quantiles = np.quantile(acc, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]).round(4).tolist() if len(acc) else []
  train_s = max(timings.train, 1e-9)
  return {
      'members': members,
      'diverged': sum(1 for s, _ in member_status.values() if s == 'diverged'),
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

  def main(_):
    f = flags.FLAGS
    _expose_host_cores(min(os.cpu_count() or 1, 8) if f.host_devices < 0 else f.host_devices)
    try:
      train(config_flag.value, f.workdir, progress=f.progress)
    except (config_lib.ConfigError, data_lib.DatasetNotPreparedError) as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)

  app.run(main, argv=argv)


if __name__ == '__main__':
  run()
