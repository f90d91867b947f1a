"""popnet.interop: Small CNN Zoo export/import and NWS import, against files the tests write from each format's
specification (the real releases cannot be downloaded here)."""
import gzip
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from popnet import hparams, interop, models
from popnet.zoo import Zoo, ZooError, ZooWriter
from tests.helpers import space

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALLCNNZOO_SHAPE = (28, 28, 1)
# The release's layout (dnn_predict_accuracy colab boundaries; Keras Sequential variable names).
RELEASE_LAYOUT = [
    ('sequential/conv2d/bias:0', 0, 16, (16,)), ('sequential/conv2d/kernel:0', 16, 160, (3, 3, 1, 16)),
    ('sequential/conv2d_1/bias:0', 160, 176, (16,)), ('sequential/conv2d_1/kernel:0', 176, 2480, (3, 3, 16, 16)),
    ('sequential/conv2d_2/bias:0', 2480, 2496, (16,)), ('sequential/conv2d_2/kernel:0', 2496, 4800, (3, 3, 16, 16)),
    ('sequential/dense/bias:0', 4800, 4810, (10,)), ('sequential/dense/kernel:0', 4810, 4970, (16, 10))]
KERAS_TO_POPNET = {'sequential/conv2d': 'conv_0', 'sequential/conv2d_1': 'conv_1', 'sequential/conv2d_2': 'conv_2',
                   'sequential/dense': 'output'}
CHECKPOINT_EPOCHS = (0, 1, 2, 3, 20, 40, 60, 80, 86)


# --- a popnet zoo written the way the trainer writes one ---------------------------------------------------------
def _variables(arch, input_shape, key, init_scheme, rng):
  """models.init variables with every leaf perturbed (so biases and batch-norm vectors are not constants)."""
  v = jax.tree_util.tree_map(np.asarray, models.init(arch, jax.random.PRNGKey(key), input_shape, init_scheme))
  out = {}
  for coll, layers in v.items():
    out[coll] = {}
    for layer, leaves in layers.items():
      out[coll][layer] = {}
      for name, x in leaves.items():
        noise = rng.normal(0, 0.1, x.shape)
        x = x * np.exp(noise) if name == 'bn_var' else x + noise
        out[coll][layer][name] = x.astype(np.float32)
  return out


def make_popnet_zoo(path, hp_space, input_shape, members=4, snapshots=3, seed=0):
  """A zoo with ZooWriter, metadata columns as popnet.train._records writes them; the last member diverges at
  its last snapshot. Members are written in reverse rank order so rows are not in member order.
  Returns (zoo path, {(member_id, snapshot): variables})."""
  table = hparams.sample_members(hp_space, members, seed)
  arch = hparams.arch_of(table.to_dict('records')[0])
  assert (table['arch'] == arch.name).all()
  epochs = [0, 1, 3][:snapshots]
  writer = ZooWriter(path, {arch.name: arch}, input_shape, {arch.name: members * snapshots},
                     manifest={'members': members, 'snapshot_epochs': epochs, 'config': {'epochs': epochs[-1]}})
  layout = writer.layouts[arch.name]
  rng = np.random.default_rng(seed)
  variables, rows, vectors, records = {}, [], [], []
  for rank, member in enumerate(table.to_dict('records')):
    for k, epoch in enumerate(epochs):
      v = _variables(arch, input_shape, 100 * member['member_id'] + k, models.INITS.index(member['init']), rng)
      variables[(member['member_id'], k)] = v
      row = (members - 1 - rank) * snapshots + k
      diverged = rank == members - 1 and k == snapshots - 1
      rec = dict(member, snapshot=k, epoch=epoch, step=epoch * 7, status='diverged' if diverged else 'ok',
                 diverged_epoch=epoch - 1 if diverged else -1, weights_file=f'weights/{arch.name}.npy',
                 weights_row=row)
      for seg in ('train', 'val', 'test'):
        rec[f'{seg}_loss'] = float(rng.uniform(0.1, 2.0))
        rec[f'{seg}_accuracy'] = float(rng.uniform(0, 1))
      rows.append(row)
      vectors.append(np.asarray(layout.flatten(v)))
      records.append(rec)
  writer.write(arch.name, np.array(rows), np.stack(vectors), records)
  writer.write_manifest(complete=True)
  return path, variables


