"""NWS network directories -> popnet zoo, built as gabrieleilertsen/nws (at
c21b054a93d45a0637932bcd1da5037192a9031b) lays them out: meta.csv as classifier.py writes it, weights/NNN.bin as
model.print_all_vars writes them, error.bin / stat.bin, index CSVs with weightn_conv in column 13 (the
meta_classifier.py reads it by position, nci = 13). And the forward pass: an imported NWS network with batch norm
gives popnet logits equal to model.deepnn's, written out here directly."""
import csv
import json
import os
import shutil

import jax
import numpy as np
import pandas as pd
import pytest

from popnet import hparams, interop, models
from popnet.zoo import Zoo
from tests.test_interop import perturbed_variables, tree_equal
from tests.zoo_forgery import forge

NWS_HEADER = ['dataset', 'lrate', 'batch_size', 'batch_norm', 'augmentation', 'optimizer', 'activation',
              'initialization', 'filter_size', 'depth_conv', 'depth_fc', 'width_conv', 'width_fc']
INDEX_HEADER = NWS_HEADER + ['weightn_conv', 'weightn_fc', 'path']
NWS_ROWS = [['fashion', 0.001, 64, True, False, 2, 1, 3, 3, 3, 2, 4, 64],
            ['svhn', 0.003, 32, True, True, 0, 3, 2, 3, 4, 2, 4, 64],
            ['mnist', 0.0002, 256, 1, 0, 1, 0, 0, 3, 3, 2, 4, 64]]


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


def make_nws_net(path, meta_row, evaluations, rng, snapshots=20, base=None):
  """A network directory in the NWS release format from known popnet variables; returns (variables per snapshot,
  error table)."""
  os.makedirs(os.path.join(path, 'weights'))
  pd.DataFrame([meta_row], columns=NWS_HEADER).to_csv(os.path.join(path, 'meta.csv'), index=False)  # classifier.py
  arch = models.nws_arch(meta_row[8], meta_row[9], meta_row[11], meta_row[10], meta_row[12], True, 20)
  if base is None:
    base = perturbed_variables(arch, (32, 32, 3), int(rng.integers(1 << 20)), 2, rng)
  variables = []
  for k in range(snapshots):
    v = jax.tree_util.tree_map(lambda x: (x + rng.normal(0, 0.01, x.shape) * k).astype(np.float32), base)
    variables.append(v)
    nws_vector(arch, v).tofile(os.path.join(path, 'weights', f'{k + 1:03d}.bin'))
  error = np.column_stack([np.arange(evaluations) * 50.0, rng.uniform(0, 90, (evaluations, 4))])
  error.astype('<f8').tofile(os.path.join(path, 'error.bin'))
  np.array([evaluations, (evaluations - 1) * 50, evaluations - 1, 12.5]).tofile(os.path.join(path, 'stat.bin'))
  return arch, variables, error


def make_nws_tree(root, rng):
  """Three NWS networks under root/nets/0001..0003 and their index CSV root/nws_test.csv (columns in NWS's
  order, paths as the release's absolute paths). Returns (root, [(arch, variables per snapshot, error)])."""
  evaluations = [23, 41, 20]
  nets, index = [], []
  for n, (row, e) in enumerate(zip(NWS_ROWS, evaluations)):
    path = os.path.join(root, 'nets', f'{n + 1:04d}')
    arch, variables, error = make_nws_net(path, row, e, rng)
    conv, fc = interop.nws_part_sizes(arch.layout((32, 32, 3)))
    nets.append((arch, variables, error))
    index.append(row + [conv, fc, f'/mnt/raid/dnn_weights/output/nets/{n + 1:04d}'])
  table = pd.DataFrame(index, columns=INDEX_HEADER)
  assert table.columns[13] == 'weightn_conv' and list(table.columns) == list(interop.NWS_INDEX_COLUMNS)
  table.to_csv(os.path.join(root, 'nws_test.csv'), index=False)
  return str(root), nets


