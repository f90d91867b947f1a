"""Interchange with the weight-space datasets researchers already hold: the Small CNN Zoo and NWS.

    python -m popnet.interop export --format smallcnnzoo --zoo DIR --out DIR [--arch NAME] [--only-ok]
    python -m popnet.interop import --format smallcnnzoo --src DIR --out DIR
    python -m popnet.interop import --format nws --src DIR --out DIR [--index nws_main_train.csv ...]
    (`python -m popnet.zoo ...` and the `popnet-interop` script take the same arguments)

    from popnet.interop import open_smallcnnzoo
    zoo = open_smallcnnzoo('smallcnnzoo/cifar10')   # a popnet Zoo over the release's own files: nothing copied

**Small CNN Zoo** (Unterthiner et al. 2020, google-research/dnn_predict_accuracy; one directory per dataset):

    weights.npy      float32 [rows, values]; 4,970 values for the release's CNN
    metrics.csv.gz   row i describes weights row i: config.<hyper-parameter> ..., modeldir, step,
                     test_accuracy, test_loss, train_accuracy, train_loss
    layout.csv       varname,start,end,shape[,start_idx,end_idx]: one row per tensor, in vector order; per layer the bias then
                     the kernel; kernels as TF stores them (conv HWIO, dense (in, out)), C order; shape as a Python
                     tuple, e.g. "(3, 3, 1, 16)"

Variable names and column names. The release's CNN is a Keras `Sequential` (dnn_predict_accuracy/train_network.py
`build_cnn`: 3 x Conv2D, GlobalAveragePooling2D, Dense), so its variables are `sequential/conv2d/bias:0`,
`sequential/conv2d/kernel:0`, `sequential/conv2d_1/...`, `sequential/conv2d_2/...`, `sequential/dense/bias:0`,
`sequential/dense/kernel:0`. That is what independent public loaders of the release's layout.csv hard-code (e.g.
TF-name -> PyTorch maps with shapes (3, 3, 1, 16) ... (16, 10)), and the release colab's per-layer boundaries
(0,16) (16,160) (160,176) ... (4800,4810) (4810,4970) confirm "bias then kernel". The index columns are
`start_idx`/`end_idx` (NFN's `ZooDataset`, AllanYangZhou/nfn experiments/data_utils.py, reads
`row["start_idx"]`, `row["end_idx"]`, `eval(row["shape"])` and tests `varname.endswith("kernel:0")`), not the
`start`/`end` of our reference notes. Export writes both pairs (same values: `varname,start,end,shape,start_idx,
end_idx`) so either kind of reader works; the reader here accepts either pair and checks they agree when both are
present. These names come from public code that reads
the release, not from the release files themselves, which could not be downloaded here.

Architecture. Keras' Conv2D pads VALID by default and the release feeds grayscale images scaled to [-1, 1], so a
release directory (no popnet_arch.json) opens as popnet's `smallcnnzoo_valid`: models.apply on that
architecture reproduces the release networks' logits. popnet's default `smallcnnzoo` (SAME) has the same tensors.

A popnet zoo of another architecture exports the same way (per layer bias, kernel, then batch-norm beta, gamma,
moving mean, moving variance), with varnames from popnet's own names (`conv_0/bias:0`, `dense_1/bn_var:0`,
`output/kernel:0`), plus `popnet_arch.json` (the architecture and input shape, which layout.csv cannot express)
so that the export imports back. Tools that only know the three release files ignore it.

Metadata mapping (Small CNN Zoo -> popnet zoo metadata):
  config.<x>        -> <x> when <x> is a popnet hyper-parameter name (dataset, activation, optimizer,
                       learning_rate, dropout, ...) or `seed`; other config columns (config.l2reg, config.w_init,
                       ...) are kept under their own names, so meta can still predict them
  modeldir          -> member_id: `.../member_<n>` (popnet exports) gives n; otherwise the rank of the modeldir
                       among the sorted distinct modeldirs, so ids do not depend on row order; modeldir is kept
  step              -> step
  (derived)         -> snapshot: 0-based rank of the row's step among its member's rows (ties by row order)
  (derived)         -> epoch: the `epoch` column if present, else `step` when every step <= config.epochs (the
                       release stores the checkpoint's epoch there: checkpoints at epochs 0,1,2,3,20,...,86 and
                       consumers pick the final one with step == 86 == config.epochs), else NaN
  (derived)         -> status: the `status` column if present, else 'ok' where the four metrics are finite and
                       'diverged' where one is not (weights are not scanned)
  row i             -> weights_row i; arch = the layout's architecture
Export writes the reverse, plus popnet's own columns the release has no place for (epoch, snapshot, status,
diverged_epoch, val_accuracy, val_loss, ...) under their own names; readers of the release ignore extra columns.
`step` is popnet's optimizer step (the release README's definition); `epoch` is the snapshot's epoch.

**NWS** (Eilertsen et al. 2020, gabrieleilertsen/nws; format read from its classifier.py, model.py and util.py):

    <net>/meta.csv           one row of 13 hyper-parameters: dataset, lrate, batch_size, batch_norm, augmentation,
                             optimizer (0 Adam, 1 RMSProp, 2 momentum SGD), activation (0 ReLU, 1 ELU, 2 sigmoid,
                             3 tanh), initialization (0 constant, 1 N(0,1), 2 Glorot uniform, 3 Glorot normal),
                             filter_size, depth_conv, depth_fc, width_conv, width_fc
    <net>/weights/NNN.bin    raw float64 (little-endian), one flattened snapshot each, 001 = initialization
    <net>/error.bin          float64 [evaluations, 5], one row per epoch evaluation: step, train error %,
                             validation error %, test error %, smoothed validation error %
    <net>/stat.bin           float64 [evaluations, last step, epochs, seconds]
    <index>.csv              the 13 hyper-parameters + path, weightn_conv, weightn_fc (e.g. nws_main_train.csv)

NWS weight order: layers in network order, conv part first; per layer the kernel, bias, batch-norm beta, gamma,
moving mean, moving variance; conv kernels grouped by output filter, then input channel (i.e. an (O, I, kh, kw)
array in C order), FC and output weights grouped by output unit ((out, in)). popnet's tensor order is the same
(popnet.layout), so the conversion only transposes kernels: (O, I, kh, kw) -> HWIO, (out, in) -> (in, out). The
first FC layer's inputs are the NHWC conv output flattened (h, w, c) in both. Snapshot k of a net with E epoch
evaluations was export number s_k = round(linspace(1, E, 20))[k] (classifier.py), so its epoch is s_k - 1, its
step error.bin[s_k - 1, 0] and its accuracies 1 - error.bin[s_k - 1, 1:4] / 100 (train accuracy is the mean over
the training batches since the previous evaluation, as NWS recorded it). Losses were not stored: the imported
zoo has no loss columns. Networks are converted one at a time (float64 -> float32, never more than
`block_bytes` of converted rows held), hyper-parameters are mapped to popnet's names and values (dataset
fashion -> fashion_mnist, svhn -> svhn_cropped; optimizer 2 -> sgd; ...), and the constants of the NWS protocol
are recorded (lr_decay 0.96, dropout 0.5, weight_decay 0). The architecture comes from meta.csv:
popnet.models.nws_arch(filter_size, depth_conv, width_conv, depth_fc, width_fc, batch_norm, 20 outputs) on
32x32x3; a snapshot whose length differs from that layout is an error naming the file.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import gzip
import io
import json
import math
import os
import re
import sys
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from popnet import conv as conv_lib
from popnet import hparams, models
from popnet.layout import Layout
from popnet.zoo import (Zoo, ZooError, ZooWriter, arch_from_json, arch_to_json, atomic_write_text,
                        read_metadata)

WEIGHTS_FILE = 'weights.npy'
METRICS_FILE = 'metrics.csv.gz'
LAYOUT_FILE = 'layout.csv'
ARCH_SIDECAR = 'popnet_arch.json'
LAYOUT_COLUMNS = ('varname', 'start', 'end', 'shape', 'start_idx', 'end_idx')
RELEASE_METRICS = ('test_accuracy', 'test_loss', 'train_accuracy', 'train_loss')
HPARAM_COLUMNS = tuple(hparams.PARAMS) + ('seed',)   # exported as config.<name>
DEFAULT_BLOCK_BYTES = 256 << 20                      # weight rows converted per step (export and import)
EXPORT_TENSOR_ORDER = ('bias', 'kernel', 'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var')

NWS_COLUMNS = ('dataset', 'lrate', 'batch_size', 'batch_norm', 'augmentation', 'optimizer', 'activation',
               'initialization', 'filter_size', 'depth_conv', 'depth_fc', 'width_conv', 'width_fc')
NWS_DATASETS = {'mnist': 'mnist', 'cifar10': 'cifar10', 'svhn': 'svhn_cropped', 'stl10': 'stl10',
                'fashion': 'fashion_mnist'}
NWS_OPTIMIZERS = ('adam', 'rmsprop', 'sgd')            # sgd = momentum SGD (0.95), as popnet's 'sgd'
NWS_ACTIVATIONS = ('relu', 'elu', 'sigmoid', 'tanh')
NWS_INITS = ('constant', 'normal', 'glorot_uniform', 'glorot_normal')
NWS_CONSTANTS = {'lr_decay': 0.96, 'dropout': 0.5, 'weight_decay': 0.0}
NWS_INPUT_SHAPE = (32, 32, 3)
NWS_OUTPUTS = 20
NWS_SNAPSHOTS = 20


class InteropError(ZooError):
  """A foreign file is missing or does not follow its format; the message names the file."""


# --- layouts and variable names -------------------------------------------------------------------------------
def is_smallcnnzoo(arch: models.Arch) -> bool:
  """True for the Small CNN Zoo's CNN, SAME or VALID padded (whatever the output count and name)."""
  return any(dataclasses.replace(arch, name='x') == dataclasses.replace(models.smallcnnzoo_arch(arch.num_outputs, p),
                                                                        name='x') for p in conv_lib.PADDINGS)


