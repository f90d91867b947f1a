"""Opening and importing Small CNN Zoo release directories, built as the release lays them out (README of
google-research/google-research dnn_predict_accuracy: the 22 columns in its order; the colab reads the metrics
with index_col=0, so the first, unnamed column is the checkpoint path train_network.py saves)."""
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from popnet import interop, models
from popnet.zoo import Zoo, ZooError
from tests.test_interop import tree_equal
from tests.test_interop_smallcnnzoo import RELEASE_LAYOUT
from tests.zoo_forgery import forge

CHECKPOINT_EPOCHS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


def make_release(path, modeldirs, rng, drop=(), nan_row=None, shuffle=True):
  """A Small CNN Zoo directory as the release lays it out: one row per (run, checkpoint epoch), indexed by the
  checkpoint path, `step` = the checkpoint's epoch."""
  os.makedirs(path, exist_ok=True)
  rows = [(d, e) for d in modeldirs for e in CHECKPOINT_EPOCHS if (d, e) not in drop]
  if shuffle:
    rows = [rows[i] for i in rng.permutation(len(rows))]
  n = len(rows)
  hp = {d: dict(act=str(rng.choice(['relu', 'tanh', 'sigmoid', 'selu'])), lr=float(10 ** rng.uniform(-4, -1)),
                l2=float(rng.choice([0.0, 1e-4])), opt=str(rng.choice(['sgd', 'adam', 'rmsprop'])),
                dropout=float(rng.choice([0.0, 0.2]))) for d in modeldirs}
  metrics = pd.DataFrame({
      'config.activation': [hp[d]['act'] for d, _ in rows], 'config.b_init': 'zeros', 'config.dataset': 'cifar10',
      'config.dnn_architecture': 'cnn', 'config.dropout': [hp[d]['dropout'] for d, _ in rows], 'config.epochs': 86,
      'config.epochs_between_checkpoints': 20, 'config.init_std': 0.05, 'config.l2reg': [hp[d]['l2'] for d, _ in rows],
      'config.learning_rate': [hp[d]['lr'] for d, _ in rows], 'config.num_layers': 3, 'config.num_units': 16,
      'config.optimizer': [hp[d]['opt'] for d, _ in rows], 'config.random_seed': 42, 'config.train_fraction': 0.5,
      'config.w_init': 'he_normal', 'modeldir': [d for d, _ in rows], 'step': [e for _, e in rows],
      'test_accuracy': rng.uniform(0, 1, n), 'test_loss': rng.uniform(0, 3, n),
      'train_accuracy': rng.uniform(0, 1, n), 'train_loss': rng.uniform(0, 3, n)})
  if nan_row is not None:
    metrics.loc[nan_row, ['test_loss', 'train_loss']] = np.nan
  assert list(metrics.columns) == list(interop.RELEASE_COLUMNS)
  checkpoints = [f'{d}/permanent_ckpt-{e}' for d, e in rows]  # train_network.py's checkpoint path
  metrics.set_axis(checkpoints).to_csv(os.path.join(path, 'metrics.csv.gz'))
  metrics['checkpoint'] = checkpoints
  weights = rng.normal(0, 1, (n, 4970)).astype(np.float32)
  np.save(os.path.join(path, 'weights.npy'), weights)
  pd.DataFrame([(v, s, e, str(sh)) for v, s, e, sh in RELEASE_LAYOUT],
               columns=['varname', 'start_idx', 'end_idx', 'shape']).to_csv(os.path.join(path, 'layout.csv'),
                                                                           index=False)
  return metrics, weights


