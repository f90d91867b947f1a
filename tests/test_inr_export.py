"""INR zoos in the files DWS's and NFN's loaders read (popnet/interop/inr_export.py, inr_import.py, docs/inr.md):
(c) an exported .pth loaded into the reference module, re-implemented below in PyTorch from the sources, renders
the image zoo.render gives to 1e-6; the references' own loader classes, copied below from their sources, read the
exported trees unchanged; export -> import gives identical vectors and metadata; untrusted trees are refused with
one line and nothing written."""
import json
import os
import random  # noqa: F401  (DWSNets' INRDataset module imports it)
import shutil
import glob
import re
from collections import OrderedDict
from typing import NamedTuple, Tuple, Union
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip('torch')
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

from popnet import Zoo  # noqa: E402
from popnet.interop.cli import main as interop_main  # noqa: E402
from popnet.interop.inr_export import export_inr  # noqa: E402
from popnet.interop.inr_import import import_inr  # noqa: E402
from popnet.zoo import render as render_lib  # noqa: E402
from tests.nfn_reference import state_dict_to_tensors  # noqa: E402  (nfn/common/data.py, verbatim)

ZOO_ONLY = ['weights_file', 'weights_row', 'weights_crc32']


# --- DWS: AvivNavon/DWSNets@2001d52 -------------------------------------------------------------------------------
# nn/inr.py (the positional-encoding branch, pe_features != None, is left out: the INR zoos do not use it)
class Sine(nn.Module):
  def __init__(self, w0=1.0):
    super().__init__()
    self.w0 = w0

  def forward(self, x):
    return torch.sin(self.w0 * x)


class Siren(nn.Module):
  def __init__(self, dim_in, dim_out, w0=30.0, c=6.0, is_first=False, use_bias=True, activation=None):
    super().__init__()
    self.w0, self.c, self.dim_in, self.dim_out, self.is_first = w0, c, dim_in, dim_out, is_first
    weight = torch.zeros(dim_out, dim_in)
    bias = torch.zeros(dim_out) if use_bias else None
    self.weight = nn.Parameter(weight)
    self.bias = nn.Parameter(bias) if use_bias else None
    self.activation = Sine(w0) if activation is None else activation

  def forward(self, x):
    out = F.linear(x, self.weight, self.bias)
    return self.activation(out)


class INR(nn.Module):
  def __init__(self, in_dim=2, n_layers=3, up_scale=4, out_channels=1):
    super().__init__()
    hidden_dim = in_dim * up_scale
    self.layers = [Siren(dim_in=in_dim, dim_out=hidden_dim)]
    for i in range(n_layers - 2):
      self.layers.append(Siren(hidden_dim, hidden_dim))
    self.layers.append(nn.Linear(hidden_dim, out_channels))
    self.seq = nn.Sequential(*self.layers)

  def forward(self, x):
    return self.seq(x) + 0.5


# experiments/utils.py
def make_coordinates(shape, bs, coord_range=(-1, 1)):
  x_coordinates = np.linspace(coord_range[0], coord_range[1], shape[0])
  y_coordinates = np.linspace(coord_range[0], coord_range[1], shape[1])
  x_coordinates, y_coordinates = np.meshgrid(x_coordinates, y_coordinates)
  x_coordinates = x_coordinates.flatten()
  y_coordinates = y_coordinates.flatten()
  coordinates = np.stack([x_coordinates, y_coordinates]).T
  coordinates = np.repeat(coordinates[np.newaxis, ...], bs, axis=0)
  return torch.from_numpy(coordinates).type(torch.float)


# experiments/data.py (Batch, ImageBatch, INRDataset without its augmentation and permutation methods, which
# normalize=False / augmentation=False / permutation=False never call, and INRImageDataset.__getitem__)
class Batch(NamedTuple):
  weights: Tuple
  biases: Tuple
  label: Union[torch.Tensor, int]


class ImageBatch(NamedTuple):
  image: torch.Tensor
  label: Union[torch.Tensor, int]


