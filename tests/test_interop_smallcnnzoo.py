"""popnet zoo -> Small CNN Zoo export, read back by the loaders researchers run on the release: NFN's ZooDataset
and the dnn_predict_accuracy colab's loading cells, re-implemented here line by line from their public source
(the release files themselves cannot be downloaded here)."""
import gzip
import json
import os
import random
import re
import shutil

import chex
import numpy as np
import pandas as pd
import pytest

from popnet import hparams, interop, models
from popnet.zoo import Zoo
from tests.helpers import space
from tests.test_interop import make_popnet_zoo, tree_equal

SMALLCNNZOO_SHAPE = (28, 28, 1)
# The release's layout (dnn_predict_accuracy colab boundaries; Keras Sequential variable names).
RELEASE_LAYOUT = [
    ('sequential/conv2d/bias:0', 0, 16, (16,)), ('sequential/conv2d/kernel:0', 16, 160, (3, 3, 1, 16)),
    ('sequential/conv2d_1/bias:0', 160, 176, (16,)), ('sequential/conv2d_1/kernel:0', 176, 2480, (3, 3, 16, 16)),
    ('sequential/conv2d_2/bias:0', 2480, 2496, (16,)), ('sequential/conv2d_2/kernel:0', 2496, 4800, (3, 3, 16, 16)),
    ('sequential/dense/bias:0', 4800, 4810, (10,)), ('sequential/dense/kernel:0', 4810, 4970, (16, 10))]
KERAS_TO_POPNET = {'sequential/conv2d': 'conv_0', 'sequential/conv2d_1': 'conv_1', 'sequential/conv2d_2': 'conv_2',
                   'sequential/dense': 'output'}
# the colab's DATAFRAME_CONFIG_COLS and DATAFRAME_METRIC_COLS
COLAB_CONFIG_COLS = ['config.w_init', 'config.activation', 'config.learning_rate', 'config.init_std', 'config.l2reg',
                     'config.train_fraction', 'config.dropout']
COLAB_METRIC_COLS = ['test_accuracy', 'test_loss', 'train_accuracy', 'train_loss']
HP_SPACE = space(init='choice(constant, normal, glorot_uniform, he_normal)')


@pytest.fixture(scope='module')
def cnn_zoo(tmp_path_factory):
  return make_popnet_zoo(str(tmp_path_factory.mktemp('popnet_cnn_zoo')), HP_SPACE, SMALLCNNZOO_SHAPE)


@pytest.fixture(scope='module')
def cnn_export(cnn_zoo, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('cnn_export'))
  summary = interop.export_smallcnnzoo(cnn_zoo[0], out, block_bytes=3 * 4970 * 4,  # 3 rows per block: streamed
                                       final_step_as=86, split_seed=5)
  return out, summary


def _metrics(out, **kwargs):
  return pd.read_csv(os.path.join(out, 'metrics.csv.gz'), **kwargs)


def _original(cnn_zoo):
  return Zoo.open(cnn_zoo[0]).metadata.sort_values(['member_id', 'snapshot']).reset_index(drop=True)