@pytest.fixture(scope='module')
def cnn_zoo(tmp_path_factory):
  return make_popnet_zoo(str(tmp_path_factory.mktemp('popnet_cnn_zoo')), space(), SMALLCNNZOO_SHAPE)


@pytest.fixture(scope='module')
def cnn_export(cnn_zoo, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('cnn_export'))
  summary = interop.export_smallcnnzoo(cnn_zoo[0], out, block_bytes=3 * 4970 * 4)  # 3 rows per block: streamed
  return out, summary


def _tree_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- export ---------------------------------------------------------------------------------------------------------
def test_export_files_follow_the_release_format(cnn_zoo, cnn_export):
  out, summary = cnn_export
  original = Zoo.open(cnn_zoo[0]).metadata.sort_values(['member_id', 'snapshot']).reset_index(drop=True)
  assert sorted(os.listdir(out)) == ['layout.csv', 'metrics.csv.gz', 'popnet_arch.json', 'weights.npy']
  assert summary['rows'] == 12 and summary['values'] == 4970 and summary['varnames'] == 'keras (release)'
  weights = np.load(os.path.join(out, 'weights.npy'), mmap_mode='r')
  assert weights.shape == (12, 4970) and weights.dtype == np.float32

  layout = pd.read_csv(os.path.join(out, 'layout.csv'))
  assert list(layout.columns) == ['varname', 'start', 'end', 'shape', 'start_idx', 'end_idx']
  assert [(r.varname, r.start, r.end, eval(r.shape)) for r in layout.itertuples()] == RELEASE_LAYOUT
  assert (layout.start == layout.start_idx).all() and (layout.end == layout.end_idx).all()

  with gzip.open(os.path.join(out, 'metrics.csv.gz'), 'rt') as f:
    metrics = pd.read_csv(f)
  release_cols = ['modeldir', 'step', 'test_accuracy', 'test_loss', 'train_accuracy', 'train_loss']
  assert list(metrics.columns[:metrics.columns.get_loc('modeldir')]) == sorted(
      f'config.{c}' for c in [*hparams.PARAMS, 'seed', 'epochs'])
  assert list(metrics.columns[metrics.columns.get_loc('modeldir'):][:6]) == release_cols
  # row-aligned, ordered by member then snapshot, values exact
  assert metrics['modeldir'].tolist() == [f'popnet/member_{m}' for m in original['member_id']]
  for c in ['step', 'epoch', 'snapshot', 'status', 'train_accuracy', 'test_loss', 'val_accuracy']:
    assert metrics[c].tolist() == original[c].tolist(), c
  for c in ('learning_rate', 'activation', 'optimizer', 'dataset', 'seed', 'augment'):
    assert metrics[f'config.{c}'].tolist() == original[c].tolist(), c
  assert (metrics['config.epochs'] == 3).all()
  with open(os.path.join(out, 'popnet_arch.json')) as f:
    assert json.load(f)['arch']['name'] == 'smallcnnzoo'


def test_exported_row_and_layout_csv_rebuild_the_network(cnn_zoo, cnn_export):
  """Unflatten each exported row with layout.csv alone (as a user of the release would) -> the same tensors, and
  popnet.models.apply gives the same logits as on the original variables."""
  out, _ = cnn_export
  _, variables = cnn_zoo
  weights = np.load(os.path.join(out, 'weights.npy'), mmap_mode='r')
  layout = pd.read_csv(os.path.join(out, 'layout.csv'))
  with gzip.open(os.path.join(out, 'metrics.csv.gz'), 'rt') as f:
    metrics = pd.read_csv(f)
  arch = models.smallcnnzoo_arch()
  images = np.random.default_rng(0).uniform(0, 1, (4, *SMALLCNNZOO_SHAPE)).astype(np.float32)
  for i, row in metrics.iterrows():
    rebuilt = {'params': {}, 'batch_stats': {}}
    for r in layout.itertuples():
      layer, tensor = r.varname.rsplit('/', 1)
      rebuilt['params'].setdefault(KERAS_TO_POPNET[layer], {})[tensor[:-len(':0')]] = np.asarray(
          weights[i, r.start_idx:r.end_idx]).reshape(eval(r.shape))
    original = variables[(int(row['modeldir'].split('_')[-1]), int(row['snapshot']))]
    _tree_equal(rebuilt['params'], original['params'])
    act = models.ACTIVATIONS.index(row['config.activation'])
    want, _ = models.apply(arch, original, images, train=False, activation=act)
    got, _ = models.apply(arch, rebuilt, images, train=False, activation=act)
    chex.assert_trees_all_close(got, want)


