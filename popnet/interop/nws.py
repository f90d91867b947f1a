"""NWS (Eilertsen et al. 2020, gabrieleilertsen/nws) network directories -> a popnet zoo.

docs/interchange.md describes the files, the weight order and the mapping.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet import zoo as zoo_schema
from popnet.interop.target import output_directory
from popnet.interop.common import DEFAULT_BLOCK_BYTES, InteropError, read_table
from popnet.layout import Layout
from popnet.zoo import ZooWriter

NWS_COLUMNS = ('dataset', 'lrate', 'batch_size', 'batch_norm', 'augmentation', 'optimizer', 'activation',
               'initialization', 'filter_size', 'depth_conv', 'depth_fc', 'width_conv', 'width_fc')
# index CSVs (nws_main_train.csv, ...): meta_classifier.py reads column 13 (nci) as weightn_conv by position
NWS_INDEX_COLUMNS = NWS_COLUMNS + ('weightn_conv', 'weightn_fc', 'path')
NWS_DATASETS = {'mnist': 'mnist', 'cifar10': 'cifar10', 'svhn': 'svhn_cropped', 'stl10': 'stl10',
                'fashion': 'fashion_mnist'}
NWS_OPTIMIZERS = ('adam', 'rmsprop', 'sgd')            # sgd = momentum SGD (0.95), as popnet's 'sgd'
NWS_ACTIVATIONS = ('relu', 'elu', 'sigmoid', 'tanh')
NWS_INITS = ('constant', 'normal', 'glorot_uniform', 'glorot_normal')
NWS_CONSTANTS = {'lr_decay': 0.96, 'dropout': 0.5, 'weight_decay': 0.0}
# classifier.py's tf.train optimizers: MomentumOptimizer(lr, 0.95); Adam and RMSProp with TF 1.x defaults
NWS_OPTIMIZER_CONSTANTS = {'momentum': 0.95, 'beta1': 0.9, 'beta2': 0.999, 'rms_decay': 0.9}
NWS_EPS = {'adam': 1e-8, 'rmsprop': 1e-10}             # momentum SGD has none: eps is left empty
NWS_STRING_COLUMNS = ('nws_path', 'nws_index')         # identifiers: '0001' is not the number 1
NWS_INPUT_SHAPE = (32, 32, 3)
NWS_OUTPUTS = 20
NWS_SNAPSHOTS = 20


def nws_to_popnet(vectors: np.ndarray, layout: Layout) -> np.ndarray:
  """NWS-order vectors [n, size] (float64) -> popnet-order float32 [n, size]: undoes `layout.columns('nws')`
  (each kernel (O, I, kh, kw) -> (kh, kw, I, O) and (out, in) -> (in, out); every other tensor is in place)."""
  vectors = np.asarray(vectors)
  out = np.empty(vectors.shape, np.float32)
  out[:, layout.columns('nws')] = vectors
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
  arch: arch_lib.Arch
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
  optimizer = _code(row['optimizer'], NWS_OPTIMIZERS, file, 'optimizer')
  return dict(architecture='nws', dataset=NWS_DATASETS.get(dataset, dataset), learning_rate=lr,
              batch_size=ints['batch_size'], batch_norm=_as_bool(row['batch_norm'], file, 'batch_norm'),
              augment=_as_bool(row['augmentation'], file, 'augmentation'),
              optimizer=optimizer, eps=NWS_EPS.get(optimizer, np.nan),
              activation=_code(row['activation'], NWS_ACTIVATIONS, file, 'activation'),
              init=_code(row['initialization'], NWS_INITS, file, 'initialization'),
              filter_size=ints['filter_size'], depth_conv=ints['depth_conv'], depth_fc=ints['depth_fc'],
              width_conv=ints['width_conv'], width_fc=ints['width_fc'], **NWS_CONSTANTS, **NWS_OPTIMIZER_CONSTANTS)


_BIN = re.compile(r'^(\d+)\.bin$')


def read_nws_net(path: str, index: str = '', index_row: dict | None = None) -> NwsNet:
  """meta.csv, the list of weights/NNN.bin and the architecture of one NWS network directory."""
  meta_file = os.path.join(path, 'meta.csv')
  table = read_table(meta_file)
  if len(table) != 1:
    raise InteropError(f'{meta_file}: holds {len(table)} rows; NWS meta.csv has one')
  hp = nws_hparams(table.iloc[0].to_dict(), meta_file)
  try:
    arch = arch_lib.nws_arch(hp['filter_size'], hp['depth_conv'], hp['width_conv'], hp['depth_fc'], hp['width_fc'],
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
    table = read_table(file, dtype={'path': str}, keep_default_na=False)
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


def _keep_identifiers_as_text(writer: ZooWriter) -> None:
  """On resume the writer has read metadata.csv back with every column parsed by value ('0001' -> 1); its
  identifier columns are read again as text, so that rewriting the file keeps them."""
  file = os.path.join(writer.path, zoo_schema.METADATA_FILE)
  if writer.metadata is None or not os.path.exists(file):
    return
  columns = [c for c in NWS_STRING_COLUMNS if c in writer.metadata]
  if columns:
    text = pd.read_csv(file, usecols=columns, dtype=str).fillna('')
    writer.metadata[columns] = text[columns].to_numpy()


def _check_error_files(nets: Sequence[NwsNet]) -> None:
  """All networks have error.bin or none has: one zoo has accuracy columns for every row or for none."""
  with_errors = [n for n in nets if n.error_file]
  if with_errors and len(with_errors) != len(nets):
    lacking = next(n for n in nets if not n.error_file)
    raise InteropError(f'{os.path.join(lacking.path, "error.bin")}: missing, while {len(with_errors)} other '
                       f'networks have one; import the two groups separately')


def _check_part_sizes(net: NwsNet, layout: Layout) -> None:
  """The index CSV's weightn_conv / weightn_fc (when given) match the meta.csv architecture's part sizes."""
  if net.index_row is None or not {'weightn_conv', 'weightn_fc'} <= set(net.index_row):
    return
  expected = nws_part_sizes(layout)
  given = (int(net.index_row['weightn_conv']), int(net.index_row['weightn_fc']))
  if given != expected:
    raise InteropError(f'{net.index}.csv: {net.path} has weightn_conv, weightn_fc = {given}, but its meta.csv '
                       f'architecture {net.arch.name} has {expected}')


def _read_vectors(net: NwsNet, layout: Layout) -> np.ndarray:
  """The network's snapshot files as popnet-order float32 rows [snapshots, layout.size]; a file of the wrong
  size is an error naming it."""
  vectors = np.empty((len(net.bins), layout.size), np.float64)
  for k, file in enumerate(net.bins):
    size = os.path.getsize(file)
    if size != 8 * layout.size:
      raise InteropError(f'{file}: {size} bytes = {size / 8:g} float64 values, but architecture {net.arch.name} '
                         f'(from {os.path.join(net.path, "meta.csv")}) has {layout.size}')
    vectors[k] = np.fromfile(file, '<f8')
  return nws_to_popnet(vectors, layout)


def _net_records(net: NwsNet, member: int, rows: np.ndarray, weights: np.ndarray, src_abs: str) -> list[dict]:
  """One metadata record per snapshot of `net`: hyper-parameters, metrics, status and where it came from."""
  per_snapshot = _snapshot_records(net, len(net.bins))
  rel = os.path.relpath(os.path.abspath(net.path), src_abs)
  return [dict(member_id=member, snapshot=k, **per_snapshot[k], **net.hparams,
               status='ok' if np.isfinite(weights[k]).all() else 'diverged',
               nws_path=net.path if rel.startswith('..') else rel, nws_index=net.index,
               weights_file=zoo_schema.weights_file(net.arch.name), weights_row=int(rows[k]))
          for k in range(len(net.bins))]


class _BlockedWrites:
  """Collects (rows, weights, records) per architecture and writes them in blocks of about `block_bytes`."""

  def __init__(self, writer: ZooWriter, block_bytes: int):
    self.writer, self.block_bytes = writer, block_bytes
    self.pending: dict[str, tuple[list, list, list]] = {}
    self.pending_bytes = 0

  def add(self, arch: str, rows: np.ndarray, weights: np.ndarray, records: list[dict]) -> None:
    bucket = self.pending.setdefault(arch, ([], [], []))
    bucket[0].append(rows)
    bucket[1].append(weights)
    bucket[2].extend(records)
    self.pending_bytes += weights.nbytes
    if self.pending_bytes >= self.block_bytes:
      self.flush()

  def flush(self) -> None:
    for arch, (rows, weights, records) in self.pending.items():
      self.writer.write(arch, np.concatenate(rows), np.concatenate(weights), records)
    self.pending, self.pending_bytes = {}, 0


def _open_writer(src: str, out: str, index: Sequence[str] | None, nets: Sequence[NwsNet]) -> ZooWriter:
  """The zoo writer at `out`: one weights file per architecture, the import recorded in the manifest."""
  archs = {n.arch.name: n.arch for n in nets}
  counts = {a: sum(len(n.bins) for n in nets if n.arch.name == a) for a in archs}
  notes = ['losses are not stored by NWS: no loss columns']
  if not any(n.error_file for n in nets):
    notes.append('no error.bin: no accuracy columns')
  manifest = {'imported_from': nws_source(src, index),
              'members': len(nets), 'notes': notes, 'string_columns': list(NWS_STRING_COLUMNS)}
  writer = ZooWriter(out, archs, NWS_INPUT_SHAPE, counts, manifest)
  _keep_identifiers_as_text(writer)
  return writer


def nws_source(src: str, index: Sequence[str] | None) -> dict:
  """What the manifest records of an import's source: names, no path of this machine."""
  return {'format': 'nws', 'path': os.path.basename(os.path.normpath(src)),
          'index': [os.path.basename(i) for i in index or []]}


