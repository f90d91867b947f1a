"""Shared test helpers: a small synthetic device dataset and a cohort runner."""
import numpy as np
import jax

from popnet import augment, engine, models


def synthetic_data(mesh, n_train=640, n_test=128, shape=(8, 8, 1), eval_batch=64, seed=0):
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  labels = rng.integers(0, 10, n).astype(np.int32)
  # learnable: class-dependent mean brightness pattern plus noise
  base = rng.integers(0, 255, (10,) + shape)
  images = np.clip(base[labels] * 0.7 + rng.integers(0, 80, (n,) + shape), 0, 255).astype(np.uint8)
  train_idx = np.arange(n_train - 64, dtype=np.int32)
  eval_idx = np.concatenate([np.arange(0, 128), np.arange(n_train - 64, n_train), np.arange(n_train, n)])
  seg = np.concatenate([np.zeros(128), np.ones(64), np.full(n_test, 2)])
  pad = -len(eval_idx) % eval_batch
  eval_idx = np.concatenate([eval_idx, np.zeros(pad)]).astype(np.int32)
  seg = np.concatenate([seg, np.full(pad, -1)]).astype(np.int32)
  arrays = engine.replicate((images, labels, train_idx, eval_idx, seg), mesh)
  return engine.DeviceData(*arrays, num_classes=10)


def space(**overrides):
  s = dict(dataset='fashion_mnist', architecture='smallcnnzoo', batch_size=16,
           optimizer='choice(adam, rmsprop, sgd)', learning_rate='loguniform(1e-3, 1e-2)',
           activation='choice(relu, elu, sigmoid, tanh)', init='choice(glorot_uniform, glorot_normal, he_normal)',
           dropout='choice(0.0, 0.2)', augment='choice(False, True)', weight_decay='choice(0.0, 1e-4)')
  s.update(overrides)
  return s


def uniform_space(**overrides):
  """One optimizer/activation/init for all members: a smaller program that compiles faster, for tests whose
  property does not depend on mixing choices."""
  return space(**{'optimizer': 'adam', 'activation': 'tanh', 'init': 'glorot_uniform', 'augment': False,
                  'dropout': 0.0, 'weight_decay': 0.0, **overrides})


def run_cohort(table, mesh, data, arch=None, steps=6, steps_per_epoch=None, conv_impl='im2col', member_chunk=1,
               input_shape=(8, 8, 1), static=True, call_sizes=None):
  """Trains `table`'s members together for `steps` steps; returns (state as numpy, programs, hp)."""
  arch = arch or models.smallcnnzoo_arch()
  batch = int(table['batch_size'].iloc[0])
  steps_per_epoch = steps_per_epoch or int(data.train_idx.shape[0]) // batch
  hp = engine.pad_members(engine.member_hparams(table), mesh.devices.size)
  choices = engine.static_choices(hp) if static else {}
  program = engine.Program(arch=arch, input_shape=input_shape, batch_size=batch, steps_per_epoch=steps_per_epoch,
                           conv_impl=conv_impl, member_chunk=member_chunk, augment_spec=augment.AugmentSpec(),
                           eval_batch_size=64, **choices)
  programs = engine.PopulationPrograms(program, mesh)
  hp_dev = engine.shard_members(hp, mesh)
  state = programs.init(hp_dev)
  done = 0
  for size in (call_sizes or [steps]):
    epoch, start = divmod(done, steps_per_epoch)
    perm = programs.permutations(hp_dev, data, epoch)
    state, _ = programs.train(state, hp_dev, perm, data, epoch, start, start + size)
    done += size
  return jax.device_get(state), programs, hp_dev, state
