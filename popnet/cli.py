"""The command line of the trainer: `python -m popnet.train [--config NAME|FILE] [--workdir DIR] [--config.field=value]`.

Flags and their help (answered before JAX or the config load: fast), the --config.<field> overrides and
--print_config, host devices, distributed initialization, the compilation cache, one-line errors, and Ctrl-C or
SIGTERM (what SLURM preemption sends) stopping a run resumably. The training itself is popnet/train.py
`train(config, workdir)`. Imports of JAX-using modules stay inside functions, so `--help` never loads JAX.
"""
from __future__ import annotations

import os
import sys
import textwrap

from popnet import stopping

RESERVED_XLA_FLAG = '--xla_force_host_platform_device_count'
HELP_ARGS = ('-h', '-help', '--help', '--helpshort')
EXAMPLE = ("python -m popnet.train --config smoke --workdir runs/a --config.population=64 "
           "--config.hparams.learning_rate='loguniform(1e-3, 1e-1)'")
HPARAM_SPECS = "value|'choice(a, b)'|'uniform(lo, hi)'|'loguniform(lo, hi)'"

# (name, kind, default, help) of every flag besides --config; absl defines them (_define_flags), --help prints them
FLAGS = (
    ('workdir', 'string', 'runs/default', 'where the zoo, checkpoints and logs are written'),
    ('print_config', 'bool', False, 'validate and print the resolved config and every hyper-parameter with its '
                                    'allowed values, then exit'),
    ('overwrite', 'bool', False, 'delete a previous run of a different config in --workdir'),
    ('progress', 'bool', True, 'show progress on stderr: a bar on a terminal, plain lines (at most every 30 s) '
                               'elsewhere; compilations and evaluations as lines of their own'),
    ('host_devices', 'integer', -1, 'on CPU, expose this many host devices to shard the population (-1: one per '
                                    'core, up to 8; 0: leave XLA_FLAGS alone)'),
    ('compilation_cache', 'string', os.path.join(os.path.expanduser('~'), '.cache', 'popnet', 'xla'),
     "JAX's persistent compilation cache (makes resumes and reruns start fast; '' disables)"),
    ('coordinator_address', 'string', '', 'multi-host: host:port of process 0 (jax.distributed.initialize)'),
    ('num_processes', 'integer', 0, 'multi-host: number of processes'),
    ('process_id', 'integer', -1, 'multi-host: this process (0 .. num_processes - 1)'),
    ('distributed', 'bool', False, 'multi-host with auto-detection (SLURM, Cloud TPU, ...): '
                                   'jax.distributed.initialize() with no arguments'),
    ('shard', 'string', '', 'k/n: train shard k (0 .. n-1) of the members, cost-balanced, in <workdir>/shards/ '
                            'with its own lock and resume (docs/distributed.md); unset: SLURM_ARRAY_TASK_ID of '
                            "the array when set; 'none': every member"),
)


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


# --- --help ------------------------------------------------------------------------------------------------------
def _config_help() -> str:
  from popnet import configs
  return (f"an experiment config by name ({', '.join(configs.NAMES)}) or a config file with get_config()")


def help_text() -> str:
  """popnet.train's own flags with their defaults, and an example (no absl, ml_collections or JAX import)."""
  def row(spelling, text):
    return textwrap.fill(text, 116, initial_indent=f'  {spelling:<28} ', subsequent_indent=' ' * 31)
  lines = ['usage: python -m popnet.train [--config NAME|FILE] [--workdir DIR] [--config.FIELD=VALUE ...] [flags]',
           '', 'Trains a population of small CNNs and writes its zoo; rerunning the same command resumes.', '',
           'flags:', row('--config NAME|FILE', f'{_config_help()} (default: default)'),
           row('--config.FIELD=VALUE', 'override any config field (--print_config lists them)'),
           row('--config.hparams.NAME=SPEC', f'set any hyper-parameter: {HPARAM_SPECS}')]
  for name, kind, default, text in FLAGS:
    spelling = f'--[no]{name}' if kind == 'bool' else f'--{name}'
    lines.append(row(spelling, f'{text} (default: {str(default).lower() if kind == "bool" else repr(default)})'))
  return '\n'.join(lines + ['', 'example:', f'  {EXAMPLE}'])


