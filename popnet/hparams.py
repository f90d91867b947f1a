"""Hyper-parameter spaces, the member table sampled from them, and members as per-member arrays.

A space maps each hyper-parameter to a fixed value, `choice(a, b, ...)` (or a list), `uniform(lo, hi)` or
`loguniform(lo, hi)`. Sampling draws each hyper-parameter from its own seeded stream, so member i's row does
not change when the population grows or another hyper-parameter's distribution changes.
"""
from __future__ import annotations

import ast
import dataclasses
import math
import re
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from popnet import arch as arch_lib


@dataclasses.dataclass(frozen=True)
class Param:
  """A hyper-parameter the trainer understands: its type, default and allowed values."""
  kind: type
  default: Any
  allowed: Sequence[Any] | None = None            # categorical values
  check: Callable[[Any], bool] | None = None       # numeric range
  describe: str = ''                               # what `check` allows, for error messages


def _positive(x):
  return x > 0


def _unit_open(x):
  return 0 <= x < 1


def _datasets():
  from popnet import data
  return tuple(data.DATASETS)


OPTIMIZERS = ('adam', 'rmsprop', 'sgd')  # popnet/optim.py builds each from optax transforms
PARAMS: dict[str, Param] = {
    'dataset': Param(str, 'fashion_mnist', allowed=None),  # allowed filled lazily (data registry)
    'architecture': Param(str, 'smallcnnzoo', allowed=arch_lib.ARCHITECTURES),
    'filter_size': Param(int, 5, allowed=(1, 3, 5, 7, 9)),
    'depth_conv': Param(int, 3, allowed=(3, 4, 5)),
    'width_conv': Param(int, 8, check=_positive, describe='> 0'),
    'depth_fc': Param(int, 2, check=lambda x: x >= 0, describe='>= 0'),
    'width_fc': Param(int, 128, check=_positive, describe='> 0'),
    'batch_norm': Param(bool, True, allowed=(False, True)),
    'batch_size': Param(int, 32, check=_positive, describe='> 0'),
    'optimizer': Param(str, 'adam', allowed=OPTIMIZERS),
    'learning_rate': Param(float, 1e-3, check=_positive, describe='> 0'),
    'lr_decay': Param(float, 1.0, check=lambda x: 0 < x <= 1, describe='in (0, 1]'),
    'momentum': Param(float, 0.9, check=_unit_open, describe='in [0, 1)'),
    'beta1': Param(float, 0.9, check=_unit_open, describe='in [0, 1)'),
    'beta2': Param(float, 0.999, check=_unit_open, describe='in [0, 1)'),
    'rms_decay': Param(float, 0.9, check=_unit_open, describe='in [0, 1)'),
    'eps': Param(float, 1e-7, check=_positive, describe='> 0'),
    'weight_decay': Param(float, 0.0, check=lambda x: x >= 0, describe='>= 0'),
    'dropout': Param(float, 0.0, check=_unit_open, describe='in [0, 1)'),
    'activation': Param(str, 'relu', allowed=arch_lib.ACTIVATIONS),
    'init': Param(str, 'glorot_uniform', allowed=arch_lib.INITS),
    'augment': Param(bool, False, allowed=(False, True)),
}
NWS_ARCH_PARAMS = ('filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc', 'batch_norm')
# How per-member hyper-parameters reach a compiled program (member_arrays): numbers as float32 arrays, choices as
# indices into their allowed values, the dataset as an index into the device pool (popnet/pipeline.py). The
# architecture and batch size fix program shapes; popnet/buckets.py groups members by them.
MEMBER_FLOATS = tuple(name for name, p in PARAMS.items() if p.kind is float)
MEMBER_CHOICES = ('optimizer', 'activation', 'init')
STATIC_WHEN_SHARED = MEMBER_CHOICES + ('augment', 'dropout')  # compiled as constants when a program agrees


