"""The population engine: one compiled program trains, evaluates and flattens every member of a cohort.

Layout of the computation (reference/perf.md):
  jit( shard_map over devices ( lax.map over chunks of K members, vmapped inside ( fori_loop over steps ))))
Each member's step gathers its own batch from the device-resident uint8 dataset through its own per-epoch
permutation, augments on the device, and updates its own optimizer state. Every random draw is
`fold_in(member key, purpose, counter)`, so a member's trajectory depends only on its seed and its
hyper-parameters: not on the population around it, the device count, or how steps are split into calls.

A member whose loss or new weights are not finite is frozen (its last finite state is kept) and flagged.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from popnet import augment as augment_lib
from popnet import models, optim

try:
  from jax import shard_map as _shard_map
  _NO_VMA_CHECK = {'check_vma': False}
except ImportError:  # jax < 0.6
  from jax.experimental.shard_map import shard_map as _shard_map
  _NO_VMA_CHECK = {'check_rep': False}
# Every member is independent, so there is nothing for shard_map's replication checks to verify; they only
# reject branch outputs that mix per-member and constant values.

CATEGORICAL = {'optimizer': optim.OPTIMIZERS, 'activation': models.ACTIVATIONS, 'init': models.INITS}
FLOAT_HPARAMS = ('learning_rate', 'lr_decay', 'beta1', 'beta2', 'rms_decay', 'momentum', 'eps', 'weight_decay',
                 'dropout')
EVAL_SEGMENTS = ('train', 'val', 'test')


@dataclasses.dataclass(frozen=True)
class Program:
  """The static part of a cohort: everything that makes a distinct compiled program."""
  arch: models.Arch
  input_shape: tuple[int, int, int]
  batch_size: int
  steps_per_epoch: int
  conv_impl: str
  member_chunk: int
  augment_spec: augment_lib.AugmentSpec
  # Per-member choices shared by the whole cohort become Python constants (None = per-member array).
  optimizer: int | None = None
  activation: int | None = None
  init: int | None = None
  augment: bool | None = None
  dropout: float | None = None
  eval_batch_size: int = 1000


@dataclasses.dataclass
class DeviceData:
  """One dataset on the device(s), replicated: images of train+test, labels, and index sets."""
  images: jax.Array      # uint8 [N_train_full + N_test, H, W, C]
  labels: jax.Array      # int32 [N]
  train_idx: jax.Array   # int32 [n_train]: the training part of the train split
  eval_idx: jax.Array    # int32 [M]: train subset, validation, test (padded to eval batches)
  eval_seg: jax.Array    # int32 [M]: 0 train, 1 val, 2 test, -1 padding
  num_classes: int

  def arrays(self):
    return (self.images, self.labels, self.train_idx, self.eval_idx, self.eval_seg)


def member_hparams(members) -> dict[str, np.ndarray]:
  """Per-member arrays from the member table (rows = members)."""
  hp = {name: members[name].to_numpy(np.float32) for name in FLOAT_HPARAMS}
  for name, choices in CATEGORICAL.items():
    hp[name] = np.array([choices.index(v) for v in members[name]], np.int32)
  hp['augment'] = members['augment'].to_numpy(bool)
  hp['seed'] = members['seed'].to_numpy(np.int64).astype(np.uint32)
  hp['active'] = np.ones(len(members), bool)
  return hp


def static_choices(hp: dict[str, np.ndarray]) -> dict[str, Any]:
  """The per-member choices that are equal across the cohort, as Python values for `Program`."""
  out = {}
  for name in ('optimizer', 'activation', 'init', 'augment', 'dropout'):
    values = np.unique(hp[name][hp['active']])
    out[name] = values[0].item() if len(values) == 1 else None
  return out


def _choice(program: Program, hp, name):
  static = getattr(program, name)
  return static if static is not None else hp[name]


def _where_tree(pred, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _all_finite(tree):
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def _member_optimizer(program: Program, hp):
  return optim.make(_choice(program, hp, 'optimizer'), learning_rate=hp['learning_rate'], beta1=hp['beta1'],
                    beta2=hp['beta2'], rms_decay=hp['rms_decay'], momentum=hp['momentum'], eps=hp['eps'],
                    weight_decay=hp['weight_decay'])


def _member_key(hp):
  return jax.random.PRNGKey(hp['seed'])


# --- per-member functions (no population axis) -------------------------------------------------------------
def member_init(program: Program, hp):
  variables = models.init(program.arch, jax.random.fold_in(_member_key(hp), 0), program.input_shape,
                          _choice(program, hp, 'init'))
  opt_state = _member_optimizer(program, hp).init(variables['params'])
  return {'variables': variables, 'opt_state': opt_state, 'diverged': jnp.array(False),
          'diverged_step': jnp.array(-1, jnp.int32)}


def member_permutation(program: Program, hp, n_train, epoch):
  return jax.random.permutation(jax.random.fold_in(jax.random.fold_in(_member_key(hp), 1), epoch), n_train)


def member_loss(program: Program, params, batch_stats, hp, images, labels, key):
  logits, new_stats = models.apply(program.arch, {'params': params, 'batch_stats': batch_stats}, images, train=True,
                                   activation=_choice(program, hp, 'activation'),
                                   dropout=_choice(program, hp, 'dropout'), key=key, conv_impl=program.conv_impl)
  loss, _ = models.loss_and_accuracy(logits, labels)
  return jnp.mean(loss), new_stats


def member_train(program: Program, state, hp, perm, data, epoch, start, stop):
  """Steps [start, stop) of `epoch` for one member; returns (state, summed training loss)."""
  images, labels, train_idx = data[:3]
  optimizer = _member_optimizer(program, hp)
  key = jax.random.fold_in(_member_key(hp), 2)
  lr = hp['learning_rate'] * hp['lr_decay'] ** epoch.astype(jnp.float32)
  augment_flag = _choice(program, hp, 'augment')
  b = program.batch_size

  def step(s, carry):
    variables, opt_state, diverged, diverged_step, loss_sum = carry
    global_step = epoch * program.steps_per_epoch + s
    idx = train_idx[jax.lax.dynamic_slice(perm, (s * b,), (b,))]
    x = images[idx].astype(jnp.float32) / 255.0
    k_aug, k_drop = jax.random.split(jax.random.fold_in(key, global_step))
    if augment_flag is True:
      x = augment_lib.augment_batch(k_aug, x, jnp.asarray(True), program.augment_spec)
    elif augment_flag is not False:
      x = jax.lax.cond(augment_flag, lambda: augment_lib.augment_batch(k_aug, x, jnp.asarray(True),
                                                                       program.augment_spec), lambda: x)
    (loss, new_stats), grads = jax.value_and_grad(member_loss, argnums=1, has_aux=True)(
        program, variables['params'], variables['batch_stats'], hp, x, labels[idx], k_drop)
    updates, new_opt_state = optimizer.update(grads, opt_state, variables['params'])
    new_variables = {'params': optax.apply_updates(variables['params'], updates), 'batch_stats': new_stats}
    finite = jnp.isfinite(loss) & _all_finite(new_variables)
    ok = finite & ~diverged & hp['active']
    variables = _where_tree(ok, new_variables, variables)
    opt_state = _where_tree(ok, new_opt_state, opt_state)
    newly_diverged = ~finite & ~diverged & hp['active']
    diverged_step = jnp.where(newly_diverged, global_step, diverged_step)
    return variables, opt_state, diverged | newly_diverged, diverged_step, loss_sum + jnp.where(ok, loss, 0.0)

  carry = (state['variables'], optim.set_learning_rate(state['opt_state'], lr), state['diverged'],
           state['diverged_step'], jnp.zeros_like(hp['learning_rate']))
  variables, opt_state, diverged, diverged_step, loss_sum = jax.lax.fori_loop(start, stop, step, carry)
  return {'variables': variables, 'opt_state': opt_state, 'diverged': diverged,
          'diverged_step': diverged_step}, loss_sum


def member_evaluate(program: Program, state, hp, data):
  """[3 metrics (loss sum, correct, count), 3 segments (train, val, test)] in evaluation mode."""
  images, labels, _, eval_idx, eval_seg = data
  e = program.eval_batch_size
  segments = jnp.arange(len(EVAL_SEGMENTS))

  def batch(acc, chunk):
    idx, seg = chunk
    logits, _ = models.apply(program.arch, state['variables'], images[idx].astype(jnp.float32) / 255.0,
                             train=False, activation=_choice(program, hp, 'activation'),
                             conv_impl=program.conv_impl)
    loss, correct = models.loss_and_accuracy(logits, labels[idx])
    onehot = seg[:, None] == segments[None, :]
    sums = jnp.stack([jnp.where(onehot, loss[:, None], 0.0).sum(0), (onehot & correct[:, None]).sum(0),
                      onehot.sum(0)]).astype(jnp.float32)
    return acc + sums, None

  acc0 = jnp.zeros((3, len(EVAL_SEGMENTS)), jnp.float32) + jnp.zeros_like(hp['learning_rate'])  # varying over 'pop'
  acc, _ = jax.lax.scan(batch, acc0,
                        (eval_idx.reshape(-1, e), eval_seg.reshape(-1, e)))
  return acc


_EXECUTABLES: dict[tuple, Any] = {}


# --- population programs ---------------------------------------------------------------------------------------
class PopulationPrograms:
  """Compiled population functions of one Program on one mesh. Members are the leading axis of every
  per-member argument, sharded over the mesh's 'pop' axis; datasets are replicated."""

  def __init__(self, program: Program, mesh: Mesh):
    self.program, self.mesh = program, mesh
    self.compile_seconds = 0.0
    self.compiled: dict[str, Any] = {}
    self.layout = program.arch.layout(program.input_shape)

  def _population(self, fn, replicated_args: int, donate=()):
    """fn(member args..., replicated args...) -> population fn over [P] members, chunked by lax.map."""
    chunk = self.program.member_chunk

    def local(*args):
      n_member = len(args) - replicated_args
      member_args, shared = args[:n_member], args[n_member:]
      # chunk 1: no vmap at all, so per-member choices (lax.switch / cond) run only their own branch
      return jax.lax.map(lambda xs: fn(*xs, *shared), member_args, batch_size=None if chunk == 1 else chunk)

    def population(*args):
      n_member = len(args) - replicated_args
      specs = (P('pop'),) * n_member + (P(),) * replicated_args
      return _shard_map(local, mesh=self.mesh, in_specs=specs, out_specs=P('pop'), **_NO_VMA_CHECK)(*args)

    return jax.jit(population, donate_argnums=donate)

  def _run(self, name, fn, *args):
    """AOT-compiles `fn` on first use (timed separately from running) and calls it. Executables are shared
    by every PopulationPrograms of the same Program, mesh and argument shapes (e.g. cohorts on two datasets
    of equal size)."""
    key = (self.program, tuple(d.id for d in self.mesh.devices.flat), name, jax.tree.structure(args),
           tuple((x.shape, x.dtype) for x in jax.tree.leaves(args)))
    if key not in _EXECUTABLES:
      t0 = time.perf_counter()
      _EXECUTABLES[key] = fn.lower(*args).compile()
      self.compile_seconds += time.perf_counter() - t0
    self.compiled[name] = _EXECUTABLES[key]
    return self.compiled[name](*args)

  @functools.cached_property
  def _init(self):
    return self._population(lambda hp: member_init(self.program, hp), 0)

  @functools.cached_property
  def _perm(self):
    return self._population(lambda hp, n_train, epoch: member_permutation(self.program, hp, n_train.shape[0], epoch),
                            2)

  @functools.cached_property
  def _train(self):
    fn = lambda state, hp, perm, *rest: member_train(self.program, state, hp, perm, rest[:5], *rest[5:])
    return self._population(fn, 8, donate=(0,))

  @functools.cached_property
  def _eval(self):
    return self._population(lambda state, hp, *data: member_evaluate(self.program, state, hp, data), 5)

  @functools.cached_property
  def _flatten(self):
    return self._population(lambda state: self.layout.flatten(state['variables']), 0)

  def init(self, hp):
    return self._run('init', self._init, hp)

  def permutations(self, hp, data: DeviceData, epoch: int):
    return self._run('perm', self._perm, hp, data.train_idx, jnp.int32(epoch))

  def train(self, state, hp, perm, data: DeviceData, epoch: int, start: int, stop: int):
    return self._run('train', self._train, state, hp, perm, *data.arrays(), jnp.int32(epoch), jnp.int32(start),
                     jnp.int32(stop))

  def evaluate(self, state, hp, data: DeviceData):
    return self._run('eval', self._eval, state, hp, *data.arrays())

  def flatten(self, state):
    return self._run('flatten', self._flatten, state)


