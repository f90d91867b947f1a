"""A user's Flax network as a population: a flax.linen or flax.nnx module behind the network interface.

A config names the module as its architecture, `--config.model=package.module:Name` or
`--config.model=path/to/file.py:Name` (popnet/arch.py ModuleArch). What popnet needs of it:

- **linen**: `Name` is a `flax.linen.Module` subclass constructed with no arguments, or a function of no
  arguments returning one. `__call__(x)` takes images [B, H, W, C] (float32 in [0, 1]) and returns logits
  [B, classes]. Train/eval mode reaches it through the first of these keyword arguments its `__call__` takes:
  `train` (True when training), `training`, `deterministic` or `is_training`; dropout draws from the
  `'dropout'` rng stream (`nn.Dropout`), batch norm keeps its running statistics in the `batch_stats`
  collection (`nn.BatchNorm(use_running_average=not train)`).
- **nnx**: `Name` is a `flax.nnx.Module` subclass, or a function, called as `Name(rngs=nnx.Rngs(key))` (and
  `input_shape=(H, W, C)` when it takes that keyword);
  `__call__(x)` as above. popnet switches it with `model.train()` / `model.eval()` (nnx.Dropout,
  nnx.BatchNorm); `nnx.Param` are its parameters, `nnx.BatchStat` its running statistics; rng streams are
  re-seeded from the member's key at every step. Other nnx variable types are refused.
- **per-member dropout**: if `__call__` takes a `dropout_rate` keyword, it receives the member's `dropout`
  hyper-parameter (a Python float when every member of the program shares it, else a traced scalar: use it in
  jnp arithmetic, e.g. popnet.models.drop_units, not as `nn.Dropout(rate=...)`). Otherwise the module's own
  dropout rates apply and the `dropout` hyper-parameter is not used.
- **initialization**: every member is initialized from its own key (`module.init` / the nnx constructor). With
  `init` = 'module' (the default for user modules) the module's own initializers stand. Any other scheme of
  popnet.arch.INITS redraws every parameter named `kernel` with 2 or more dimensions as the built-in CNNs do
  (fan_in = shape[-2] x receptive field, fan_out = shape[-1] x receptive field, receptive field =
  prod(shape[:-2]); Flax's [..., in, out] kernels); biases, norm scales and other parameters keep the module's
  initialization.
- The optimizer, learning rate and schedule, weight decay, augmentation and data order are the member's own,
  as for the built-in networks; `activation` is not used (the module has its own).

The zoo's layout is the variables tree {'batch_stats', 'params'} in jax's flattening order (popnet.layout
Layout.of_tree: a row is `np.concatenate([x.ravel() for x in jax.tree.leaves(variables)])`), recorded with the
module's import path and its source file's sha256: `Zoo.predict` rebuilds the module and refuses a changed
definition.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import inspect
import math
import os
import sys
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from popnet import arch as arch_lib
from popnet.layout import Layout
from popnet.network import single_architecture_rows

TRAIN_FLAGS = ('train', 'training', 'deterministic', 'is_training')  # deterministic is the negation


ModelError = arch_lib.ModelError


# --- loading ----------------------------------------------------------------------------------------------------
def load(model: str):
  """The object a module spec names ('package.module:Name' or 'path/to/file.py:Name')."""
  source, name = model.rsplit(':', 1)
  try:
    if source.endswith('.py'):
      path = os.path.abspath(source)
      key = f'popnet_user_model_{abs(hash(path))}'
      if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, path)
        if spec is None or not os.path.isfile(path):
          raise ModelError(f'model {model!r}: no file {source!r} (relative paths are read from the working '
                           'directory)')
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
      module = sys.modules[key]
    else:
      module = importlib.import_module(source)
  except ModelError:
    raise
  except Exception as e:  # the user's file: any error in it is theirs, shown in one line
    raise ModelError(f'model {model!r}: importing {source} failed: {type(e).__name__}: {e}') from e
  if not hasattr(module, name):
    raise ModelError(f'model {model!r}: {source} defines no {name!r}')
  return getattr(module, name)


def _is_nnx(obj) -> bool:
  if inspect.isclass(obj):
    return issubclass(obj, nnx.Module)
  return 'rngs' in inspect.signature(obj).parameters


def _linen_module(obj, model: str):
  import flax.linen as nn
  module = obj() if callable(obj) else obj
  if not isinstance(module, nn.Module):
    raise ModelError(f'model {model!r}: expected a flax.linen.Module (class or factory of no arguments) or a '
                     f'flax.nnx.Module, got {type(module).__name__}')
  return module


def _call_keywords(fn: Callable) -> set[str]:
  return set(inspect.signature(fn).parameters)


# --- the network ------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FlaxNetwork:
  """A ModuleArch as a network of the engine (popnet/network.py); every member runs the module as itself."""
  arch: arch_lib.ModuleArch
  input_shape: tuple[int, int, int]

  @classmethod
  def of(cls, arch: arch_lib.ModuleArch, input_shape) -> 'FlaxNetwork':
    """The network of a recorded ModuleArch, after checking that its source is unchanged."""
    now = arch_lib.source_sha256(arch.model)
    if now != arch.source_sha256:
      raise ModelError(f'model {arch.name} ({arch.model}): its source changed since the zoo was written '
                       f'(sha256 {arch.source_sha256[:12]}... then, {now[:12]}... now); restore the definition the '
                       'zoo was trained with, or retrain')
    return cls(arch, tuple(input_shape))

  @property
  def name(self) -> str:
    return self.arch.name

  @functools.cached_property
  def _model(self) -> '_Model':
    obj = load(self.arch.model)
    if _is_nnx(obj):
      return _NnxModel(obj, self.arch.model, self.input_shape)
    return _LinenModel(_linen_module(obj, self.arch.model))

  @functools.cached_property
  def layout(self) -> Layout:
    shapes = jax.eval_shape(lambda key: self._model.init(key, self._example()), jax.random.PRNGKey(0))
    return Layout.of_tree(shapes)

  @functools.cached_property
  def num_outputs(self) -> int:
    variables = jax.eval_shape(lambda key: self._model.init(key, self._example()), jax.random.PRNGKey(0))
    logits = jax.eval_shape(lambda v, x: self._model.apply(v, x, train=False, key=None, dropout=0.0)[0], variables,
                            self._example())
    if len(logits.shape) != 2:
      raise ModelError(f'model {self.arch.model!r}: expected logits [batch, classes], got shape {logits.shape}')
    return int(logits.shape[-1])

  def _example(self):
    return jnp.zeros((1, *self.input_shape), jnp.float32)

  @functools.lru_cache(maxsize=None)  # compiles a forward pass: once per network (the plan asks several times)
  def flops_per_example(self) -> int:
    """Forward FLOPs of one example in evaluation mode (XLA's cost analysis of the compiled forward pass)."""
    variables = jax.eval_shape(lambda key: self._model.init(key, self._example()), jax.random.PRNGKey(0))
    forward = jax.jit(lambda v, x: self._model.apply(v, x, train=False, key=None, dropout=0.0)[0])
    cost = forward.lower(variables, self._example()).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return int((cost or {}).get('flops', 0))

  # --- the network interface ---
  def configured(self, conv_impl: str, own_shapes: bool) -> 'FlaxNetwork':
    return self  # the module chooses its own convolutions

  def member_arrays(self, members) -> dict:
    return {}

  def init(self, hp, key, init_scheme):
    k_module, k_scheme = jax.random.split(key)
    variables = self._model.init(k_module, self._example())
    return {'params': redraw_kernels(variables['params'], k_scheme, init_scheme),
            'batch_stats': variables.get('batch_stats', {})}

  def apply(self, hp, variables, images, *, train: bool, activation=None, dropout=0.0, key=None):
    logits, stats = self._model.apply(variables, images, train=train, key=key, dropout=dropout)
    return logits, stats

  def own_values(self, hp):
    return lambda tree: tree

  def zoo_rows(self, members, rows):
    return single_architecture_rows(self.arch.name, rows)

  def training_flops(self, archs, examples, own_shape_convs: bool) -> float:
    return sum(examples) * self.flops_per_example()


class _Model:
  """init(key, example) -> {'params', 'batch_stats'}; apply(variables, x, train, key, dropout) -> (logits,
  batch_stats)."""


class _LinenModel(_Model):
  def __init__(self, module):
    self.module = module
    keywords = _call_keywords(module.__call__)
    self.flag = next((k for k in TRAIN_FLAGS if k in keywords), None)
    self.takes_rate = 'dropout_rate' in keywords

  def _kwargs(self, train: bool, dropout):
    kwargs = {} if self.flag is None else {self.flag: (not train) if self.flag == 'deterministic' else train}
    if self.takes_rate:
      kwargs['dropout_rate'] = dropout if train else 0.0
    return kwargs

  def init(self, key, example):
    variables = self.module.init({'params': key, 'dropout': key}, example, **self._kwargs(False, 0.0))
    return dict(variables)

  def apply(self, variables, x, *, train: bool, key, dropout):
    stats = variables.get('batch_stats', {})
    collections = {'params': variables['params'], **({'batch_stats': stats} if stats else {})}
    kwargs = self._kwargs(train, dropout)
    if not train:
      return self.module.apply(collections, x, **kwargs), stats
    if stats:
      logits, updated = self.module.apply(collections, x, rngs={'dropout': key}, mutable=['batch_stats'], **kwargs)
      return logits, updated['batch_stats']
    return self.module.apply(collections, x, rngs={'dropout': key}, **kwargs), stats


class _NnxModel(_Model):
  def __init__(self, factory, model: str, input_shape):
    self.factory, self.model = factory, model
    self.takes_rate = 'dropout_rate' in _call_keywords(factory.__call__ if inspect.isclass(factory) else factory)
    takes_shape = 'input_shape' in _call_keywords(factory.__init__ if inspect.isclass(factory) else factory)
    self.extra = {'input_shape': tuple(input_shape)} if takes_shape else {}

  def _build(self, key):
    return self.factory(rngs=nnx.Rngs(key), **self.extra)

  def _split(self, module):
    graph, params, stats, rngs, rest = nnx.split(module, nnx.Param, nnx.BatchStat, nnx.RngState, ...)
    leftover = nnx.to_pure_dict(rest)
    if jax.tree.leaves(leftover):
      raise ModelError(f'model {self.model!r}: nnx variables other than Param, BatchStat and rng state are not '
                       f'supported: {sorted(leftover)}')
    return graph, params, stats, rngs, rest

  def init(self, key, example):
    _, params, stats, _, _ = self._split(self._build(key))
    return {'params': nnx.to_pure_dict(params), 'batch_stats': nnx.to_pure_dict(stats)}

  def apply(self, variables, x, *, train: bool, key, dropout):
    graph, params, stats, rngs, rest = self._split(nnx.eval_shape(lambda: self._build(jax.random.PRNGKey(0))))
    nnx.replace_by_pure_dict(params, variables['params'])
    nnx.replace_by_pure_dict(stats, variables.get('batch_stats', {}))
    rngs = jax.tree.map(lambda _: None, rngs)  # placeholders, re-seeded below
    module = nnx.merge(graph, params, stats, _seeded(rngs, key), rest)
    module.train() if train else module.eval()
    kwargs = {'dropout_rate': dropout if train else 0.0} if self.takes_rate else {}
    logits = module(x, **kwargs)
    return logits, nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))