class INRDataset(torch.utils.data.Dataset):
  def __init__(self, path, split="train", normalize=False, augmentation=False, permutation=False,
               statistics_path="dataset/statistics.pth"):
    self.split = split
    self.dataset = json.load(open(path, "r"))[self.split]
    self.augmentation = augmentation
    self.permutation = permutation
    self.normalize = normalize
    if self.normalize:
      self.stats = torch.load(statistics_path, map_location="cpu")

  def __len__(self):
    return len(self.dataset["label"])

  def _normalize(self, weights, biases):
    wm, ws = self.stats["weights"]["mean"], self.stats["weights"]["std"]
    bm, bs = self.stats["biases"]["mean"], self.stats["biases"]["std"]
    weights = tuple((w - m) / s for w, m, s in zip(weights, wm, ws))
    biases = tuple((w - m) / s for w, m, s in zip(biases, bm, bs))
    return weights, biases

  def __getitem__(self, item):
    path = self.dataset["path"][item]
    state_dict = torch.load(path, map_location=lambda storage, loc: storage)
    weights = tuple([v.permute(1, 0) for w, v in state_dict.items() if "weight" in w])
    biases = tuple([v for w, v in state_dict.items() if "bias" in w])
    label = int(self.dataset["label"][item])
    weights = tuple([w.unsqueeze(-1) for w in weights])
    biases = tuple([b.unsqueeze(-1) for b in biases])
    if self.normalize:
      weights, biases = self._normalize(weights, biases)
    return Batch(weights=weights, biases=biases, label=label)


class INRImageDataset(INRDataset):
  def __init__(self, path, split="train", inr_class=INR, inr_kwargs={"n_layers": 3, "in_dim": 2, "up_scale": 16},
               image_size=(28, 28)):
    super().__init__(path, split)
    self.inr = inr_class(**inr_kwargs)
    self.image_size = image_size

  def __getitem__(self, item):
    path = self.dataset["path"][item]
    state_dict = torch.load(path, map_location="cpu")
    weight_names = [k for k in state_dict.keys() if "weight" in k]
    bias_names = [k for k in state_dict.keys() if "bias" in k]
    weights = tuple([v.permute(1, 0) for w, v in state_dict.items() if "weight" in w])
    biases = tuple([v for w, v in state_dict.items() if "bias" in w])
    label = int(self.dataset["label"][item])
    weights = tuple([w.unsqueeze(-1) for w in weights])
    biases = tuple([b.unsqueeze(-1) for b in biases])
    new_state_dict = {}
    for i, k in enumerate(weight_names):
      new_state_dict[k] = weights[i].squeeze(-1).permute(1, 0)
    for i, k in enumerate(bias_names):
      new_state_dict[k] = biases[i].squeeze(-1)
    self.inr.load_state_dict(new_state_dict)
    self.inr.eval()
    input = make_coordinates(self.image_size, 1)
    with torch.no_grad():
      image = self.inr(input)
      image = image.view(*self.image_size, -1)
      image = image.permute(2, 0, 1)
    return ImageBatch(image=image, label=label)


# mkofinas/neural-graphs@1f2b671 experiments/data.py INRDataset.__init__ (reads the Fashion-MNIST splits file
# relative to dataset_dir) and experiments/inr_classification/dataset/preprocess_fmnist.py (the label in the .pth)
class NeuralGraphsINRDataset(INRDataset):
  def __init__(self, dataset_dir, splits_path, split="train", normalize=False, statistics_path="statistics.pth"):
    self.split = split
    self.splits_path = (Path(dataset_dir) / Path(splits_path)).expanduser().resolve()
    self.root = self.splits_path.parent
    with self.splits_path.open("r") as f:
      self.dataset = json.load(f)[self.split]
    self.dataset["path"] = [Path(dataset_dir) / Path(p) for p in self.dataset["path"]]
    self.augmentation, self.permutation, self.normalize = False, False, normalize
    if self.normalize:
      statistics_path = (Path(dataset_dir) / Path(statistics_path)).expanduser().resolve()
      self.stats = torch.load(statistics_path, map_location="cpu")


def preprocess_fmnist_labels(dataset_dir, data_path):
  with open(Path(dataset_dir) / data_path, "r") as f:
    data = json.load(f)
  out = {}
  for split in ["train", "val", "test"]:
    paths = [(Path(data_path).parent / Path(*Path(di).parts[-2:])).as_posix() for di in data[split]]
    out[split] = [torch.load(Path(dataset_dir) / p, map_location=lambda storage, loc: storage)["label"]
                  for p in paths]
  return out


