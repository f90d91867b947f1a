"""Datasets registered from the user's own data: the checks on what they give, and their record in the data dir.

A registered dataset is written like a packaged one (TFDS array_record files under <data_dir>/<name>/1.0.0) and
recorded in <data_dir>/popnet_registered/<name>.json, so every later process that uses that data dir knows it.
Its sources are either numpy arrays (an .npz file with NPZ_KEYS, or arrays in Python) or an image folder
(<dir>/train/<class>/<image>, <dir>/test/<class>/<image>; classes sorted by name are labels 0, 1, ...).
Every check raises RegistrationError with one line naming the field, before anything is written.
No TFDS or TensorFlow import here.
"""
from __future__ import annotations

import json
import os
import re
import shutil

import numpy as np

from popnet import files

REGISTRY_DIR = 'popnet_registered'
VERSION = '1.0.0'
NPZ_KEYS = ('train_images', 'train_labels', 'test_images', 'test_labels')
NPZ_OPTIONAL_KEYS = ('class_names',)
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
SPLITS = ('train', 'test')
_EIGHT_BIT_MODES = ('1', 'L', 'LA', 'P', 'PA', 'RGB', 'RGBA')  # PIL modes of 8-bit images: grayscale, palette, colour
NAME_RULE = 'lowercase letters, digits and _, starting with a letter, at most 64 characters'
_NAME = re.compile(r'[a-z][a-z0-9_]{0,63}')
_RESERVED_PREFIXES = ('popnet_', 'downloads')  # popnet's and TFDS's own folders in the data dir


_ENTRIES: dict[str, dict[str, dict]] = {}  # data dir (real path) -> {name: entry}: read once per process


class RegistrationError(ValueError):
  """Bad input to a registration; the message names the field and what it allows."""


def taken_names(packaged) -> dict[str, str]:
  """Names a registration may not take: popnet's packaged datasets and TFDS's stock ones -> what they are."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  stock = {name: 'a stock TFDS dataset' for name in tfds.list_builders(with_community_datasets=False)}
  return {**stock, **{name: 'packaged with popnet' for name in packaged}}


def check_name(name, taken) -> None:
  """A name that is a safe folder name and a TFDS dataset name, and is not a packaged or stock TFDS dataset."""
  if not isinstance(name, str) or not _NAME.fullmatch(name):
    raise RegistrationError(f'name: got {name!r}; allowed: {NAME_RULE}')
  if name.startswith(_RESERVED_PREFIXES):
    raise RegistrationError(f'name: {name!r} is reserved (popnet and TFDS keep folders named popnet_*, downloads)')
  if name in taken:
    raise RegistrationError(f'name: {name!r} is {taken[name]}; choose another name')


def check_splits(splits: dict, class_names=None) -> tuple[tuple[int, int, int], list[str]]:
  """Checks {split: (images, labels)}; returns the image shape (H, W, C) and the class names.

  images: uint8 [N, H, W, C] with C 1 or 3, the same H, W, C in both splits, N >= 1; labels: integers [N] in
  0..K-1, where K is len(class_names) when given, else the largest label + 1 (names are then '0'..'K-1').
  """
  shapes = {}
  for split in SPLITS:
    images, labels = splits[split]
    field = f'{split}_images'
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
      raise RegistrationError(f'{field}: got {_describe(images)}; allowed: a uint8 array [N, H, W, C]')
    if images.ndim != 4 or images.shape[3] not in (1, 3) or 0 in images.shape:
      hint = ' (grayscale: add a channel axis, images[..., None])' if images.ndim == 3 else ''
      raise RegistrationError(f'{field}: got shape {images.shape}; allowed: [N, H, W, C] with N, H, W >= 1 '
                              f'and C 1 or 3{hint}')
    shapes[split] = images.shape[1:]
    field = f'{split}_labels'
    if not isinstance(labels, np.ndarray) or labels.dtype.kind not in 'iu':
      raise RegistrationError(f'{field}: got {_describe(labels)}; allowed: an integer array [N]')
    if labels.shape != images.shape[:1]:
      raise RegistrationError(f'{field}: got shape {labels.shape}; allowed: ({len(images)},), one label per image')
  if shapes['train'] != shapes['test']:
    raise RegistrationError(f'test_images: shape [N, {", ".join(map(str, shapes["test"]))}]; allowed: the '
                            f'train images\' [N, {", ".join(map(str, shapes["train"]))}]')
  return shapes['train'], _checked_class_names(splits, class_names)


def _checked_class_names(splits, class_names) -> list[str]:
  largest = max(int(labels.max()) for _, labels in splits.values())
  if class_names is None:
    class_names = [str(label) for label in range(largest + 1)]
  class_names = [c.decode() if isinstance(c, bytes) else str(c) for c in np.asarray(class_names, object).ravel()]
  if len(class_names) < 2 or len(set(class_names)) != len(class_names) or not all(class_names):
    raise RegistrationError(f'class_names: got {class_names}; allowed: at least 2 distinct, non-empty names')
  for split in SPLITS:
    labels = splits[split][1]
    if labels.min() < 0 or labels.max() >= len(class_names):
      raise RegistrationError(f'{split}_labels: found {labels.min()}..{labels.max()}; allowed: '
                              f'0..{len(class_names) - 1} (one per class name)')
  return class_names


def _describe(value) -> str:
  if isinstance(value, np.ndarray):
    return f'a {value.dtype} array of shape {value.shape}'
  return f'a {type(value).__name__}'


def read_npz(path: str) -> tuple[dict, list[str] | None]:
  """An .npz file with NPZ_KEYS (and optionally class_names) -> ({split: (images, labels)}, class_names)."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {key: npz[key] for key in npz.files}
  except (OSError, ValueError) as error:
    raise RegistrationError(f'arrays: {path} is not a readable .npz file without pickled objects ({error})') from error
  missing, unknown = [k for k in NPZ_KEYS if k not in arrays], sorted(set(arrays) - set(NPZ_KEYS + NPZ_OPTIONAL_KEYS))
  if missing or unknown:
    raise RegistrationError(f'arrays: {path} has keys {sorted(arrays)}; allowed: {", ".join(NPZ_KEYS)} '
                            f'and optionally {", ".join(NPZ_OPTIONAL_KEYS)}')
  splits = {split: (arrays[f'{split}_images'], arrays[f'{split}_labels']) for split in SPLITS}
  return splits, arrays.get('class_names')