def _compare_zoos(original, imported, extra=()):
  """Same (member, snapshot) rows with the same metadata values (except where the rows live) and weights."""
  a = original.metadata.sort_values(['member_id', 'snapshot']).reset_index(drop=True)
  b = imported.metadata.sort_values(['member_id', 'snapshot']).reset_index(drop=True)
  assert set(b.columns) - set(a.columns) == set(extra)
  cols = [c for c in a.columns if c != 'weights_row']
  pd.testing.assert_frame_equal(a[cols], b[cols])
  (arch,) = original.architectures
  np.testing.assert_array_equal(original.vectors(a), imported.vectors(b))
  _tree_equal(original.unflatten(original.vectors(a), arch), imported.unflatten(imported.vectors(b), arch))


def test_export_then_import_round_trips_exactly(cnn_zoo, cnn_export, tmp_path):
  out, _ = cnn_export
  original = Zoo.open(cnn_zoo[0])
  in_place = interop.open_smallcnnzoo(out)
  assert in_place.architectures == ['smallcnnzoo'] and in_place.arch('smallcnnzoo') == models.smallcnnzoo_arch()
  np.testing.assert_array_equal(np.asarray(in_place.weights('smallcnnzoo')),
                                np.load(os.path.join(out, 'weights.npy')))
  meta = original.metadata.sort_values(['member_id', 'snapshot'])
  _tree_equal(in_place.unflatten(in_place.vectors(in_place.metadata)), original.unflatten(original.vectors(meta)))

  imported = Zoo.open(interop.import_smallcnnzoo(out, str(tmp_path / 'back'), block_bytes=5 * 4970 * 4))
  _compare_zoos(original, imported, extra={'modeldir', 'config.epochs'})
  assert imported.layout('smallcnnzoo') == original.layout('smallcnnzoo')  # popnet's own order again
  # a second run on the same output resumes: nothing left to write, same zoo
  again = Zoo.open(interop.import_smallcnnzoo(out, str(tmp_path / 'back')))
  _compare_zoos(original, again, extra={'modeldir', 'config.epochs'})


def test_export_other_architecture_with_batch_norm_round_trips(tmp_path):
  hp = space(architecture='nws', filter_size=3, depth_conv=4, width_conv=2, depth_fc=2, width_fc=8, batch_norm=True)
  path, _ = make_popnet_zoo(str(tmp_path / 'zoo'), hp, (8, 8, 1), members=3, snapshots=2, seed=1)
  out = str(tmp_path / 'export')
  summary = interop.export_smallcnnzoo(path, out, only_ok=True)
  assert summary['rows'] == 5 and summary['varnames'] == 'popnet'  # the diverged row is left out
  layout = pd.read_csv(os.path.join(out, 'layout.csv'))
  assert layout['varname'].tolist()[:7] == ['conv_0/bias:0', 'conv_0/kernel:0', 'conv_0/bn_beta:0',
                                            'conv_0/bn_gamma:0', 'conv_0/bn_mean:0', 'conv_0/bn_var:0',
                                            'conv_1/bias:0']
  assert layout['varname'].tolist()[-2:] == ['output/bias:0', 'output/kernel:0']
  original = Zoo.open(path)
  back = Zoo.open(interop.import_smallcnnzoo(out, str(tmp_path / 'back')))
  assert back.architectures == original.architectures
  ok = original.metadata[original.metadata['status'] == 'ok']
  full = Zoo(original.path, original.manifest, ok.reset_index(drop=True), original.layouts)
  _compare_zoos(full, back, extra={'modeldir', 'config.epochs'})