def _seeded(rngs, key):
  """An nnx rng state whose every stream starts from `key` (folded by stream) at count 0."""
  key = jax.random.PRNGKey(0) if key is None else key
  pure = {}
  for i, (path, _) in enumerate(sorted(_pure_leaves(nnx.to_pure_dict(rngs)))):
    pure_path = pure
    for p in path[:-1]:
      pure_path = pure_path.setdefault(p, {})
    pure_path[path[-1]] = (jax.random.wrap_key_data(jax.random.fold_in(key, i)) if path[-1] == 'key'
                           else jnp.zeros((), jnp.uint32))
  nnx.replace_by_pure_dict(rngs, pure)
  return rngs


def _pure_leaves(tree, path=()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _pure_leaves(v, path + (k,))
  else:
    yield path, tree


# --- init schemes on a user's kernels ----------------------------------------------------------------------------
def _scheme_candidates(value, key):
  """The popnet.arch.INITS candidates for one kernel (the last: the module's own value)."""
  shape = value.shape
  fan_in, fan_out = arch_lib.kernel_fans(shape)
  ku, kn, kt = jax.random.split(key, 3)
  return (lambda: jnp.full(shape, 0.1, value.dtype),
          lambda: jax.random.normal(kn, shape, value.dtype),
          lambda: jax.random.uniform(ku, shape, value.dtype, -1.0, 1.0) * math.sqrt(6.0 / (fan_in + fan_out)),
          lambda: jax.random.truncated_normal(kt, -2.0, 2.0, shape, value.dtype) / arch_lib.TRUNC_STD
          * math.sqrt(2.0 / (fan_in + fan_out)),
          lambda: jax.random.truncated_normal(kt, -2.0, 2.0, shape, value.dtype) / arch_lib.TRUNC_STD
          * math.sqrt(2.0 / fan_in),
          lambda: value)


def redraw_kernels(params, key, init_scheme):
  """params with every `kernel` of >= 2 dimensions drawn by `init_scheme` (index into INITS; a traced index
  selects per member), each from its own key; everything else unchanged."""
  paths = [p for p, v in jax.tree_util.tree_flatten_with_path(params)[0]]
  leaves = jax.tree.leaves(params)

  def redraw(i, path, value):
    if getattr(path[-1], 'key', None) != 'kernel' or value.ndim < 2:
      return value
    candidates = _scheme_candidates(value, jax.random.fold_in(key, i))
    return candidates[init_scheme]() if isinstance(init_scheme, int) else jax.lax.switch(init_scheme, candidates)

  new = [redraw(i, p, v) for i, (p, v) in enumerate(zip(paths, leaves))]
  return jax.tree.unflatten(jax.tree.structure(params), new)

