"""Using a zoo's networks: select rows by hyper-parameters, run them on images, reproduce recorded accuracies.

    rows = zoo.select(activation='relu', epoch='last', status='ok')
    logits = zoo.predict(rows, images)        # [rows, images, classes]; uint8 or [0, 1] float images, any size
    zoo.evaluate(rows, 'test')                # accuracy on the exact subset the trainer evaluated

The evaluation subsets a run used are recorded in `<zoo>/evaluation/<dataset>.npz` (indices into the dataset's
train and test splits, popnet/train.py), so `evaluate` gives each row's recorded accuracy again.
"""
from __future__ import annotations

import difflib
import io
import os
import zipfile
from typing import Any

import numpy as np
import pandas as pd

from popnet.files import atomic_write_bytes
from popnet.zoo import seal
from popnet.zoo.names import read_regular, safe_name
from popnet.zoo.schema import EVAL_SEGMENTS, ZooError

EVALUATION_DIR = seal.EVALUATION_DIR


# --- the recorded evaluation subsets -------------------------------------------------------------------------------
def evaluation_file(dataset: str) -> str:
  return f'{EVALUATION_DIR}/{dataset}.npz'


def evaluation_bytes(n_train_split: int, segments: list[np.ndarray]) -> bytes:
  """The .npz of the evaluation subsets of a dataset (indices into the concatenation of its train and test
  splits, as popnet/pipeline.py builds them, stored as indices into the split each comes from). Byte for byte
  the same for the same subsets (fixed zip timestamps), so a resumed run rewrites nothing."""
  train, val, test = (np.ascontiguousarray(s, np.int64) for s in segments)
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, 'w', zipfile.ZIP_STORED) as archive:
    for name, array in (('train', train), ('val', val), ('test', test - n_train_split)):
      with archive.open(zipfile.ZipInfo(f'{name}.npy', date_time=(1980, 1, 1, 0, 0, 0)), 'w') as f:
        np.lib.format.write_array(f, array, allow_pickle=False)
  return buffer.getvalue()


def write_evaluation_sets(zoo_dir: str, dataset: str, n_train_split: int, segments: list[np.ndarray]) -> None:
  """Records the evaluation subsets of `dataset` outside any writer (the file is then not sealed: a zoo's writer
  records them with ZooWriter.write_evaluation_sets)."""
  dataset = safe_name(dataset, 'dataset', zoo_dir)
  os.makedirs(os.path.join(zoo_dir, EVALUATION_DIR), exist_ok=True)
  atomic_write_bytes(os.path.join(zoo_dir, evaluation_file(dataset)), evaluation_bytes(n_train_split, segments))