def test_open_release_in_place_maps_metadata_and_weights(tmp_path):
  rng = np.random.default_rng(5)
  dirs = ['/cns/zoo/cifar10/run_b', '/cns/zoo/cifar10/run_a', '/cns/zoo/cifar10/run_c']
  metrics, weights = make_release(str(tmp_path / 'rel'), dirs, rng, drop={(dirs[2], 20)}, nan_row=4)
  zoo = interop.open_smallcnnzoo(str(tmp_path / 'rel'))
  w = zoo.weights('smallcnnzoo_valid')
  assert isinstance(w, np.memmap) and not w.flags.writeable and w.shape == (26, 4970)
  assert os.path.samefile(w.filename, tmp_path / 'rel' / 'weights.npy')
  meta = zoo.metadata
  assert len(zoo) == 26 and meta['weights_row'].tolist() == list(range(26))
  assert (meta['weights_file'] == 'weights.npy').all() and (meta['arch'] == 'smallcnnzoo_valid').all()
  ids = {'/cns/zoo/cifar10/run_a': 0, '/cns/zoo/cifar10/run_b': 1, '/cns/zoo/cifar10/run_c': 2}
  assert meta['member_id'].tolist() == [ids[d] for d in metrics['modeldir']]
  for i, r in meta.iterrows():
    steps = sorted(metrics.loc[metrics['modeldir'] == metrics['modeldir'][i], 'step'])
    assert r['snapshot'] == steps.index(metrics['step'][i]) and r['epoch'] == r['step'] == metrics['step'][i]
  assert meta.groupby('member_id')['snapshot'].max().tolist() == [8, 8, 7]
  for popnet_name, release in [('activation', 'config.activation'), ('learning_rate', 'config.learning_rate'),
                               ('dropout', 'config.dropout'), ('optimizer', 'config.optimizer'),
                               ('dataset', 'config.dataset'), ('test_loss', 'test_loss'),
                               ('train_accuracy', 'train_accuracy'), ('config.l2reg', 'config.l2reg'),
                               ('config.w_init', 'config.w_init'), ('modeldir', 'modeldir'),
                               ('checkpoint', 'checkpoint')]:
    pd.testing.assert_series_equal(meta[popnet_name], metrics[release], check_names=False, check_dtype=False)
  assert 'config.activation' not in meta and 'config.learning_rate' not in meta
  assert meta['status'].tolist() == ['diverged' if i == 4 else 'ok' for i in range(26)]
  assert (meta['architecture'] == 'smallcnnzoo_valid').all()

  np.testing.assert_array_equal(zoo.vectors(meta.iloc[[5, 0, 17]]), weights[[5, 0, 17]])
  v = zoo.unflatten(zoo.vectors(meta.iloc[[3]]))
  np.testing.assert_array_equal(v['params']['conv_0']['bias'][0], weights[3, 0:16])
  np.testing.assert_array_equal(v['params']['conv_0']['kernel'][0], weights[3, 16:160].reshape(3, 3, 1, 16))
  np.testing.assert_array_equal(v['params']['conv_1']['bias'][0], weights[3, 160:176])
  np.testing.assert_array_equal(v['params']['conv_2']['kernel'][0], weights[3, 2496:4800].reshape(3, 3, 16, 16))
  np.testing.assert_array_equal(v['params']['output']['kernel'][0], weights[3, 4810:4970].reshape(16, 10))
  assert zoo.input_shape == (32, 32, 1) and zoo.arch('smallcnnzoo_valid') == models.smallcnnzoo_arch(padding='VALID')

  # converted into a popnet zoo on disk: popnet's order, the same tensors; NaN metrics kept on the diverged row
  disk = Zoo.open(interop.import_smallcnnzoo(str(tmp_path / 'rel'), str(tmp_path / 'zoo'), block_bytes=4 << 10))
  assert disk.layout('smallcnnzoo_valid') == models.smallcnnzoo_arch().layout((32, 32, 1))
  a = disk.metadata.sort_values('weights_row').reset_index(drop=True)
  tree_equal(disk.unflatten(disk.vectors(a)), zoo.unflatten(zoo.vectors(meta)))
  assert a['member_id'].tolist() == meta['member_id'].tolist() and a['status'].tolist() == meta['status'].tolist()
  assert np.isnan(a.loc[4, 'test_loss']) and a.loc[5, 'test_loss'] == meta.loc[5, 'test_loss']
  # NaN is accepted only where the row says why: the same row marked 'ok' reads as a damaged file
  csv = os.path.join(str(tmp_path / 'zoo'), 'metadata.csv')
  edited = pd.read_csv(csv)
  edited.loc[edited['status'] == 'diverged', 'status'] = 'ok'
  edited.to_csv(csv, index=False)
  with pytest.raises(ZooError, match=r'metadata\.csv: edited or damaged after the zoo was sealed'):
    Zoo.open(str(tmp_path / 'zoo'))
  forge(str(tmp_path / 'zoo'))  # behind a forged seal the check still holds
  with pytest.raises(ZooError, match=r'metadata\.csv: rows with missing values'):
    Zoo.open(str(tmp_path / 'zoo'))
  pd.testing.assert_series_equal(a['learning_rate'], meta['learning_rate'])


