"""The training loop shared by the neural meta-models: Adam with per-epoch decay, model selection on validation.

An epoch is a pass over every training example (for the DMC: one random window of every training snapshot, as
NWS's meta_classifier.py counts epochs). A small zoo gives few steps per epoch, so `min_steps` makes each epoch
draw every example `repeats` times until the run has at least that many steps; the learning rate still decays
once per epoch (x0.95: with 50 epochs that is NWS's 50 staircase decays over the run).

Batches come from a host-side callable (windows or vectors gathered from the zoo's memmap), so data never has to
fit on the device. Steps are jit-compiled once per (module, loss) and reused across fits with equal shapes; every
batch has the same shape (the last one is filled with random extra rows), so nothing recompiles mid-run.
Classification uses softmax cross-entropy; regression L1 or MSE on standardized targets.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from meta import progress


@dataclasses.dataclass
class FitConfig:
  epochs: int = 30
  batch_size: int = 64
  learning_rate: float = 1e-3
  lr_decay: float = 0.95        # multiplies the learning rate after every epoch (the paper's schedule)
  loss: str = 'l1'              # regression loss: 'l1' (the paper's, for the learning rate) or 'mse'
  seed: int = 0
  min_steps: int = 0            # stretch epochs (each example `repeats` times) to at least this many steps
  verbose: bool = False
  label: str = 'fit'            # progress bar title


def epoch_plan(n_train: int, config: FitConfig) -> tuple[int, int]:
  """(repeats of every training example per epoch, steps per epoch)."""
  b = config.batch_size
  repeats = max(1, math.ceil(config.min_steps * b / (max(config.epochs, 1) * max(n_train, 1))))
  return repeats, max(1, math.ceil(n_train * repeats / b))


def progress_bar(total: int, desc: str, unit: str = 'steps') -> progress.Bar:
  """A bar on stderr on a terminal, plain progress lines elsewhere (meta.progress)."""
  return progress.Bar(total, desc, unit)


def _loss(out, y, classification: bool, loss: str):
  if classification:
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
  err = out[:, 0] - y
  return jnp.abs(err).mean() if loss == 'l1' else jnp.square(err).mean()


@functools.lru_cache(maxsize=64)
def _train_step(module: nn.Module, classification: bool, loss: str):
  tx = optax.scale_by_adam()

  def step(params, batch_stats, opt_state, x, y, key, lr):
    def objective(p):
      out, updates = module.apply({'params': p, 'batch_stats': batch_stats}, x, train=True,
                                  rngs={'dropout': key}, mutable=['batch_stats'])
      return _loss(out, y, classification, loss), updates

    (value, updates), grads = jax.value_and_grad(objective, has_aux=True)(params)
    direction, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, direction)
    return params, updates.get('batch_stats', batch_stats), opt_state, value

  return jax.jit(step), tx


@functools.lru_cache(maxsize=64)
def _predict_fn(module: nn.Module, classification: bool):
  def predict(variables, x):
    # mutable: a module that normalizes with batch statistics at evaluation (models.DMC) updates its running
    # averages; the update is dropped
    out, _ = module.apply(variables, x, train=False, mutable=['batch_stats'])
    return jax.nn.softmax(out) if classification else out[:, 0]

  return jax.jit(predict)


def predict(module: nn.Module, variables, x: np.ndarray, classification: bool, batch: int = 256) -> np.ndarray:
  """Probabilities [n, C] or values [n] of inputs x, in consecutive batches of one fixed size, so one compiled
  program serves every split and analysis. The last batch is filled up with repeats of its own rows (not zeros,
  which would skew batch statistics); models normalized with batch statistics get their batches as ordered in x."""
  fn = _predict_fn(module, classification)
  n = len(x)
  outs = []
  for s in range(0, n, batch):
    chunk = x[s:s + batch]
    pad = batch - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, chunk[np.arange(pad) % len(chunk)]])
    outs.append(np.asarray(fn(variables, jnp.asarray(chunk)))[:batch - pad])
  return np.concatenate(outs) if outs else np.zeros((0,))


@dataclasses.dataclass
class Fitted:
  module: nn.Module
  variables: dict
  history: list[dict]
  best_epoch: int
  seconds: float
  steps: int = 0          # optimizer steps of the whole run
  repeats: int = 1        # draws of every training example per epoch


def fit(module: nn.Module, input_shape: tuple[int, ...], n_train: int,
        batch: Callable[[np.random.Generator, np.ndarray], tuple[np.ndarray, np.ndarray]],
        validate: Callable[[dict], dict] | None, select: Callable[[dict], tuple] | None, classification: bool,
        config: FitConfig) -> Fitted:
  """Trains `module` for config.epochs passes over n_train examples; returns the variables of the epoch with
  the best validation key (`select(validate(variables))`), or of the last epoch without validation.

  batch(rng, indices) -> (x, y) builds one training batch of the given training-example indices."""
  t0 = time.perf_counter()
  key = jax.random.key(config.seed, impl='rbg')  # XLA's RNG: compiles in a fraction of threefry's time on CPU
  key, init_key = jax.random.split(key)
  variables = jax.jit(module.init)(init_key, jnp.zeros((1,) + tuple(input_shape), jnp.float32))
  params, batch_stats = variables['params'], variables.get('batch_stats', {})
  step, tx = _train_step(module, classification, config.loss)
  opt_state = tx.init(params)
  rng = np.random.default_rng(config.seed)
  b = config.batch_size
  repeats, steps = epoch_plan(n_train, config)
  history, best, best_key, best_epoch = [], None, None, -1
  bar = progress_bar(config.epochs * steps, config.label)
  for epoch in range(config.epochs):
    lr = config.learning_rate * config.lr_decay ** epoch
    bar.set_description(f'{config.label} epoch {epoch + 1}/{config.epochs}')
    order = np.concatenate([rng.permutation(n_train) for _ in range(repeats)])
    if len(order) < steps * b:  # same shape every step: fill the last batch with random extra examples
      order = np.concatenate([order, rng.integers(0, n_train, steps * b - len(order))])
    losses = []
    for s in range(steps):
      x, y = batch(rng, order[s * b:(s + 1) * b])
      key, sub = jax.random.split(key)
      params, batch_stats, opt_state, value = step(params, batch_stats, opt_state, jnp.asarray(x), jnp.asarray(y),
                                                   sub, jnp.float32(lr))
      losses.append(value)
      bar.update()
    record = {'epoch': epoch, 'steps': (epoch + 1) * steps, 'train_loss': float(np.mean(jax.device_get(losses)))}
    bar.set_postfix(loss=f'{record["train_loss"]:.3f}')
    current = {'params': params, 'batch_stats': batch_stats}
    if validate is not None:
      metrics = validate(current)
      record['val'] = metrics
      k = select(metrics)
      if best_key is None or k > best_key:
        best_key, best, best_epoch = k, jax.device_get(current), epoch
    history.append(record)
    if config.verbose:
      print(f'  epoch {epoch}: loss {record["train_loss"]:.4f}' +
            (f'  val {metrics_line(record["val"])}' if 'val' in record else ''), flush=True)
  bar.close()
  if best is None:
    best, best_epoch = jax.device_get({'params': params, 'batch_stats': batch_stats}), config.epochs - 1
  return Fitted(module, best, history, best_epoch, time.perf_counter() - t0, config.epochs * steps, repeats)


def metrics_line(m: dict) -> str:
  if 'accuracy' in m:
    return f'acc {m["accuracy"]:.3f}'
  return f'R2 {m["r2"]:.3f} tau {m["kendall_tau"]:.3f}'
