"""The Small CNN Zoo release's files and metrics columns, and how popnet's metadata maps onto them and back.

docs/interchange.md has the mapping table and the release code it was checked against.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet import hparams
from popnet.interop.layout_csv import is_smallcnnzoo

WEIGHTS_FILE = 'weights.npy'
METRICS_FILE = 'metrics.csv.gz'
LAYOUT_FILE = 'layout.csv'
ARCH_SIDECAR = 'popnet_arch.json'
RELEASE_METRICS = ('test_accuracy', 'test_loss', 'train_accuracy', 'train_loss')
RELEASE_CONFIG = ('activation', 'b_init', 'dataset', 'dnn_architecture', 'dropout', 'epochs',
                  'epochs_between_checkpoints', 'init_std', 'l2reg', 'learning_rate', 'num_layers', 'num_units',
                  'optimizer', 'random_seed', 'train_fraction', 'w_init')
RELEASE_COLUMNS = tuple(f'config.{c}' for c in RELEASE_CONFIG) + ('modeldir', 'step') + RELEASE_METRICS
CHECKPOINT = 'checkpoint'            # popnet's name for the metrics file's unnamed first column
CHECKPOINT_PREFIX = 'permanent_ckpt-'
OPTIMIZER_STEP = 'optimizer_step'    # popnet's optimizer step in an export (the release's `step` is the epoch)
HPARAM_COLUMNS = tuple(hparams.PARAMS) + ('seed',)   # exported as config.<name> unless renamed below
SAME_NAME = ('activation', 'dataset', 'dropout', 'learning_rate', 'optimizer')
W_INIT = {'constant': 'constant', 'normal': 'RandomNormal', 'glorot_uniform': 'glorot_uniform',
          'glorot_normal': 'glorot_normal', 'he_normal': 'he_normal'}   # popnet init -> Keras initializer name
INIT_STD = {'constant': 0.0, 'normal': 1.0}   # schemes with one std; the others scale by fan-in/out
EXPORT_VERSION = 2


def checkpoint_paths(modeldir, step) -> np.ndarray:
  """`<modeldir>/permanent_ckpt-<step>`: the checkpoint path train_network.py saves (the release's row index)."""
  return np.array([f'{d}/{CHECKPOINT_PREFIX}{int(s)}' for d, s in zip(modeldir, step)], dtype=object)


def _renamed_columns(rows: pd.DataFrame) -> dict[str, tuple[str, Any]]:
  """release column -> (popnet column, release values) for the popnet columns the release spells differently."""
  out = {}
  if 'init' in rows:
    unknown = sorted(set(rows['init'].astype(str)) - set(W_INIT))
    if unknown:
      raise ValueError(f'init values {unknown} have no Keras initializer name; known: {sorted(W_INIT)}')
    out['config.w_init'] = ('init', rows['init'].astype(str).map(W_INIT).to_numpy(dtype=object))
  if 'weight_decay' in rows:  # Keras l2(l) adds l * sum(w^2) to the loss: gradient 2 l w; optax adds wd * w
    out['config.l2reg'] = ('weight_decay', rows['weight_decay'].to_numpy(np.float64) / 2)
  if 'seed' in rows:
    out['config.random_seed'] = ('seed', rows['seed'].to_numpy())
  return out


def _run_constants(rows: pd.DataFrame, manifest: dict[str, Any], arch: arch_lib.Arch) -> dict[str, Any]:
  """Release config columns with no popnet row column: from the manifest and the architecture (NaN: no
  counterpart)."""
  config = manifest.get('config') or {}
  widths = {layer.features for layer in arch.conv}
  init_std = rows['init'].astype(str).map(INIT_STD).to_numpy(np.float64) if 'init' in rows else np.nan
  val_fraction = config.get('val_fraction')
  return {'config.b_init': 'zeros', 'config.dnn_architecture': 'cnn' if is_smallcnnzoo(arch) else arch.name,
          'config.epochs': config['epochs'] if isinstance(config.get('epochs'), int) else np.nan,
          'config.epochs_between_checkpoints': np.nan, 'config.init_std': init_std,
          'config.num_layers': len(arch.conv), 'config.num_units': widths.pop() if len(widths) == 1 else np.nan,
          'config.train_fraction': 1.0 - val_fraction if isinstance(val_fraction, (int, float)) else np.nan}


def release_config(rows: pd.DataFrame, manifest: dict[str, Any], arch: arch_lib.Arch):
  """popnet rows -> (the release's 16 config.* columns in its order; popnet's other hyper-parameters and the rows'
  own config.* columns, sorted; {release column: popnet column} renamed; release columns derived from the
  manifest or the architecture, which an import of the export drops)."""
  n = len(rows)
  columns: dict[str, Any] = {f'config.{c}': rows[c].to_numpy() for c in SAME_NAME if c in rows}
  renamed = _renamed_columns(rows)
  columns.update({release: values for release, (_, values) in renamed.items()})
  constants = {c: v for c, v in _run_constants(rows, manifest, arch).items() if c not in columns}
  columns.update(constants)
  derived = set(constants) | {f'config.{c}' for c in SAME_NAME if c not in rows}
  for c in rows.columns:
    if c.startswith('config.'):  # a zoo imported from the release keeps the release's own columns: they win
      columns[c] = rows[c].to_numpy()
      derived.discard(c)
      renamed.pop(c, None)
  ordered = {c: columns.get(c, np.full(n, np.nan)) for c in RELEASE_COLUMNS if c.startswith('config.')}
  mapped = {'init', 'weight_decay', 'seed', *SAME_NAME}
  extra = {f'config.{c}': rows[c].to_numpy() for c in rows.columns if c in HPARAM_COLUMNS and c not in mapped}
  extra.update({c: v for c, v in columns.items() if c not in ordered})
  return (ordered, {c: extra[c] for c in sorted(extra)}, {release: popnet for release, (popnet, _) in renamed.items()},
          sorted(derived))


def from_popnet_export(table: pd.DataFrame, export: dict[str, Any]) -> pd.DataFrame:
  """A popnet export's metrics table (EXPORT_VERSION 2) with popnet's columns restored: derived columns dropped,
  renamed ones renamed back (init, weight_decay = 2 * l2reg, seed), `step` = the optimizer step."""
  table = table.drop(columns=[c for c in (*export.get('derived', ()), CHECKPOINT) if c in table])
  inverse = {'init': lambda v: v.map({k: p for p, k in W_INIT.items()}), 'weight_decay': lambda v: v * 2}
  for release, popnet in export.get('renamed', {}).items():
    if release in table:
      values = table.pop(release)
      table[popnet] = inverse[popnet](values) if popnet in inverse else values
  if OPTIMIZER_STEP in table:
    table['step'] = table.pop(OPTIMIZER_STEP)
  return table