def make_mesh(devices=None) -> Mesh:
  devices = list(devices if devices is not None else jax.local_devices())
  return Mesh(np.array(devices), ('pop',))


def shard_members(tree, mesh: Mesh):
  """Places per-member arrays [P, ...] with the population axis split over the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P('pop')))


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def pad_members(hp: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
  """Pads the member axis to a multiple of the device count with inactive copies of member 0."""
  n = len(hp['active'])
  pad = -n % multiple
  if not pad:
    return hp
  out = {k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in hp.items()}
  out['active'][n:] = False
  return out


def pad_rows(x, rows: int):
  """Pads a per-member array to `rows` members by repeating member 0 (inactive padding)."""
  x = np.asarray(x)
  return x if len(x) == rows else np.concatenate([x, np.repeat(x[:1], rows - len(x), axis=0)])


def auto_member_chunk(batch_size: int, local_members: int, hp: dict[str, np.ndarray]) -> int:
  """Members vmapped together inside lax.map. On CPU one member at a time: its convolutions stay plain ones that
  XLA:CPU's fast path runs (vmapped, they become grouped convolutions), its activations and im2col patches stay
  in cache, and per-member choices (lax.switch / cond) run only their own branch instead of a select (measured
  fastest on a 2-core host, benchmarks/). Accelerators get the whole local population in one batched
  program."""
  del batch_size, hp
  if jax.default_backend() != 'cpu':
    return max(local_members, 1)
  return 1