# --- NFN: AllanYangZhou/nfn@ce78322 --------------------------------------------------------------------------------
# experiments/siren_utils.py (get_mgrid, SineLayer without its init, which load_state_dict overwrites, and Siren)
def get_mgrid(sidelen, dim=2):
  tensors = tuple(dim * [torch.linspace(-1, 1, steps=sidelen)])
  mgrid = torch.stack(torch.meshgrid(*tensors, indexing='ij'), dim=-1)
  mgrid = mgrid.reshape(-1, dim)
  return mgrid


class SineLayer(nn.Module):
  def __init__(self, in_features, out_features, bias=True, is_first=False, omega_0=30):
    super().__init__()
    self.omega_0 = omega_0
    self.is_first = is_first
    self.in_features = in_features
    self.linear = nn.Linear(in_features, out_features, bias=bias)

  def forward(self, input):
    return torch.sin(self.omega_0 * self.linear(input))


class NfnSiren(nn.Module):
  def __init__(self, in_features, hidden_features, hidden_layers, out_features, outermost_linear=False,
               first_omega_0=30, hidden_omega_0=30.0):
    super().__init__()
    self.net = [SineLayer(in_features, hidden_features, is_first=True, omega_0=first_omega_0)]
    for i in range(hidden_layers):
      self.net.append(SineLayer(hidden_features, hidden_features, is_first=False, omega_0=hidden_omega_0))
    self.net.append(nn.Linear(hidden_features, out_features))  # outermost_linear=True
    self.net = nn.Sequential(*self.net)

  def forward(self, coords):
    output = self.net(coords)
    return output, coords


NFN_MNIST_KWARGS = {"first_omega_0": 30, "hidden_features": 32, "hidden_layers": 1, "hidden_omega_0": 30.0,
                    "in_features": 2, "out_features": 1, "outermost_linear": True}


# experiments/data_utils.py
class SirenDataset(Dataset):
  def __init__(self, data_path, prefix="randinit_test", split="all", split_points=None):
    idx_pattern = r"net(\d+)\.pth"
    label_pattern = r"_(\d)s"
    self.idx_to_path = {}
    self.idx_to_label = {}
    for siren_path in glob.glob(os.path.join(data_path, f"{prefix}_*/*.pth")):
      idx = int(re.search(idx_pattern, siren_path).group(1))
      self.idx_to_path[idx] = siren_path
      label = int(re.search(label_pattern, siren_path).group(1))
      self.idx_to_label[idx] = label
    if split == "all":
      self.idcs = list(range(len(self.idx_to_path)))
    else:
      val_point, test_point = split_points
      self.idcs = {
          "train": list(range(val_point)),
          "val": list(range(val_point, test_point)),
          "test": list(range(test_point, len(self.idx_to_path))),
      }[split]

  def __getitem__(self, idx):
    data_idx = self.idcs[idx]
    sd = torch.load(self.idx_to_path[data_idx])
    weights, biases = state_dict_to_tensors(sd)
    return (weights, biases), self.idx_to_label[data_idx]

  def __len__(self):
    return len(self.idcs)


# --- zoos ------------------------------------------------------------------------------------------------------------
NFN_TRAIN, NFN_TEST, NFN_VAL_START, NFN_TEST_START, NFN_VIEWS = 6, 3, 4, 7, 3


@pytest.fixture(scope='module')
def dws_zoo(cli, tmp_path_factory, digits_dir):
  work = str(tmp_path_factory.mktemp('inr_dws') / 'run')
  cli('--config', 'inr_smoke', '--workdir', work, '--config.task.max_images=12', devices=1)
  return work


