"""Your own data: mnist / kmnist / cifar10 / svhn_cropped prepared from archives in their original formats (built
here, tiny), datasets registered from arrays, .npz files and image folders, their checks, and a training run on
a registered dataset.

Every check compares what popnet.data.load returns with the source pixels and labels, exactly.
"""
import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from popnet import data
from popnet.datasets import archives, catalog, registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _no_registry_leaks(monkeypatch):
  """Registrations and included data dirs of a test do not reach the other tests of the session."""
  monkeypatch.setattr(registry, '_ENTRIES', {})
  monkeypatch.setattr(catalog.DATASETS, '_included', [])


def _rows(x, y):
  """Each example as one byte string (pixels + label), sorted: equal iff equal as multisets (TFDS shuffles)."""
  table = np.ascontiguousarray(np.concatenate([x.reshape(len(x), -1), y.astype(np.uint8)[:, None]], axis=1))
  return np.sort(table.view(f'V{table.shape[1]}').ravel())


def _assert_split(raw, split, images, labels):
  x, y = getattr(raw, f'{split}_x'), getattr(raw, f'{split}_y')
  assert x.dtype == np.uint8 and x.shape == images.shape and y.dtype == np.int32
  np.testing.assert_array_equal(_rows(x, y), _rows(images, labels))


def _images(n, shape):
  return RNG.integers(0, 256, (n, *shape), dtype=np.uint8)


# --- the original formats, written as their sites ship them ----------------------------------------------------
def write_idx_gz(path, array):
  """IDX: 0x00 0x00, type 0x08 (uint8), the number of dimensions, each size as big-endian uint32, the bytes."""
  header = bytes([0, 0, 8, array.ndim]) + np.array(array.shape, '>u4').tobytes()
  with gzip.open(path, 'wb') as f:
    f.write(header + np.ascontiguousarray(array, np.uint8).tobytes())


def write_mnist_idx(folder, n_train=30, n_test=12):
  os.makedirs(folder, exist_ok=True)
  splits = {}
  for split, prefix, n in (('train', 'train', n_train), ('test', 't10k', n_test)):
    images, labels = _images(n, (28, 28)), RNG.integers(0, 10, n).astype(np.uint8)
    write_idx_gz(os.path.join(folder, f'{prefix}-images-idx3-ubyte.gz'), images)
    write_idx_gz(os.path.join(folder, f'{prefix}-labels-idx1-ubyte.gz'), labels)
    splits[split] = images[..., None], labels
  return splits


def _py2_style_pickle(record):
  """A pickle like the CIFAR batches (Python 2, protocol 2, byte-string keys, numpy.core's _reconstruct)."""
  return pickle.dumps(record, protocol=2).replace(b'numpy._core.multiarray', b'numpy.core.multiarray')


def write_cifar10_tarball(path, batch_sizes=(20, 15), n_test=10):
  """cifar-10-batches-py/{data_batch_1.., test_batch, batches.meta}: pickled dicts as the original ships them."""
  members, train = {}, []
  for i, n in enumerate([*batch_sizes, n_test]):
    images, labels = _images(n, (32, 32, 3)), RNG.integers(0, 10, n)
    name = f'data_batch_{i + 1}' if i < len(batch_sizes) else 'test_batch'
    members[name] = _py2_style_pickle({
        b'batch_label': f'training batch {i + 1} of {len(batch_sizes)}'.encode(), b'labels': labels.tolist(),
        b'data': images.transpose(0, 3, 1, 2).reshape(n, 3072),  # the original's row layout: all R, all G, all B
        b'filenames': [f'image_{i}_{k}.png'.encode() for k in range(n)]})
    train.append((images, labels))
  members['batches.meta'] = _py2_style_pickle({b'num_cases_per_batch': 10000, b'num_vis': 3072,
                                               b'label_names': [n.encode() for n in archives.CIFAR10_LABEL_NAMES]})
  with tarfile.open(path, 'w:gz') as tar:
    for name, payload in members.items():
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  test = train.pop()
  return {'train': (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])), 'test': test}