# --- the files ------------------------------------------------------------------------------------------------------
def test_export_files_follow_the_release_format(cnn_zoo, cnn_export):
  out, summary = cnn_export
  original = _original(cnn_zoo)
  assert sorted(os.listdir(out)) == ['fashion_mnist_split.csv', 'layout.csv', 'metrics.csv.gz', 'popnet_arch.json',
                                     'weights.npy']
  assert summary['rows'] == 12 and summary['values'] == 4970 and summary['varnames'] == 'keras (release)'
  weights = np.load(os.path.join(out, 'weights.npy'), mmap_mode='r')
  assert weights.shape == (12, 4970) and weights.dtype == np.float32
  layout = pd.read_csv(os.path.join(out, 'layout.csv'))
  assert list(layout.columns) == ['varname', 'start', 'end', 'shape', 'start_idx', 'end_idx']
  assert [(r.varname, r.start, r.end, eval(r.shape)) for r in layout.itertuples()] == RELEASE_LAYOUT
  assert (layout.start == layout.start_idx).all() and (layout.end == layout.end_idx).all()

  with gzip.open(os.path.join(out, 'metrics.csv.gz'), 'rt') as f:
    header = f.readline().rstrip('\n').split(',')
  assert header[0] == '' and header[1:23] == list(interop.RELEASE_COLUMNS)  # unnamed index, then the release's 22
  metrics = _metrics(out, index_col=0)
  assert metrics.index.tolist() == [f'popnet/member_{m}/permanent_ckpt-{86 if e == 3 else e}'
                                    for m, e in zip(original['member_id'], original['epoch'])]
  # step = the checkpoint's epoch, the final one written as 86; popnet's optimizer step in its own column
  assert metrics['step'].tolist() == [86 if e == 3 else e for e in original['epoch']]
  assert metrics['optimizer_step'].tolist() == original['step'].tolist()
  assert metrics['modeldir'].tolist() == [f'popnet/member_{m}' for m in original['member_id']]
  for c in ['epoch', 'snapshot', 'status', 'train_accuracy', 'test_loss', 'val_accuracy', 'diverged_epoch']:
    assert metrics[c].tolist() == original[c].tolist(), c
  # the release's names and spellings where popnet has the same quantity
  for c in ('learning_rate', 'activation', 'optimizer', 'dataset', 'dropout'):
    assert metrics[f'config.{c}'].tolist() == original[c].tolist(), c
  w_init = {'constant': 'constant', 'normal': 'RandomNormal', 'glorot_uniform': 'glorot_uniform',
            'he_normal': 'he_normal'}
  assert metrics['config.w_init'].tolist() == [w_init[i] for i in original['init']]
  np.testing.assert_array_equal(metrics['config.init_std'], original['init'].map({'normal': 1.0, 'constant': 0.0}))
  assert metrics['config.l2reg'].tolist() == (original['weight_decay'] / 2).tolist()  # Keras l2: l * sum(w^2)
  assert metrics['config.random_seed'].tolist() == original['seed'].tolist()
  assert (metrics['config.train_fraction'] == 0.9).all() and (metrics['config.epochs'] == 3).all()
  assert (metrics['config.b_init'] == 'zeros').all() and (metrics['config.dnn_architecture'] == 'cnn').all()
  assert (metrics['config.num_layers'] == 3).all() and (metrics['config.num_units'] == 16).all()
  assert metrics['config.epochs_between_checkpoints'].isna().all()
  assert {'config.init', 'config.weight_decay', 'config.seed'}.isdisjoint(metrics.columns)
  for c in ('batch_size', 'momentum', 'augment', 'architecture'):  # popnet's own hyper-parameters follow
    assert metrics[f'config.{c}'].tolist() == original[c].tolist(), c
  with open(os.path.join(out, 'popnet_arch.json')) as f:
    sidecar = json.load(f)
  assert sidecar['arch']['name'] == 'smallcnnzoo' and sidecar['export']['final_step_as'] == 86
  assert sidecar['export']['split_seed'] == 5 and sidecar['export']['final_epoch'] == 3


def test_split_file_is_a_seeded_permutation_grouped_by_member(cnn_zoo, cnn_export):
  out, _ = cnn_export
  with open(os.path.join(out, 'fashion_mnist_split.csv')) as f:
    lines = f.read().splitlines()
  split = pd.read_csv(os.path.join(out, 'fashion_mnist_split.csv'), header=None)  # as NFN reads it
  assert split.shape == (12, 1) and lines == [str(i) for i in split[0]]  # one column, no header
  perm = split[0].to_numpy()
  assert sorted(perm) == list(range(12))
  members = _metrics(out)['modeldir'].to_numpy()[perm]
  order = list(dict.fromkeys(members))
  assert len(order) == 4 and all((members[3 * i:3 * i + 3] == m).all() for i, m in enumerate(order))
  expected = np.random.default_rng(5).permutation(4)  # members' order: the documented seed
  assert order == [f'popnet/member_{np.flatnonzero(expected == k)[0]}' for k in range(4)]
  np.testing.assert_array_equal(interop.split_permutation(np.repeat([0, 1, 2, 3], 3), 5), perm)