def read_evaluation_sets(zoo_dir: str, dataset: str, manifest: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
  """{'train': indices into the train split, 'val': same, 'test': indices into the test split}, checked against
  the seal of `manifest` (the zoo's) when it has one."""
  relative = evaluation_file(safe_name(dataset, 'dataset', os.path.join(zoo_dir, 'metadata.csv')))
  path = os.path.join(zoo_dir, relative)
  if not os.path.lexists(path):
    raise ZooError(f'{path}: not found; this zoo did not record its evaluation subsets (written by popnet.train)')
  data = read_regular(path)
  recorded = (manifest or {}).get(seal.SEAL_KEY, {}).get('files', {})
  sealed = recorded.get(relative, recorded.get(f'../{relative}'))
  if manifest is not None and seal.is_sealed(manifest) and seal.digest(data) != sealed:
    raise ZooError(f'{path}: edited or damaged after the zoo was sealed (its sha256 differs from the seal)')
  try:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
      return {name: f[name] for name in EVAL_SEGMENTS}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise ZooError(f'{path}: not a valid evaluation record ({e})') from e


# --- selection ------------------------------------------------------------------------------------------------------
def select(metadata: pd.DataFrame, **filters: Any) -> pd.DataFrame:
  """Rows whose columns match every filter: a value, a list/tuple/set of values, a callable on the column, or
  'last' / 'first' for `epoch` and `snapshot` (each member's last or first one)."""
  mask = np.ones(len(metadata), bool)
  for column, wanted in filters.items():
    if column not in metadata:
      guess = difflib.get_close_matches(column, list(metadata.columns), n=1)
      hint = f" (did you mean '{guess[0]}'?)" if guess else ''
      raise KeyError(f'{column!r} is not a metadata column{hint}; columns: {list(metadata.columns)}')
    values = metadata[column]
    if column in ('epoch', 'snapshot') and wanted in ('last', 'first'):
      per_member = values.groupby(metadata['member_id']).transform('max' if wanted == 'last' else 'min')
      mask &= (values == per_member).to_numpy()
    elif callable(wanted):
      mask &= np.asarray(wanted(values), bool)
    elif isinstance(wanted, (list, tuple, set, frozenset, np.ndarray)):
      mask &= values.isin(list(wanted)).to_numpy()
    else:
      mask &= (values == wanted).to_numpy()
  return metadata[mask]


# --- running networks -----------------------------------------------------------------------------------------------
def preprocess(images, input_shape) -> np.ndarray:
  """What the trainer feeds a network: uint8 images [N, h, w, c] converted to the zoo's input shape and scaled
  to [0, 1]; float images must already be in [0, 1] at the input shape."""
  from popnet import data as data_lib
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype == np.uint8:
    return data_lib.to_common_shape(images, tuple(input_shape)).astype(np.float32) / 255.0
  if images.shape[1:] != tuple(input_shape):
    raise ValueError(f'float images of shape {images.shape[1:]}; this zoo runs on {tuple(input_shape)} (pass uint8 '
                     'images to have them converted as in training)')
  if images.size and (images.min() < 0 or images.max() > 1):
    raise ValueError(f'float images must be in [0, 1] as in training (got [{images.min():.3g}, '
                     f'{images.max():.3g}]); pass uint8 images or divide by 255')
  return images.astype(np.float32)


def predict(zoo, rows: pd.DataFrame, images, batch_size: int = 1000, conv_impl: str = 'auto') -> np.ndarray:
  """Logits [len(rows), N, classes] of every row's network (one architecture) on `images`, in evaluation mode
  with each row's own activation; vmapped over rows."""
  import jax

  from popnet import arch as arch_lib
  from popnet import network as network_lib
  archs = rows['arch'].unique() if 'arch' in rows else zoo.architectures
  if len(archs) != 1:
    raise ValueError(f'rows span architectures {list(archs)}; select one (zoo.select(arch=...))')
  network = network_lib.build((zoo.arch(archs[0]),), zoo.input_shape).configured(conv_impl, own_shapes=False)
  if network.layout != zoo.layout(archs[0]):
    raise ZooError(f'{zoo.path}: the layout of {archs[0]!r} does not match the network that runs it; its rows would '
                   'be cut in the wrong places')
  x = preprocess(images, zoo.input_shape)
  activation = np.array([arch_lib.ACTIVATIONS.index(a) for a in rows['activation']], np.int32)
  variables = zoo.unflatten(zoo.vectors(rows), archs[0])
  run = jax.jit(jax.vmap(lambda v, a, batch: network.apply(None, v, batch, train=False, activation=a)[0],
                         in_axes=(0, 0, None)))
  return np.concatenate([np.asarray(run(variables, activation, x[i:i + batch_size]))
                         for i in range(0, len(x), batch_size)], axis=1)


def evaluate(zoo, rows: pd.DataFrame, split: str = 'test', data_dir: str | None = None) -> np.ndarray:
  """Accuracy of every row on the `split` subset the trainer recorded for the row's dataset (== the row's
  `<split>_accuracy` up to float rounding)."""
  from popnet import data as data_lib
  if split not in EVAL_SEGMENTS:
    raise ValueError(f'split must be one of {EVAL_SEGMENTS}, got {split!r}')
  out = np.empty(len(rows))
  for dataset, group in rows.groupby('dataset', sort=False):
    index = read_evaluation_sets(getattr(zoo, 'evaluation_dir', zoo.path), dataset, zoo.manifest)[split]  # checks the name before it is a path
    raw = data_lib.load(dataset, data_dir or zoo.manifest.get('config', {}).get('data_dir') or None)
    images, labels = (raw.test_x, raw.test_y) if split == 'test' else (raw.train_x, raw.train_y)
    for arch, same in group.groupby('arch', sort=False):
      logits = predict(zoo, same, images[index])
      out[rows.index.get_indexer(same.index)] = (logits.argmax(-1) == labels[index][None]).mean(1)
  return out
