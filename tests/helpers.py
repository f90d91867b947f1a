"""Shared test helpers: a small synthetic device dataset and a program runner."""
import numpy as np
import jax

from popnet import models, pipeline, population


def synthetic_data(mesh, n_train=640, n_test=128, shape=(8, 8, 1), eval_batch=64, seed=0):
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  labels = rng.integers(0, 10, n).astype(np.int32)
  # learnable: class-dependent mean brightness pattern plus noise
  base = rng.integers(0, 255, (10,) + shape)
  images = np.clip(base[labels] * 0.7 + rng.integers(0, 80, (n,) + shape), 0, 255).astype(np.uint8)
  train_idx = np.arange(n_train - 64, dtype=np.int32)
  segments = [np.arange(0, 128), np.arange(n_train - 64, n_train), np.arange(n_train, n)]
  return pipeline.device_data(images, labels, train_idx, segments, 10, eval_batch, mesh)


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
  """Trains `table`'s members together for `steps` steps; returns (state as numpy, program, state on device)."""
  batch = int(table['batch_size'].iloc[0])
  steps_per_epoch = steps_per_epoch or data.n_train // batch
  program = population.build_program(table, mesh, network=arch or models.smallcnnzoo_arch(), input_shape=input_shape,
                                   batch_size=batch, steps_per_epoch=steps_per_epoch, conv_impl=conv_impl,
                                   member_chunk=member_chunk, eval_batch_size=64, constant_choices=static)
  state = program.init()
  done = 0
  for size in (call_sizes or [steps]):
    epoch, start = divmod(done, steps_per_epoch)
    perm = program.permutations(data, epoch)
    state, _ = program.train(state, perm, data, epoch, start, start + size)
    done += size
  return jax.device_get(state), program, state