def write_svhn_mats(folder, n_train=25, n_test=11):
  """{train,test}_32x32.mat, MATLAB v5: X uint8 [32, 32, 3, N], y double [N, 1] with 10 for the digit 0."""
  import scipy.io

  os.makedirs(folder, exist_ok=True)
  raw = {}
  for split, n in (('train', n_train), ('test', n_test)):
    images, y = _images(n, (32, 32, 3)), np.concatenate([[10, 10, 1, 9], RNG.integers(1, 11, n - 4)])
    scipy.io.savemat(os.path.join(folder, f'{split}_32x32.mat'),
                     {'X': np.moveaxis(images, 0, -1), 'y': y.astype(np.float64)[:, None]})
    raw[split] = images, y
  return raw


# --- archives -> prepare -> load --------------------------------------------------------------------------------
def test_mnist_from_idx_files(tmp_path):
  splits = write_mnist_idx(tmp_path / 'src')
  data.prepare('mnist', tmp_path / 'tfds', source=tmp_path / 'src')
  raw = data.load('mnist', tmp_path / 'tfds')
  for split, (images, labels) in splits.items():
    _assert_split(raw, split, images, labels)
  assert type(tfds.builder('mnist', data_dir=tmp_path / 'tfds')).__module__.startswith('tensorflow_datasets.')


@pytest.mark.parametrize('release', ['idx', 'npz'])
def test_kmnist_from_its_idx_or_npz_release(release, tmp_path):
  source = tmp_path / 'src'
  splits = write_mnist_idx(source)
  if release == 'npz':
    for split, (images, labels) in splits.items():
      np.savez_compressed(source / f'kmnist-{split}-imgs.npz', arr_0=images[..., 0])
      np.savez_compressed(source / f'kmnist-{split}-labels.npz', arr_0=labels)
      os.remove(source / f'{"t10k" if split == "test" else split}-images-idx3-ubyte.gz')
  data.prepare('kmnist', tmp_path / 'tfds', source=source / 'kmnist-train-imgs.npz' if release == 'npz' else source)
  raw = data.load('kmnist', tmp_path / 'tfds')
  for split, (images, labels) in splits.items():
    _assert_split(raw, split, images, labels)
  names = tfds.builder('kmnist', data_dir=tmp_path / 'tfds').info.features['label'].names
  assert names == ['o', 'ki', 'su', 'tsu', 'na', 'ha', 'ma', 'ya', 're', 'wo']


def test_cifar10_from_the_python_tarball(tmp_path):
  tarball = tmp_path / archives.CIFAR10_TARBALL
  splits = write_cifar10_tarball(tarball)
  assert len(splits['train'][0]) == 35  # both batches, in order
  data.prepare('cifar10', tmp_path / 'tfds', source=tarball)  # --from the file itself
  raw = data.load('cifar10', tmp_path / 'tfds')
  for split, (images, labels) in splits.items():
    _assert_split(raw, split, images, labels)
  builder = tfds.builder('cifar10', data_dir=tmp_path / 'tfds')  # the stock class reads our files
  assert type(builder).__module__.startswith('tensorflow_datasets.')
  assert builder.info.features['label'].names == archives.CIFAR10_LABEL_NAMES
  record = tfds.data_source('cifar10', split='test', data_dir=tmp_path / 'tfds', download=False)[0]
  assert record['id'].decode().startswith('test_') and record['image'].shape == (32, 32, 3)


def test_svhn_label_10_is_the_digit_0(tmp_path):
  raw_splits = write_svhn_mats(tmp_path / 'src')
  data.prepare('svhn_cropped', tmp_path / 'tfds', source=tmp_path / 'src')
  raw = data.load('svhn_cropped', tmp_path / 'tfds')
  for split, (images, y) in raw_splits.items():
    _assert_split(raw, split, images, np.where(y == 10, 0, y))  # 1..9 stay, 10 -> 0
  assert raw.train_y.min() == 0 and raw.train_y.max() <= 9
  source = tfds.data_source('svhn_cropped', split='train', data_dir=tmp_path / 'tfds', download=False)
  assert len(source) == 25 and source[0]['id'].decode().startswith('train_')


