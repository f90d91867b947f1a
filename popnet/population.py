"""The population: the per-member functions of popnet/member.py mapped over members and sharded over devices.

    jit( shard_map over the mesh's 'pop' axis ( lax.map over chunks of K members, vmapped inside ( member fn )))

Every population function takes two pytrees, `members` (leading axis = members, sharded) and `shared`
(replicated: datasets, the epoch, step bounds), so shard_map's specs are pytree prefixes, never positions.
Members are padded to a multiple of the device count with inactive copies of member 0. Compiled executables
are cached per (program spec, mesh, argument shapes) and compile time is measured apart from run time.

`build_program` is the one way to set a program up (train, benchmarks and tests use it). The members' network is
reached only through its interface (popnet/network.py).
"""
from __future__ import annotations

import functools
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from popnet import augment as augment_lib
from popnet import hparams
from popnet import member as member_lib
from popnet import network as network_lib
from popnet import task as task_lib
from popnet.pipeline import DeviceData

try:
  from jax import shard_map as _shard_map
  _NO_VMA_CHECK = {'check_vma': False}
except ImportError:  # jax < 0.6
  from jax.experimental.shard_map import shard_map as _shard_map
  _NO_VMA_CHECK = {'check_rep': False}
# Every member is independent, so there is nothing for shard_map's replication checks to verify; they only
# reject branch outputs that mix per-member and constant values.

_EXECUTABLES: dict[tuple, Any] = {}


# --- mesh, placement and padding ------------------------------------------------------------------------------
def make_mesh(devices=None) -> Mesh:
  devices = list(devices if devices is not None else jax.local_devices())
  return Mesh(np.array(devices), ('pop',))


def shard_members(tree, mesh: Mesh):
  """Places per-member arrays [P, ...] with the population axis split over the mesh."""
  return jax.device_put(tree, NamedSharding(mesh, P('pop')))


def pad_rows(x, rows: int):
  """Pads a per-member array to `rows` members by repeating member 0."""
  x = np.asarray(x)
  return x if len(x) == rows else np.concatenate([x, np.repeat(x[:1], rows - len(x), axis=0)])


def pad_members(hp: dict[str, np.ndarray], multiple: int) -> dict[str, np.ndarray]:
  """Pads the member axis to a multiple of `multiple` with inactive copies of member 0."""
  n = len(hp['active'])
  out = {k: pad_rows(v, n + (-n % multiple)) for k, v in hp.items()}
  out['active'] = np.arange(len(out['active'])) < n
  return out


def auto_member_chunk(local_members: int) -> int:
  """Members vmapped together inside lax.map. On CPU one member at a time: its convolutions stay plain ones that
  XLA:CPU's fast path runs (vmapped, they become grouped convolutions), its activations and im2col patches stay
  in cache, and per-member choices (lax.switch / cond) run only their own branch instead of a select (measured
  fastest on a 2-core host, benchmarks/results/README.md). Accelerators get the whole local population in one
  batched program."""
  return 1 if jax.default_backend() == 'cpu' else max(local_members, 1)


def one_member_at_a_time(member_chunk: int) -> bool:
  """Whether members run one at a time (config.member_chunk, 0 = auto): then per-member choices are real
  branches and a padded program's conv layers run at each member's own shape (popnet/supernet.py)."""
  return (member_chunk or auto_member_chunk(2)) == 1


# --- the compiled population ----------------------------------------------------------------------------------
class Population:
  """Compiled population functions of one ProgramSpec on one mesh."""

  def __init__(self, spec: member_lib.ProgramSpec, mesh: Mesh):
    self.spec, self.mesh = spec, mesh
    self.compile_seconds = 0.0
    self.executables: dict[str, Any] = {}  # name -> the compiled executable last run (cost and memory analysis)
    self.on_compile: Callable[[str, float | None], None] | None = None  # (name, None) before, (name, s) after
    self.layout = spec.network.layout

  def _map(self, fn: Callable, donate_state: bool = False):
    """fn(members, shared) of one member -> jitted fn(members, shared) of the whole population."""
    chunk = self.spec.member_chunk

    def local(members, shared):
      # chunk 1: no vmap at all, so per-member choices (lax.switch / cond) run only their own branch
      return jax.lax.map(lambda m: fn(m, shared), members, batch_size=None if chunk == 1 else chunk)

    sharded = _shard_map(local, mesh=self.mesh, in_specs=(P('pop'), P()), out_specs=P('pop'), **_NO_VMA_CHECK)
    if not donate_state:
      return jax.jit(sharded)
    # members = (state, the rest): only the state's buffers are given to the output
    return jax.jit(lambda state, rest, shared: sharded((state, *rest), shared), donate_argnums=(0,))

  def _run(self, name: str, fn, *args):
    """AOT-compiles on first use (timed apart from running) and calls. Executables are shared by every
    Population of the same spec, mesh and argument shapes (e.g. programs on two datasets of equal size)."""
    key = (self.spec, tuple(d.id for d in self.mesh.devices.flat), name, jax.tree.structure(args),
           tuple((x.shape, x.dtype) for x in jax.tree.leaves(args)))
    if key not in _EXECUTABLES:
      if self.on_compile:
        self.on_compile(name, None)
      t0 = time.perf_counter()
      _EXECUTABLES[key] = fn.lower(*args).compile()
      self.compile_seconds += time.perf_counter() - t0
      if self.on_compile:
        self.on_compile(name, time.perf_counter() - t0)
    self.executables[name] = _EXECUTABLES[key]
    return _EXECUTABLES[key](*args)

  @functools.cached_property
  def _init(self):
    return self._map(lambda hp, _: member_lib.init(self.spec, hp))

  @functools.cached_property
  def _permutations(self):
    return self._map(lambda hp, shared: member_lib.permutation(self.spec, hp, shared['data'], shared['epoch']))

  @functools.cached_property
  def _train(self):
    def train(members, shared):
      state, hp, perm, loss_sum = members
      return member_lib.train(self.spec, state, hp, perm, shared['data'], shared['epoch'], shared['start'],
                              shared['stop'], loss_sum)
    return self._map(train, donate_state=True)

  @functools.cached_property
  def _evaluate(self):
    return self._map(lambda members, data: member_lib.evaluate(self.spec, *members, data))

  @functools.cached_property
  def _flatten(self):
    return self._map(lambda state, _: self.layout.flatten(state.variables))

  def init(self, hp):
    return self._run('init', self._init, hp, ())

  def permutations(self, hp, data: DeviceData, epoch: int):
    return self._run('permutations', self._permutations, hp, {'data': data.train_data(), 'epoch': jnp.int32(epoch)})

  def train(self, state, hp, perm, data: DeviceData, epoch: int, start: int, stop: int, loss_sum=None):
    """Steps [start, stop) of `epoch` for every member: (new state, [P] `loss_sum` (default 0) plus the training
    losses of these steps, added one step at a time: the sum over an epoch is the same however it is split into
    calls)."""
    shared = {'data': data.train_data(), 'epoch': jnp.int32(epoch), 'start': jnp.int32(start),
              'stop': jnp.int32(stop)}
    if loss_sum is None:
      loss_sum = np.zeros(hp['learning_rate'].shape, np.float32)
    return self._run('train', self._train, state, (hp, perm, loss_sum), shared)

  def evaluate(self, state, hp, data: DeviceData):
    """[P, member.EVAL_METRICS, member.EVAL_SEGMENTS] sums."""
    return self._run('evaluate', self._evaluate, (state, hp), data.eval_data())

  def flatten(self, state):
    return self._run('flatten', self._flatten, state, ())