def smallcnnzoo_name(arch: models.Arch) -> str:
  """The preset name of a Small CNN Zoo CNN: 'smallcnnzoo' (SAME, popnet's default) or 'smallcnnzoo_valid'."""
  return models.smallcnnzoo_arch(arch.num_outputs, arch.conv[0].padding).name


def export_layout(layout: Layout) -> Layout:
  """popnet's layout reordered the Small CNN Zoo way: per layer (forward order) bias, kernel, then batch norm."""
  specs = []
  for layer in layout.layers:
    entries = sorted((e for e in layout.entries if e.layer == layer),
                     key=lambda e: EXPORT_TENSOR_ORDER.index(e.name) if e.name in EXPORT_TENSOR_ORDER else 99)
    specs += [(e.collection, e.layer, e.name, e.shape) for e in entries]
  return Layout.from_specs(specs)


def keras_varname(layer: str, name: str) -> str:
  """popnet's conv_i / output of the Small CNN Zoo CNN -> the release's Keras variable name."""
  if layer.startswith('conv_'):
    i = int(layer[len('conv_'):])
    base = 'conv2d' if i == 0 else f'conv2d_{i}'
  elif layer == 'output':
    base = 'dense'
  else:
    raise ValueError(f'the Small CNN Zoo CNN has no layer {layer!r}')
  return f'sequential/{base}/{name}:0'


def varnames(layout: Layout, keras: bool) -> list[str]:
  return [keras_varname(e.layer, e.name) if keras else f'{e.layer}/{e.name}:0' for e in layout.entries]


_KERAS_NAME = re.compile(r'^(?:.*/)?(conv2d|dense)(?:_(\d+))?/(kernel|bias):0$')
_POPNET_NAME = re.compile(r'^(conv_\d+|dense_\d+|output)/(kernel|bias|bn_beta|bn_gamma|bn_mean|bn_var):0$')


def _popnet_names(names: Sequence[str], file: str) -> list[tuple[str, str]]:
  """(layer, tensor) in popnet's names for each varname: popnet's own, or the Keras names of a Sequential of
  Conv2D and Dense layers (conv layers numbered by their Keras index, the last Dense is `output`)."""
  parsed = []
  for name in names:
    m = _POPNET_NAME.match(name)
    if m:
      parsed.append(('popnet', m.group(1), m.group(2)))
      continue
    m = _KERAS_NAME.match(name)
    if not m:
      raise InteropError(f'{file}: variable {name!r} is neither a Keras Conv2D/Dense variable '
                         f'(sequential/conv2d_1/kernel:0) nor a popnet one (conv_1/kernel:0)')
    parsed.append((m.group(1), int(m.group(2) or 0), m.group(3)))
  conv = sorted({p[1] for p in parsed if p[0] == 'conv2d'})
  dense = sorted({p[1] for p in parsed if p[0] == 'dense'})
  out = []
  for kind, index, tensor in parsed:
    if kind == 'popnet':
      out.append((index, tensor))
    elif kind == 'conv2d':
      out.append((f'conv_{conv.index(index)}', tensor))
    else:
      rank = dense.index(index)
      out.append(('output' if rank == len(dense) - 1 else f'dense_{rank}', tensor))
  return out


