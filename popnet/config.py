"""The experiment config: its schema (every field with its default) and validation before any compilation.

Configs are ml_collections ConfigDicts, as in Flax's examples: a file with `get_config()`, overridden on the
command line with `--config.field=value` (popnet/cli.py reads the command line). `validate` checks every
field and every hyper-parameter spec and raises ConfigError naming the field, the value and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib

import ml_collections
import numpy as np

from popnet import arch as arch_lib
from popnet import augment as augment_lib
from popnet import conv as conv_lib
from popnet import hparams as hparams_lib


class ConfigError(ValueError):
  """A config field has a wrong name, type or value."""


def base_config() -> ml_collections.ConfigDict:
  """Every field the trainer reads, with its default."""
  c = ml_collections.ConfigDict()
  c.seed = 0                      # samples the member table (and so every member's own seed)
  c.population = 64               # number of members
  c.epochs = 5
  c.snapshots = 6                 # N snapshots evenly spaced from epoch 0 (initialization) to the last epoch
  c.snapshot_epochs = ()          # or an explicit list of epochs (overrides `snapshots`)
  c.input_shape = (28, 28, 1)     # common (H, W, C) every dataset is resized / converted to
  c.val_fraction = 0.1            # validation part of the train split (paper: 90/10)
  c.split_seed = 0                # the train/validation split (same for all members)
  c.max_train_examples = 0        # use a fixed random subset of the training part of this size (0 = all)
  c.eval_train_examples = 10000   # training-set metrics on a fixed subset of this size (0 = all)
  c.eval_val_examples = 0         # validation metrics on a fixed subset of this size (0 = all)
  c.eval_test_examples = 0        # test metrics on a fixed subset of the test split (0 = all)
  c.eval_batch_size = 250
  c.conv_impl = 'auto'            # 'auto' | 'xla' | 'xla_canonical' | 'im2col' (popnet.conv)
  c.member_chunk = 0              # members vmapped together inside lax.map (0 = auto)
  c.seconds_per_call = 2.0        # target duration of one compiled training call (progress granularity)
  c.steps_per_call = 0            # or a fixed number of steps per call (0 = adapt to seconds_per_call)
  c.data_dir = ''                 # TFDS data dir ('' = $TFDS_DATA_DIR or TFDS's default)
  c.checkpoint_every = 1          # epochs between checkpoints (0 = never)
  c.eval_every = 1                # epochs between the evaluations of the learning curves (0 = at snapshots only)
  c.grouping = 'buckets'          # 'buckets' (padded architectures, popnet/buckets.py) | 'architecture'
  c.max_programs = 32             # at most this many compiled programs (buckets) in a run
  c.compile_seconds = 30.0        # cost model: seconds to compile one program
  c.flops_per_second = 5e10       # cost model: sustained training FLOP/s of the devices
  c.plan_only = False             # print the plan (programs, members, padded-compute overhead) and stop
  c.tensorboard = False           # TensorBoard event files of population summaries in <workdir>/tensorboard/
                                  # (popnet/summaries.py; needs the extra: pip install 'popnet[tensorboard]')
  c.model = ''                    # a user's Flax module as every member's network: 'package.module:Name' or
                                  # 'path/to/file.py:Name' (popnet/flax_network.py); '' = hparams.architecture
  c.augmentation = ml_collections.ConfigDict(
      {f.name: (tuple(f.default) if isinstance(f.default, tuple) else f.default)
       for f in dataclasses.fields(augment_lib.AugmentSpec)})
  c.hparams = ml_collections.ConfigDict(type_safe=False)  # a value may be fixed, a list or a 'choice(...)' spec
  return c


# config.task: absent for classification (the default); an INR fit (popnet/task.py InrFit, docs/inr.md) sets
# config.task = inr_task() and its fields. Absent rather than defaulted, so a classification run's config is as it was.
INR_TASK = {
    'name': 'inr_fit',
    'steps_per_epoch': 100,     # fitting steps between two epochs (snapshots, checkpoints); epochs x this = steps
    'steps': 0,                 # each member's step budget (0 = epochs x steps_per_epoch)
    'psnr_threshold': 0.0,      # dB: a member stops at the first step whose PSNR reaches it (0 = never stops)
    'max_images': 0,            # fit a fixed random subset of this many images of train + test (0 = all of them)
    'train_views': 1,           # independently initialized fits per training image (NFN: 10); val/test get one
    'split': 'dws',             # 'dws': val = a random 5,000 of train (split_seed), test = test;
                                # 'nfn': by index into train + test: [0, val_start) train, [val_start, test_start)
    'val_size': 5000,           #   val, the rest test (NFN: 45,000 / 50,000)
    'val_start': 45000,
    'test_start': 50000,
}
INR_SPLITS = ('dws', 'nfn')


def inr_task(**fields) -> ml_collections.ConfigDict:
  """The config.task section of an INR fit, INR_TASK's defaults with `fields` set."""
  unknown = sorted(set(fields) - set(INR_TASK))
  if unknown:
    raise ConfigError(f'config.task: unknown field(s) {unknown}; known: {sorted(INR_TASK)}')
  return ml_collections.ConfigDict({**INR_TASK, **fields})