# --- the loaders the release's users run ----------------------------------------------------------------------------
def nfn_zoo_dataset(data_path, mode, idcs_file):
  """NFN's ZooDataset.__init__ and _split_indices_iid (AllanYangZhou/nfn experiments/data_utils.py at
  ce783221fd7c511596220d805c7a5beccd764ee8), statement by statement, with numpy arrays for torch tensors.
  Returns (weights, biases, metrics) as the dataset holds them."""
  data = np.load(os.path.join(data_path, 'weights.npy'))
  shuffled_idcs = pd.read_csv(idcs_file, header=None).values.flatten()
  data = data[shuffled_idcs]
  metrics = pd.read_csv(os.path.join(data_path, 'metrics.csv.gz'), compression='gzip')
  metrics = metrics.iloc[shuffled_idcs]
  layout = pd.read_csv(os.path.join(data_path, 'layout.csv'))
  isfinal = metrics['step'] == 86
  metrics = metrics[isfinal]
  data = data[isfinal]
  assert np.isfinite(data).all()
  metrics.index = np.arange(0, len(metrics))
  splits = {}
  test_split_point = int(0.5 * len(data))
  splits['test'] = list(range(test_split_point, len(data)))
  trainval_idcs = list(range(test_split_point))
  val_point = int(0.8 * len(trainval_idcs))
  rng = random.Random(0)
  rng.shuffle(trainval_idcs)
  splits['train'] = trainval_idcs[:val_point]
  splits['val'] = trainval_idcs[val_point:]
  idcs = splits[mode]
  data = data[idcs]
  metrics = metrics.iloc[idcs]
  weights, biases = [], []
  for _, row in layout.iterrows():
    arr = data[:, row['start_idx']:row['end_idx']]
    bs = arr.shape[0]
    arr = arr.reshape((bs, *eval(row['shape'])))
    if row['varname'].endswith('kernel:0'):
      if arr.ndim == 5:
        arr = arr.transpose(0, 4, 3, 1, 2)
      elif arr.ndim == 3:
        arr = arr.transpose(0, 2, 1)
      weights.append(arr)
    elif row['varname'].endswith('bias:0'):
      biases.append(arr)
    else:
      raise ValueError(f"varname {row['varname']} not recognized.")
  return weights, biases, metrics


def test_nfn_zoo_dataset_finds_every_final_checkpoint_with_popnet_tensors(cnn_zoo, cnn_export, tmp_path):
  out, _ = cnn_export
  variables = cnn_zoo[1]
  split_file = os.path.join(out, 'fashion_mnist_split.csv')
  found = []
  for mode in ('train', 'val', 'test'):
    weights, biases, metrics = nfn_zoo_dataset(out, mode, split_file)
    for j, row in enumerate(metrics.itertuples()):
      member = int(row.modeldir.split('_')[-1])
      assert row.snapshot == 2 and row.epoch == 3 and row.test_accuracy == metrics['test_accuracy'].iloc[j]
      v = variables[(member, 2)]['params']
      for k, layer in enumerate(['conv_0', 'conv_1', 'conv_2', 'output']):
        kernel = v[layer]['kernel']
        torch_order = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
        np.testing.assert_array_equal(weights[k][j], torch_order)
        np.testing.assert_array_equal(biases[k][j], v[layer]['bias'])
      found.append((mode, member))
  assert sorted(m for _, m in found) == [0, 1, 2, 3]  # one final checkpoint per network, none twice
  # the test half is the second half of the split file's member order: networks, not checkpoints, are split
  order = [int(d.split('_')[-1]) for d in dict.fromkeys(
      _metrics(out)['modeldir'].to_numpy()[pd.read_csv(split_file, header=None)[0].to_numpy()])]
  assert sorted(m for mode, m in found if mode == 'test') == sorted(order[2:])
  # without --final-step-as the final checkpoint keeps its epoch (3): the loader's step == 86 finds nothing
  plain = str(tmp_path / 'plain')
  interop.export_smallcnnzoo(cnn_zoo[0], plain)
  assert len(nfn_zoo_dataset(plain, 'test', os.path.join(plain, 'fashion_mnist_split.csv'))[2]) == 0