def test_export_refuses_mixed_architectures_and_existing_output(cnn_zoo, cnn_export, tmp_path):
  zoo = Zoo.open(cnn_zoo[0])
  mixed = zoo.metadata.copy()
  mixed.loc[mixed['member_id'] == 0, 'arch'] = 'other'
  with pytest.raises(interop.InteropError, match=r"architectures \['smallcnnzoo', 'other'\]|architectures "
                                                 r"\['other', 'smallcnnzoo'\]"):
    interop.export_smallcnnzoo(Zoo(zoo.path, zoo.manifest, mixed, zoo.layouts), str(tmp_path / 'x'))
  # --arch picks one; weights are read a block of rows at a time, never the whole file
  mixed_zoo = Zoo(zoo.path, zoo.manifest, mixed, zoo.layouts)
  reads, vectors = [], mixed_zoo.vectors
  mixed_zoo.vectors = lambda rows: reads.append(len(rows)) or vectors(rows)
  summary = interop.export_smallcnnzoo(mixed_zoo, str(tmp_path / 'x'), arch='smallcnnzoo', block_bytes=2 * 4970 * 4)
  assert summary['rows'] == 9 and reads == [2, 2, 2, 2, 1]
  assert interop.open_smallcnnzoo(str(tmp_path / 'x')).metadata['member_id'].tolist() == [1] * 3 + [2] * 3 + [3] * 3
  with pytest.raises(interop.InteropError, match="no rows of architecture 'nws_fixed'"):
    interop.export_smallcnnzoo(zoo, str(tmp_path / 'y'), arch='nws_fixed')
  with pytest.raises(interop.InteropError, match='already holds'):
    interop.export_smallcnnzoo(zoo, cnn_export[0])


# --- Small CNN Zoo release files -------------------------------------------------------------------------------
def make_release(path, modeldirs, rng, drop=(), nan_row=None, shuffle=True):
  """A Small CNN Zoo directory as the release README describes it: one row per (run, checkpoint epoch)."""
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
  metrics.to_csv(os.path.join(path, 'metrics.csv.gz'), index=False)
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
                               ('config.w_init', 'config.w_init'), ('modeldir', 'modeldir')]:
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
  _tree_equal(disk.unflatten(disk.vectors(a)), zoo.unflatten(zoo.vectors(meta)))
  assert a['member_id'].tolist() == meta['member_id'].tolist() and a['status'].tolist() == meta['status'].tolist()
  assert np.isnan(a.loc[4, 'test_loss']) and a.loc[5, 'test_loss'] == meta.loc[5, 'test_loss']
  # NaN is accepted only where the row says why: the same row marked 'ok' reads as a damaged file
  csv = os.path.join(str(tmp_path / 'zoo'), 'metadata.csv')
  edited = pd.read_csv(csv)
  edited.loc[edited['status'] == 'diverged', 'status'] = 'ok'
  edited.to_csv(csv, index=False)
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


# --- NWS ----------------------------------------------------------------------------------------------------------
NWS_HEADER = ['dataset', 'lrate', 'batch_size', 'batch_norm', 'augmentation', 'optimizer', 'activation',
              'initialization', 'filter_size', 'depth_conv', 'depth_fc', 'width_conv', 'width_fc']


def nws_vector(arch, variables):
  """The NWS export order, written out as model.print_all_vars does: layers in order; per layer the kernel
  (conv: for each output filter, for each input channel, the kh x kw kernel; FC: for each output unit, its
  incoming weights), the bias, then beta, gamma, moving mean, moving variance; float64."""
  params, stats = variables['params'], variables['batch_stats']
  parts = []
  for layer in [f'conv_{i}' for i in range(len(arch.conv))] + [f'dense_{i}' for i in range(len(arch.dense))] + [
      'output']:
    k = np.asarray(params[layer]['kernel'], np.float64)
    if k.ndim == 4:
      parts += [k[:, :, i, o].reshape(-1) for o in range(k.shape[3]) for i in range(k.shape[2])]
    else:
      parts += [k[:, o] for o in range(k.shape[1])]
    parts.append(params[layer]['bias'])
    if 'bn_beta' in params[layer]:
      parts += [params[layer]['bn_beta'], params[layer]['bn_gamma'], stats[layer]['bn_mean'], stats[layer]['bn_var']]
  return np.concatenate([np.asarray(p, np.float64).reshape(-1) for p in parts]).astype('<f8')


