"""Which datasets popnet knows: the packaged ones (DatasetSpec each) and those registered in data dirs.

DATASETS reads like a dict {name: DatasetSpec}: the packaged datasets, then the ones registered in the default
data dir and in every data dir given to `include_registered` (popnet.config includes config.data_dir).
"""
from __future__ import annotations

import collections.abc
import dataclasses
import os

from popnet.datasets import registry


def default_data_dir() -> str:
  """$TFDS_DATA_DIR, else ~/tensorflow_datasets: TFDS's own rule, without importing TFDS (0.7 s)."""
  return os.environ.get('TFDS_DATA_DIR', os.path.join(os.path.expanduser('~'), 'tensorflow_datasets'))


def resolve(data_dir) -> str:
  return os.fspath(data_dir) if data_dir else default_data_dir()


# Where `prepare` gets a dataset from: what `list` says, by DatasetSpec.origin.
ORIGINS = {
    'local': 'offline, from files on this machine',
    'archives': 'offline --from its original files, or TF + internet',
    'stock': 'needs TensorFlow + internet',
    'registered': 'registered from your own data',
}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What callers need to know about a dataset before reading it."""
  name: str
  shape: tuple[int, int, int]  # native image shape, HWC
  num_classes: int
  train_split: str
  test_split: str
  version: str  # the TFDS version directory that `prepare` writes and `load` reads
  origin: str  # a key of ORIGINS

  @property
  def offline(self) -> bool:
    """`prepare` can build it here from local files."""
    return self.origin in ('local', 'archives')


PACKAGED: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec('fashion_mnist', (28, 28, 1), 10, 'train', 'test', '3.0.1', 'local'),
    DatasetSpec('digits', (8, 8, 1), 10, 'train', 'test', '1.0.0', 'local'),
    DatasetSpec('mnist5k', (28, 28, 1), 10, 'train', 'test', '1.0.0', 'local'),
    DatasetSpec('mnist', (28, 28, 1), 10, 'train', 'test', '3.0.1', 'archives'),
    DatasetSpec('kmnist', (28, 28, 1), 10, 'train', 'test', '3.0.1', 'archives'),
    DatasetSpec('cifar10', (32, 32, 3), 10, 'train', 'test', '3.0.2', 'archives'),
    DatasetSpec('svhn_cropped', (32, 32, 3), 10, 'train', 'test', '3.1.0', 'archives'),
    DatasetSpec('stl10', (96, 96, 3), 10, 'train', 'test', '1.0.0', 'stock'),
)}


def _registered_spec(entry: dict) -> DatasetSpec:
  return DatasetSpec(entry['name'], tuple(entry['shape']), entry['num_classes'], 'train', 'test',
                     entry['version'], 'registered')


class _Datasets(collections.abc.Mapping):
  """The packaged datasets, then those registered in the default data dir and in every data dir given to
  `include_registered` (popnet.config does so for config.data_dir).

  Each data dir's registry is read once per process (registry.entries), so the position of a dataset in
  DATASETS, its index in training, stays put for the whole process.
  """

  def __init__(self):
    self._included: list[str] = []

  def registered(self, data_dir: str) -> dict[str, DatasetSpec]:
    return {name: _registered_spec(entry) for name, entry in registry.entries(data_dir).items()}

  def include(self, data_dir: str) -> None:
    if os.path.realpath(data_dir) not in map(os.path.realpath, self._included):
      self._included.append(data_dir)

  def _all(self) -> dict[str, DatasetSpec]:
    specs = dict(PACKAGED)
    for data_dir in (default_data_dir(), *self._included):
      for name, spec in self.registered(data_dir).items():
        specs.setdefault(name, spec)
    return specs

  def __getitem__(self, name: str) -> DatasetSpec:
    return self._all()[name]

  def __iter__(self):
    return iter(self._all())

  def __len__(self) -> int:
    return len(self._all())


DATASETS = _Datasets()


def known(data_dir: str | None) -> dict[str, DatasetSpec]:
  """The packaged datasets and those registered in data_dir (or the default data dir)."""
  registered = DATASETS.registered(resolve(data_dir))
  return {**PACKAGED, **{name: spec for name, spec in registered.items() if name not in PACKAGED}}


def include_registered(data_dir: str | None) -> None:
  """Makes the datasets registered in data_dir part of DATASETS (the default data dir's always are)."""
  DATASETS.include(resolve(data_dir))
