"""End to end: the CLI on the smoke config writes a complete, consistent zoo; bad input fails fast and clearly."""
import json
import os
import time

import numpy as np
import pytest

from popnet import config as config_lib
from popnet import data as data_lib
from popnet import models, train
from popnet.zoo import Zoo, ZooError


@pytest.fixture(scope='module')
def smoke_run(cli, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('smoke') / 'run')
  proc = cli('--config', 'smoke', '--workdir', workdir)
  return workdir, proc


def smoke_config(**overrides):
  from popnet import configs
  config = configs.get('smoke')
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def test_cli_writes_complete_zoo(smoke_run):
  workdir, proc = smoke_run
  assert 'members: 8' in proc.stdout and 'model-samples/s' in proc.stdout
  zoo = Zoo.open(workdir)
  meta = zoo.metadata
  assert len(meta) == 8 * 3 and zoo.architectures == ['smallcnnzoo']
  assert sorted(meta['epoch'].unique()) == [0, 1, 2] and sorted(meta['snapshot'].unique()) == [0, 1, 2]
  weights = np.load(os.path.join(workdir, 'zoo', 'weights', 'smallcnnzoo.npy'), mmap_mode='r')
  assert isinstance(weights, np.memmap) and weights.shape == (24, 4970) and weights.dtype == np.float32
  assert np.isfinite(weights).all()
  np.testing.assert_array_equal(meta['weights_row'].to_numpy(), np.arange(24))  # row-aligned
  layout = zoo.layout('smallcnnzoo')
  assert layout.size == 4970 and layout.layers == ['conv_0', 'conv_1', 'conv_2', 'output']
  for column in ('member_id', 'snapshot', 'epoch', 'step', 'learning_rate', 'optimizer', 'activation', 'init',
                 'augment', 'seed', 'status', 'train_accuracy', 'val_accuracy', 'test_accuracy', 'train_loss',
                 'val_loss', 'test_loss', 'weights_file'):
    assert column in meta, column
  assert meta['test_accuracy'].between(0, 1).all() and (meta['status'] == 'ok').all()
  final = meta[meta['epoch'] == 2]
  assert (final['test_accuracy'] > 0.3).sum() >= 4  # most members learn 8x8 digits in 2 epochs
  init = meta[meta['epoch'] == 0]
  assert not np.allclose(zoo.vectors(init.iloc[:1]), zoo.vectors(final.iloc[:1]))
  manifest = json.load(open(os.path.join(workdir, 'zoo', 'manifest.json')))
  assert manifest['complete'] and manifest['summary']['members'] == 8 and len(manifest['devices']) == 2
  assert manifest['timings']['train'] > 0 and manifest['versions']['jax']
  machine = manifest['machine']  # what the numbers depend on besides code and versions
  assert machine['cpu'] and machine['cores'] == os.cpu_count() and machine['device_kind']
  assert isinstance(machine['cpu_vector_flags'], list) and 'xla_flags' in machine
  (process,) = manifest['processes']  # one uninterrupted process: its record is the whole build's
  assert process['cpu'] == machine['cpu'] and process['model_samples'] > 0
  assert manifest['summary']['build']['timings']['train'] == process['timings']['train']


def test_zoo_weights_reproduce_recorded_accuracy(smoke_run, digits_dir):
  """A row unflattened with its layout and run through popnet.models gives the recorded test accuracy."""
  workdir, _ = smoke_run
  zoo = Zoo.open(workdir)
  rows = zoo.metadata[zoo.metadata['epoch'] == 2].iloc[[0]]
  row = rows.iloc[0]
  variables = zoo.unflatten(zoo.vectors(rows))
  variables = {k: {l: {n: v[0] for n, v in d.items()} for l, d in c.items()} for k, c in variables.items()}
  raw = data_lib.load('digits', digits_dir)
  x = data_lib.to_common_shape(raw.test_x, zoo.input_shape).astype(np.float32) / 255.0
  logits, _ = models.apply(zoo.arch('smallcnnzoo'), variables, x, train=False,
                           activation=models.ACTIVATIONS.index(row['activation']))
  accuracy = float((np.asarray(logits).argmax(-1) == raw.test_y).mean())
  assert abs(accuracy - row['test_accuracy']) < 1e-6