# --- the command line's view of the config -----------------------------------------------------------------------
def _override(arg: str, argv: list[str], i: int) -> tuple[str, str | None, int]:
  """(field path, value or None when it is the next argument, index of the next unread argument)."""
  body = arg[len('--config.'):]
  if '=' in body:
    path, value = body.split('=', 1)
    return path, value, i + 1
  return body, (argv[i + 1] if i + 1 < len(argv) else None), i + 2


def _check_field(path: str) -> None:
  """ConfigError naming the closest valid field when `path` (after --config.) is not a config field."""
  from popnet import config as config_lib
  base, (head, _, rest) = config_lib.base_config(), path.partition('.')
  if head == 'task':  # the optional task section (an INR fit's fields, config.INR_TASK)
    if rest.split('.')[0] not in config_lib.INR_TASK:
      raise config_lib.ConfigError(f'--config.{path}: unknown task field{config_lib.closest(rest, config_lib.INR_TASK)}; '
                                   f'known: {sorted(config_lib.INR_TASK)}')
    return
  if head not in base:
    raise config_lib.ConfigError(f'--config.{path}: unknown config field{config_lib.closest(head, base.keys())}; '
                                 'python -m popnet.train --print_config lists every field')
  if head == 'augmentation' and rest.split('.')[0] not in base.augmentation:
    raise config_lib.ConfigError(f'--config.{path}: unknown augmentation field'
                                 f'{config_lib.closest(rest, base.augmentation.keys())}; '
                                 f'known: {sorted(base.augmentation.keys())}')


def split_overrides(argv: list[str]) -> tuple[list[str], dict[str, str]]:
  """Checks every --config.<field> name (one-line ConfigError with the closest valid name), resolves a packaged
  config name given to --config, and takes out the --config.hparams.<name> overrides: they are applied as specs
  (with_hparam_overrides), so any hyper-parameter can be set, whether or not the config file sets it."""
  from popnet import config as config_lib, configs, hparams as hparams_lib
  out, overrides, i = [], {}, 0
  while i < len(argv):
    arg = argv[i]
    if arg in ('--config', '-config') or arg.startswith(('--config=', '-config=')):
      value = arg.split('=', 1)[1] if '=' in arg else (argv[i + 1] if i + 1 < len(argv) else '')
      try:
        out.append(f'--config={configs.path(value)}')
        configs.load(value)  # a file that gives no config: one line naming it and its line, not absl's traceback
      except ValueError as e:
        raise config_lib.ConfigError(str(e)) from e
      i += 1 if '=' in arg else 2
      continue
    if not arg.startswith('--config.'):
      out.append(arg)
      i += 1
      continue
    path, value, after = _override(arg, argv, i)
    head, _, rest = path.partition('.')
    if head == 'hparams':
      if rest not in hparams_lib.PARAMS:
        raise config_lib.ConfigError(f'--config.hparams.{rest}: unknown hyper-parameter'
                                     f'{config_lib.closest(rest, hparams_lib.PARAMS)}; '
                                     f'known: {sorted(hparams_lib.PARAMS)}')
      overrides[rest] = value
    else:
      _check_field(path)
      out.extend(argv[i:after])
    i = after
  return out, overrides


def with_hparam_overrides(config, overrides: dict[str, str]):
  """`config` with hyper-parameter specs from the command line (strings, read as hparams specs)."""
  with config.unlocked():
    for name, spec in overrides.items():
      config.hparams[name] = spec
  return config