def test_opened_release_reproduces_the_release_forward_pass(tmp_path):
  """A release row, unflattened by popnet and run by popnet.models.apply on the architecture the release opens
  as, gives the logits of the release's Keras CNN (Conv2D 3x3 stride 2 with Keras' default VALID padding and the
  row's activation, x3, global average pool, Dense), written here directly from layout.csv's slices."""
  rng = np.random.default_rng(8)
  path = str(tmp_path / 'rel')
  metrics, weights = make_release(path, ['a', 'b', 'c', 'd', 'e', 'f'], rng, shuffle=False)
  zoo = interop.open_smallcnnzoo(path)
  (name,) = zoo.architectures
  arch = zoo.arch(name)
  layout = pd.read_csv(os.path.join(path, 'layout.csv'))
  images = rng.uniform(-1, 1, (5, 32, 32, 1)).astype(np.float32)  # the release feeds grayscale scaled to [-1, 1]
  acts = {'relu': jax.nn.relu, 'tanh': jnp.tanh, 'sigmoid': jax.nn.sigmoid}
  checked = 0
  for i, row in zoo.metadata.iterrows():
    if row['activation'] not in acts or row['snapshot'] != 8:
      continue
    t = {r.varname: np.asarray(weights[i, r.start_idx:r.end_idx]).reshape(eval(r.shape)) for r in layout.itertuples()}
    x = jnp.asarray(images)
    for layer in ('conv2d', 'conv2d_1', 'conv2d_2'):
      x = jax.lax.conv_general_dilated(x, t[f'sequential/{layer}/kernel:0'], (2, 2), 'VALID',
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
      x = acts[row['activation']](x + t[f'sequential/{layer}/bias:0'])
    want = x.mean(axis=(1, 2)) @ t['sequential/dense/kernel:0'] + t['sequential/dense/bias:0']
    got, _ = models.apply(arch, zoo.unflatten(zoo.vectors(zoo.metadata.iloc[[i]])[0]), images, train=False,
                          activation=models.ACTIVATIONS.index(row['activation']))
    chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-4)
    checked += 1
  assert checked >= 2
  # the same tensors under popnet's default SAME padding give other logits: the padding is what makes it the release
  variables = zoo.unflatten(zoo.vectors(zoo.metadata.iloc[[0]])[0])
  same, _ = models.apply(models.smallcnnzoo_arch(), variables, images, train=False, activation=0)
  valid, _ = models.apply(arch, variables, images, train=False, activation=0)
  assert not np.allclose(same, valid, atol=1e-3)


def test_release_files_with_errors_are_named(tmp_path):
  rng = np.random.default_rng(6)
  path = str(tmp_path / 'rel')
  make_release(path, ['a', 'b'], rng, shuffle=False)
  np.save(os.path.join(path, 'weights.npy'), np.zeros((17, 4970), np.float32))
  with pytest.raises(interop.InteropError, match=r'weights\.npy has 17 rows but .*metrics\.csv\.gz has 18'):
    interop.open_smallcnnzoo(path)
  np.save(os.path.join(path, 'weights.npy'), np.zeros((18, 4970), np.float32))
  bad = pd.read_csv(os.path.join(path, 'layout.csv'))
  bad.loc[1, 'end_idx'] = 161
  bad.to_csv(os.path.join(path, 'layout.csv'), index=False)
  with pytest.raises(interop.InteropError, match=r'layout\.csv: sequential/conv2d/kernel:0 spans \[16, 161\)'):
    interop.open_smallcnnzoo(path)
  # the start/end spelling of our reference notes reads the same; both pairs present must agree
  good = bad.assign(end_idx=bad['end_idx'].where(bad.index != 1, 160))
  good.rename(columns={'start_idx': 'start', 'end_idx': 'end'}).to_csv(os.path.join(path, 'layout.csv'), index=False)
  np.testing.assert_array_equal(interop.open_smallcnnzoo(path).weights('smallcnnzoo_valid')[:], 0)
  good.assign(start=good['start_idx'], end=good['end_idx'] + 1).to_csv(os.path.join(path, 'layout.csv'), index=False)
  with pytest.raises(interop.InteropError, match=r'layout\.csv: columns end and end_idx disagree'):
    interop.open_smallcnnzoo(path)
  os.remove(os.path.join(path, 'layout.csv'))
  with pytest.raises(interop.InteropError, match=r'layout\.csv: not found'):
    interop.open_smallcnnzoo(path)


def test_meta_runs_unchanged_on_an_opened_release(tmp_path):
  from meta import methods, train
  rng = np.random.default_rng(7)
  make_release(str(tmp_path / 'rel'), [f'runs/{i:03d}' for i in range(40)], rng)
  zoo = interop.open_smallcnnzoo(str(tmp_path / 'rel'))
  report = train.run(zoo, 'test_accuracy', 'statnn_gbt', methods.Options(gbt_max_iter=10), analyses=(),
                     snapshots='last')
  assert report['data']['rows'] == 40 and {'r2', 'kendall_tau'} <= set(report['test'])
  assert report['data']['architectures'] == ['smallcnnzoo_valid']
