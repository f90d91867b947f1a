"""Readers of the datasets' original archive files, as their sites ship them, into uint8 [N,H,W,C] + int labels.

numpy (and scipy for MATLAB files) only: no TensorFlow, no TFDS. Each reader checks what it reads (magic
numbers, keys, shapes, label ranges) and raises SourceError with one line naming the file, before anything is
written. Label conventions are the originals' mapped as stock TFDS maps them (SVHN's 10 is the digit 0).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile

import numpy as np

CIFAR10_TARBALL = 'cifar-10-python.tar.gz'
CIFAR10_LABEL_NAMES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
MNIST_IDX_FILES = tuple(f'{prefix}-{kind}-ubyte.gz' for prefix in ('train', 't10k')
                        for kind in ('images-idx3', 'labels-idx1'))
KMNIST_NPZ_FILES = tuple(f'kmnist-{split}-{kind}.npz' for split in ('train', 'test') for kind in ('imgs', 'labels'))
SVHN_MAT_FILES = ('train_32x32.mat', 'test_32x32.mat')
_IDX_UINT8 = b'\x00\x00\x08'  # IDX magic: two zero bytes, type 0x08 (unsigned byte), then the number of dimensions

Splits = dict[str, tuple[np.ndarray, np.ndarray]]  # split name -> (uint8 [N,H,W,C] images, int labels [N])


class SourceError(ValueError):
  """A source file is missing, malformed, or not the format its name promises; the message names the file."""


def read_idx(path: str, ndim: int | None = None) -> np.ndarray:
  """Reads a gzipped uint8 IDX file (the MNIST family's format): magic 0x0000080N, N big-endian uint32 sizes."""
  try:
    with gzip.open(path, 'rb') as f:
      data = f.read()
  except (OSError, EOFError) as error:
    raise SourceError(f'{path}: not a readable gzip file ({error})') from error
  if len(data) < 4 or data[:3] != _IDX_UINT8 or (ndim is not None and data[3] != ndim):
    expected = f'0x0000080{ndim}' if ndim is not None else '0x000008..'
    raise SourceError(f'{path}: not a uint8 IDX file (magic {data[:4].hex() or "missing"}, expected {expected})')
  dims = np.frombuffer(data, '>u4', data[3], offset=4)
  pixels = np.frombuffer(data, np.uint8, offset=4 + 4 * data[3])
  if pixels.size != int(np.prod(dims)):
    raise SourceError(f'{path}: header says {tuple(int(d) for d in dims)} ({int(np.prod(dims))} bytes), '
                      f'the file holds {pixels.size}')
  return pixels.reshape(dims)


def read_mnist_idx(source_dir: str) -> Splits:
  """The four IDX .gz files of MNIST, K-MNIST and Fashion-MNIST (train-*, t10k-*) -> train and test splits."""
  def split(prefix):
    images = read_idx(os.path.join(source_dir, f'{prefix}-images-idx3-ubyte.gz'), ndim=3)
    labels = read_idx(os.path.join(source_dir, f'{prefix}-labels-idx1-ubyte.gz'), ndim=1)
    return _checked(f'{prefix}-*-ubyte.gz', images[..., None], labels, num_classes=10)
  return {'train': split('train'), 'test': split('t10k')}


def read_kmnist_npz(source_dir: str) -> Splits:
  """K-MNIST's NumPy release: kmnist-{train,test}-{imgs,labels}.npz, each holding one array 'arr_0'."""
  def split(name):
    images = _npz_array(os.path.join(source_dir, f'kmnist-{name}-imgs.npz'), ndim=3)
    labels = _npz_array(os.path.join(source_dir, f'kmnist-{name}-labels.npz'), ndim=1)
    return _checked(f'kmnist-{name}-*.npz', images[..., None], labels, num_classes=10)
  return {'train': split('train'), 'test': split('test')}


def _npz_array(path: str, ndim: int) -> np.ndarray:
  try:
    with np.load(path, allow_pickle=False) as npz:
      array = npz['arr_0']
  except (OSError, ValueError, KeyError) as error:
    raise SourceError(f'{path}: not an .npz file holding arr_0 ({error})') from error
  if array.ndim != ndim or array.dtype != np.uint8:
    raise SourceError(f'{path}: arr_0 is {array.dtype} of shape {array.shape}, expected uint8 with {ndim} dims')
  return array


class _ArraysOnly(pickle.Unpickler):
  """Unpickles dicts, lists, strings and numpy arrays only: a CIFAR batch cannot run code while it loads."""

  _ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
              ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f'refusing to load {module}.{name}')
    return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
  try:
    record = _ArraysOnly(io.BytesIO(data), encoding='bytes').load()  # the batches are Python 2 pickles
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
    raise SourceError(f'{where}: not a CIFAR python batch ({error})') from error
  if not isinstance(record, dict):
    raise SourceError(f'{where}: not a CIFAR python batch (a {type(record).__name__}, expected a dict)')
  return {key.decode() if isinstance(key, bytes) else key: value for key, value in record.items()}