def task_name(config) -> str:
  return config.task.name if 'task' in config else 'classification'


def _field_error(field, value, allowed):
  return ConfigError(f'config.{field}: got {value!r}; allowed: {allowed}')


def _is_int(x):
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_number(x):
  return isinstance(x, (int, float, np.number)) and not isinstance(x, bool)


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for the first bad field (unknown keys, types, ranges, hyper-parameter specs)."""
  for check in (_check_known_fields, _check_numbers, _check_choices, _check_snapshots, _check_specs, _check_task):
    check(config)


def _check_known_fields(config) -> None:
  base = base_config()
  unknown = sorted(set(config.keys()) - set(base.keys()) - {'task'})
  if unknown:
    raise ConfigError(f'unknown config field(s) {unknown}{closest(unknown[0], base.keys())}; known fields: '
                      f'{sorted(base.keys())}')
  unknown = sorted(set(config.augmentation.keys()) - set(base.augmentation.keys()))
  if unknown:
    raise ConfigError(f'unknown config.augmentation field(s) {unknown}; known: {sorted(base.augmentation.keys())}')


def _check_numbers(config) -> None:
  for field in ('population', 'epochs', 'snapshots', 'eval_batch_size', 'max_programs'):
    if not _is_int(config[field]) or config[field] <= 0:
      raise _field_error(field, config[field], 'a positive integer')
  for field in ('seed', 'split_seed', 'max_train_examples', 'eval_train_examples', 'eval_val_examples',
                'eval_test_examples', 'member_chunk', 'checkpoint_every', 'eval_every', 'steps_per_call'):
    if not _is_int(config[field]) or config[field] < 0:
      raise _field_error(field, config[field], 'an integer >= 0')
  if not _is_number(config.val_fraction) or not 0 <= config.val_fraction < 1:
    raise _field_error('val_fraction', config.val_fraction, 'a number in [0, 1)')
  for field in ('seconds_per_call', 'flops_per_second'):
    if not _is_number(config[field]) or config[field] <= 0:
      raise _field_error(field, config[field], 'a number > 0')
  if not _is_number(config.compile_seconds) or config.compile_seconds < 0:
    raise _field_error('compile_seconds', config.compile_seconds, 'a number >= 0')


def _check_choices(config) -> None:
  if config.grouping not in ('buckets', 'architecture'):
    raise _field_error('grouping', config.grouping, ['buckets', 'architecture'])
  if not isinstance(config.plan_only, bool):
    raise _field_error('plan_only', config.plan_only, 'True or False')
  shape = tuple(config.input_shape)
  if len(shape) != 3 or not all(_is_int(s) and s > 0 for s in shape) or shape[2] not in (1, 3):
    raise _field_error('input_shape', config.input_shape, '(height, width, channels) with channels 1 or 3')
  if config.conv_impl not in conv_lib.CONV_IMPLS:
    raise _field_error('conv_impl', config.conv_impl, list(conv_lib.CONV_IMPLS))
  if not isinstance(config.data_dir, str):
    raise _field_error('data_dir', config.data_dir, 'a path string')


def _check_snapshots(config) -> None:
  epochs = list(config.snapshot_epochs)
  if epochs:
    if any(not _is_int(e) or not 0 <= e <= config.epochs for e in epochs):
      raise _field_error('snapshot_epochs', tuple(epochs), f'integers in [0, epochs={config.epochs}]')
  elif config.snapshots > config.epochs + 1:
    raise _field_error('snapshots', config.snapshots, f'at most epochs + 1 = {config.epochs + 1}')


def _check_specs(config) -> None:
  from popnet import data as data_lib  # pylint: disable=g-import-not-at-top
  data_lib.include_registered(config.data_dir or None)  # datasets registered there are allowed hparams.dataset
  try:
    augment_spec(config)
  except (TypeError, ValueError) as e:
    raise ConfigError(f'config.augmentation: {e}') from e
  try:
    hparams_lib.parse_space(space(config))
  except ValueError as e:
    raise ConfigError(f'config.{e}' if str(e).startswith('hparams.') else str(e)) from e


def _check_task(config) -> None:
  if 'task' not in config:
    return
  task = config.task
  unknown = sorted(set(task.keys()) - set(INR_TASK))
  if unknown:
    raise ConfigError(f'config.task: unknown field(s) {unknown}; known: {sorted(INR_TASK)}')
  if task.get('name') != 'inr_fit':
    raise _field_error('task.name', task.get('name'), ['inr_fit'])
  for field in ('steps_per_epoch', 'train_views', 'val_size'):
    if not _is_int(task[field]) or task[field] <= 0:
      raise _field_error(f'task.{field}', task[field], 'a positive integer')
  for field in ('steps', 'max_images', 'val_start', 'test_start'):
    if not _is_int(task[field]) or task[field] < 0:
      raise _field_error(f'task.{field}', task[field], 'an integer >= 0')
  if not _is_number(task.psnr_threshold) or task.psnr_threshold < 0:
    raise _field_error('task.psnr_threshold', task.psnr_threshold, 'a number >= 0 (0: no early stopping)')
  if task.split not in INR_SPLITS:
    raise _field_error('task.split', task.split, list(INR_SPLITS))
  hp = dict(config.hparams)
  for name, allowed in (('architecture', [a for a in arch_lib.ARCHITECTURES if a.startswith('siren')]),
                        ('dataset', 'one dataset (a fixed value)')):
    value = hp.get(name)
    if not isinstance(value, str) or (name == 'architecture' and value not in allowed) or '(' in value:
      raise _field_error(f'hparams.{name}', value, allowed)


def space(config) -> dict:
  """The hyper-parameter space members are sampled from: config.hparams, and with config.model (a user's
  module) that module as every member's architecture, with its own initialization unless the space sets `init`."""
  out = dict(config.hparams)
  if config.model:
    out['architecture'] = config.model
    out.setdefault('init', 'module')
  return out


