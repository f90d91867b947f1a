"""The input pipeline: prepared datasets -> one device-resident pool every member of a program reads.

Split (popnet/config.py fields): the train split is divided into training and validation parts
(`val_fraction`, `split_seed`); training may use a fixed random subset (`max_train_examples`); metrics are
computed on fixed subsets of the training part, the validation part and the test split (`eval_*_examples`),
the same for every member. Images stay uint8 on the device; each member gathers its own batches from them.
"""
from __future__ import annotations

import dataclasses

import flax.struct
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from popnet import data as data_lib
from popnet import hparams
from popnet import member as member_lib


@flax.struct.dataclass
class DeviceData:
  """A pool of datasets on the device(s), replicated, at one common input shape. Datasets are data: a member
  finds its dataset's rows through `slot[member's dataset index]` (popnet/hparams.py member_arrays), so
  members on different datasets share one program. Per-dataset index sets are padded to the longest."""
  images: jax.Array        # uint8 [N, H, W, C]: every dataset's train and test images, concatenated
  labels: jax.Array        # int32 [N]
  train_idx: jax.Array     # int32 [D, n_max]: each dataset's training part (rows of images), padded
  train_counts: jax.Array  # int32 [D]: training examples of each dataset
  eval_idx: jax.Array      # int32 [D, M]: train subset, validation, test, each padded to evaluation batches
  eval_seg: jax.Array      # int32 [D, M]: index into member.EVAL_SEGMENTS, -1 for padding
  eval_batches: jax.Array  # int32 [D]: evaluation batches of each dataset
  slot: jax.Array          # int32 [len(data.DATASETS)]: a dataset index -> its position in this pool
  names: tuple = flax.struct.field(pytree_node=False)        # the pool's datasets (None: serves every member)
  num_classes: tuple = flax.struct.field(pytree_node=False)
  train_sizes: tuple = flax.struct.field(pytree_node=False)  # n_train of each dataset, as Python ints

  @property
  def n_train(self) -> int:
    """The largest training part in the pool."""
    return max(self.train_sizes)

  def size_of(self, name: str) -> int:
    """Training examples of dataset `name`."""
    return self.train_sizes[0 if self.names == (None,) else self.names.index(name)]

  def train_data(self) -> member_lib.TrainData:
    return member_lib.TrainData(self.images, self.labels, self.train_idx, self.train_counts, self.slot)

  def eval_data(self) -> member_lib.EvalData:
    return member_lib.EvalData(self.images, self.labels, self.eval_idx, self.eval_seg, self.eval_batches, self.slot)


@dataclasses.dataclass
class HostDataset:
  """One dataset on the host: images of its train and test splits, labels, and index sets into them."""
  images: np.ndarray
  labels: np.ndarray
  train_idx: np.ndarray
  eval_segments: list[np.ndarray]
  num_classes: int


def evaluation_set(segments: list[np.ndarray], eval_batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Concatenates the index sets of member.EVAL_SEGMENTS into (eval_idx, eval_seg), padded to whole
  evaluation batches with segment -1."""
  eval_idx = np.concatenate(segments).astype(np.int32)
  eval_seg = np.concatenate([np.full(len(s), i) for i, s in enumerate(segments)])
  pad = -len(eval_idx) % eval_batch_size
  return (np.concatenate([eval_idx, np.zeros(pad, np.int32)]),
          np.concatenate([eval_seg, np.full(pad, -1)]).astype(np.int32))


def _padded_rows(rows: list[np.ndarray], fill: int) -> np.ndarray:
  width = max(len(r) for r in rows)
  return np.stack([np.concatenate([r, np.full(width - len(r), fill)]) for r in rows]).astype(np.int32)


def device_pool(datasets: dict, eval_batch_size: int, mesh: Mesh) -> DeviceData:
  """Replicates a pool of HostDatasets ({name: HostDataset}; the single name None serves every member) on
  every device of `mesh`, with each dataset's index sets shifted to its rows of the pool."""
  names, offset = tuple(datasets), 0
  train_rows, eval_rows, seg_rows = [], [], []
  for d in datasets.values():
    eval_idx, eval_seg = evaluation_set(list(d.eval_segments), eval_batch_size)
    train_rows.append(np.asarray(d.train_idx, np.int64) + offset)
    eval_rows.append(eval_idx + offset)
    seg_rows.append(eval_seg)
    offset += len(d.images)
  registry = hparams.allowed_values('dataset')
  slot = np.array([0 if names == (None,) else (names.index(r) if r in names else 0) for r in registry], np.int32)
  arrays = (np.concatenate([np.asarray(d.images, np.uint8) for d in datasets.values()]),
            np.concatenate([np.asarray(d.labels, np.int32) for d in datasets.values()]),
            _padded_rows(train_rows, 0), np.array([len(r) for r in train_rows], np.int32),
            _padded_rows(eval_rows, 0), _padded_rows(seg_rows, -1),
            np.array([len(r) // eval_batch_size for r in eval_rows], np.int32), slot)
  return DeviceData(*jax.device_put(arrays, NamedSharding(mesh, P())), names=names,
                    num_classes=tuple(d.num_classes for d in datasets.values()),
                    train_sizes=tuple(len(r) for r in train_rows))


def device_data(images, labels, train_idx, eval_segments: list[np.ndarray], num_classes: int, eval_batch_size: int,
                mesh: Mesh) -> DeviceData:
  """One dataset as a pool that serves every member, whatever its dataset (tests, benchmarks)."""
  return device_pool({None: HostDataset(images, labels, train_idx, eval_segments, num_classes)}, eval_batch_size,
                     mesh)


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


def load_host_dataset(name: str, config) -> HostDataset:
  """Loads a prepared dataset, converted to the config's common input shape, with its split."""
  raw = data_lib.load(name, config.data_dir or None)
  shape = tuple(config.input_shape)
  train_x, test_x = data_lib.to_common_shape(raw.train_x, shape), data_lib.to_common_shape(raw.test_x, shape)
  train_idx, eval_segments = split_indices(config, len(train_x), len(test_x))
  return HostDataset(np.concatenate([train_x, test_x]), np.concatenate([raw.train_y, raw.test_y]), train_idx,
                     eval_segments, raw.num_classes)


def training_sizes(names, config) -> dict[str, int]:
  """Training examples of each dataset (DeviceData.size_of of its pool), from the host copy, with no pool built."""
  out = {}
  for name in names:
    raw = data_lib.load(name, config.data_dir or None)
    out[name] = len(split_indices(config, len(raw.train_x), len(raw.test_x))[0])
  return out


def load_device_pool(names, config, mesh: Mesh) -> DeviceData:
  """Every dataset in `names`, loaded, converted and put on every device as one pool."""
  return device_pool({name: load_host_dataset(name, config) for name in names}, config.eval_batch_size, mesh)


def load_device_data(name: str, config, mesh: Mesh) -> DeviceData:
  """One prepared dataset as a pool of one."""
  return load_device_pool([name], config, mesh)