@pytest.fixture(scope='module')
def nws_src(tmp_path_factory):
  return make_nws_tree(tmp_path_factory.mktemp('nws'), np.random.default_rng(11))


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
                   activation='tanh', init='glorot_uniform', depth_conv=4, eps=1e-8),
              dict(dataset='mnist', learning_rate=0.0002, batch_size=256, augment=False, optimizer='rmsprop',
                   activation='relu', init='constant', depth_conv=3, eps=1e-10)]
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
    # classifier.py's optimizer constants: MomentumOptimizer(lr, 0.95), Adam / RMSProp with TF 1.x defaults
    assert (rows['momentum'] == 0.95).all() and (rows['beta1'] == 0.9).all() and (rows['beta2'] == 0.999).all()
    assert (rows['rms_decay'] == 0.9).all() and (rows['lr_decay'] == 0.96).all() and (rows['dropout'] == 0.5).all()
    if m == 0:
      assert rows['eps'].isna().all()  # momentum SGD has no epsilon
    got = zoo.unflatten(zoo.vectors(rows), arch.name)
    for k in range(20):
      tree_equal(jax.tree_util.tree_map(lambda x: x[k], got), variables[k])
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
  tree_equal(jax.tree_util.tree_map(lambda x: x[19], zoo.unflatten(zoo.vectors(zoo.metadata))), nets[1][1][19])

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

  mixed = str(tmp_path / 'mixed')
  shutil.copytree(os.path.join(src, 'nets'), mixed)
  os.remove(os.path.join(mixed, '0003', 'error.bin'))
  with pytest.raises(interop.InteropError, match=r'0003/error\.bin: missing, while 2 other networks have one'):
    interop.import_nws(mixed, str(tmp_path / 'mixed_zoo'))
  assert not os.path.exists(tmp_path / 'mixed_zoo')    # refused before anything is written


def test_nws_identifiers_stay_strings(nws_src, tmp_path):
  src, _ = nws_src
  nets = os.path.join(src, 'nets')
  out = str(tmp_path / 'zoo')
  interop.import_nws(nets, out)  # found by directory: nws_path '0001', no index
  with open(os.path.join(out, 'metadata.csv'), newline='') as f:
    rows = list(csv.DictReader(f))
  assert sorted({r['nws_path'] for r in rows}) == ['0001', '0002', '0003'] and {r['nws_index'] for r in rows} == {''}
  with open(os.path.join(out, 'manifest.json')) as f:
    assert json.load(f)['string_columns'] == ['nws_path', 'nws_index']
  # an index CSV whose path column holds '0001' names directory 0001 (read as text, not the number 1)
  os.makedirs(tmp_path / 'idx')
  pd.DataFrame([NWS_ROWS[0] + [0, 0, '0001']], columns=INDEX_HEADER).drop(
      columns=['weightn_conv', 'weightn_fc']).to_csv(tmp_path / 'idx' / 'mine.csv', index=False)
  interop.import_nws(nets, str(tmp_path / 'indexed'), index=[str(tmp_path / 'idx' / 'mine.csv')])
  with open(tmp_path / 'indexed' / 'metadata.csv', newline='') as f:
    assert {(r['nws_path'], r['nws_index']) for r in csv.DictReader(f)} == {('0001', 'mine')}
  # an interrupted import resumes without turning the written identifiers into numbers
  table = pd.read_csv(os.path.join(out, 'metadata.csv'), dtype=str, keep_default_na=False)
  table[table['member_id'] != '2'].to_csv(os.path.join(out, 'metadata.csv'), index=False)
  forge(out)  # the sealed state an interrupted import leaves
  interop.import_nws(nets, out)
  with open(os.path.join(out, 'metadata.csv'), newline='') as f:
    again = list(csv.DictReader(f))
  assert len(again) == 60 and [(r['nws_path'], r['nws_index']) for r in again] == [
      (r['nws_path'], r['nws_index']) for r in rows]


def test_zoo_reads_nws_identifiers_back_as_strings(nws_src, tmp_path):
  zoo = Zoo.open(interop.import_nws(os.path.join(nws_src[0], 'nets'), str(tmp_path / 'zoo')))
  assert sorted(set(zoo.metadata['nws_path'])) == ['0001', '0002', '0003']
  assert (zoo.metadata['nws_index'] == '').all()


# --- the forward pass with batch norm ---------------------------------------------------------------------------
ACTIVATIONS = {0: lambda x: np.maximum(x, 0), 1: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
               2: lambda x: 1 / (1 + np.exp(-x)), 3: np.tanh}