def _cifar_batch(record: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
  """A batch's 'data' (uint8 [N, 3072]: 1024 red, 1024 green, 1024 blue, rows top to bottom) and 'labels'."""
  if 'data' not in record or 'labels' not in record:
    raise SourceError(f'{where}: a CIFAR python batch has keys data and labels, this one {sorted(record)}')
  pixels, labels = np.asarray(record['data']), np.asarray(record['labels'])
  if pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != 3072 or labels.shape != pixels.shape[:1]:
    raise SourceError(f'{where}: data is {pixels.dtype} {pixels.shape} with {labels.shape} labels, '
                      f'expected uint8 [N, 3072] and N labels')
  return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def read_cifar10_python(tarball: str) -> Splits:
  """cifar-10-python.tar.gz (cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta) -> train, test.

  Read straight from the tarball; the batches go into train in their number order, as in the original.
  """
  try:
    with tarfile.open(tarball, 'r:gz') as tar:
      members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
      read = lambda name: _unpickle(tar.extractfile(members[name]).read(), f'{tarball}:{members[name].name}')
      missing = [n for n in ('batches.meta', 'test_batch', 'data_batch_1') if n not in members]
      if missing:
        raise SourceError(f'{tarball}: no {", ".join(missing)} in it; is it {CIFAR10_TARBALL}?')
      names = [n.decode() if isinstance(n, bytes) else n for n in read('batches.meta').get('label_names', [])]
      if names != CIFAR10_LABEL_NAMES:
        raise SourceError(f'{tarball}: batches.meta label_names are {names}, CIFAR-10\'s are {CIFAR10_LABEL_NAMES}')
      train_names = sorted((n for n in members if n.startswith('data_batch_')), key=lambda n: int(n.split('_')[-1]))
      train = [_cifar_batch(read(n), f'{tarball}:{n}') for n in train_names]
      test = _cifar_batch(read('test_batch'), f'{tarball}:test_batch')
  except (tarfile.TarError, OSError, EOFError) as error:
    raise SourceError(f'{tarball}: not a readable .tar.gz ({error})') from error
  train_x, train_y = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
  return {'train': _checked(f'{tarball}:data_batch_*', train_x, train_y, 10),
          'test': _checked(f'{tarball}:test_batch', *test, 10)}


def read_svhn_mat(path: str) -> tuple[np.ndarray, np.ndarray]:
  """An SVHN cropped-digits file (MATLAB v5: X uint8 [32,32,3,N], y [N,1] in 1..10) -> images, labels 0..9.

  SVHN writes the digit 0 as label 10; stock TFDS stores it as 0 (y % 10), and so do we.
  """
  import scipy.io  # pylint: disable=g-import-not-at-top  (scikit-learn's dependency)

  try:
    mat = scipy.io.loadmat(path)
  except (OSError, ValueError, NotImplementedError, TypeError) as error:  # v7.3 (HDF5) files raise NotImplemented
    raise SourceError(f'{path}: not a MATLAB v5 .mat file ({error})') from error
  images, labels = mat.get('X'), mat.get('y')
  if images is None or labels is None:
    raise SourceError(f'{path}: an SVHN .mat file holds X and y, this one {sorted(k for k in mat if k[0] != "_")}')
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
    raise SourceError(f'{path}: X is {images.dtype} {images.shape}, expected uint8 [32, 32, 3, N]')
  if labels.size != images.shape[3] or labels.size and not np.isin(labels, np.arange(1, 11)).all():
    raise SourceError(f'{path}: y must hold {images.shape[3]} labels in 1..10 (10 is the digit 0)')
  return np.ascontiguousarray(np.moveaxis(images, -1, 0)), labels.reshape(-1).astype(np.int64) % 10


def read_svhn(source_dir: str) -> Splits:
  return {split: read_svhn_mat(os.path.join(source_dir, f'{split}_32x32.mat')) for split in ('train', 'test')}


def _checked(where: str, images: np.ndarray, labels: np.ndarray, num_classes: int):
  if len(images) != len(labels):
    raise SourceError(f'{where}: {len(images)} images but {len(labels)} labels')
  if labels.size and not (0 <= labels.min() and labels.max() < num_classes):
    raise SourceError(f'{where}: labels must be in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}')
  return images, labels.astype(np.int64)
