"""popnet INR zoo -> the DWS or NFN file tree (popnet/interop/inr_trees.py), read unchanged by DWSNets' /
neural-graphs' INRDataset and NFN's SirenDataset (docs/inr.md "Export for their loaders").

Each member's last snapshot is exported (one file per member); rows whose status is not 'ok' are left out and
counted. Needs torch (`pip install .[torch]`), imported here only."""
from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np
import pandas as pd

from popnet.arch import SirenArch
from popnet.files import atomic_write_bytes
from popnet.interop import inr_state_dict, inr_trees
from popnet.interop.common import InteropError
from popnet.interop.target import output_directory
from popnet.zoo import CHECKSUM_COLUMN, Zoo, arch_to_json, atomic_write_text
from popnet.zoo.names import safe_name

FORMATS = ('dws', 'nfn')
_ZOO_ONLY = ['weights_file', 'weights_row', CHECKSUM_COLUMN]


def export_inr(zoo_path: str, out: str, fmt: str, overwrite: bool = False, data_dir: str | None = None) -> dict:
  """Writes the `fmt` tree of the zoo's last snapshots into `out`; returns counts and the tree's files."""
  zoo = Zoo.open(zoo_path)
  name, arch = _siren_arch(zoo, fmt)
  rows, skipped = _last_ok_rows(zoo, name)
  dataset = _one_value(rows, 'dataset', zoo.path)
  safe_name(dataset, 'dataset', zoo.path)
  vectors = zoo.vectors(rows)
  layout = zoo.layout(name)
  if fmt == 'dws':
    n_train = _n_train(dataset, data_dir)
    paths = _dws_paths(rows, dataset, n_train)
  else:
    n_train, paths = None, _nfn_paths(rows, dataset)
  roots = sorted({p.split('/')[0] for p in paths})
  with output_directory(out, 'export'):
    _clear_earlier_export(out, roots, overwrite)
    for path, vector, label in zip(paths, vectors, rows['label'].to_numpy()):
      state = inr_state_dict.to_state_dict(arch, layout, vector)
      if fmt == 'dws':
        state['label'] = int(label)  # the release's .pth files carry their label (preprocess_fmnist.py reads it)
      _save(os.path.join(out, *path.split('/')), state)
    written = _dws_index_files(out, rows, paths, arch, layout, vectors, dataset) if fmt == 'dws' else []
    _write_sidecar(out, zoo, fmt, name, arch, rows, paths, dataset, n_train)
  return {'rows': len(rows), 'skipped': skipped, 'format': fmt, 'roots': roots, 'index_files': written,
          'out': out, 'gaps': _nfn_gaps(rows) if fmt == 'nfn' else 0}


def _siren_arch(zoo: Zoo, fmt: str) -> tuple[str, SirenArch]:
  sirens = {n: zoo.arch(n) for n in zoo.architectures if isinstance(zoo.arch(n), SirenArch)}
  family = {n: a for n, a in sirens.items() if a.family == fmt}
  if len(family) != 1:
    have = {n: a.family for n, a in sirens.items()}
    raise InteropError(f'{zoo.path}: --format {fmt} exports a zoo of {fmt.upper()} SIRENs (architecture '
                       f'siren_{fmt}); this zoo has {have or "no SIRENs"} (its architectures {zoo.architectures})')
  return next(iter(family.items()))


def _last_ok_rows(zoo: Zoo, name: str) -> tuple[pd.DataFrame, int]:
  rows = zoo.select(arch=name, snapshot='last')
  ok = rows['status'] == 'ok' if 'status' in rows else np.ones(len(rows), bool)
  rows = rows[ok].sort_values(['image', 'view', 'member_id'], kind='stable').reset_index(drop=True)
  if not len(rows):
    raise InteropError(f'{zoo.path}: has no member whose last snapshot has status ok; nothing to export')
  return rows, int((~ok).sum())


def _one_value(rows: pd.DataFrame, column: str, source: str) -> str:
  values = pd.unique(rows[column].astype(str)) if column in rows else []
  if len(values) != 1:
    raise InteropError(f'{source}: the exported rows need one {column}; they have {list(values)}')
  return str(values[0])


def _n_train(dataset: str, data_dir: str | None) -> int:
  """The size of the dataset's source train split (the DWS files number train and test images separately)."""
  from popnet import data as data_lib
  try:
    return len(data_lib.load(dataset, data_dir).train_y)
  except (data_lib.DatasetNotPreparedError, ValueError, OSError) as e:
    raise InteropError(f'dataset {dataset}: needed to number the DWS files by split ({e})') from e


def _dws_paths(rows: pd.DataFrame, dataset: str, n_train: int) -> list[str]:
  prefix = inr_trees.dws_prefix(dataset)
  if (rows['view'] != 0).any():
    raise InteropError('the zoo has several views of an image (train_views > 1, the NFN protocol); the DWS tree '
                       'holds one INR per image: export it with --format nfn')
  image = rows['image'].to_numpy(np.int64)
  return [inr_trees.dws_model_path(prefix, 'train', int(i)) if i < n_train else
          inr_trees.dws_model_path(prefix, 'test', int(i - n_train)) for i in image]