def nws_deepnn(vector, meta_row, images, epsilon, batch_statistics):
  """model.deepnn of gabrieleilertsen/nws (c21b054a93d45a0637932bcd1da5037192a9031b), float64 numpy, on a flat
  NWS vector read in model.load_vars' order (per variable: kernels output by output, input by input, each
  kh x kw kernel contiguous; dense kernels output by output; per layer W, b, then TensorLayer 1.x
  BatchNormLayer's beta, gamma, moving_mean, moving_variance). conv: conv SAME + b -> batch norm -> activation,
  2x2 max-pool SAME after each block; fc: matmul + b -> activation -> batch norm (-> dropout, keep 1 at
  evaluation); fc_final linear, 20 outputs. Batch norm: tf.nn.batch_normalization with `epsilon`, over the batch
  statistics (tf.nn.moments) when `batch_statistics` (is_train=True, as classifier.py builds it), else the moving
  ones."""
  fsize, ldepth, lwidth, act = meta_row[8], (meta_row[9], meta_row[10]), (meta_row[11], meta_row[12]), meta_row[6]
  p = 0

  def take(shape):
    nonlocal p
    var = np.zeros(shape)
    if len(shape) == 4:
      for i in range(shape[3]):
        for j in range(shape[2]):
          var[:, :, j, i] = vector[p:p + shape[0] * shape[1]].reshape(shape[:2])
          p += shape[0] * shape[1]
    elif len(shape) == 2:
      for i in range(shape[1]):
        var[:, i] = vector[p:p + shape[0]]
        p += shape[0]
    else:
      var = vector[p:p + shape[0]].copy()
      p += shape[0]
    return var

  def batch_norm(h, axes):
    beta, gamma, moving_mean, moving_variance = (take((h.shape[-1],)) for _ in range(4))
    mean, var = (h.mean(axes), h.var(axes)) if batch_statistics else (moving_mean, moving_variance)
    return (h - mean) / np.sqrt(var + epsilon) * gamma + beta

  def conv_same(x, w):
    k = w.shape[0]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    patches = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))  # [B, H, W, C, kh, kw]
    return np.einsum('bhwcij,ijco->bhwo', patches, w)

  blockc = (np.floor(ldepth[0] / 3) * np.ones(3)).astype('int64')
  for c in range(2, 0, -1):
    if sum(blockc) < ldepth[0]:
      blockc[c] += 1
  x = images.astype(np.float64)
  for c in range(3):
    w = lwidth[0] * 2 ** c
    for _ in range(blockc[c]):
      h = conv_same(x, take((fsize, fsize, x.shape[-1], w))) + take((w,))
      x = ACTIVATIONS[act](batch_norm(h, (0, 1, 2)))
    b, hh, ww, ch = x.shape
    x = x.reshape(b, hh // 2, 2, ww // 2, 2, ch).max(axis=(2, 4))
  x = x.reshape(x.shape[0], -1)
  for c in range(ldepth[1]):
    w = int(lwidth[1] * 2.0 ** -c)
    x = batch_norm(ACTIVATIONS[act](x @ take((x.shape[1], w)) + take((w,))), (0,))
  logits = x @ take((x.shape[1], 20)) + take((20,))
  assert p == len(vector)
  return logits


@pytest.mark.parametrize('batch_statistics', [True, False])
def test_nws_network_with_batch_norm_gives_the_nws_logits(tmp_path, batch_statistics):
  """An NWS network with batch norm (moving variances small, as in trained NWS nets) imported into popnet gives
  the logits of NWS's own layer order with TensorLayer's epsilon 1e-5; with Keras' 1e-3 they would differ."""
  rng = np.random.default_rng(4)
  meta_row = ['cifar10', 0.001, 64, True, False, 0, 3, 2, 3, 4, 2, 4, 16]  # tanh, 4 conv layers, fc 16 -> 8
  arch = models.nws_arch(3, 4, 4, 2, 16, True, 20)
  base = perturbed_variables(arch, (32, 32, 3), 7, 2, rng)
  base['batch_stats'] = jax.tree_util.tree_map(lambda v: v * 1e-3, base['batch_stats'])
  base['params']['output']['kernel'] *= 0.05  # logits of order 1
  make_nws_net(str(tmp_path / 'net'), meta_row, 20, rng, snapshots=2, base=base)
  zoo = Zoo.open(interop.import_nws(str(tmp_path / 'net'), str(tmp_path / 'zoo')))
  images = rng.uniform(0, 1, (8, 32, 32, 3)).astype(np.float32) * 0.05
  vector = np.fromfile(tmp_path / 'net' / 'weights' / '001.bin', '<f8')  # snapshot 0: `base` unperturbed
  variables = zoo.unflatten(zoo.vectors(zoo.metadata.iloc[[0]])[0])
  got, _ = models.apply(arch, variables, images, train=batch_statistics, activation=3, dropout=0.0)
  want = nws_deepnn(vector, meta_row, images, 1e-5, batch_statistics)
  keras_epsilon = nws_deepnn(vector, meta_row, images, 1e-3, batch_statistics)
  assert np.abs(keras_epsilon - want).max() > 1e-2  # the epsilon matters for this network
  assert np.abs(np.asarray(got, np.float64) - want).max() < 1e-4
  assert models.BN_EPSILON == 1e-5