@pytest.fixture(scope='module')
def nfn_data(tmp_path_factory):
  """A registered 9-image dataset (6 train, 3 test) of 8x8 digits: NFN's loader needs every index 0..n-1."""
  from sklearn.datasets import load_digits
  from popnet import data
  path = str(tmp_path_factory.mktemp('nfn_data'))
  digits = load_digits()
  images = np.round(digits.images[:9, :, :, None] * (255 / 16)).astype(np.uint8)
  labels = digits.target[:9].astype(np.int64)
  data.register_arrays('tiny9', images[:NFN_TRAIN], labels[:NFN_TRAIN], images[NFN_TRAIN:], labels[NFN_TRAIN:],
                       data_dir=path)
  return path


@pytest.fixture(scope='module')
def nfn_zoo(cli, tmp_path_factory, nfn_data):
  work = str(tmp_path_factory.mktemp('inr_nfn') / 'run')
  cli('--config', 'inr_smoke', '--workdir', work, '--config.hparams.dataset=tiny9', '--config.hparams.architecture='
      'siren_nfn', '--config.task.split=nfn', f'--config.task.val_start={NFN_VAL_START}',
      f'--config.task.test_start={NFN_TEST_START}', f'--config.task.train_views={NFN_VIEWS}',
      '--config.task.max_images=0', '--config.task.psnr_threshold=0', '--config.hparams.learning_rate=1e-4',
      '--config.hparams.batch_size=4',  # the classification pipeline's check; an INR step takes every pixel
      devices=1, env={'TFDS_DATA_DIR': nfn_data})
  return work


@pytest.fixture(scope='module')
def dws_tree(dws_zoo, digits_dir, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('dws_tree') / 'export')
  export_inr(dws_zoo, out, 'dws', data_dir=digits_dir)
  return out


@pytest.fixture(scope='module')
def nfn_tree(nfn_zoo, nfn_data, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('nfn_tree') / 'export')
  export_inr(nfn_zoo, out, 'nfn', data_dir=nfn_data)
  return out


def last_rows(path):
  zoo = Zoo.open(path)
  return zoo, zoo.select(snapshot='last').sort_values('member_id').reset_index(drop=True)


# --- (c) and the references' loaders --------------------------------------------------------------------------------
def test_dws_loader_reads_the_export_and_renders_zoo_render(dws_zoo, dws_tree, digits_dir, monkeypatch):
  from popnet import data
  n_train = len(data.load('digits', digits_dir).train_y)  # test images are test/model_<image - n_train>.pth
  zoo, rows = last_rows(dws_zoo)
  rendered = zoo.render(rows, scale='family')
  by_image = {int(i): r for i, r in zip(rows['image'], rendered)}
  label_of = dict(zip(rows['image'].astype(int), rows['label'].astype(int)))
  monkeypatch.chdir(dws_tree)  # DWSNets opens the recorded paths relative to the working directory
  seen = 0
  for split in ('train', 'val', 'test'):
    images = INRImageDataset('digits_splits.json', split, image_size=(8, 8))
    for item in range(len(images)):
      batch = images[item]
      folder, index = re.search(r'(train|test)/model_(\d+)\.pth', images.dataset['path'][item]).groups()
      image = int(index) + (n_train if folder == 'test' else 0)
      np.testing.assert_allclose(batch.image.permute(1, 2, 0).numpy(), by_image[image], atol=1e-6, rtol=0)
      assert batch.label == label_of[image]
      seen += 1
  assert seen == len(rows)
  expected = {s: int((rows['split'] == s).sum()) for s in ('train', 'val', 'test')}
  assert {s: len(INRDataset('digits_splits.json', s)) for s in expected} == expected


def test_dws_statistics_file_is_compute_stats_over_the_train_split(dws_tree, monkeypatch):
  monkeypatch.chdir(dws_tree)
  train = INRDataset('digits_splits.json', 'train')
  loader = torch.utils.data.DataLoader(train, batch_size=len(train), shuffle=False)
  batch = next(iter(loader))  # experiments/mnist/compute_statistics.py, one batch holding every training INR
  stats = torch.load('digits_statistics.pth', weights_only=True)
  for kind, tensors in (('weights', batch.weights), ('biases', batch.biases)):
    for got_mean, got_std, t in zip(stats[kind]['mean'], stats[kind]['std'], tensors):
      torch.testing.assert_close(got_mean, t.mean(0), rtol=1e-6, atol=1e-7)
      torch.testing.assert_close(got_std, t.std(0), rtol=1e-5, atol=1e-7)
  normalized = INRDataset('digits_splits.json', 'train', normalize=True, statistics_path='digits_statistics.pth')[0]
  assert all(torch.isfinite(w).all() for w in normalized.weights[:2])  # the last layer's [32, 1, 1] too