# Names people type for a hyper-parameter, pointed at its real name in error messages.
ALIASES = {'lr': 'learning_rate', 'wd': 'weight_decay', 'l2reg': 'weight_decay', 'batch': 'batch_size',
           'bs': 'batch_size', 'opt': 'optimizer', 'act': 'activation', 'arch': 'architecture',
           'w_init': 'init', 'initialization': 'init', 'augmentation': 'augment', 'data': 'dataset'}


def allowed_values(name: str):
  return _datasets() if name == 'dataset' else PARAMS[name].allowed


# --- distributions --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Dist:
  kind: str          # 'fixed' | 'choice' | 'uniform' | 'loguniform'
  values: tuple      # the fixed value, the choices, or (lo, hi)

  def sample(self, rng: np.random.Generator, n: int) -> list:
    if self.kind == 'fixed':
      return [self.values[0]] * n
    if self.kind == 'choice':
      return [self.values[i] for i in rng.integers(0, len(self.values), n)]
    lo, hi = self.values
    if self.kind == 'uniform':
      return list(rng.uniform(lo, hi, n))
    return list(np.exp(rng.uniform(math.log(lo), math.log(hi), n)))


_SPEC = re.compile(r'^\s*(choice|uniform|loguniform|log_uniform)\s*\((.*)\)\s*$', re.S)


def _literal(token: str):
  token = token.strip()
  try:
    return ast.literal_eval(token)
  except (ValueError, SyntaxError):
    return token  # bare words: choice(adam, sgd)


def parse_dist(name: str, spec: Any) -> Dist:
  """Turns a config value into a validated Dist; errors name the hyper-parameter and what is allowed."""
  if name not in PARAMS:
    raise ValueError(f'unknown hyper-parameter {name!r}; known: {sorted(PARAMS)}')
  if isinstance(spec, (list, tuple)):
    dist = Dist('choice', tuple(spec))
  elif isinstance(spec, str) and _SPEC.match(spec):
    kind, body = _SPEC.match(spec).groups()
    args = tuple(_literal(t) for t in body.split(',') if t.strip())
    dist = Dist('loguniform' if kind.startswith('log') else kind, args)
  else:  # a fixed value; strings from command-line overrides are read as Python literals ('0.01', 'True')
    dist = Dist('fixed', (_literal(spec) if isinstance(spec, str) else spec,))
  param = PARAMS[name]
  where = f'hparams.{name}'
  if not dist.values:
    raise ValueError(f'{where}: {dist.kind}() needs at least one value')
  if dist.kind in ('uniform', 'loguniform'):
    if param.kind not in (float,) or len(dist.values) != 2:
      raise ValueError(f'{where}: {dist.kind}(lo, hi) is only for float hyper-parameters, got {spec!r}')
    lo, hi = (float(v) for v in dist.values)
    if not lo <= hi:
      raise ValueError(f'{where}: {dist.kind}({lo}, {hi}) needs lo <= hi')
    if dist.kind == 'loguniform' and lo <= 0:
      raise ValueError(f'{where}: loguniform needs lo > 0, got {lo}')
    for v in (lo, hi):
      _check_value(name, v)
    return Dist(dist.kind, (lo, hi))
  return Dist(dist.kind, tuple(_check_value(name, v) for v in dist.values))