def colab_filter_checkpoints(weights, dataframe, target='test_accuracy', stage='final', binarize=True):
  """filter_checkpoints from google-research/google-research dnn_predict_accuracy/colab/dnn_predict_accuracy.ipynb
  (at 8320e7f3accfa2630105855f4851dce52bf4b7ef), statement by statement."""
  assert target in COLAB_METRIC_COLS, 'unknown target'
  ids_to_take = []
  current_uid = dataframe.axes[0][0].split('/')[-2]
  steps = []
  for i in range(len(dataframe.axes[0])):
    ckpt = dataframe.axes[0][i]
    parts = ckpt.split('/')
    if parts[-2] == current_uid:
      steps.append(int(parts[-1].split('-')[-1]))
    else:
      steps_sort = sorted(steps)
      target_step = -1
      if stage == 'final':
        target_step = steps_sort[-1]
      elif stage == 'early':
        target_step = steps_sort[0]
      else:
        target_step = steps_sort[int(len(steps) / 2)]
      offset = [j for (j, el) in enumerate(steps) if el == target_step][0]
      ids_to_take.append(i - len(steps) + offset)
      current_uid = parts[-2]
      steps = [int(parts[-1].split('-')[-1])]
  hyperparams = dataframe[COLAB_CONFIG_COLS]
  hyperparams = hyperparams.iloc[ids_to_take]
  if binarize:
    hyperparams = pd.get_dummies(hyperparams, columns=['config.w_init', 'config.activation'],
                                 prefix=['winit', 'act'])
  ckpts = dataframe.axes[0][ids_to_take]
  return (weights[ids_to_take, :], dataframe[COLAB_METRIC_COLS].values[ids_to_take, :].astype(np.float32),
          hyperparams, ckpts)


@pytest.mark.parametrize('final_step_as', [None, 86])
def test_colab_loading_cells_read_the_export(cnn_zoo, tmp_path, final_step_as):
  out = str(tmp_path / 'export')
  interop.export_smallcnnzoo(cnn_zoo[0], out, final_step_as=final_step_as)
  original = _original(cnn_zoo)
  weights = np.load(os.path.join(out, 'weights.npy'))  # the colab's loading cell
  metrics = pd.read_csv(os.path.join(out, 'metrics.csv.gz'), index_col=0)
  for ckpt, step, modeldir in zip(metrics.index, metrics['step'], metrics['modeldir']):
    assert re.fullmatch(r'popnet/member_\d+/permanent_ckpt-\d+', ckpt)
    assert ckpt.split('/')[-2] == modeldir.split('/')[-1] and int(ckpt.split('-')[-1]) == step
  assert set(COLAB_CONFIG_COLS + COLAB_METRIC_COLS) <= set(metrics.columns)
  weights_flt, metrics_flt, configs_flt, ckpts = colab_filter_checkpoints(weights, metrics)
  # the colab takes each run's largest checkpoint number, and (its loop closes a run when the next one starts)
  # skips the last run: members 0, 1, 2 of 0..3, each at its final snapshot
  final = original[original['snapshot'] == 2]
  assert ckpts.tolist() == [f'popnet/member_{m}/permanent_ckpt-{86 if final_step_as else 3}' for m in range(3)]
  np.testing.assert_array_equal(metrics_flt, final[COLAB_METRIC_COLS].to_numpy(np.float32)[:3])
  np.testing.assert_array_equal(weights_flt, weights[final.index[:3]])
  assert {'config.learning_rate', 'config.init_std', 'config.l2reg', 'config.train_fraction',
          'config.dropout'} <= set(configs_flt.columns)
  assert any(c.startswith('winit_') for c in configs_flt.columns) and any(c.startswith('act_') for c in configs_flt)