def read_image_folder(folder: str) -> tuple[dict, list[str]]:
  """<folder>/{train,test}/<class>/<image> -> ({split: (images, labels)}, sorted class names).

  Classes are the train folder's subfolders, sorted; test may have fewer. All images must have one size;
  grayscale ones (PIL modes 1 and L) give C = 1 when all are grayscale, else every image is converted to RGB.
  """
  present = {split: _class_folders(folder, split) for split in SPLITS}
  classes = present['train']
  unknown = sorted(set(present['test']) - set(classes))
  if unknown:
    raise RegistrationError(f'image_folder: {os.path.join(folder, "test")} has classes {unknown} that '
                            f'{os.path.join(folder, "train")} does not have')
  paths = {split: [(os.path.join(folder, split, c, f), classes.index(c)) for c in present[split]
                   for f in _image_files(os.path.join(folder, split, c))] for split in SPLITS}
  images = _read_images([p for split in SPLITS for p, _ in paths[split]])
  n_train = len(paths['train'])
  splits = {'train': (images[:n_train], np.array([label for _, label in paths['train']], np.int64)),
            'test': (images[n_train:], np.array([label for _, label in paths['test']], np.int64))}
  return splits, classes


def _class_folders(folder: str, split: str) -> list[str]:
  where = os.path.join(folder, split)
  if not os.path.isdir(where):
    raise RegistrationError(f'image_folder: no folder {where}; the layout is DIR/train/<class>/<image> and '
                            f'DIR/test/<class>/<image>')
  classes = sorted(e.name for e in os.scandir(where) if e.is_dir() and not e.name.startswith('.'))
  if not classes:
    raise RegistrationError(f'image_folder: {where} has no class folders; the layout is {split}/<class>/<image>')
  return classes


def _image_files(class_dir: str) -> list[str]:
  names = sorted(e.name for e in os.scandir(class_dir) if e.is_file() and not e.name.startswith('.'))
  other = [n for n in names if not n.lower().endswith(IMAGE_SUFFIXES)]
  if other:
    raise RegistrationError(f'image_folder: {os.path.join(class_dir, other[0])} is not an image; allowed: '
                            f'{", ".join(IMAGE_SUFFIXES)} files (hidden files are skipped)')
  if not names:
    raise RegistrationError(f'image_folder: {class_dir} has no images')
  return names