def test_a_bad_archive_names_the_file_and_writes_nothing(tmp_path):
  source = tmp_path / 'src'
  write_mnist_idx(source)
  with gzip.open(source / 'train-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(bytes([0, 0, 8, 3]) + np.array([30, 1, 1], '>u4').tobytes() + bytes(30))  # an images magic
  with pytest.raises(archives.SourceError, match='train-labels-idx1-ubyte.gz: not a uint8 IDX file.*0x00000801'):
    data.prepare('mnist', tmp_path / 'tfds', source=source)
  os.remove(source / 'train-labels-idx1-ubyte.gz')
  with pytest.raises(archives.SourceError, match='train-labels-idx1-ubyte.gz not found'):
    data.prepare('mnist', tmp_path / 'tfds', source=source)
  bad_tar = tmp_path / 'bad' / archives.CIFAR10_TARBALL
  bad_tar.parent.mkdir()
  with tarfile.open(bad_tar, 'w:gz') as tar:
    for name in ('batches.meta', 'test_batch', 'data_batch_1'):
      payload = pickle.dumps({'data': os.system}, protocol=2)  # a pickle that would call a function
      info = tarfile.TarInfo(f'cifar-10-batches-py/{name}')
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  with pytest.raises(archives.SourceError, match='refusing to load'):
    data.prepare('cifar10', tmp_path / 'tfds', source=bad_tar.parent)
  assert not (tmp_path / 'tfds').exists()


def test_cli_prepare_from(tmp_path):
  write_svhn_mats(tmp_path / 'src', n_train=6, n_test=5)
  result = subprocess.run([sys.executable, '-m', 'popnet.data', 'prepare', 'svhn_cropped', '--from',
                           str(tmp_path / 'src'), '--data_dir', str(tmp_path / 'tfds')],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == str(tmp_path / 'tfds' / 'svhn_cropped' / '3.1.0')
  assert result.stderr.splitlines() == [f'prepared svhn_cropped from {tmp_path / "src"}: 6 train + 5 test images in '
                                        f'{result.stderr.split(" in ")[1].split(" s ")[0]} s -> '
                                        f'{tmp_path / "tfds" / "svhn_cropped" / "3.1.0"}']  # one line, no TFDS bars
  result = subprocess.run([sys.executable, '-m', 'popnet.data', 'prepare', 'cifar10', '--from', str(tmp_path),
                           '--data_dir', str(tmp_path / 'other')], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 2 and not (tmp_path / 'other').exists()
  assert result.stderr.count('\n') == 1 and 'cifar-10-python.tar.gz not found' in result.stderr


# --- registering your own data ----------------------------------------------------------------------------------
def own_arrays(n_train=40, n_test=12, shape=(8, 8, 1)):
  return dict(train_images=_images(n_train, shape), train_labels=np.arange(n_train) % 3,
              test_images=_images(n_test, shape), test_labels=np.arange(n_test) % 3)


def test_register_arrays_then_load_and_list(tmp_path, monkeypatch, capsys):
  arrays = own_arrays(shape=(5, 7, 3))
  path = data.register_arrays('mine', **arrays, class_names=['cat', 'dog', 'eel'], data_dir=tmp_path)
  assert path == str(tmp_path / 'mine' / '1.0.0')
  raw = data.load('mine', tmp_path)
  assert raw.num_classes == 3
  _assert_split(raw, 'train', arrays['train_images'], arrays['train_labels'])
  _assert_split(raw, 'test', arrays['test_images'], arrays['test_labels'])
  entry = json.loads((tmp_path / 'popnet_registered' / 'mine.json').read_text())
  assert entry['class_names'] == ['cat', 'dog', 'eel'] and entry['shape'] == [5, 7, 3]
  assert tfds.builder('mine', data_dir=tmp_path).info.features['label'].names == ['cat', 'dog', 'eel']
  assert data.main(['list', '--data_dir', str(tmp_path)]) == 0
  assert 'mine           prepared  registered' in capsys.readouterr().out
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))  # the default data dir's registered datasets are in DATASETS
  assert data.DATASETS['mine'].shape == (5, 7, 3) and list(data.DATASETS)[-1] == 'mine'


def test_registry_is_read_by_a_later_process(tmp_path):
  np.savez(tmp_path / 'mine.npz', **own_arrays())
  assert data.main(['register', 'later', '--arrays', str(tmp_path / 'mine.npz'), '--data_dir', str(tmp_path)]) == 0
  code = ('from popnet import data, hparams; import sys; data.include_registered(sys.argv[1]); '
          'print(data.DATASETS["later"].num_classes, "later" in hparams.allowed_values("dataset"))')
  result = subprocess.run([sys.executable, '-c', code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=True)
  assert result.stdout.split() == ['3', 'True']
  assert data.main(['register', 'later', '--arrays', str(tmp_path / 'mine.npz'), '--data_dir', str(tmp_path)]) == 2
  assert data.main(['register', 'later', '--arrays', str(tmp_path / 'mine.npz'), '--data_dir', str(tmp_path),
                    '--overwrite']) == 0


def write_png(path, array):
  from PIL import Image

  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path)


@pytest.mark.parametrize('channels', [1, 3])
def test_register_image_folder(channels, tmp_path):
  folder, expected = tmp_path / 'images', {'train': ([], []), 'test': ([], [])}
  for split, n in (('train', 4), ('test', 2)):
    for label, name in enumerate(['ant', 'bee', 'zebra']):  # sorted names are labels 0, 1, 2
      for k in range(n if split == 'train' or name != 'bee' else 0):  # test has no bee: zebra stays 2
        image = _images(1, (6, 9, channels))[0]
        write_png(folder / split / name / f'{k}.png', image)
        expected[split][0].append(image)
        expected[split][1].append(label)
  (folder / 'train' / 'ant' / '.DS_Store').write_bytes(b'')  # hidden files are skipped
  data.register_image_folder('folder_data', folder, data_dir=tmp_path / 'tfds')
  raw = data.load('folder_data', tmp_path / 'tfds')
  for split, (images, labels) in expected.items():
    _assert_split(raw, split, np.stack(images), np.array(labels))
  assert json.loads((tmp_path / 'tfds' / 'popnet_registered' / 'folder_data.json').read_text())['class_names'] == [
      'ant', 'bee', 'zebra']


def _bad(**changes):
  arrays = own_arrays()
  arrays.update(changes)
  return arrays


BAD_INPUT = [  # (name, arrays, field named in the one error line)
    ('../up', own_arrays(), 'name'), ('a/b', own_arrays(), 'name'), ('Mine', own_arrays(), 'name'),
    ('', own_arrays(), 'name'), ('popnet_cache', own_arrays(), 'name'), ('mnist', own_arrays(), 'name'),
    ('cifar100', own_arrays(), 'name'),
    ('ok', _bad(train_images=own_arrays()['train_images'].astype(np.float32)), 'train_images'),
    ('ok', _bad(train_images=own_arrays()['train_images'][..., 0]), 'train_images'),
    ('ok', _bad(test_images=np.zeros((12, 8, 8, 2), np.uint8)), 'test_images'),
    ('ok', _bad(test_images=np.zeros((12, 9, 8, 1), np.uint8)), 'test_images'),
    ('ok', _bad(train_labels=np.arange(40) - 1), 'train_labels'),
    ('ok', _bad(test_labels=np.arange(11)), 'test_labels'),
    ('ok', _bad(train_labels=np.arange(40) * 0.5), 'train_labels'),
    ('ok', _bad(class_names=np.array(['a', 'b'])), 'train_labels'),
    ('ok', _bad(class_names=np.array(['a', 'a', 'b'])), 'class_names'),
]


@pytest.mark.parametrize('name,arrays,field', BAD_INPUT)
def test_bad_registration_one_line_exit_2_nothing_written(name, arrays, field, tmp_path, capsys):
  np.savez(tmp_path / 'bad.npz', **arrays)
  assert data.main(['register', name, '--arrays', str(tmp_path / 'bad.npz'), '--data_dir', str(tmp_path / 'tfds')]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'error: {field}: ') and err.count('\n') == 1, err
  assert not (tmp_path / 'tfds').exists()


def test_bad_npz_keys_and_folders(tmp_path, capsys):
  np.savez(tmp_path / 'keys.npz', train_images=own_arrays()['train_images'], extra=np.zeros(1))
  assert data.main(['register', 'ok', '--arrays', str(tmp_path / 'keys.npz'), '--data_dir', str(tmp_path / 't')]) == 2
  assert 'arrays: ' in capsys.readouterr().err
  write_png(tmp_path / 'f' / 'train' / 'a' / '0.png', _images(1, (4, 4, 1))[0])
  write_png(tmp_path / 'f' / 'train' / 'a' / '1.png', _images(1, (5, 4, 1))[0])
  write_png(tmp_path / 'f' / 'test' / 'a' / '0.png', _images(1, (4, 4, 1))[0])
  assert data.main(['register', 'ok', '--image_folder', str(tmp_path / 'f'), '--data_dir', str(tmp_path / 't')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: image_folder: ') and 'one size for all images' in err
  with pytest.raises(registry.RegistrationError, match='one size for all images'):
    data.register_image_folder('ok', tmp_path / 'f', data_dir=tmp_path / 't')
  from PIL import Image
  Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / 'f' / 'train' / 'a' / '1.png')
  with pytest.raises(registry.RegistrationError, match='1.png has PIL mode I;16; allowed: 8-bit'):
    data.register_image_folder('ok', tmp_path / 'f', data_dir=tmp_path / 't')
  with pytest.raises(registry.RegistrationError, match='no folder .*test'):
    data.register_image_folder('ok', tmp_path / 'f' / 'train', data_dir=tmp_path / 't')
  assert not (tmp_path / 't').exists()


def test_train_on_a_registered_dataset(cli, tmp_path):
  import pandas as pd

  rng = np.random.default_rng(1)
  patterns = rng.integers(0, 256, (3, 8, 8, 1))
  labels = rng.integers(0, 3, 260)
  images = np.clip(patterns[labels] * 0.7 + rng.integers(0, 80, (260, 8, 8, 1)), 0, 255).astype(np.uint8)
  data.register_arrays('blobs', images[:200], labels[:200], images[200:], labels[200:], data_dir=tmp_path / 'tfds')
  workdir = tmp_path / 'run'
  cli('--config', 'smoke', '--workdir', str(workdir), '--config.hparams.dataset=blobs',
      f'--config.data_dir={tmp_path / "tfds"}', '--config.population=2', '--config.epochs=1',
      '--config.snapshots=2', '--config.eval_train_examples=100', '--config.eval_batch_size=20',
      '--config.hparams.batch_size=16')
  metadata = pd.read_csv(workdir / 'zoo' / 'metadata.csv')
  assert set(metadata['dataset']) == {'blobs'} and len(metadata) == 4  # 2 members x 2 snapshots


def test_more_classes_than_the_architecture_has_outputs_is_a_config_error(tmp_path):
  from popnet import config as config_lib, configs, hparams, train

  arrays = own_arrays()
  arrays['train_labels'] = np.arange(40) % 12  # 12 classes; smallcnnzoo has 10 outputs
  data.register_arrays('twelve', **arrays, data_dir=tmp_path)
  config = configs.get('smoke')
  config.data_dir, config.hparams.dataset = str(tmp_path), 'twelve'
  config_lib.validate(config)
  members = hparams.sample_members(dict(config.hparams), config.population, config.seed)
  with pytest.raises(config_lib.ConfigError, match="hparams.dataset: 'twelve' has 12 classes, architecture "
                                                   "'smallcnnzoo' has 10 outputs"):
    train.check_inputs(config, members)
  arrays['train_labels'] = np.arange(40) % 10  # 10 classes fit
  data.register_arrays('ten', **arrays, data_dir=tmp_path)
  config.hparams.dataset = 'ten'
  train.check_inputs(config, hparams.sample_members(dict(config.hparams), config.population, config.seed))