def member_layout(row, input_shape):
  """The layout of a member's architecture on `input_shape`; ConfigError when the architecture cannot run there."""
  try:
    return hparams_lib.arch_of(row).layout(tuple(input_shape))
  except arch_lib.ModelError as e:
    raise ConfigError(f'config.model: {e}') from e
  except ValueError as e:
    raise ConfigError(f'config.hparams.architecture: {row["architecture"]!r} cannot run on config.input_shape '
                      f'{tuple(input_shape)}: {e}') from e


def check_classes(row, input_shape) -> None:
  """ConfigError when a member's dataset has more classes than its architecture has outputs (a registered
  dataset can have any number; a label past the last output would train silently wrong)."""
  from popnet import data as data_lib  # pylint: disable=g-import-not-at-top
  arch = hparams_lib.arch_of(row)
  outputs = arch.num_outputs if hasattr(arch, 'num_outputs') else arch.network(input_shape).num_outputs
  classes = data_lib.DATASETS[row['dataset']].num_classes
  if classes > outputs:
    raise ConfigError(f'config.hparams.dataset: {row["dataset"]!r} has {classes} classes, architecture '
                      f'{row["architecture"]!r} has {outputs} outputs; allowed: datasets of at most {outputs} classes')


def snapshot_epochs(config) -> list[int]:
  """Sorted unique epochs at which every member is evaluated and its weights written (0 = initialization)."""
  if len(config.snapshot_epochs):
    return sorted(set(int(e) for e in config.snapshot_epochs))
  if config.snapshots == 1:
    return [config.epochs]
  return sorted(set(np.round(np.linspace(0, config.epochs, config.snapshots)).astype(int).tolist()))


def augment_spec(config) -> augment_lib.AugmentSpec:
  values = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in config.augmentation.items()}
  for k, v in values.items():
    numbers = v if isinstance(v, tuple) else (v,)
    if not all(_is_number(x) and x >= 0 for x in numbers):
      raise ValueError(f'{k}: got {v!r}; allowed: numbers >= 0')
  return augment_lib.AugmentSpec(**values)


def closest(name: str, known) -> str:
  """' (did you mean 'x'?)' for the closest known name (or a hyper-parameter's usual alias), or ''."""
  match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  if name in hparams_lib.ALIASES and hparams_lib.ALIASES[name] in known:
    match = [hparams_lib.ALIASES[name]]
  return f" (did you mean '{match[0]}'?)" if match else ''
