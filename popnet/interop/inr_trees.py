"""The file trees of the INR data sets as their loaders read them (docs/inr.md "Export for their loaders"), and
popnet's sidecar that makes an export -> import round trip exact.

DWS (the Fashion-MNIST release as mkofinas/neural-graphs@1f2b671 experiments/inr_classification/dataset/
fmnist_splits.json and preprocess_fmnist.py record it; read by DWSNets@2001d52 experiments/data.py INRDataset):

    <p>_inrs/train/model_<i>.pth   state dict + 'label' (int), i = the image's index in the source train split
    <p>_inrs/test/model_<i>.pth    i = its index in the source test split
    <p>_inrs/splits.json           {"train": [path, ...], "val": [...], "test": [...]}   (the release's own list)
    <p>_splits.json                {"train": {"path": [...], "label": [...]}, "val": ..., "test": ...}
    <p>_statistics.pth             {"weights": {"mean": [..], "std": [..]}, "biases": {...}} (compute_statistics)

NFN (AllanYangZhou/nfn@ce78322 experiments/data_utils.py SirenDataset, classify_siren_configs/dset/*.yaml):

    siren_<d>_wts/randinit_smaller_<label>s/net<idx>.pth          the first fit (view 0) of image idx
    siren_<d>_wts/randinit_smaller_aug<k>_<label>s/net<idx>.pth   view k + 1 of a training image

idx = the image's index in the source train + test concatenated (popnet's `image`). Paths are relative to the
export's root; the sidecar (popnet_inr.json, popnet_inr_metadata.csv) sits at the root, outside both trees.
"""
from __future__ import annotations

import re

SIDECAR = 'popnet_inr.json'
SIDECAR_METADATA = 'popnet_inr_metadata.csv'
SPLITS = ('train', 'val', 'test')

# popnet dataset -> the prefix of the DWS file names (neural-graphs: fmnist_*, mnist_*) and NFN's <d>
# (SirenAndOriginalDataset pairs a siren_<d>_wts tree with torchvision's MNIST if 'mnist' is in its path, else
# FashionMNIST if 'fashion', else CIFAR10)
DWS_PREFIX = {'fashion_mnist': 'fmnist', 'mnist': 'mnist'}
NFN_NAME = {'fashion_mnist': 'fashion', 'mnist': 'mnist', 'cifar10': 'cifar'}

DWS_MODEL = re.compile(r'(?:.*/)?(train|test)/model_(\d+)\.pth')
NFN_FOLDER = re.compile(r'randinit_smaller(?:_aug(\d+))?_(\d)s')
NFN_FILE = re.compile(r'net(\d+)\.pth')
NFN_ROOT = re.compile(r'siren_([A-Za-z0-9][A-Za-z0-9_.+-]*)_wts')


def dws_prefix(dataset: str) -> str:
  return DWS_PREFIX.get(dataset, dataset)


def dws_model_path(prefix: str, folder: str, index: int) -> str:
  return f'{prefix}_inrs/{folder}/model_{index}.pth'


def nfn_root(dataset: str) -> str:
  return f'siren_{NFN_NAME.get(dataset, dataset)}_wts'


def nfn_folder(label: int, view: int) -> str:
  return f'randinit_smaller_{label}s' if view == 0 else f'randinit_smaller_aug{view - 1}_{label}s'


def dataset_of(prefix: str, names: dict[str, str]) -> str:
  """popnet's dataset name of a file-name prefix (the inverse of DWS_PREFIX / NFN_NAME)."""
  return {v: k for k, v in names.items()}.get(prefix, prefix)
