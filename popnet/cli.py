"""The command line of the trainer: `python -m popnet.train [--config FILE] [--workdir DIR] [--config.field=value]`.

Flags, host devices, distributed initialization and the compilation cache; the training itself is
popnet/train.py `train(config, workdir)`.
"""
from __future__ import annotations

import os
import sys

RESERVED_XLA_FLAG = '--xla_force_host_platform_device_count'


def usable_cores() -> list[int]:
  """The cores this process may run on (fewer than the machine's under taskset or a container's CPU set)."""
  if hasattr(os, 'sched_getaffinity'):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))


def expose_host_cores(requested: int) -> None:
  """On CPU, each XLA host device runs its own share of the population: expose `requested` host devices (-1:
  one per usable core, up to 8; 0: none) unless the user set the count in XLA_FLAGS themselves. Must run before
  JAX initializes its backends; no effect on GPU/TPU."""
  count = min(len(usable_cores()), 8) if requested < 0 else requested
  flags = os.environ.get('XLA_FLAGS', '')
  if count > 0 and RESERVED_XLA_FLAG not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} {RESERVED_XLA_FLAG}={count}'.strip()


def _define_flags(argv: list[str]):
  from absl import flags
  from ml_collections import config_flags

  from popnet import configs
  config = config_flags.DEFINE_config_file(
      'config', configs.path('default'), 'a packaged config name (' + ', '.join(configs.NAMES) + ') or a config '
      'file with get_config(); override any field with --config.<field>=value and any hyper-parameter with '
      "--config.hparams.<name>=value|'choice(a, b)'|'uniform(lo, hi)'|'loguniform(lo, hi)' (--print_config lists "
      'them all with their allowed values)', lock_config=True, sys_argv=argv)
  flags.DEFINE_bool('print_config', False, 'print the resolved config and every hyper-parameter with its allowed '
                    'values, then exit')
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
  return config


def _start_jax(f) -> None:
  expose_host_cores(f.host_devices)
  import jax
  if f.coordinator_address:
    jax.distributed.initialize(coordinator_address=f.coordinator_address, num_processes=f.num_processes,
                               process_id=f.process_id)
  elif f.distributed:
    jax.distributed.initialize()
  if f.compilation_cache and not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    jax.config.update('jax_compilation_cache_dir', f.compilation_cache)


def run(argv=None) -> None:
  """Entry point of `python -m popnet.train` and `popnet-train`."""
  from absl import app, flags, logging

  from popnet import config as config_lib
  try:
    argv, hparam_overrides = config_lib.split_overrides(list(sys.argv if argv is None else argv))
  except config_lib.ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  config = _define_flags(argv)

  def main(_):
    logging.set_verbosity(logging.WARNING)  # orbax / TFDS info lines would drown the progress bar
    f = flags.FLAGS
    try:
      resolved = config_lib.with_hparam_overrides(config.value, hparam_overrides)
      if f.print_config:
        print(config_lib.describe(resolved))
        return
    except config_lib.ConfigError as e:
      print(f'error: {e}', file=sys.stderr)
      sys.exit(2)
    _start_jax(f)
    _train(resolved, f)

  app.run(main, argv=argv)


def _train(config, f) -> None:
  """Runs popnet.train.train, turning every expected failure into one line on stderr and exit code 2."""
  from popnet import checkpoint, config as config_lib, data as data_lib, train, workdir as workdir_lib, zoo as zoo_lib
  try:
    train.train(config, f.workdir, progress=f.progress, overwrite=f.overwrite)
  except (config_lib.ConfigError, data_lib.DatasetNotPreparedError, workdir_lib.WorkdirError, zoo_lib.ZooError,
          checkpoint.CheckpointError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  except KeyboardInterrupt:
    print(f'\ninterrupted; rerun the same command to resume {f.workdir} from its last checkpoint', file=sys.stderr)
    sys.exit(130)
