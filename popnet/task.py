"""What a member learns: the task that sets its batches, loss, stopping rule and metrics.

    Classification   images -> class logits, softmax cross-entropy on minibatches of its dataset's training part,
                     accuracy and loss on the evaluation subsets (popnet's CNN zoos)
    InrFit           coordinates -> pixel values of ONE image (the member's `image`, an index into its dataset's
                     train + test images), MSE on the whole image each step, early stop at a PSNR threshold,
                     MSE and PSNR of that image (INR zoos: popnet/siren.py, docs/inr.md)

popnet/member.py's training step is shared: it asks the task for the step's batch and loss and, for a task that
stops early, whether the member has reached its goal; a member that has stops changing and keeps its stop step.
A task is a frozen dataclass, part of a program's static spec (equal tasks share compiled programs).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from popnet import augment as augment_lib
from popnet import models
from popnet.zoo.schema import EVAL_SEGMENTS

CLASSIFICATION_METRICS = ('loss_sum', 'correct', 'count')
INR_METRICS = ('mse', 'psnr')
INR_COLUMNS = ('image', 'view', 'label', 'split')  # the member table's columns of an INR fit


def _member_key(hp):
  return jax.random.PRNGKey(hp['seed'])


# --- classification ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Classification:
  name: str = 'classification'
  stops_early: bool = False
  metrics: tuple = CLASSIFICATION_METRICS

  def member_arrays(self, members: pd.DataFrame) -> dict:
    return {}

  def steps_per_epoch(self, spec, hp, data):
    """The member's own epoch length: its dataset's training examples // batch size (at most the spec's)."""
    return jnp.minimum(spec.steps_per_epoch, data.n_train[data.slot[hp['dataset']]] // spec.batch_size)

  def permutation(self, hp, data, epoch, purpose: int):
    """This member's order of its dataset's training examples in `epoch`: [n_max] positions whose first
    n_train are a permutation of range(n_train). Drawn as a stable sort of random 32-bit keys (prefix-stable
    in length), so a member's order does not depend on the other datasets in the pool."""
    n_max = data.train_idx.shape[1]
    key = jax.random.fold_in(jax.random.fold_in(_member_key(hp), purpose), epoch)
    bits = jax.random.bits(key, (n_max,), jnp.uint32)
    bits = jnp.where(jnp.arange(n_max) < data.n_train[data.slot[hp['dataset']]], bits, jnp.uint32(0xFFFFFFFF))
    return jnp.argsort(bits, stable=True).astype(jnp.int32)

  def batches(self, spec, hp, data, perm, key) -> Callable:
    """(step s, global step) -> (augmented images, labels, dropout key) of the member's s-th minibatch."""
    b = spec.batch_size
    train_idx = data.train_idx[data.slot[hp['dataset']]]

    def batch(s, global_step):
      idx = train_idx[jax.lax.dynamic_slice(perm, (s * b,), (b,))]
      k_aug, k_drop = jax.random.split(jax.random.fold_in(key, global_step))
      x = augment(spec, hp, k_aug, data.images[idx].astype(jnp.float32) / 255.0)
      return x, data.labels[idx], k_drop

    return batch

  def loss(self, spec, params, batch_stats, hp, images, labels, key):
    """Mean training loss of one batch and the new batch-norm statistics."""
    logits, new_stats = spec.network.apply(hp, {'params': params, 'batch_stats': batch_stats}, images, train=True,
                                           activation=spec.choice(hp, 'activation'),
                                           dropout=spec.choice(hp, 'dropout'), key=key)
    return jnp.mean(models.per_example_loss_and_correct(logits, labels)[0]), new_stats

  def reached(self, spec, hp, loss):
    return jnp.array(False)

  # host side: the member table, epoch lengths, metadata records, learning curves, the summary
  evaluation_sets = True  # the zoo records its evaluation subsets (train.record_evaluation_sets)
  curve_column = 'val_accuracy'

  def member_table(self, config, log) -> pd.DataFrame:
    from popnet import config as config_lib, hparams  # pylint: disable=g-import-not-at-top
    log(f'popnet: sampling {config.population:,} members from the config\'s space')
    return hparams.sample_members(config_lib.space(config), config.population, config.seed)

  def check(self, config, row) -> None:
    from popnet import config as config_lib  # pylint: disable=g-import-not-at-top
    config_lib.check_classes(row, config.input_shape)

  def host_steps_per_epoch(self, examples: int, batch_size: int) -> int:
    return examples // batch_size

  def examples_per_epoch(self, examples: int, input_shape) -> int:
    """The cost model's examples per member-epoch: its dataset's training examples."""
    return examples

  def records(self, members, snapshot, epoch, metrics, state, member_steps, rows):
    from popnet import zoo as zoo_lib  # pylint: disable=g-import-not-at-top
    return zoo_lib.snapshot_records(members, snapshot, epoch, metrics, state['diverged'], state['diverged_step'],
                                    member_steps, rows)

  def record_curves(self, curves, epoch, metrics, diverged) -> None:
    curves.record_evaluation(epoch, metrics, diverged)

  def describe_data(self, data, members: pd.DataFrame) -> str:
    """Per dataset of the pool: training images and evaluation subset sizes."""
    seg = np.asarray(data.eval_seg)
    lines = []
    for i, (name, n_train) in enumerate(zip(data.names, data.train_sizes)):
      counts = np.bincount(seg[i][seg[i] >= 0], minlength=len(EVAL_SEGMENTS))
      lines.append(f'{name}: {n_train:,} training images; metrics on '
                   + ', '.join(f'{n:,} {segment}' for segment, n in zip(EVAL_SEGMENTS, counts)))
    return '; '.join(lines)

  def quality(self, final: pd.DataFrame) -> dict:
    acc = final.loc[final['status'] == 'ok', 'test_accuracy'].to_numpy()
    quantiles = np.quantile(acc, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]).round(4).tolist() if len(acc) else []
    return {'test_accuracy_quantiles': dict(zip(['min', 'p10', 'p25', 'median', 'p75', 'p90', 'max'], quantiles)),
            'test_accuracy_mean': float(acc.mean()) if len(acc) else float('nan')}

  def evaluate(self, spec, variables, hp, data):
    """[metrics, EVAL_SEGMENTS] sums over the member's own dataset's evaluation sets, in evaluation mode
    (batch-norm moving statistics, no dropout)."""
    e = spec.eval_batch_size
    segments = jnp.arange(len(EVAL_SEGMENTS))
    slot = data.slot[hp['dataset']]

    def batch(i, acc):
      idx = jax.lax.dynamic_slice(data.eval_idx[slot], (i * e,), (e,))
      seg = jax.lax.dynamic_slice(data.eval_seg[slot], (i * e,), (e,))
      logits, _ = spec.network.apply(hp, variables, data.images[idx].astype(jnp.float32) / 255.0, train=False,
                                     activation=spec.choice(hp, 'activation'))
      losses, correct = models.per_example_loss_and_correct(logits, data.labels[idx])
      onehot = seg[:, None] == segments[None, :]
      sums = jnp.stack([jnp.where(onehot, losses[:, None], 0.0).sum(0), (onehot & correct[:, None]).sum(0),
                        onehot.sum(0)]).astype(jnp.float32)
      return acc + sums

    acc0 = jnp.zeros((len(self.metrics), len(EVAL_SEGMENTS)), jnp.float32) + jnp.zeros_like(hp['learning_rate'])
    return jax.lax.fori_loop(0, data.eval_batches[slot], batch, acc0)