def test_missing_dataset_fails_fast(tmp_path):
  config = smoke_config(**{'hparams.dataset': 'cifar10', 'data_dir': str(tmp_path)})
  t0 = time.perf_counter()
  with pytest.raises(data_lib.DatasetNotPreparedError, match='python -m popnet.data prepare cifar10'):
    train.train(config, str(tmp_path / 'run'), progress=False, log=lambda *_: None)
  assert time.perf_counter() - t0 < 2.0
  assert not os.path.exists(tmp_path / 'run')  # nothing written


def test_cli_reports_missing_dataset(cli, tmp_path):
  proc = cli('--config', 'smoke', '--workdir', str(tmp_path / 'w'), '--config.hparams.dataset=stl10',
             env={'TFDS_DATA_DIR': str(tmp_path)}, check=False)
  assert proc.returncode == 2 and 'python -m popnet.data prepare stl10' in proc.stderr


@pytest.mark.parametrize('overrides,message', [
    ({'population': 0}, r'config.population: got 0; allowed: a positive integer'),
    ({'epochs': -1}, r'config.epochs'),
    ({'snapshot_epochs': (0, 5)}, r'config.snapshot_epochs.*\[0, epochs=2\]'),
    ({'snapshots': 9}, r'config.snapshots.*at most epochs \+ 1 = 3'),
    ({'conv_impl': 'fft'}, r"config.conv_impl.*'fft'.*im2col"),
    ({'input_shape': (8, 8, 2)}, r'config.input_shape'),
    ({'val_fraction': 1.5}, r'config.val_fraction'),
    ({'hparams.learning_rate': -0.1}, r'hparams.learning_rate.*> 0'),
    ({'hparams.learning_rate': 'loguniform(0.0, 0.1)'}, r'hparams.learning_rate.*loguniform needs lo > 0'),
    ({'hparams.batch_size': 0}, r'hparams.batch_size.*> 0'),
    ({'hparams.batch_size': 'big'}, r'hparams.batch_size.*expected an integer'),
    ({'hparams.activation': 'choice(relu, swish)'}, r"hparams.activation.*'swish'.*relu"),
    ({'hparams.optimizer': 'adagrad'}, r"hparams.optimizer.*'adagrad'.*adam"),
    ({'hparams.init': 'xavier'}, r"hparams.init.*'xavier'.*glorot_uniform"),
    ({'hparams.dataset': 'imagenet'}, r"hparams.dataset.*'imagenet'.*fashion_mnist"),
    ({'hparams.architecture': 'resnet'}, r"hparams.architecture.*'resnet'.*smallcnnzoo"),
    ({'hparams.dropout': 1.0}, r'hparams.dropout.*in \[0, 1\)'),
])
def test_config_validation_names_field_value_and_allowed(overrides, message):
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(smoke_config(**overrides))


def test_unknown_config_keys_are_rejected():
  config = smoke_config()
  with config.unlocked():
    config.learnig_rate = 0.1
  with pytest.raises(config_lib.ConfigError, match=r"unknown config field\(s\) \['learnig_rate'\]"):
    config_lib.validate(config)
  config = smoke_config()
  config.hparams.lr = 0.1
  with pytest.raises(config_lib.ConfigError, match=r"unknown hyper-parameter\(s\) \['lr'\]"):
    config_lib.validate(config)


def test_batch_larger_than_training_split_fails_before_compiling(digits_dir, tmp_path):
  config = smoke_config(**{'hparams.batch_size': 5000, 'data_dir': digits_dir})
  t0 = time.perf_counter()
  with pytest.raises(config_lib.ConfigError, match=r'batch_size: 5000 is larger than the training split of digits'):
    train.train(config, str(tmp_path / 'run'), progress=False, log=lambda *_: None)
  assert time.perf_counter() - t0 < 10