def _parse_shape(value, file: str, varname: str) -> tuple[int, ...]:
  try:
    shape = ast.literal_eval(value.strip()) if isinstance(value, str) else value
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    return tuple(int(s) for s in shape)
  except (ValueError, SyntaxError, TypeError) as e:
    raise InteropError(f'{file}: shape {value!r} of {varname} is not a tuple of integers ({e})') from e


def read_layout_csv(path: str) -> tuple[Layout, list[str]]:
  """layout.csv -> (Layout with popnet's tensor names in the file's vector order, the file's varnames).

  Accepts `start_idx`/`end_idx` (the release) or `start`/`end` (or both, which must agree); rows may be listed in
  any order but must tile the vector without gaps."""
  try:
    table = pd.read_csv(path)
  except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise InteropError(f'{path}: cannot be read ({e})') from e
  start, end = ('start_idx', 'end_idx') if 'start_idx' in table else ('start', 'end')
  missing = [c for c in ('varname', start, end, 'shape') if c not in table]
  if missing:
    raise InteropError(f'{path}: missing columns {missing}; expected varname, start, end, shape '
                       f'(or start_idx, end_idx in place of start, end)')
  for a, b in (('start', 'start_idx'), ('end', 'end_idx')):
    if a in table and b in table and not (table[a] == table[b]).all():
      raise InteropError(f'{path}: columns {a} and {b} disagree; they must hold the same offsets')
  table = table.sort_values(start, kind='stable')
  names = [str(v) for v in table['varname']]
  tensors = _popnet_names(names, path)
  specs, offset = [], 0
  for (layer, tensor), name, lo, hi, shape in zip(tensors, names, table[start], table[end], table['shape']):
    shape = _parse_shape(shape, path, name)
    if int(lo) != offset or int(hi) - int(lo) != math.prod(shape):
      raise InteropError(f'{path}: {name} spans [{lo}, {hi}) with shape {shape}; expected to start at {offset} '
                         f'and hold {math.prod(shape)} values (rows must tile the vector)')
    specs.append(('batch_stats' if tensor in ('bn_mean', 'bn_var') else 'params', layer, tensor, shape))
    offset = int(hi)
  layout = Layout.from_specs(specs)
  if len({e.path for e in layout.entries}) != len(layout.entries):
    raise InteropError(f'{path}: a tensor is listed twice')
  return layout, names


def write_layout_csv(path: str, layout: Layout, names: Sequence[str]) -> None:
  starts, ends = [e.start for e in layout.entries], [e.end for e in layout.entries]
  table = pd.DataFrame({'varname': list(names), 'start': starts, 'end': ends, 'start_idx': starts, 'end_idx': ends,
                        'shape': [str(tuple(e.shape)) for e in layout.entries]})[list(LAYOUT_COLUMNS)]
  atomic_write_text(path, table.to_csv(index=False))


def permutation(src: Layout, dst: Layout) -> np.ndarray:
  """Index array p with dst_vector = src_vector[..., p]: tensors matched by layer and name, same shape."""
  by_path = {e.path: e for e in src.entries}
  p = np.empty(dst.size, np.int64)
  for e in dst.entries:
    s = by_path.get(e.path)
    if s is None or s.shape != e.shape:
      raise ValueError(f'{e.path} {e.shape} has no counterpart in the source layout')
    p[e.start:e.end] = np.arange(s.start, s.end)
  return p


def _same_tensors(a: Layout, b: Layout) -> tuple[list, list]:
  sa, sb = {(e.path, e.shape) for e in a.entries}, {(e.path, e.shape) for e in b.entries}
  return sorted(sb - sa), sorted(sa - sb)


def _rows_per_block(values: int, itemsize: int, block_bytes: int) -> int:
  return max(1, int(block_bytes) // max(1, values * itemsize))


def _json_scalar(x):
  if isinstance(x, np.generic):
    return x.item()
  raise TypeError(f'{type(x).__name__} is not JSON serializable')


def _write_gzip_csv(path: str, table: pd.DataFrame) -> None:
  """metrics.csv.gz, byte-reproducible (no timestamp; the member name is metrics.csv), replaced atomically."""
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'wb') as raw:
    with gzip.GzipFile(filename=os.path.basename(path)[:-3], mode='wb', fileobj=raw, mtime=0) as gz:
      with io.TextIOWrapper(gz, encoding='utf-8', newline='') as text:
        table.to_csv(text, index=False)
    raw.flush()
    os.fsync(raw.fileno())
  os.replace(tmp, path)


# --- export: popnet zoo -> Small CNN Zoo files ------------------------------------------------------------------
def _arch_column(metadata: pd.DataFrame) -> pd.Series:
  if 'arch' in metadata:
    return metadata['arch'].astype(str)
  return metadata['weights_file'].map(lambda f: os.path.splitext(os.path.basename(str(f)))[0])


