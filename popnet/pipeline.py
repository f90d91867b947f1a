"""The input pipeline: a prepared dataset -> the device-resident arrays every member of a cohort reads.

Split (popnet/config.py fields): the train split is divided into training and validation parts
(`val_fraction`, `split_seed`); training may use a fixed random subset (`max_train_examples`); metrics are
computed on fixed subsets of the training part, the validation part and the test split (`eval_*_examples`),
the same for every member. Images stay uint8 on the device; each member gathers its own batches from them.
"""
from __future__ import annotations

import flax.struct
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from popnet import data as data_lib
from popnet import member as member_lib


@flax.struct.dataclass
class DeviceData:
  """One dataset on the device(s), replicated: images of train+test, labels, and index sets."""
  images: jax.Array      # uint8 [N_train_full + N_test, H, W, C]
  labels: jax.Array      # int32 [N]
  train_idx: jax.Array   # int32 [n_train]: the training part of the train split
  eval_idx: jax.Array    # int32 [M]: train subset, validation, test (padded to evaluation batches)
  eval_seg: jax.Array    # int32 [M]: index into member.EVAL_SEGMENTS, -1 for padding
  num_classes: int = flax.struct.field(pytree_node=False)

  @property
  def n_train(self) -> int:
    return int(self.train_idx.shape[0])

  def train_data(self) -> member_lib.TrainData:
    return member_lib.TrainData(self.images, self.labels, self.train_idx)

  def eval_data(self) -> member_lib.EvalData:
    return member_lib.EvalData(self.images, self.labels, self.eval_idx, self.eval_seg)


def evaluation_set(segments: list[np.ndarray], eval_batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Concatenates the index sets of member.EVAL_SEGMENTS into (eval_idx, eval_seg), padded to whole
  evaluation batches with segment -1."""
  eval_idx = np.concatenate(segments).astype(np.int32)
  eval_seg = np.concatenate([np.full(len(s), i) for i, s in enumerate(segments)])
  pad = -len(eval_idx) % eval_batch_size
  return (np.concatenate([eval_idx, np.zeros(pad, np.int32)]),
          np.concatenate([eval_seg, np.full(pad, -1)]).astype(np.int32))


def device_data(images, labels, train_idx, eval_segments: list[np.ndarray], num_classes: int, eval_batch_size: int,
                mesh: Mesh) -> DeviceData:
  """Replicates one dataset's arrays on every device of `mesh`."""
  eval_idx, eval_seg = evaluation_set(eval_segments, eval_batch_size)
  arrays = jax.device_put((np.asarray(images, np.uint8), np.asarray(labels, np.int32),
                           np.asarray(train_idx, np.int32), eval_idx, eval_seg), NamedSharding(mesh, P()))
  return DeviceData(*arrays, num_classes=num_classes)


def split_indices(config, n_train_full: int, n_test: int) -> tuple[np.ndarray, list[np.ndarray]]:
  """(training indices, [evaluation train subset, validation subset, test subset]) into the concatenation of
  the train and test splits."""
  train_idx, val_idx = data_lib.split_train_val(n_train_full, config.val_fraction, config.split_seed)
  rng = np.random.default_rng(config.split_seed)

  def subset(indices, size):  # a fixed random subset (the same for every member), in index order
    return np.sort(rng.choice(indices, size, replace=False)) if 0 < size < len(indices) else np.asarray(indices)

  train_idx = subset(train_idx, config.max_train_examples)
  eval_train = subset(train_idx, config.eval_train_examples)
  val_idx = np.sort(subset(val_idx, config.eval_val_examples))
  test_idx = subset(np.arange(n_test), config.eval_test_examples) + n_train_full
  return train_idx, [eval_train, val_idx, test_idx]


def load_device_data(name: str, config, mesh: Mesh) -> DeviceData:
  """Loads a prepared dataset, converts it to the config's common input shape and puts it on every device."""
  raw = data_lib.load(name, config.data_dir or None)
  shape = tuple(config.input_shape)
  train_x, test_x = data_lib.to_common_shape(raw.train_x, shape), data_lib.to_common_shape(raw.test_x, shape)
  train_idx, eval_segments = split_indices(config, len(train_x), len(test_x))
  return device_data(np.concatenate([train_x, test_x]), np.concatenate([raw.train_y, raw.test_y]), train_idx,
                     eval_segments, raw.num_classes, config.eval_batch_size, mesh)