def describe(config) -> str:
  """The resolved config, then every hyper-parameter with its value in this config and what it allows."""
  from popnet import hparams as hparams_lib
  fields = {k: v for k, v in config.items() if k != 'hparams'}
  lines = ['config:'] + [f'  {k}: {v!r}' for k, v in fields.items() if k != 'augmentation']
  lines += ['  augmentation:'] + [f'    {k}: {v!r}' for k, v in config.augmentation.items()]
  lines += ['hyper-parameters (config.hparams.<name>; a value, a list, choice(...), uniform(lo, hi) or '
            'loguniform(lo, hi)):']
  for name, param in hparams_lib.PARAMS.items():
    value = config.hparams[name] if name in config.hparams else f'{param.default!r} (default)'
    allowed = hparams_lib.allowed_values(name)
    what = f'one of {list(allowed)}' if allowed is not None else f'{param.kind.__name__} {param.describe}'.strip()
    lines.append(f'  {name:<14} {str(value):<44} {what}')
  return '\n'.join(lines)


# --- the run -----------------------------------------------------------------------------------------------------
def _define_flags(argv: list[str]):
  from absl import flags
  from ml_collections import config_flags

  from popnet import configs
  config = config_flags.DEFINE_config_file(
      'config', configs.path('default'), f'{_config_help()}; override any field with --config.<field>=value and '
      f'any hyper-parameter with --config.hparams.<name>={HPARAM_SPECS} (--print_config lists them all with '
      'their allowed values)', lock_config=True, sys_argv=argv)
  for name, kind, default, text in FLAGS:
    getattr(flags, f'DEFINE_{kind}')(name, default, text)
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


def _fail(error) -> None:
  from popnet import usage
  usage.fail(error)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag (unknown, wrong type, a config field's wrong type) as one line, exit 2
  (absl's own parser prints two lines and exits 1)."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(f'{e}; python -m popnet.train --help lists the flags')


def _workdir(argv: list[str]) -> str:
  """--workdir as given on the command line (for the Ctrl-C line, before absl has parsed anything)."""
  for i, arg in enumerate(argv):
    if arg.startswith(('--workdir=', '-workdir=')):
      return arg.split('=', 1)[1]
    if arg in ('--workdir', '-workdir') and i + 1 < len(argv):
      return argv[i + 1]
  return dict((f[0], f[2]) for f in FLAGS)['workdir']


def run(argv=None) -> None:
  """Entry point of `python -m popnet.train` and `popnet-train`: Ctrl-C or SIGTERM at any moment, from the first
  import on, stops it with one line saying how to resume (exit 128 + the signal: 130, 143)."""
  argv = list(sys.argv if argv is None else argv)
  if any(arg in HELP_ARGS for arg in argv[1:]):
    print(help_text())
    sys.exit(0)
  stopping.install()
  stopping.run(lambda: _run(argv), lambda signum: f'\n{stopping.STOPPED[signum]}; rerun the same command to resume '
                                                  f'{_workdir(argv)} from its last checkpoint')


def _run(argv: list[str]) -> None:
  from absl import app, flags, logging

  from popnet import config as config_lib, shards
  try:
    argv, hparam_overrides = split_overrides(argv)
  except config_lib.ConfigError as e:
    _fail(e)
  config = _define_flags(argv)

  def main(_):
    logging.set_verbosity(logging.WARNING)  # orbax / TFDS info lines would drown the progress bar
    f = flags.FLAGS
    try:
      resolved = with_hparam_overrides(config.value, hparam_overrides)
      if f.print_config:
        config_lib.validate(resolved)
        print(describe(resolved))
        return
      shard = shards.resolve(f.shard, os.environ, bool(f.coordinator_address or f.distributed))
    except (config_lib.ConfigError, shards.ShardError) as e:
      _fail(e)
    _start_jax(f)
    _train(resolved, f, shard)

  app.run(main, argv=argv, flags_parser=_parse_flags)


def _train(config, f, shard) -> None:
  """Runs popnet.train.train, turning every expected failure into one line on stderr and exit code 2 (Ctrl-C
  and SIGTERM: run)."""
  from popnet import checkpoint, config as config_lib, data as data_lib, train, workdir as workdir_lib, zoo as zoo_lib
  from popnet import shards
  try:
    train.train(config, f.workdir, progress=f.progress, overwrite=f.overwrite, shard=shard)
  except (config_lib.ConfigError, data_lib.DatasetNotPreparedError, workdir_lib.WorkdirError, zoo_lib.ZooError,
          checkpoint.CheckpointError, shards.ShardError) as e:
    _fail(e)