def make_nws_net(path, meta_row, evaluations, rng, snapshots=20):
  """A network directory in the NWS release format from known popnet variables; returns (variables per snapshot,
  error table)."""
  os.makedirs(os.path.join(path, 'weights'))
  pd.DataFrame([meta_row], columns=NWS_HEADER).to_csv(os.path.join(path, 'meta.csv'), index=False)
  arch = models.nws_arch(meta_row[8], meta_row[9], meta_row[11], meta_row[10], meta_row[12], True, 20)
  base = _variables(arch, (32, 32, 3), int(rng.integers(1 << 20)), 2, rng)
  variables = []
  for k in range(snapshots):
    v = jax.tree_util.tree_map(lambda x: (x + rng.normal(0, 0.01, x.shape) * k).astype(np.float32), base)
    variables.append(v)
    nws_vector(arch, v).tofile(os.path.join(path, 'weights', f'{k + 1:03d}.bin'))
  error = np.column_stack([np.arange(evaluations) * 50.0, rng.uniform(0, 90, (evaluations, 4))])
  error.astype('<f8').tofile(os.path.join(path, 'error.bin'))
  np.array([evaluations, (evaluations - 1) * 50, evaluations - 1, 12.5]).tofile(os.path.join(path, 'stat.bin'))
  return arch, variables, error


@pytest.fixture(scope='module')
def nws_src(tmp_path_factory):
  root = tmp_path_factory.mktemp('nws')
  rng = np.random.default_rng(11)
  rows = [['fashion', 0.001, 64, True, False, 2, 1, 3, 3, 3, 2, 4, 64],
          ['svhn', 0.003, 32, True, True, 0, 3, 2, 3, 4, 2, 4, 64],
          ['mnist', 0.0002, 256, 1, 0, 1, 0, 0, 3, 3, 2, 4, 64]]
  evaluations = [23, 41, 20]
  nets, index = [], []
  for n, (row, e) in enumerate(zip(rows, evaluations)):
    path = os.path.join(root, 'nets', f'{n + 1:04d}')
    arch, variables, error = make_nws_net(path, row, e, rng)
    conv, fc = interop.nws_part_sizes(arch.layout((32, 32, 3)))
    nets.append((arch, variables, error))
    index.append(row + [f'/mnt/raid/dnn_weights/output/nets/{n + 1:04d}', conv, fc])
  pd.DataFrame(index, columns=NWS_HEADER + ['path', 'weightn_conv', 'weightn_fc']).to_csv(
      os.path.join(root, 'nws_test.csv'), index=False)
  return str(root), nets


def test_nws_import_matches_the_original_variables(nws_src, tmp_path):
  src, nets = nws_src
  zoo = Zoo.open(interop.import_nws(src, str(tmp_path / 'zoo'), block_bytes=1 << 20))
  meta = zoo.metadata
  assert sorted(zoo.architectures) == sorted({'nws_f3_c3x4_fc2x64', 'nws_f3_c4x4_fc2x64'})
  assert len(meta) == 60 and zoo.manifest['members'] == 3 and zoo.manifest['complete']
  assert zoo.layout('nws_f3_c3x4_fc2x64').size == 21260  # 128 + 328 + 1232 + 16704 + 2208 + 660 (BN included)
  expected = [dict(dataset='fashion_mnist', learning_rate=0.001, batch_size=64, augment=False, optimizer='sgd',
                   activation='elu', init='glorot_normal', depth_conv=3),
              dict(dataset='svhn_cropped', learning_rate=0.003, batch_size=32, augment=True, optimizer='adam',
                   activation='tanh', init='glorot_uniform', depth_conv=4),
              dict(dataset='mnist', learning_rate=0.0002, batch_size=256, augment=False, optimizer='rmsprop',
                   activation='relu', init='constant', depth_conv=3)]
  for m, (arch, variables, error) in enumerate(nets):
    rows = meta[meta['member_id'] == m].sort_values('snapshot')
    assert rows['snapshot'].tolist() == list(range(20)) and (rows['arch'] == arch.name).all()
    for k, v in expected[m].items():
      assert (rows[k] == v).all(), (m, k)
    assert (rows['architecture'] == 'nws').all() and rows['batch_norm'].all() and (rows['filter_size'] == 3).all()
    assert (rows['nws_index'] == 'nws_test').all() and (rows['nws_path'] == f'nets/{m + 1:04d}').all()
    assert hparams.arch_of(rows.iloc[0]) == arch
    exports = np.round(np.linspace(1, len(error), 20)).astype(int)  # classifier.py's choice of snapshots
    assert rows['epoch'].tolist() == (exports - 1).tolist()
    assert rows['step'].tolist() == error[exports - 1, 0].tolist()
    for col, j in (('train_accuracy', 1), ('val_accuracy', 2), ('test_accuracy', 3)):
      assert rows[col].tolist() == (1.0 - error[exports - 1, j] / 100.0).tolist()
    assert (rows['status'] == 'ok').all() and 'test_loss' not in rows
    got = zoo.unflatten(zoo.vectors(rows), arch.name)
    for k in range(20):
      _tree_equal(jax.tree_util.tree_map(lambda x: x[k], got), variables[k])
  # rows of one architecture: network by network, snapshot by snapshot
  assert meta[meta['member_id'] == 2]['weights_row'].tolist() == list(range(20, 40))
  # rerunning resumes (nothing left to write) and leaves the zoo as it was
  again = Zoo.open(interop.import_nws(src, str(tmp_path / 'zoo')))
  pd.testing.assert_frame_equal(again.metadata, meta)