def test_neural_graphs_loader_and_preprocess_read_the_export(dws_zoo, dws_tree):
  zoo, rows = last_rows(dws_zoo)
  for split in ('train', 'val', 'test'):
    dataset = NeuralGraphsINRDataset(dws_tree, 'digits_splits.json', split, normalize=True,
                                     statistics_path='digits_statistics.pth')
    assert len(dataset) == int((rows['split'] == split).sum())
    assert [w.shape for w in dataset[0].weights] == [(2, 32, 1), (32, 32, 1), (32, 1, 1)]
  labels = preprocess_fmnist_labels(dws_tree, 'digits_inrs/splits.json')
  splits = json.load(open(os.path.join(dws_tree, 'digits_splits.json')))
  assert labels == {s: splits[s]['label'] for s in labels}
  state = torch.load(os.path.join(dws_tree, splits['train']['path'][0]), weights_only=True)
  assert list(state) == ['seq.0.weight', 'seq.0.bias', 'seq.1.weight', 'seq.1.bias', 'seq.2.weight', 'seq.2.bias',
                         'label']
  assert [tuple(v.shape) for v in list(state.values())[:6]] == [(32, 2), (32,), (32, 32), (32,), (1, 32), (1,)]
  assert all(v.dtype == torch.float32 for v in list(state.values())[:6]) and isinstance(state['label'], int)
  assert not any(os.path.isabs(p) for s in splits.values() for p in s['path'])


def test_nfn_loader_reads_the_export_and_renders_zoo_render(nfn_zoo, nfn_tree):
  zoo, rows = last_rows(nfn_zoo)
  rendered = {(int(i), int(v)): r for i, v, r in zip(rows['image'], rows['view'], zoo.render(rows, 'family'))}
  root = os.path.join(nfn_tree, 'siren_tiny9_wts')
  siren = NfnSiren(**NFN_MNIST_KWARGS)
  for path in glob.glob(os.path.join(root, '*', '*.pth')):
    folder, idx = re.search(r'(randinit_smaller\w*)/net(\d+)\.pth', path).groups()
    view = 0 if '_aug' not in folder else int(re.search(r'_aug(\d+)_', folder).group(1)) + 1
    siren.load_state_dict(torch.load(path), strict=True)
    with torch.no_grad():
      out = siren(get_mgrid(8, 2))[0].reshape(8, 8, 1).numpy()  # siren_utils.get_batch_siren's reshape
    np.testing.assert_allclose(out, rendered[(int(idx), view)], atol=1e-6, rtol=0)
  split_points = (NFN_VAL_START, NFN_TEST_START)
  n_views = {s: SirenDataset(root, 'randinit_smaller', s, split_points) for s in ('train', 'val', 'test')}
  assert {s: len(d) for s, d in n_views.items()} == {'train': NFN_VAL_START, 'val': NFN_TEST_START - NFN_VAL_START,
                                                     'test': NFN_TRAIN + NFN_TEST - NFN_TEST_START}
  label_of = dict(zip(rows['image'].astype(int), rows['label'].astype(int)))
  for split, dataset in n_views.items():
    for item in range(len(dataset)):
      (weights, biases), label = dataset[item]
      assert label == label_of[dataset.idcs[item]]
      assert [tuple(w.shape) for w in weights] == [(1, 32, 2), (1, 32, 32), (1, 1, 32)]
  for k in range(NFN_VIEWS - 1):  # classify_siren.py's extra_aug training sets
    aug = SirenDataset(root, f'randinit_smaller_aug{k}', 'train', split_points)
    assert len(aug) == NFN_VAL_START and aug[0][1] == label_of[0]