def _check_value(name: str, value: Any):
  param, where = PARAMS[name], f'hparams.{name}'
  if param.kind is bool:
    if not isinstance(value, (bool, np.bool_)):
      raise ValueError(f'{where}: expected True or False, got {value!r}')
    return bool(value)
  if param.kind is int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f'{where}: expected an integer, got {value!r}')
    value = int(value)
  elif param.kind is float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
      raise ValueError(f'{where}: expected a number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
      raise ValueError(f'{where}: expected a finite number, got {value!r}')
  elif not isinstance(value, str):
    raise ValueError(f'{where}: expected a string, got {value!r}')
  allowed = allowed_values(name)
  if name == 'architecture' and arch_lib.is_module_spec(value):
    allowed = None  # a user's module (popnet/flax_network.py), loaded when the run starts
  if allowed is not None and value not in allowed:
    more = " or a user's module 'package.module:Name' / 'path/to/file.py:Name'" if name == 'architecture' else ''
    raise ValueError(f'{where}: {value!r} is not allowed; choose from {list(allowed)}{more}')
  if param.check is not None and not param.check(value):
    raise ValueError(f'{where}: {value!r} is out of range; must be {param.describe}')
  return value


def parse_space(space: Mapping[str, Any]) -> dict[str, Dist]:
  """Every known hyper-parameter -> Dist (defaults for the ones the space leaves out)."""
  unknown = sorted(set(space) - set(PARAMS))
  if unknown:
    raise ValueError(f'unknown hyper-parameter(s) {unknown} in hparams; known: {sorted(PARAMS)}')
  return {name: parse_dist(name, space[name] if name in space else PARAMS[name].default) for name in PARAMS}


# --- sampling -------------------------------------------------------------------------------------------------
def _stream(seed: int, name: str) -> np.random.Generator:
  return np.random.default_rng([seed, zlib.crc32(name.encode())])


def sample_members(space: Mapping[str, Any], population: int, seed: int) -> pd.DataFrame:
  """The member table: one row per member (member_id 0..P-1), every hyper-parameter, a per-member seed and
  the architecture id of its program."""
  if not isinstance(population, int) or population <= 0:
    raise ValueError(f'population: must be a positive integer, got {population!r}')
  dists = parse_space(space)
  table = pd.DataFrame({'member_id': np.arange(population, dtype=np.int64)})
  for name, dist in dists.items():
    table[name] = pd.Series(dist.sample(_stream(seed, name), population), dtype=object).astype(
        {bool: bool, int: np.int64, float: np.float64, str: object}[PARAMS[name].kind])
  table['seed'] = _stream(seed, 'member_seed').integers(0, 2**31 - 1, population, dtype=np.int64)
  table['arch'] = [arch_of(row).name for row in table.to_dict('records')]
  return table


def arch_of(row: Mapping[str, Any]):
  """The member's architecture: a built-in one (popnet.arch.Arch) or a user's module (popnet.arch.ModuleArch)."""
  if arch_lib.is_module_spec(row['architecture']):
    return arch_lib.module_arch(row['architecture'])
  if row['architecture'] == 'nws':
    return arch_lib.nws_arch(**{k: row[k] for k in NWS_ARCH_PARAMS})
  return arch_lib.resolve(row['architecture'])


# --- members as arrays ----------------------------------------------------------------------------------------
def member_arrays(members: pd.DataFrame) -> dict[str, np.ndarray]:
  """Per-member arrays [P] of the member table's rows: MEMBER_FLOATS as float32, MEMBER_CHOICES as indices,
  `augment`, the `dataset` index (into data.DATASETS), the member's `seed` and `active` (False marks padding)."""
  hp = {name: members[name].to_numpy(np.float32) for name in MEMBER_FLOATS}
  for name in MEMBER_CHOICES:
    hp[name] = np.array([PARAMS[name].allowed.index(v) for v in members[name]], np.int32)
  hp['augment'] = members['augment'].to_numpy(bool)
  registry = allowed_values('dataset')
  hp['dataset'] = np.array([registry.index(v) for v in members['dataset']], np.int32)
  hp['seed'] = members['seed'].to_numpy(np.int64).astype(np.uint32)
  hp['active'] = np.ones(len(members), bool)
  return hp


def shared_choices(hp: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """The STATIC_WHEN_SHARED choices on which every active member agrees, as Python values (else None)."""
  out = {}
  for name in STATIC_WHEN_SHARED:
    values = np.unique(hp[name][hp['active']])
    out[name] = values[0].item() if len(values) == 1 else None
  return out