def test_nws_single_net_dir_and_errors_name_the_file(nws_src, tmp_path):
  src, nets = nws_src
  net = os.path.join(src, 'nets', '0002')
  zoo = Zoo.open(interop.import_nws(net, str(tmp_path / 'one')))
  assert zoo.architectures == ['nws_f3_c4x4_fc2x64'] and len(zoo) == 20
  _tree_equal(jax.tree_util.tree_map(lambda x: x[19], zoo.unflatten(zoo.vectors(zoo.metadata))), nets[1][1][19])

  bad = str(tmp_path / 'bad')
  make_nws_net(bad, ['cifar10', 0.001, 64, True, False, 0, 0, 2, 3, 3, 2, 4, 64], 20, np.random.default_rng(0))
  file = os.path.join(bad, 'weights', '005.bin')
  np.fromfile(file, '<f8')[:-1].tofile(file)
  with pytest.raises(interop.InteropError, match=r'005\.bin: 170072 bytes = 21259 float64 values, but '
                                                 r'architecture nws_f3_c3x4_fc2x64 .* has 21260'):
    interop.import_nws(bad, str(tmp_path / 'bad_zoo'))

  index = pd.read_csv(os.path.join(src, 'nws_test.csv'))
  index.loc[0, 'weightn_conv'] += 1
  index.to_csv(tmp_path / 'wrong.csv', index=False)
  with pytest.raises(interop.InteropError, match=r'wrong\.csv: .*0001 has weightn_conv, weightn_fc'):
    interop.import_nws(src, str(tmp_path / 'wrong_zoo'), index=[str(tmp_path / 'wrong.csv')])


# --- command line ---------------------------------------------------------------------------------------------
def test_cli_export_and_import(cnn_zoo, nws_src, tmp_path, capsys):
  out = str(tmp_path / 'export')
  proc = subprocess.run([sys.executable, '-m', 'popnet.zoo', 'export', '--format', 'smallcnnzoo', '--zoo',
                         cnn_zoo[0], '--out', out, '--arch', 'smallcnnzoo'], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'wrote 12 rows (4 members) of smallcnnzoo, 4970 values each, keras (release) varnames' in proc.stdout
  assert interop.main(['import', '--format', 'smallcnnzoo', '--src', out, '--out', str(tmp_path / 'a')]) == 0
  assert interop.main(['import', '--format', 'nws', '--src', nws_src[0], '--out', str(tmp_path / 'b')]) == 0
  text = capsys.readouterr().out
  assert '12 snapshots of 4 members' in text and '60 snapshots of 3 members' in text
  assert interop.main(['export', '--format', 'smallcnnzoo', '--zoo', cnn_zoo[0], '--out', out]) == 1
  assert 'already holds' in capsys.readouterr().err