def _read_images(paths: list[str]) -> np.ndarray:
  """uint8 [N, H, W, C]: C = 1 when every image is grayscale (PIL modes 1 and L), else RGB for all."""
  from PIL import Image, UnidentifiedImageError  # pylint: disable=g-import-not-at-top

  arrays = []
  for path in paths:
    try:
      with Image.open(path) as image:
        mode = image.mode
        if mode in _EIGHT_BIT_MODES:
          arrays.append(np.asarray(image.convert('L' if mode in ('1', 'L') else 'RGB'), np.uint8))
    except (OSError, UnidentifiedImageError) as error:
      raise RegistrationError(f'image_folder: cannot read {path} ({error})') from error
    if mode not in _EIGHT_BIT_MODES:
      raise RegistrationError(f'image_folder: {path} has PIL mode {mode}; allowed: 8-bit images, modes '
                              f'{", ".join(_EIGHT_BIT_MODES)}')
    if arrays[-1].shape[:2] != arrays[0].shape[:2]:
      raise RegistrationError(f'image_folder: {path} is {_size(arrays[-1])}, {paths[0]} is {_size(arrays[0])}; '
                              f'allowed: one size for all images')
  if all(a.ndim == 2 for a in arrays):
    return np.stack(arrays)[..., None]
  return np.stack([np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a for a in arrays])


def _size(array: np.ndarray) -> str:
  return f'{array.shape[1]}x{array.shape[0]}'


# --- the record in the data dir ------------------------------------------------------------------------------
def entry_path(data_dir: str, name: str) -> str:
  return os.path.join(data_dir, REGISTRY_DIR, f'{name}.json')


def read_entries(data_dir: str) -> dict[str, dict]:
  """The datasets registered in data_dir, by name (sorted); unreadable records are skipped."""
  folder = os.path.join(data_dir, REGISTRY_DIR)
  if not os.path.isdir(folder):
    return {}
  entries = {}
  for file_name in sorted(os.listdir(folder)):
    name = file_name[:-len('.json')]
    if not file_name.endswith('.json') or not _NAME.fullmatch(name):
      continue
    try:
      with open(os.path.join(folder, file_name)) as f:
        entry = json.load(f)
    except (OSError, ValueError):
      continue
    if entry.get('name') == name:
      entries[name] = entry
  return entries


def make_entry(name: str, shape, class_names: list[str], splits: dict, source: str) -> dict:
  return {'name': name, 'version': VERSION, 'shape': [int(s) for s in shape], 'num_classes': len(class_names),
          'class_names': class_names, 'examples': {split: len(splits[split][1]) for split in SPLITS},
          'source': source}


def write_entry(data_dir: str, entry: dict) -> None:
  os.makedirs(os.path.join(data_dir, REGISTRY_DIR), exist_ok=True)
  files.atomic_write_text(entry_path(data_dir, entry['name']), json.dumps(entry, indent=1) + '\n')


def entries(data_dir: str) -> dict[str, dict]:
  """read_entries(data_dir), read once per process and extended by this process's registrations."""
  key = os.path.realpath(data_dir)
  if key not in _ENTRIES:
    _ENTRIES[key] = read_entries(key)
  return _ENTRIES[key]


def register(name: str, splits: dict, class_names, data_dir: str, overwrite: bool, source: str, taken) -> dict:
  """Checks everything, then writes the dataset (TFDS files, then its record); returns the record.

  source: where the data came from, for the record and the summary line (e.g. 'arrays /data/mine.npz').
  """
  from popnet.datasets import builders, prepare  # pylint: disable=g-import-not-at-top  (TFDS: 0.7 s)

  check_name(name, taken)
  shape, class_names = check_splits(splits, class_names)
  folder = os.path.join(data_dir, name)
  if not overwrite and (name in entries(data_dir) or os.path.exists(folder)):
    raise RegistrationError(f'name: {name!r} is already taken in data dir {data_dir} ({folder} exists); '
                            f'pass --overwrite (overwrite=True) to replace it')
  shutil.rmtree(folder, ignore_errors=True)
  builder_cls = builders.registered_builder(name, shape, class_names, f'Registered with popnet from {source}.')
  prepare.write(builder_cls, splits, data_dir, f'from {source}')
  entry = make_entry(name, shape, class_names, splits, source)
  write_entry(data_dir, entry)
  entries(data_dir)[name] = entry
  return entry