def test_architecture_too_deep_for_input_shape_fails_before_writing(digits_dir, tmp_path):
  config = smoke_config(**{'hparams.architecture': 'smallcnnzoo_valid', 'input_shape': (8, 8, 1),
                           'data_dir': digits_dir})
  with pytest.raises(config_lib.ConfigError, match=r"config.hparams.architecture: 'smallcnnzoo_valid' cannot run on "
                                                   r"config.input_shape \(8, 8, 1\): a 3x3 VALID convolution needs"):
    train.train(config, str(tmp_path / 'run'), progress=False, log=lambda *_: None)
  assert not (tmp_path / 'run').exists()


def test_corrupted_zoo_is_reported_with_file(smoke_run, tmp_path):
  import shutil
  workdir, _ = smoke_run
  for damage, name in [('truncate', 'weights/smallcnnzoo.npy'), ('garbage', 'manifest.json'),
                       ('delete', 'layouts/smallcnnzoo.json'), ('truncate', 'metadata.csv')]:
    copy = tmp_path / damage / name.replace('/', '_')
    shutil.copytree(os.path.join(workdir, 'zoo'), copy)
    target = copy / name
    if damage == 'truncate':
      size = os.path.getsize(target)
      with open(target, 'r+b') as f:
        f.truncate(size // 2)
    elif damage == 'garbage':
      target.write_text('{not json')
    else:
      os.remove(target)
    with pytest.raises(ZooError, match=os.path.basename(name)):
      Zoo.open(str(copy))


def test_zoo_api_reproduces_recorded_accuracies(smoke_run, digits_dir):
  """select by hyper-parameters and epoch; evaluate on the recorded subsets gives the recorded accuracies;
  predict takes raw uint8 images, refuses 0-255 floats, and equals the [0, 1] float path."""
  from popnet import Zoo as TopLevelZoo
  workdir, _ = smoke_run
  zoo = TopLevelZoo.open(workdir)
  rows = zoo.select(epoch='last', status='ok')
  assert len(rows) == 8 and set(rows['epoch']) == {2}
  for split in ('test', 'val', 'train'):
    np.testing.assert_allclose(zoo.evaluate(rows, split, data_dir=digits_dir), rows[f'{split}_accuracy'], atol=1e-6)
  first = rows['activation'].iloc[0]
  some = zoo.select(activation=[first], snapshot='first', test_accuracy=lambda a: a >= 0)
  assert set(some['activation']) == {first} and set(some['snapshot']) == {0}
  assert len(some) == (zoo.metadata.query('snapshot == 0')['activation'] == first).sum()
  with pytest.raises(KeyError, match=r"'activaton' is not a metadata column \(did you mean 'activation'\?\)"):
    zoo.select(activaton=[first])
  raw = data_lib.load('digits', digits_dir)
  logits = zoo.predict(rows.iloc[:3], raw.test_x[:7])
  assert logits.shape == (3, 7, 10)
  np.testing.assert_allclose(zoo.predict(rows.iloc[:3], raw.test_x[:7].astype(np.float32) / 255), logits, rtol=1e-6)
  with pytest.raises(ValueError, match=r'float images must be in \[0, 1\]'):
    zoo.predict(rows.iloc[:1], raw.test_x[:7].astype(np.float32))
  assert set(zoo.unflatten(zoo.vectors(rows.iloc[:1]))) == {'params', 'batch_stats'}
  # the smoke zoo is smallcnnzoo: NWS-family columns do not describe its networks and are not written
  assert not {'filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc', 'batch_norm'} & set(zoo.metadata)


def test_curves_hold_every_member_and_epoch(smoke_run):
  from popnet import curves
  workdir, _ = smoke_run
  table = curves.read(workdir)
  assert len(table) == 8 * 3 and table['epoch'].tolist()[:3] == [0, 1, 2]
  assert table.loc[table['epoch'] == 0, 'minibatch_loss'].isna().all()
  assert (table.loc[table['epoch'] > 0, 'minibatch_loss'] > 0).all()
  final = table[table['epoch'] == 2].set_index('member_id')['test_accuracy']
  zoo = Zoo.open(workdir)
  recorded = zoo.metadata[zoo.metadata['epoch'] == 2].set_index('member_id')['test_accuracy']
  np.testing.assert_allclose(final.sort_index(), recorded.sort_index(), atol=1e-6)