# --- one program, set up ----------------------------------------------------------------------------------------
class Program:
  """A program ready to run: its members' arrays on the mesh and its compiled Population. The population
  methods are bound to the program's members (`hp`), so callers pass only state and data."""

  def __init__(self, members: pd.DataFrame, population: Population, hp):
    self.members, self.population, self.hp = members, population, hp
    self.size = len(members)                           # real members; the rest of the axis is padding
    self.padded_size = int(hp['active'].shape[0])

  @property
  def spec(self) -> member_lib.ProgramSpec:
    return self.population.spec

  def init(self):
    return self.population.init(self.hp)

  def permutations(self, data: DeviceData, epoch: int):
    return self.population.permutations(self.hp, data, epoch)

  def train(self, state, perm, data: DeviceData, epoch: int, start: int, stop: int, loss_sum=None):
    return self.population.train(state, self.hp, perm, data, epoch, start, stop, loss_sum)

  def evaluate(self, state, data: DeviceData):
    return self.population.evaluate(state, self.hp, data)

  def flatten(self, state):
    return self.population.flatten(state)

  def own_rows(self, state) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{architecture name: (positions of its members in this program, their rows in its own layout)} of the
    real members: the zoo rows, with any padding cut away (Network.zoo_rows)."""
    return self.spec.network.zoo_rows(self.members, np.asarray(self.flatten(state))[:self.size])

  def place(self, host_state):
    """A host state of the real members (e.g. a restored checkpoint) padded and sharded like `init()`'s."""
    padded = jax.tree.map(lambda x: pad_rows(x, self.padded_size), host_state)
    return shard_members(padded, self.population.mesh)


def build_program(members: pd.DataFrame, mesh: Mesh, *, network, input_shape, batch_size: int,
                  steps_per_epoch: int, conv_impl: str = 'auto', member_chunk: int = 0,
                  augment_spec: augment_lib.AugmentSpec = augment_lib.AugmentSpec(), eval_batch_size: int = 1000,
                  constant_choices: bool = True, task=task_lib.CLASSIFICATION,
                  choices_of: pd.DataFrame | None = None) -> Program:
  """Encodes `members` (rows of the member table) as arrays, pads them to the mesh, and builds the program's
  population. network: a Network (popnet/network.py) or one architecture (built with network.build).
  constant_choices: compile choices the members agree on as constants (faster programs); choices_of: the members
  whose agreement counts (default `members`; a shard's share of a program passes the whole program's, so it
  compiles what the whole program compiles). task: what the members learn (popnet/task.py; its per-member arrays
  are added to the members')."""
  if not hasattr(network, 'apply'):
    network = network_lib.build((network,), input_shape)
  hp = hparams.member_arrays(members)
  hp.update(network.member_arrays(members))
  hp.update(task.member_arrays(members))
  hp = pad_members(hp, mesh.devices.size)
  member_chunk = member_chunk or auto_member_chunk(len(hp['active']) // mesh.devices.size)
  spec = member_lib.ProgramSpec(
      network=network.configured(conv_impl, own_shapes=member_chunk == 1), input_shape=tuple(input_shape),
      batch_size=batch_size, steps_per_epoch=steps_per_epoch, member_chunk=member_chunk,
      augment_spec=augment_spec, eval_batch_size=eval_batch_size, task=task,
      **(hparams.shared_choices(hp if choices_of is None else hparams.member_arrays(choices_of))
         if constant_choices else {}))
  return Program(members.reset_index(drop=True), Population(spec, mesh), shard_members(hp, mesh))