def test_exported_row_and_layout_csv_rebuild_the_network(cnn_zoo, cnn_export):
  """Unflatten each exported row with layout.csv alone (as a user of the release would) -> the same tensors, and
  popnet.models.apply gives the same logits as on the original variables."""
  out, _ = cnn_export
  _, variables = cnn_zoo
  weights = np.load(os.path.join(out, 'weights.npy'), mmap_mode='r')
  layout = pd.read_csv(os.path.join(out, 'layout.csv'))
  metrics = _metrics(out, index_col=0)
  arch = models.smallcnnzoo_arch()
  images = np.random.default_rng(0).uniform(0, 1, (4, *SMALLCNNZOO_SHAPE)).astype(np.float32)
  for i in range(len(metrics)):
    row = metrics.iloc[i]
    rebuilt = {'params': {}, 'batch_stats': {}}
    for r in layout.itertuples():
      layer, tensor = r.varname.rsplit('/', 1)
      rebuilt['params'].setdefault(KERAS_TO_POPNET[layer], {})[tensor[:-len(':0')]] = np.asarray(
          weights[i, r.start_idx:r.end_idx]).reshape(eval(r.shape))
    original = variables[(int(row['modeldir'].split('_')[-1]), int(row['snapshot']))]
    tree_equal(rebuilt['params'], original['params'])
    act = models.ACTIVATIONS.index(row['config.activation'])
    want, _ = models.apply(arch, original, images, train=False, activation=act)
    got, _ = models.apply(arch, rebuilt, images, train=False, activation=act)
    chex.assert_trees_all_close(got, want)


# --- back into popnet -----------------------------------------------------------------------------------------------
def compare_zoos(original, imported, extra=()):
  """Same (member, snapshot) rows with the same metadata values (except where the rows live) and weights."""
  a = original.metadata.sort_values(['member_id', 'snapshot']).reset_index(drop=True)
  b = imported.metadata.sort_values(['member_id', 'snapshot']).reset_index(drop=True)
  assert set(b.columns) - set(a.columns) == set(extra)
  cols = [c for c in a.columns if c != 'weights_row']
  pd.testing.assert_frame_equal(a[cols], b[cols])
  (arch,) = original.architectures
  np.testing.assert_array_equal(original.vectors(a), imported.vectors(b))
  tree_equal(original.unflatten(original.vectors(a), arch), imported.unflatten(imported.vectors(b), arch))


def test_export_then_import_round_trips_exactly(cnn_zoo, cnn_export, tmp_path):
  out, _ = cnn_export
  original = Zoo.open(cnn_zoo[0])
  in_place = interop.open_smallcnnzoo(out)
  assert in_place.architectures == ['smallcnnzoo'] and in_place.arch('smallcnnzoo') == models.smallcnnzoo_arch()
  np.testing.assert_array_equal(np.asarray(in_place.weights('smallcnnzoo')),
                                np.load(os.path.join(out, 'weights.npy')))
  meta = original.metadata.sort_values(['member_id', 'snapshot'])
  tree_equal(in_place.unflatten(in_place.vectors(in_place.metadata)), original.unflatten(original.vectors(meta)))

  imported = Zoo.open(interop.import_smallcnnzoo(out, str(tmp_path / 'back'), block_bytes=5 * 4970 * 4))
  compare_zoos(original, imported, extra={'modeldir'})  # step, init, weight_decay, seed: popnet's again
  assert imported.layout('smallcnnzoo') == original.layout('smallcnnzoo')  # popnet's own order again
  again = Zoo.open(interop.import_smallcnnzoo(out, str(tmp_path / 'back')))  # resumes: nothing left to write
  compare_zoos(original, again, extra={'modeldir'})