def _nfn_paths(rows: pd.DataFrame, dataset: str) -> list[str]:
  labels = rows['label'].to_numpy(np.int64)
  if ((labels < 0) | (labels > 9)).any():
    raise InteropError(f'label: NFN\'s folder names hold one digit (randinit_smaller_<label>s); this zoo has '
                       f'labels {sorted(set(labels.tolist()))}, allowed 0..9')
  root = inr_trees.nfn_root(dataset)
  return [f'{root}/{inr_trees.nfn_folder(int(label), int(view))}/net{int(image)}.pth'
          for label, view, image in zip(labels, rows['view'], rows['image'])]


def _nfn_gaps(rows: pd.DataFrame) -> int:
  """How many indices 0..max are missing from the first-fit folders (NFN's SirenDataset needs none missing)."""
  images = set(rows.loc[rows['view'] == 0, 'image'].astype(int))
  return max(images) + 1 - len(images)


def _clear_earlier_export(out: str, roots: list[str], overwrite: bool) -> None:
  """An earlier export's trees are replaced only with overwrite; nothing else in `out` is touched."""
  earlier = [n for n in roots + [inr_trees.SIDECAR, inr_trees.SIDECAR_METADATA] if os.path.lexists(os.path.join(out, n))]
  if earlier and not overwrite:
    raise InteropError(f'{out}: already holds {earlier} (an earlier export); pass --overwrite to replace them')
  for n in earlier:
    full = os.path.join(out, n)
    shutil.rmtree(full) if os.path.isdir(full) and not os.path.islink(full) else os.remove(full)


def _save(path: str, obj) -> None:
  import torch
  buffer = io.BytesIO()
  torch.save(obj, buffer)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  atomic_write_bytes(path, buffer.getvalue())


def _dws_index_files(out: str, rows, paths, arch, layout, vectors, dataset) -> list[str]:
  """<p>_inrs/splits.json, <p>_splits.json and <p>_statistics.pth (DWS's compute_stats over the train split)."""
  prefix = inr_trees.dws_prefix(dataset)
  split = rows['split'].astype(str).to_numpy()
  labels = rows['label'].astype(int).tolist()
  splits = {s: {'path': [p for p, t in zip(paths, split) if t == s],
                'label': [lab for lab, t in zip(labels, split) if t == s]} for s in inr_trees.SPLITS}
  release = {s: splits[s]['path'] for s in inr_trees.SPLITS}
  files = [f'{prefix}_inrs/splits.json', f'{prefix}_splits.json']
  atomic_write_text(os.path.join(out, files[0]), json.dumps(release))
  atomic_write_text(os.path.join(out, files[1]), json.dumps(splits))
  train = vectors[split == 'train']
  if len(train) >= 2:
    _save(os.path.join(out, f'{prefix}_statistics.pth'), statistics(arch, layout, train))
    files.append(f'{prefix}_statistics.pth')
  return files


def statistics(arch: SirenArch, layout, vectors: np.ndarray) -> dict:
  """DWS's statistics.pth over `vectors` (experiments/mnist/compute_statistics.py): per layer the mean and
  (unbiased) std over INRs of the weights as INRDataset yields them, [in, out, 1], and of the biases, [out, 1]."""
  import torch
  params = layout.unflatten(np.asarray(vectors, np.float32))['params']
  weights = [torch.from_numpy(np.ascontiguousarray(params[n]['kernel']))[..., None] for n in arch.layer_names]
  biases = [torch.from_numpy(np.ascontiguousarray(params[n]['bias']))[..., None] for n in arch.layer_names]
  return {'weights': {'mean': [w.mean(0) for w in weights], 'std': [w.std(0) for w in weights]},
          'biases': {'mean': [b.mean(0) for b in biases], 'std': [b.std(0) for b in biases]}}


def _write_sidecar(out, zoo, fmt, name, arch, rows, paths, dataset, n_train) -> None:
  """popnet_inr.json (architecture, input shape, dataset) and the exported rows' metadata with their paths."""
  info = {'format': fmt, 'architecture': name, 'arch': arch_to_json(arch), 'input_shape': list(zoo.input_shape),
          'dataset': dataset, 'n_train': n_train, 'string_columns': list(zoo.manifest.get('string_columns', ()))}
  table = rows.drop(columns=[c for c in _ZOO_ONLY if c in rows]).assign(path=paths)
  atomic_write_text(os.path.join(out, inr_trees.SIDECAR_METADATA), table.to_csv(index=False))
  atomic_write_text(os.path.join(out, inr_trees.SIDECAR), json.dumps(info, indent=1))