def augment(spec, hp, key, images):
  """The member's augmentation: applied, skipped, or chosen per member at run time."""
  flag = spec.choice(hp, 'augment')
  if flag is True:
    return augment_lib.augment_batch(key, images, spec.augment_spec)
  if flag is False:
    return images
  return jax.lax.cond(flag, lambda: augment_lib.augment_batch(key, images, spec.augment_spec), lambda: images)


# --- fitting one image (INRs) -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InrFit:
  """Each member fits its own image: the network (popnet/siren.py) maps the family's coordinates to the family's
  targets; one step is one full-image gradient step on the MSE. Per member (hp): `image` (row of the pool),
  `steps` (its step budget), `psnr_threshold` (dB; it stops at the first step whose pre-update PSNR reaches it)."""
  steps_per_epoch_: int              # steps between two epochs (snapshots and checkpoints fall on epochs)
  name: str = 'inr_fit'
  stops_early: bool = True
  metrics: tuple = INR_METRICS

  def member_arrays(self, members: pd.DataFrame) -> dict:
    return {'image': members['image'].to_numpy(np.int32), 'steps': members['steps'].to_numpy(np.int32),
            'psnr_threshold': members['psnr_threshold'].to_numpy(np.float32)}

  def steps_per_epoch(self, spec, hp, data):
    return jnp.int32(self.steps_per_epoch_)

  def permutation(self, hp, data, epoch, purpose: int):
    return jnp.zeros((1,), jnp.int32)  # every step sees the whole image: no order to draw

  def _fit_data(self, spec, hp, images):
    net = spec.network
    return jnp.asarray(net.coordinates()), net.targets(images[hp['image']])

  def batches(self, spec, hp, data, perm, key) -> Callable:
    coords, target = self._fit_data(spec, hp, data.images)
    return lambda s, global_step: (coords, target, None)

  def loss(self, spec, params, batch_stats, hp, coords, target, key):
    out, _ = spec.network.apply(hp, {'params': params, 'batch_stats': batch_stats}, coords, train=True)
    return jnp.mean(jnp.square(out - target)), batch_stats

  def reached(self, spec, hp, loss):
    """Whether a step's pre-update MSE reaches the member's PSNR threshold."""
    return spec.network.psnr(loss) >= hp['psnr_threshold']

  def evaluate(self, spec, variables, hp, data):
    """[mse, psnr] of the member's image in the family's target range."""
    coords, target = self._fit_data(spec, hp, data.images)
    out, _ = spec.network.apply(hp, variables, coords, train=False)
    mse = jnp.mean(jnp.square(out - target))
    return jnp.stack([mse, spec.network.psnr(mse)]).astype(jnp.float32)


  # host side
  evaluation_sets = False
  curve_column = 'psnr'

  def member_table(self, config, log) -> pd.DataFrame:
    """One member per (image, view): every image of the dataset's train + test (or a fixed random subset of
    max_images), train_views fits of each training image and one of each val/test image; the member's own
    hyper-parameters sampled from config.hparams as for any run, its seed drawn per member."""
    from popnet import data as data_lib, hparams  # pylint: disable=g-import-not-at-top
    from popnet import config as config_lib  # pylint: disable=g-import-not-at-top
    t = config.task
    raw = data_lib.load(config.hparams.dataset, config.data_dir or None)
    labels = np.concatenate([raw.train_y, raw.test_y]).astype(np.int64)
    split = inr_splits(t, len(raw.train_y), len(raw.test_y), config.split_seed)
    images = np.arange(len(labels))
    if 0 < t.max_images < len(images):
      images = np.sort(np.random.default_rng(config.split_seed).choice(images, t.max_images, replace=False))
    views = np.where(split[images] == 'train', t.train_views, 1)
    image = np.repeat(images, views)
    view = np.concatenate([np.arange(v) for v in views])
    log(f'popnet: {len(image):,} INR fits of {len(images):,} {config.hparams.dataset} images '
        f'({t.train_views} per training image)')
    members = hparams.sample_members(config_lib.space(config), len(image), config.seed)
    members['image'], members['view'] = image, view
    members['label'], members['split'] = labels[image], split[image]
    members['steps'] = t.steps or config.epochs * t.steps_per_epoch
    members['psnr_threshold'] = float(t.psnr_threshold) if t.psnr_threshold > 0 else np.inf
    return members

  def check(self, config, row) -> None:
    return None  # the architecture and the dataset are checked with the config (config._check_task)

  def host_steps_per_epoch(self, examples: int, batch_size: int) -> int:
    return self.steps_per_epoch_

  def examples_per_epoch(self, examples: int, input_shape) -> int:
    """The cost model's examples per member-epoch: every pixel of the image per step (a SIREN's example is one
    coordinate, arch.Siren.flops_per_example), whatever the dataset's size."""
    return self.steps_per_epoch_ * int(input_shape[0]) * int(input_shape[1])

  def records(self, members, snapshot, epoch, metrics, state, member_steps, rows):
    """The metadata rows of a snapshot: the member's columns (image = its index in the dataset's train + test
    images, view, label, split, steps, psnr_threshold, its hyper-parameters but the CNN-family ones), snapshot,
    epoch, step (steps taken so far), status, stop_step (-1: never reached the threshold), reached, weights_file,
    weights_row, mse and psnr of its image."""
    from popnet.zoo.records import architecture_columns  # pylint: disable=g-import-not-at-top
    from popnet.zoo.schema import weights_file  # pylint: disable=g-import-not-at-top
    out = []
    for i, member in enumerate(members.to_dict('records')):
      stop = int(state['stop_step'][i])
      taken = min(epoch * int(member_steps[i]), int(member['steps']), stop if stop >= 0 else np.iinfo(np.int64).max)
      out.append({**architecture_columns(member), 'snapshot': snapshot, 'epoch': epoch, 'step': taken,
                  'status': 'diverged' if state['diverged'][i] else 'ok',
                  'diverged_step': int(state['diverged_step'][i]), 'stop_step': stop, 'reached': stop >= 0,
                  'weights_file': weights_file(member['arch']), 'weights_row': int(rows[i]),
                  'mse': float(metrics[i][0]), 'psnr': float(metrics[i][1])})
    return out

  def record_curves(self, curves, epoch, metrics, diverged) -> None:
    curves.record(epoch, diverged, mse=metrics[:, 0], psnr=metrics[:, 1])

  def describe_data(self, data, members: pd.DataFrame) -> str:
    """The images these members fit, by split (the member's own split column, not a training/evaluation one)."""
    counts = members.groupby('split')['image'].agg(['size', 'nunique'])
    return f'{", ".join(data.names)}: fits of ' + ', '.join(
        f'{counts.loc[s, "size"]:,} {s}' + (f' ({counts.loc[s, "nunique"]:,} images)'
                                          if counts.loc[s, 'size'] != counts.loc[s, 'nunique'] else '')
        for s in ('train', 'val', 'test') if s in counts.index)

  def quality(self, final: pd.DataFrame) -> dict:
    psnr = final.loc[final['status'] == 'ok', 'psnr'].to_numpy()
    quantiles = np.quantile(psnr, [0, 0.1, 0.5, 0.9, 1.0]).round(3).tolist() if len(psnr) else []
    return {'psnr_quantiles': dict(zip(['min', 'p10', 'median', 'p90', 'max'], quantiles)),
            'reached_threshold': float(final['reached'].mean()) if len(final) else float('nan')}


def inr_splits(t, n_train: int, n_test: int, split_seed: int) -> np.ndarray:
  """'train' / 'val' / 'test' of every image of train + test: DWS a random val_size of train (split_seed; DWS's
  own split is unseeded), NFN by index ranges [0, val_start) / [val_start, test_start) / the rest."""
  split = np.array(['train'] * n_train + ['test'] * n_test, dtype=object)
  if t.split == 'dws':
    split[np.random.default_rng(split_seed).choice(n_train, t.val_size, replace=False)] = 'val'
  else:
    split[:] = 'train'
    split[t.val_start:t.test_start], split[t.test_start:] = 'val', 'test'
  return split


CLASSIFICATION = Classification()
Task = Any  # Classification | InrFit


def from_config(config) -> Task:
  """The task of a run: config.task's (an INR fit), else classification."""
  return InrFit(int(config.task.steps_per_epoch)) if 'task' in config else CLASSIFICATION