# --- round trips -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('fmt', ['dws', 'nfn'])
def test_export_import_round_trip_is_identical(fmt, dws_zoo, nfn_zoo, dws_tree, nfn_tree, tmp_path):
  source, tree = (dws_zoo, dws_tree) if fmt == 'dws' else (nfn_zoo, nfn_tree)
  import_inr(tree, str(tmp_path / 'zoo'), fmt, log=lambda s: None)
  zoo, rows = last_rows(source)
  back, back_rows = last_rows(str(tmp_path / 'zoo'))
  assert back.sealed and back.verify()['checksummed'] == len(rows)
  np.testing.assert_array_equal(back.vectors(back_rows), zoo.vectors(rows))
  a, b = rows.drop(columns=ZOO_ONLY), back_rows.drop(columns=ZOO_ONLY)
  assert list(a.columns) == list(b.columns)
  assert a.equals(b)


def test_import_without_sidecar_reads_labels_splits_and_indices(dws_zoo, dws_tree, tmp_path):
  tree = str(tmp_path / 'release')
  shutil.copytree(dws_tree, tree)
  os.remove(os.path.join(tree, 'popnet_inr.json'))
  os.remove(os.path.join(tree, 'popnet_inr_metadata.csv'))
  notes = []
  import_inr(tree, str(tmp_path / 'zoo'), 'dws', log=notes.append)
  _, rows = last_rows(dws_zoo)
  back, back_rows = last_rows(str(tmp_path / 'zoo'))
  original = rows.sort_values('image').reset_index(drop=True)
  paths = json.load(open(os.path.join(tree, 'digits_splits.json')))
  by_path = {p: s for s in paths for p in paths[s]['path']}
  assert (back_rows['split'] == back_rows['source_path'].map(by_path)).all()
  assert sorted(back_rows['label']) == sorted(original['label']) and notes
  train = back_rows['source_path'].str.contains('/train/')
  assert set(back_rows.loc[train, 'image']) == set(original.loc[original['split'] != 'test', 'image'])
  np.testing.assert_array_equal(back.vectors(back_rows.sort_values('image')), Zoo.open(dws_zoo).vectors(original))


def test_nfn_import_without_sidecar_reads_views_labels_and_indices(nfn_zoo, nfn_tree, tmp_path):
  tree = copy_tree(nfn_tree, tmp_path)
  os.remove(os.path.join(tree, 'popnet_inr.json'))
  import_inr(tree, str(tmp_path / 'zoo'), 'nfn', log=lambda s: None)
  zoo, rows = last_rows(nfn_zoo)
  back, back_rows = last_rows(str(tmp_path / 'zoo'))
  key = ['image', 'view']
  original, imported = rows.sort_values(key).reset_index(drop=True), back_rows.sort_values(key).reset_index(drop=True)
  for column in key + ['label']:
    np.testing.assert_array_equal(imported[column], original[column])
  assert (imported['split'] == 'train').all()  # NFN's split points 45,000 / 50,000: these indices are all train
  np.testing.assert_array_equal(back.vectors(imported), zoo.vectors(original))


# --- untrusted trees -------------------------------------------------------------------------------------------------
def edit_splits(tree, change):
  path = os.path.join(tree, 'digits_splits.json')
  splits = json.load(open(path))
  change(splits)
  json.dump(splits, open(path, 'w'))


def copy_tree(src, tmp_path):
  tree = str(tmp_path / 'tree')
  shutil.copytree(src, tree, symlinks=True)
  return tree


def refused(capsys, tmp_path, tree, fmt='dws'):
  """The import's exit code and its one line; nothing written to --out."""
  out = str(tmp_path / 'out')
  code = interop_main(['import', '--format', fmt, '--src', tree, '--out', out])
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and err.startswith('error: '), err
  assert not os.path.exists(out)
  return err


@pytest.mark.parametrize('path', ['../outside.pth', '/etc/passwd', 'digits_inrs/../../outside.pth'])
def test_import_refuses_a_path_that_leaves_the_tree(dws_tree, tmp_path, capsys, path):
  tree = copy_tree(dws_tree, tmp_path)
  shutil.copy(os.path.join(tree, json.load(open(os.path.join(tree, 'digits_splits.json')))['train']['path'][0]),
              str(tmp_path / 'outside.pth'))
  edit_splits(tree, lambda s: s['train']['path'].__setitem__(0, path))
  assert 'leaves' in refused(capsys, tmp_path, tree)