def import_nws(src: str, out: str, index: Sequence[str] | None = None,
               block_bytes: int = DEFAULT_BLOCK_BYTES, log=None, overwrite: bool = False) -> str:
  """Converts NWS network directories into a popnet zoo at `out`, network by network (docs/interchange.md).
  member_id = the network's position in discovery order; rows of one architecture in that order, snapshot by
  snapshot. Rerunning on the same `out` skips networks already written."""
  nets = [read_nws_net(d, name, row) for d, name, row in discover_nws(src, index)]
  _check_error_files(nets)
  with output_directory(out, 'import', overwrite, nws_source(src, index)):
    _import_nets(src, out, index, nets, block_bytes, log)
  return out


def _import_nets(src, out, index, nets, block_bytes, log) -> None:
  writer = _open_writer(src, out, index, nets)
  done = writer.written()
  blocks = _BlockedWrites(writer, block_bytes)
  offsets = {a: 0 for a in writer.layouts}
  for member, net in enumerate(nets):
    a, layout = net.arch.name, writer.layouts[net.arch.name]
    rows = offsets[a] + np.arange(len(net.bins))
    offsets[a] += len(net.bins)
    if done and all((member, k) in done for k in range(len(net.bins))):
      continue
    _check_part_sizes(net, layout)
    weights = _read_vectors(net, layout)
    blocks.add(a, rows, weights, _net_records(net, member, rows, weights, os.path.abspath(src)))
    if log is not None and ((member + 1) % 100 == 0 or member + 1 == len(nets)):
      log(f'{member + 1}/{len(nets)} networks converted')
  blocks.flush()
  writer.write_manifest(complete=True)
  writer.close()