def _release_table(rows: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
  """popnet metadata rows -> the release's metrics table (+ popnet's own columns under their names)."""
  n = len(rows)
  config = {f'config.{c}': rows[c].to_numpy() for c in rows.columns if c in HPARAM_COLUMNS}
  config.update({c: rows[c].to_numpy() for c in rows.columns if c.startswith('config.')})
  epochs = (manifest.get('config') or {}).get('epochs')
  if 'config.epochs' not in config and isinstance(epochs, int):
    config['config.epochs'] = np.full(n, epochs, np.int64)
  table = {k: config[k] for k in sorted(config)}
  if 'modeldir' in rows:
    table['modeldir'] = rows['modeldir'].astype(str).to_numpy()
  else:
    table['modeldir'] = np.array([f'popnet/member_{int(m)}' for m in rows['member_id']], dtype=object)
  table['step'] = rows['step'].to_numpy() if 'step' in rows else np.full(n, np.nan)
  for c in RELEASE_METRICS:
    table[c] = rows[c].to_numpy() if c in rows else np.full(n, np.nan)
  skip = set(table) | set(config) | set(HPARAM_COLUMNS) | {'member_id', 'arch', 'weights_file', 'weights_row'}
  for c in rows.columns:
    if c not in skip:
      table[c] = rows[c].to_numpy()
  return pd.DataFrame(table)


def export_smallcnnzoo(zoo: Zoo | str, out: str, arch: str | None = None, only_ok: bool = False,
                       block_bytes: int = DEFAULT_BLOCK_BYTES, overwrite: bool = False) -> dict[str, Any]:
  """Writes the rows of one architecture as a Small CNN Zoo directory (weights.npy, metrics.csv.gz, layout.csv,
  popnet_arch.json), rows ordered by (member_id, snapshot). Weights are streamed from the zoo's memory-mapped
  files `block_bytes` at a time; nothing the size of the weights file is held in memory."""
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  meta = zoo.metadata
  archs = _arch_column(meta)
  present = list(pd.unique(archs))
  if arch is None:
    if len(present) != 1:
      raise InteropError(f'{zoo.path}: holds architectures {present}; a Small CNN Zoo directory holds one, so '
                         f'export them one at a time with --arch NAME')
    arch = present[0]
  elif arch not in present:
    raise InteropError(f'{zoo.path}: no rows of architecture {arch!r}; it holds {present}')
  rows = meta[(archs == arch).to_numpy()]
  if only_ok and 'status' in rows:
    rows = rows[rows['status'] == 'ok']
  if not len(rows):
    raise InteropError(f'{zoo.path}: no rows of {arch!r} with status ok to export')
  rows = rows.sort_values(['member_id', 'snapshot'], kind='stable')
  layout = zoo.layout(arch)
  try:
    arch_obj = zoo.arch(arch)
  except KeyError as e:
    raise InteropError(f'{zoo.path}: the manifest does not describe architecture {arch!r}') from e
  out_layout = export_layout(layout)
  names = varnames(out_layout, keras=is_smallcnnzoo(arch_obj))
  perm = permutation(layout, out_layout)

  os.makedirs(out, exist_ok=True)
  targets = [os.path.join(out, f) for f in (WEIGHTS_FILE, METRICS_FILE, LAYOUT_FILE, ARCH_SIDECAR)]
  if not overwrite and any(os.path.exists(t) for t in targets):
    raise InteropError(f'{out}: already holds a Small CNN Zoo export; give a new directory or overwrite=True '
                       f'(--overwrite)')
  tmp = os.path.join(out, f'{WEIGHTS_FILE}.tmp-{os.getpid()}.npy')
  try:
    weights = np.lib.format.open_memmap(tmp, mode='w+', dtype=np.float32, shape=(len(rows), layout.size))
    step = _rows_per_block(layout.size, 4, block_bytes)
    for start in range(0, len(rows), step):
      block = rows.iloc[start:start + step]
      weights[start:start + len(block)] = zoo.vectors(block)[:, perm]
    weights.flush()
    del weights
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  sidecar = {'format': 'popnet arch sidecar of a Small CNN Zoo export', 'arch': arch_to_json(arch_obj),
             'input_shape': list(zoo.input_shape), 'source_zoo': os.path.abspath(zoo.path)}
  os.replace(tmp, targets[0])  # weights first: the tables that describe them follow
  _write_gzip_csv(targets[1], _release_table(rows, zoo.manifest))
  write_layout_csv(targets[2], out_layout, names)
  atomic_write_text(targets[3], json.dumps(sidecar, indent=1, default=_json_scalar))
  return {'out': out, 'architecture': arch, 'rows': int(len(rows)), 'members': int(rows['member_id'].nunique()),
          'values': int(layout.size), 'varnames': 'keras (release)' if is_smallcnnzoo(arch_obj) else 'popnet'}


# --- Small CNN Zoo files -> popnet Zoo ------------------------------------------------------------------------
_MEMBER_DIR = re.compile(r'(?:^|/)member_(\d+)/?$')


def _member_ids(modeldir: pd.Series) -> np.ndarray:
  """Stable integer ids per modeldir: popnet's member_<n> when every modeldir has a distinct one, else the rank
  among the sorted distinct modeldirs."""
  uniq = list(pd.unique(modeldir))
  parsed = [_MEMBER_DIR.search(u) for u in uniq]
  if all(parsed) and len({int(m.group(1)) for m in parsed}) == len(uniq):
    ids = {u: int(m.group(1)) for u, m in zip(uniq, parsed)}
  else:
    ids = {u: i for i, u in enumerate(sorted(uniq))}
  return modeldir.map(ids).to_numpy(np.int64)


def _snapshot_index(member: np.ndarray, step: np.ndarray) -> np.ndarray:
  """0-based rank of each row's step among the rows of its member (ties in row order)."""
  order = np.lexsort((np.arange(len(member)), step, member))
  m = member[order]
  starts = np.r_[0, np.flatnonzero(m[1:] != m[:-1]) + 1] if len(m) else np.zeros(0, np.int64)
  lengths = np.diff(np.r_[starts, len(m)])
  rank = np.arange(len(m)) - np.repeat(starts, lengths)
  out = np.empty(len(m), np.int64)
  out[order] = rank
  return out


def release_metadata(table: pd.DataFrame, arch: str, weights_file: str, source: str) -> tuple[pd.DataFrame, list]:
  """The release's metrics table -> popnet metadata (see the module docstring for the mapping) and notes."""
  notes = []
  for c in ('modeldir', 'step'):
    if c not in table:
      raise InteropError(f'{source}: missing column {c!r}; the Small CNN Zoo metrics table has config.<name>, '
                         f'modeldir, step, {", ".join(RELEASE_METRICS)}')
  n = len(table)
  member = _member_ids(table['modeldir'].astype(str))
  step = table['step'].to_numpy()
  snapshot = table['snapshot'].to_numpy(np.int64) if 'snapshot' in table else _snapshot_index(
      member, step.astype(np.float64))
  if 'epoch' in table:
    epoch = table['epoch'].to_numpy()
  elif 'config.epochs' in table and (step <= table['config.epochs'].to_numpy()).all():
    epoch = step.copy()
    notes.append('epoch = step: every step is <= config.epochs (the release records the checkpoint epoch in step)')
  else:
    epoch = np.full(n, np.nan)
    notes.append('epoch unknown (no epoch column, and step is not an epoch count): NaN')
  if 'status' in table:
    status = table['status'].astype(str).to_numpy()
  else:
    finite = np.ones(n, bool)
    for c in RELEASE_METRICS:
      if c in table:
        finite &= np.isfinite(table[c].to_numpy(np.float64))
    status = np.where(finite, 'ok', 'diverged').astype(object)
    notes.append(f'status from the metrics: {int((~finite).sum())} rows with a non-finite metric are "diverged"')
  meta = {'member_id': member, 'snapshot': snapshot, 'epoch': epoch, 'step': step, 'arch': np.full(n, arch, object)}
  for c in table.columns:
    if c in ('snapshot', 'epoch', 'step', 'status', 'member_id', 'arch', 'weights_file', 'weights_row'):
      continue
    name = c[len('config.'):] if c.startswith('config.') else c
    if c.startswith('config.') and name in HPARAM_COLUMNS and name not in table:
      meta[name] = table[c].to_numpy()
    else:
      meta[c] = table[c].to_numpy()
  meta['status'] = status
  meta['weights_file'] = np.full(n, weights_file, object)
  meta['weights_row'] = np.arange(n, dtype=np.int64)
  return pd.DataFrame(meta), notes


class SmallCNNZoo(Zoo):
  """A Small-CNN-Zoo-format directory opened in place as a popnet Zoo (see `open_smallcnnzoo`).

  weights(arch) is weights.npy memory-mapped read-only; its layout is layout.csv's order (bias before kernel)
  with popnet's tensor names, so zoo.unflatten / popnet.models.apply / meta work unchanged. Metrics may be NaN
  (the release keeps rows of runs that diverged): such rows have status 'diverged'."""

  def check(self) -> None:
    weights_file = os.path.join(self.path, WEIGHTS_FILE)
    meta_file = os.path.join(self.path, METRICS_FILE)
    try:
      weights = self._memmap(WEIGHTS_FILE)
    except (OSError, ValueError) as e:
      raise InteropError(f'{weights_file}: cannot be memory-mapped ({e}); the file is truncated or corrupted') from e
    (arch, layout), = self.layouts.items()
    if weights.ndim != 2 or weights.shape[1] != layout.size or weights.dtype.kind != 'f':
      raise InteropError(f'{weights_file}: shape {weights.shape} {weights.dtype} does not match '
                         f'{os.path.join(self.path, LAYOUT_FILE)} ({layout.size} values per row)')
    if weights.shape[0] != len(self.metadata):
      raise InteropError(f'{weights_file} has {weights.shape[0]} rows but {meta_file} has {len(self.metadata)}; '
                         f'the two must be row-aligned')
    if self.metadata.duplicated(['member_id', 'snapshot']).any():
      raise InteropError(f'{meta_file}: duplicated (modeldir, snapshot) rows')

  def weights(self, arch: str) -> np.ndarray:
    if arch not in self.layouts:
      raise KeyError(f'{self.path} holds architecture {self.architectures}, not {arch!r}')
    return self._memmap(WEIGHTS_FILE)


def _input_hw(metadata: pd.DataFrame) -> tuple[int, int]:
  from popnet import data
  names = [d for d in pd.unique(metadata['dataset'].astype(str))] if 'dataset' in metadata else []
  shapes = {data.DATASETS[d].shape[:2] for d in names if d in data.DATASETS}
  return shapes.pop() if len(shapes) == 1 else (32, 32)


def _resolve_arch(path: str, layout: Layout, metadata: pd.DataFrame) -> tuple[models.Arch, tuple[int, int, int]]:
  """The popnet architecture of a Small CNN Zoo directory: popnet_arch.json if present, else the release's CNN
  (output count and input channels read off layout.csv). Its tensors must be exactly layout.csv's."""
  layout_file, sidecar = os.path.join(path, LAYOUT_FILE), os.path.join(path, ARCH_SIDECAR)
  if os.path.exists(sidecar):
    try:
      with open(sidecar) as f:
        d = json.load(f)
      arch, input_shape = arch_from_json(d['arch']), tuple(int(s) for s in d['input_shape'])
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise InteropError(f'{sidecar}: invalid ({e})') from e
  else:
    try:
      channels = layout.entry('conv_0/kernel').shape[2]
      outputs = layout.entry('output/kernel').shape[-1]
    except KeyError as e:
      raise InteropError(f'{layout_file}: not the Small CNN Zoo CNN (3 conv layers and a dense output) and there '
                         f'is no {ARCH_SIDECAR} naming the architecture') from e
    # the release's Keras Conv2D layers use their default VALID padding
    arch, input_shape = models.smallcnnzoo_arch(outputs, padding='VALID'), (*_input_hw(metadata), channels)
  missing, unexpected = _same_tensors(layout, arch.layout(input_shape))
  if missing or unexpected:
    raise InteropError(f'{layout_file}: tensors do not match popnet architecture {arch.name!r} on {input_shape}: '
                       f'missing {missing}, unexpected {unexpected}')
  return arch, input_shape


def _map_config(table: pd.DataFrame) -> pd.DataFrame:
  """Just the hyper-parameter renames (for choosing the input shape before the full mapping)."""
  return table.rename(columns={c: c[len('config.'):] for c in table.columns
                               if c.startswith('config.') and c[len('config.'):] in HPARAM_COLUMNS})


def open_smallcnnzoo(path: str) -> SmallCNNZoo:
  """A Small CNN Zoo directory (weights.npy, metrics.csv.gz, layout.csv) as a popnet Zoo, in place: weights.npy
  is memory-mapped read-only (nothing is copied), metadata is mapped to popnet's columns."""
  files = {f: os.path.join(path, f) for f in (WEIGHTS_FILE, METRICS_FILE, LAYOUT_FILE)}
  for f in files.values():
    if not os.path.exists(f):
      raise InteropError(f'{f}: not found; a Small CNN Zoo directory holds {", ".join(files)}')
  layout, names = read_layout_csv(files[LAYOUT_FILE])
  try:
    table = read_metadata(files[METRICS_FILE])
  except (OSError, EOFError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise InteropError(f'{files[METRICS_FILE]}: cannot be read ({e})') from e
  arch, input_shape = _resolve_arch(path, layout, _map_config(table))
  metadata, notes = release_metadata(table, arch.name, WEIGHTS_FILE, files[METRICS_FILE])
  if 'architecture' not in metadata:
    metadata.insert(5, 'architecture', smallcnnzoo_name(arch) if is_smallcnnzoo(arch) else arch.name)
  manifest = {'format': 'smallcnnzoo', 'source': os.path.abspath(path), 'complete': True,
              'members': int(metadata['member_id'].nunique()), 'architectures': {arch.name: arch_to_json(arch)},
              'input_shape': list(input_shape), 'varnames': names, 'notes': notes}
  zoo = SmallCNNZoo(path, manifest, metadata, {arch.name: layout})
  zoo.check()
  return zoo


def import_smallcnnzoo(src: str, out: str, block_bytes: int = DEFAULT_BLOCK_BYTES) -> str:
  """Converts a Small CNN Zoo directory into a popnet zoo at `out` (popnet's weight order, float32 via ZooWriter),
  row i -> row i, `block_bytes` of rows at a time. Rerunning on the same `out` skips rows already written.

  NaN metric values (the release's diverged runs) stay NaN, on rows whose status is 'diverged'."""
  zoo = open_smallcnnzoo(src)
  (name,) = zoo.architectures
  meta = zoo.metadata.copy()
  meta['weights_file'] = f'weights/{name}.npy'
  notes = list(zoo.manifest['notes'])
  manifest = {'imported_from': {'format': 'smallcnnzoo', 'path': os.path.abspath(src)},
              'members': zoo.manifest['members'], 'notes': notes, 'varnames': zoo.manifest['varnames']}
  writer = ZooWriter(out, {name: zoo.arch(name)}, zoo.input_shape, {name: len(meta)}, manifest)
  perm = permutation(zoo.layout(name), writer.layouts[name])
  source = zoo.weights(name)
  done = writer.written()
  step = _rows_per_block(source.shape[1], source.dtype.itemsize, block_bytes)
  for start in range(0, len(meta), step):
    block = meta.iloc[start:start + step]
    if done and all(k in done for k in zip(block['member_id'].tolist(), block['snapshot'].tolist())):
      continue
    rows = np.arange(start, start + len(block))
    writer.write(name, rows, np.asarray(source[start:start + len(block)])[:, perm], block.to_dict('records'))
  writer.write_manifest(complete=True)
  return out


# --- NWS ----------------------------------------------------------------------------------------------------------
def nws_to_popnet(vectors: np.ndarray, layout: Layout) -> np.ndarray:
  """NWS-order vectors [n, size] (float64) -> popnet-order float32 [n, size]: transposes each kernel
  (O, I, kh, kw) -> (kh, kw, I, O) and (out, in) -> (in, out); every other tensor is in place already."""
  vectors = np.asarray(vectors)
  n = vectors.shape[0]
  out = np.empty(vectors.shape, np.float32)
  for e in layout.entries:
    piece = vectors[:, e.start:e.end]
    if e.name == 'kernel' and len(e.shape) == 4:
      kh, kw, i, o = e.shape
      piece = piece.reshape(n, o, i, kh, kw).transpose(0, 3, 4, 2, 1)
    elif e.name == 'kernel' and len(e.shape) == 2:
      fan_in, fan_out = e.shape
      piece = piece.reshape(n, fan_out, fan_in).transpose(0, 2, 1)
    out[:, e.start:e.end] = piece.reshape(n, e.size)
  return out


def nws_part_sizes(layout: Layout) -> tuple[int, int]:
  """(conv part, FC part) value counts: NWS index CSVs' weightn_conv and weightn_fc."""
  conv = sum(e.size for e in layout.entries if e.layer.startswith('conv_'))
  return conv, layout.size - conv


@dataclasses.dataclass
class NwsNet:
  """One NWS network directory, read up to its weights."""
  path: str
  index: str                    # the index CSV that listed it ('' when found by directory)
  index_row: dict | None
  hparams: dict[str, Any]
  arch: models.Arch
  bins: list[str]
  error_file: str | None
  stat_file: str | None


def _as_bool(value, file: str, column: str) -> bool:
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  text = str(value).strip().lower()
  if text in ('true', '1', '1.0'):
    return True
  if text in ('false', '0', '0.0'):
    return False
  raise InteropError(f'{file}: {column} = {value!r} is not a boolean')


def _code(value, names: Sequence[str], file: str, column: str) -> str:
  try:
    i = int(value)
  except (TypeError, ValueError):
    if str(value) in names:
      return str(value)
    raise InteropError(f'{file}: {column} = {value!r}; expected a code 0..{len(names) - 1} ({names})') from None
  if not 0 <= i < len(names):
    raise InteropError(f'{file}: {column} = {value!r}; expected a code 0..{len(names) - 1} ({names})')
  return names[i]


def nws_hparams(row: dict, file: str) -> dict[str, Any]:
  """meta.csv's 13 NWS hyper-parameters -> popnet's hyper-parameter names and values."""
  missing = [c for c in NWS_COLUMNS if c not in row]
  if missing:
    raise InteropError(f'{file}: missing columns {missing}; NWS meta.csv has {list(NWS_COLUMNS)}')
  try:
    ints = {c: int(row[c]) for c in ('batch_size', 'filter_size', 'depth_conv', 'depth_fc', 'width_conv',
                                      'width_fc')}
    lr = float(row['lrate'])
  except (TypeError, ValueError) as e:
    raise InteropError(f'{file}: a numeric hyper-parameter does not parse ({e})') from e
  dataset = str(row['dataset'])
  return dict(architecture='nws', dataset=NWS_DATASETS.get(dataset, dataset), learning_rate=lr,
              batch_size=ints['batch_size'], batch_norm=_as_bool(row['batch_norm'], file, 'batch_norm'),
              augment=_as_bool(row['augmentation'], file, 'augmentation'),
              optimizer=_code(row['optimizer'], NWS_OPTIMIZERS, file, 'optimizer'),
              activation=_code(row['activation'], NWS_ACTIVATIONS, file, 'activation'),
              init=_code(row['initialization'], NWS_INITS, file, 'initialization'),
              filter_size=ints['filter_size'], depth_conv=ints['depth_conv'], depth_fc=ints['depth_fc'],
              width_conv=ints['width_conv'], width_fc=ints['width_fc'], **NWS_CONSTANTS)


_BIN = re.compile(r'^(\d+)\.bin$')


def read_nws_net(path: str, index: str = '', index_row: dict | None = None) -> NwsNet:
  """meta.csv, the list of weights/NNN.bin and the architecture of one NWS network directory."""
  meta_file = os.path.join(path, 'meta.csv')
  try:
    table = pd.read_csv(meta_file)
  except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
    raise InteropError(f'{meta_file}: cannot be read ({e})') from e
  if len(table) != 1:
    raise InteropError(f'{meta_file}: holds {len(table)} rows; NWS meta.csv has one')
  hp = nws_hparams(table.iloc[0].to_dict(), meta_file)
  try:
    arch = models.nws_arch(hp['filter_size'], hp['depth_conv'], hp['width_conv'], hp['depth_fc'], hp['width_fc'],
                           hp['batch_norm'], NWS_OUTPUTS)
  except ValueError as e:
    raise InteropError(f'{meta_file}: {e}') from e
  hp['arch'] = arch.name
  weights_dir = os.path.join(path, 'weights')
  found = sorted((int(m.group(1)), f) for f in (os.listdir(weights_dir) if os.path.isdir(weights_dir) else [])
                 for m in [_BIN.match(f)] if m)
  if not found:
    raise InteropError(f'{weights_dir}: no snapshots (weights/001.bin, 002.bin, ...)')
  if [k for k, _ in found] != list(range(1, len(found) + 1)):
    raise InteropError(f'{weights_dir}: snapshots {[f for _, f in found]} are not numbered 001..{len(found):03d}')
  error_file, stat_file = os.path.join(path, 'error.bin'), os.path.join(path, 'stat.bin')
  return NwsNet(path, index, index_row, hp, arch, [os.path.join(weights_dir, f) for _, f in found],
                error_file if os.path.exists(error_file) else None, stat_file if os.path.exists(stat_file) else None)


def _resolve_net_dir(path: str, index_file: str, src: str) -> str:
  parts = [p for p in str(path).replace('\\', '/').split('/') if p]
  candidates = [path] if os.path.isabs(path) else []
  candidates += [os.path.join(os.path.dirname(index_file), path), os.path.join(src, path)]
  if parts:
    candidates += [os.path.join(src, *parts[-2:]), os.path.join(src, parts[-1])]
  for c in candidates:
    if os.path.isfile(os.path.join(c, 'meta.csv')):
      return os.path.normpath(c)
  raise InteropError(f'{index_file}: network directory {path!r} not found (tried {candidates})')


def discover_nws(src: str, index: Sequence[str] | None = None) -> list[tuple[str, str, dict | None]]:
  """(net dir, index name, index row) of every network, in a stable order: the rows of the index CSVs (given, or
  the *.csv with a `path` column directly in `src`, by name), else `src` itself if it holds meta.csv, else every
  directory under `src` holding meta.csv (sorted)."""
  if not index and os.path.isfile(os.path.join(src, 'meta.csv')):
    return [(os.path.normpath(src), '', None)]
  if not index:
    index = []
    for f in sorted(os.listdir(src)) if os.path.isdir(src) else []:
      if f.endswith('.csv'):
        try:
          header = pd.read_csv(os.path.join(src, f), nrows=0).columns
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
          continue
        if 'path' in header:
          index.append(os.path.join(src, f))
  nets, seen = [], set()
  for file in index:
    try:
      table = pd.read_csv(file)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
      raise InteropError(f'{file}: cannot be read ({e})') from e
    if 'path' not in table:
      raise InteropError(f"{file}: no 'path' column; an NWS index CSV lists each network's directory in path")
    name = os.path.splitext(os.path.basename(file))[0]
    for row in table.to_dict('records'):
      net = _resolve_net_dir(str(row['path']), file, src)
      if net not in seen:
        seen.add(net)
        nets.append((net, name, row))
  if index:
    return nets
  for root, dirs, files in os.walk(src):
    dirs.sort()
    dirs[:] = [d for d in dirs if d not in ('weights', 'weights_tmp')]
    if 'meta.csv' in files:
      nets.append((os.path.normpath(root), '', None))
  if not nets:
    raise InteropError(f'{src}: no NWS network directories (meta.csv + weights/NNN.bin) and no index CSV with a '
                       f'path column')
  return nets


def _snapshot_records(net: NwsNet, n: int) -> list[dict]:
  """Per snapshot: epoch, step and accuracies from error.bin (stat.bin for the epoch count without it)."""
  out = [{} for _ in range(n)]
  evaluations, table = None, None
  if net.error_file:
    raw = np.fromfile(net.error_file, '<f8')
    if raw.size == 0 or raw.size % 5:
      raise InteropError(f'{net.error_file}: {raw.size} float64 values, not [evaluations, 5] (step, train/val/test '
                         f'error %, smoothed val error %)')
    table = raw.reshape(-1, 5)
    evaluations = len(table)
  elif net.stat_file:
    stat = np.fromfile(net.stat_file, '<f8')
    if stat.size < 1 or not np.isfinite(stat[0]) or stat[0] < 1:
      raise InteropError(f'{net.stat_file}: expected [evaluations, last step, epochs, seconds] float64')
    evaluations = int(stat[0])
  if evaluations is None:
    for k in range(n):
      out[k].update(epoch=np.nan, step=np.nan)
    return out
  exports = np.round(np.linspace(1, evaluations, NWS_SNAPSHOTS)).astype(np.int64)[:n] if n <= NWS_SNAPSHOTS \
      else np.round(np.linspace(1, evaluations, n)).astype(np.int64)
  for k, s in enumerate(exports):
    out[k]['epoch'] = int(s - 1)
    if table is not None:
      row = table[s - 1]
      out[k].update(step=int(row[0]), train_accuracy=1.0 - row[1] / 100.0, val_accuracy=1.0 - row[2] / 100.0,
                    test_accuracy=1.0 - row[3] / 100.0)
    else:
      out[k]['step'] = np.nan
  return out


def import_nws(src: str, out: str, index: Sequence[str] | None = None,
               block_bytes: int = DEFAULT_BLOCK_BYTES, log=None) -> str:
  """Converts NWS network directories into a popnet zoo at `out`, network by network (see the module docstring).
  member_id = the network's position in discovery order; rows of one architecture in that order, snapshot by
  snapshot. Rerunning on the same `out` skips networks already written."""
  nets = [read_nws_net(d, name, row) for d, name, row in discover_nws(src, index)]
  with_errors = [n for n in nets if n.error_file]
  if with_errors and len(with_errors) != len(nets):
    lacking = next(n for n in nets if not n.error_file)
    raise InteropError(f'{os.path.join(lacking.path, "error.bin")}: missing, while {len(with_errors)} other '
                       f'networks have one; import the two groups separately')
  archs = {n.arch.name: n.arch for n in nets}
  counts = {a: sum(len(n.bins) for n in nets if n.arch.name == a) for a in archs}
  notes = ['losses are not stored by NWS: no loss columns']
  if not with_errors:
    notes.append('no error.bin: no accuracy columns')
  manifest = {'imported_from': {'format': 'nws', 'path': os.path.abspath(src), 'index': list(index or [])},
              'members': len(nets), 'notes': notes}
  writer = ZooWriter(out, archs, NWS_INPUT_SHAPE, counts, manifest)
  done = writer.written()
  offsets = {a: 0 for a in archs}
  pending: dict[str, tuple[list, list, list]] = {}
  pending_bytes = 0

  def flush():
    nonlocal pending, pending_bytes
    for a, (rows, weights, records) in pending.items():
      writer.write(a, np.concatenate(rows), np.concatenate(weights), records)
    pending, pending_bytes = {}, 0

  src_abs = os.path.abspath(src)
  for member, net in enumerate(nets):
    a, layout = net.arch.name, writer.layouts[net.arch.name]
    rows = offsets[a] + np.arange(len(net.bins))
    offsets[a] += len(net.bins)
    if done and all((member, k) in done for k in range(len(net.bins))):
      continue
    if net.index_row is not None and {'weightn_conv', 'weightn_fc'} <= set(net.index_row):
      expected = nws_part_sizes(layout)
      given = (int(net.index_row['weightn_conv']), int(net.index_row['weightn_fc']))
      if given != expected:
        raise InteropError(f'{net.index}.csv: {net.path} has weightn_conv, weightn_fc = {given}, but its meta.csv '
                           f'architecture {a} has {expected}')
    vectors = np.empty((len(net.bins), layout.size), np.float64)
    for k, file in enumerate(net.bins):
      size = os.path.getsize(file)
      if size != 8 * layout.size:
        raise InteropError(f'{file}: {size} bytes = {size / 8:g} float64 values, but architecture {a} (from '
                           f'{os.path.join(net.path, "meta.csv")}) has {layout.size}')
      vectors[k] = np.fromfile(file, '<f8')
    weights = nws_to_popnet(vectors, layout)
    per_snapshot = _snapshot_records(net, len(net.bins))
    rel = os.path.relpath(os.path.abspath(net.path), src_abs)
    records = []
    for k in range(len(net.bins)):
      rec = dict(member_id=member, snapshot=k, **per_snapshot[k], **net.hparams,
                 status='ok' if np.isfinite(weights[k]).all() else 'diverged',
                 nws_path=net.path if rel.startswith('..') else rel, nws_index=net.index,
                 weights_file=f'weights/{a}.npy', weights_row=int(rows[k]))
      records.append(rec)
    bucket = pending.setdefault(a, ([], [], []))
    bucket[0].append(rows)
    bucket[1].append(weights)
    bucket[2].extend(records)
    pending_bytes += weights.nbytes
    if pending_bytes >= block_bytes:
      flush()
    if log is not None and ((member + 1) % 100 == 0 or member + 1 == len(nets)):
      log(f'{member + 1}/{len(nets)} networks converted')
  flush()
  writer.write_manifest(complete=True)
  return out


# --- command line -------------------------------------------------------------------------------------------------
def main(argv: Iterable[str] | None = None) -> int:
  p = argparse.ArgumentParser(prog='python -m popnet.interop', description=__doc__.split('\n')[0])
  sub = p.add_subparsers(dest='command', required=True)
  e = sub.add_parser('export', help='popnet zoo -> Small CNN Zoo files (weights.npy, metrics.csv.gz, layout.csv)')
  e.add_argument('--format', choices=['smallcnnzoo'], required=True)
  e.add_argument('--zoo', required=True, help='a popnet zoo (or the workdir holding zoo/)')
  e.add_argument('--out', required=True)
  e.add_argument('--arch', default=None, help='the architecture to export (required if the zoo has several)')
  e.add_argument('--only-ok', action='store_true', help="only rows with status == 'ok'")
  e.add_argument('--overwrite', action='store_true')
  e.add_argument('--block-mb', type=int, default=DEFAULT_BLOCK_BYTES >> 20, help='weights converted per step')
  i = sub.add_parser('import', help='Small CNN Zoo or NWS files -> popnet zoo')
  i.add_argument('--format', choices=['smallcnnzoo', 'nws'], required=True)
  i.add_argument('--src', required=True, help='smallcnnzoo: the directory of the three files; nws: a network '
                 'directory, a directory of them, or one holding the index CSVs')
  i.add_argument('--out', required=True, help='the popnet zoo to write')
  i.add_argument('--index', action='append', default=None, help='nws: index CSV(s) with a path column (repeatable)')
  i.add_argument('--block-mb', type=int, default=DEFAULT_BLOCK_BYTES >> 20, help='weights converted per step')
  a = p.parse_args(None if argv is None else list(argv))
  block = max(1, a.block_mb) << 20
  try:
    if a.command == 'export':
      r = export_smallcnnzoo(a.zoo, a.out, a.arch, a.only_ok, block, a.overwrite)
      print(f'wrote {r["rows"]} rows ({r["members"]} members) of {r["architecture"]}, {r["values"]} values each, '
            f'{r["varnames"]} varnames, to {r["out"]}')
    else:
      if a.format == 'smallcnnzoo':
        import_smallcnnzoo(a.src, a.out, block)
      else:
        import_nws(a.src, a.out, a.index, block, log=lambda s: print(s, file=sys.stderr))
      print(Zoo.open(a.out))
  except ZooError as err:
    print(f'error: {err}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