def test_import_refuses_a_symlink_out_of_the_tree(dws_tree, nfn_tree, tmp_path, capsys):
  tree = copy_tree(nfn_tree, tmp_path)
  outside = tmp_path / 'elsewhere'
  shutil.move(os.path.join(tree, 'siren_tiny9_wts', 'randinit_smaller_aug0_0s'), str(outside))
  os.symlink(str(outside), os.path.join(tree, 'siren_tiny9_wts', 'randinit_smaller_aug0_0s'))
  assert 'symlink' in refused(capsys, tmp_path, tree, 'nfn')


@pytest.mark.parametrize('label', ['../../etc', -1, True, 1.5])
def test_import_refuses_a_label_that_is_not_a_class_index(dws_tree, tmp_path, capsys, label):
  tree = copy_tree(dws_tree, tmp_path)
  edit_splits(tree, lambda s: s['train']['label'].__setitem__(0, label))
  assert 'label' in refused(capsys, tmp_path, tree)


def test_import_refuses_a_pth_whose_label_or_contents_disagree(dws_tree, tmp_path, capsys):
  tree = copy_tree(dws_tree, tmp_path)
  first = os.path.join(tree, json.load(open(os.path.join(tree, 'digits_splits.json')))['train']['path'][0])
  state = torch.load(first, weights_only=True)
  torch.save({**state, 'label': '../x'}, first)
  assert 'label' in refused(capsys, tmp_path, tree)
  torch.save({**state, 'seq.1.weight': state['seq.1.weight'].double()}, first)
  assert 'float32' in refused(capsys, tmp_path, tree)
  torch.save(OrderedDict(reversed(list(state.items()))), first)
  assert 'order' in refused(capsys, tmp_path, tree)
  torch.save({'code': shutil.rmtree}, first)  # a pickle that calls code: weights_only refuses it
  assert 'weights_only' in refused(capsys, tmp_path, tree)


def test_import_refuses_an_edited_sidecar(dws_tree, tmp_path, capsys):
  tree = copy_tree(dws_tree, tmp_path)
  meta = os.path.join(tree, 'popnet_inr_metadata.csv')
  import pandas as pd
  table = pd.read_csv(meta)
  table.loc[0, 'label'] = (table.loc[0, 'label'] + 1) % 10
  table.to_csv(meta, index=False)
  assert 'disagrees' in refused(capsys, tmp_path, tree)


def test_export_refuses_the_other_family_and_an_earlier_export(nfn_zoo, nfn_data, tmp_path, capsys):
  code = interop_main(['export', '--format', 'dws', '--zoo', nfn_zoo, '--out', str(tmp_path / 'x')])
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and 'siren_dws' in err and not os.path.exists(tmp_path / 'x')
  command = ['export', '--format', 'nfn', '--zoo', nfn_zoo, '--out', str(tmp_path / 'x')]
  assert interop_main(command) == 0
  (tmp_path / 'x' / 'mine.txt').write_text('kept')
  assert interop_main(command) == 2 and '--overwrite' in capsys.readouterr().err
  assert interop_main(command + ['--overwrite']) == 0
  assert (tmp_path / 'x' / 'mine.txt').read_text() == 'kept'  # only the export's own files are replaced


def test_inr_formats_without_torch_say_how_to_install_it(dws_tree, tmp_path, capsys, monkeypatch):
  import importlib.util
  find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'torch' else find_spec(name, *a))
  assert 'pip install .[torch]' in refused(capsys, tmp_path, dws_tree)


# --- render ----------------------------------------------------------------------------------------------------------
def test_render_reproduces_the_recorded_psnr_and_plots(dws_zoo, digits_dir, tmp_path):
  zoo, rows = last_rows(dws_zoo)
  images = render_lib.originals(rows, digits_dir)
  np.testing.assert_allclose(render_lib.psnr(zoo.render(rows), images), rows['psnr'], atol=1e-3)
  out = str(tmp_path / 'inr.png')
  from popnet.zoo.__main__ import main as zoo_main
  assert zoo_main(['render', dws_zoo, '--out', out, '--count', '3', '--data_dir', digits_dir]) == 0
  assert os.path.getsize(out) > 1000