def write_version1_export(zoo_path, new_export, out):
  """An export as popnet wrote them before the release's step semantics (EXPORT_VERSION 1): no index column,
  `config.<popnet name>` sorted (+ config.epochs), modeldir, step = the optimizer step, the metrics, then
  popnet's other columns; a sidecar without an `export` record."""
  os.makedirs(out)
  for f in ('weights.npy', 'layout.csv'):
    shutil.copy(os.path.join(new_export, f), out)
  with open(os.path.join(new_export, 'popnet_arch.json')) as f:
    sidecar = json.load(f)
  del sidecar['export']
  with open(os.path.join(out, 'popnet_arch.json'), 'w') as f:
    json.dump(sidecar, f)
  rows = Zoo.open(zoo_path).metadata.sort_values(['member_id', 'snapshot'])
  hp = [c for c in rows.columns if c in (*hparams.PARAMS, 'seed')]
  table = {f'config.{c}': rows[c].to_numpy() for c in hp}
  table['config.epochs'] = np.full(len(rows), 3)
  table = {k: table[k] for k in sorted(table)}
  table['modeldir'] = [f'popnet/member_{m}' for m in rows['member_id']]
  for c in ('step', 'test_accuracy', 'test_loss', 'train_accuracy', 'train_loss'):
    table[c] = rows[c].to_numpy()
  for c in rows.columns:
    if c not in table and c not in hp and c not in ('member_id', 'arch', 'weights_file', 'weights_row'):
      table[c] = rows[c].to_numpy()
  pd.DataFrame(table).to_csv(os.path.join(out, 'metrics.csv.gz'), index=False)


def test_exports_written_before_the_release_step_semantics_still_import(cnn_zoo, cnn_export, tmp_path):
  old = str(tmp_path / 'old')
  write_version1_export(cnn_zoo[0], cnn_export[0], old)
  imported = Zoo.open(interop.import_smallcnnzoo(old, str(tmp_path / 'back')))
  compare_zoos(Zoo.open(cnn_zoo[0]), imported, extra={'modeldir', 'config.epochs'})


def test_export_other_architecture_with_batch_norm_round_trips(tmp_path):
  hp = space(architecture='nws', filter_size=3, depth_conv=4, width_conv=2, depth_fc=2, width_fc=8, batch_norm=True)
  path, _ = make_popnet_zoo(str(tmp_path / 'zoo'), hp, (8, 8, 1), members=3, snapshots=2, seed=1)
  out = str(tmp_path / 'export')
  summary = interop.export_smallcnnzoo(path, out, only_ok=True, final_step_as=86)
  assert summary['rows'] == 5 and summary['varnames'] == 'popnet'  # the diverged row is left out
  layout = pd.read_csv(os.path.join(out, 'layout.csv'))
  assert layout['varname'].tolist()[:7] == ['conv_0/bias:0', 'conv_0/kernel:0', 'conv_0/bn_beta:0',
                                            'conv_0/bn_gamma:0', 'conv_0/bn_mean:0', 'conv_0/bn_var:0',
                                            'conv_1/bias:0']
  assert layout['varname'].tolist()[-2:] == ['output/bias:0', 'output/kernel:0']
  metrics = _metrics(out, index_col=0)
  assert (metrics['config.dnn_architecture'] == 'nws_f3_c4x2_fc2x8').all() and metrics['config.num_units'].isna().all()
  # the diverged member's last row is left out, but its earlier row is not promoted to "final": step stays 0
  assert metrics['step'].tolist() == [0, 86, 0, 86, 0]
  original = Zoo.open(path)
  back = Zoo.open(interop.import_smallcnnzoo(out, str(tmp_path / 'back')))
  assert back.architectures == original.architectures
  ok = original.metadata[original.metadata['status'] == 'ok']
  full = Zoo(original.path, original.manifest, ok.reset_index(drop=True), original.layouts)
  compare_zoos(full, back, extra={'modeldir'})


def test_export_refuses_bad_requests_before_writing(cnn_zoo, cnn_export, tmp_path):
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
  for bad, message in [(1, 'must exceed every earlier snapshot epoch'), (-1, 'non-negative integer'),
                       (86.0, 'non-negative integer')]:
    with pytest.raises(interop.InteropError, match=f'final_step_as: .*{message}'):
      interop.export_smallcnnzoo(zoo, str(tmp_path / 'z'), final_step_as=bad)
  no_epoch = Zoo(zoo.path, zoo.manifest, zoo.metadata.assign(epoch=np.nan), zoo.layouts)
  with pytest.raises(interop.InteropError, match=r'metadata\.csv: epoch is missing on some rows'):
    interop.export_smallcnnzoo(no_epoch, str(tmp_path / 'z'))
  assert not os.path.exists(tmp_path / 'y') and not os.path.exists(tmp_path / 'z')
