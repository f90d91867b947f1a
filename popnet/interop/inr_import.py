"""The DWS or NFN file tree (popnet/interop/inr_trees.py) -> a popnet zoo: one row per INR file, sealed and
checksummed by ZooWriter, with label, split, image index and view as metadata.

Every file named by the tree is untrusted: paths from the splits file must stay inside --src (no absolute path,
no '..', no symlink out), labels must be non-negative integers, every .pth is read with
torch.load(weights_only=True) and must hold exactly the family's tensors. A popnet export carries a sidecar
(popnet_inr.json, popnet_inr_metadata.csv) whose metadata is restored after checking it against the files;
without one (the original releases) the metadata is what the tree says, and the notes in the manifest say what
was assumed. Needs torch (`pip install .[torch]`), imported here only."""
from __future__ import annotations

import io
import json
import os
import re

import numpy as np
import pandas as pd

from popnet.arch import SirenArch, from_json, resolve
from popnet.interop import inr_state_dict, inr_trees
from popnet.interop.common import DEFAULT_BLOCK_BYTES, InteropError, rows_per_block
from popnet.interop.target import output_directory
from popnet.zoo import ZooWriter, read_metadata, weights_file
from popnet.zoo.names import inside, read_regular, safe_name

NFN_SPLIT_POINTS = (45000, 50000)  # classify_siren_configs/dset/*.yaml split_points
DEFAULT_INPUT_SHAPE = (28, 28, 1)


def import_inr(src: str, out: str, fmt: str, block_bytes: int = DEFAULT_BLOCK_BYTES, overwrite: bool = False,
               log=print) -> str:
  """Reads the `fmt` tree at `src` into a popnet zoo at `out` (a rerun of the same import resumes it)."""
  if not os.path.isdir(src):
    raise InteropError(f'--src {src}: not a directory; give the root of a {fmt.upper()} export')
  tree = _dws_tree(src) if fmt == 'dws' else _nfn_tree(src)
  table, arch, input_shape, notes = _metadata(src, fmt, tree)
  source = {'format': fmt, 'path': os.path.basename(os.path.normpath(src))}  # no path of this machine
  manifest = {'imported_from': source, 'members': len(table), 'notes': notes}
  vectors = _read_all(src, arch, table)
  with output_directory(out, 'import', overwrite, source):
    _write(out, arch, input_shape, table, vectors, manifest, block_bytes)
  for note in notes:
    log(f'note: {note}')
  return out


# --- the trees ----------------------------------------------------------------------------------------------------
def _dws_tree(src: str) -> pd.DataFrame:
  """path, label, split of every entry of the one <p>_splits.json at the root of `src`."""
  found = sorted(n for n in os.listdir(src) if n.endswith('_splits.json'))
  if len(found) != 1:
    raise InteropError(f'{src}: holds {found or "no"} <prefix>_splits.json files; a DWS tree has exactly one '
                       f'(e.g. fmnist_splits.json)')
  where = os.path.join(src, found[0])
  try:
    splits = json.loads(read_regular(where).decode('utf-8'))
  except (UnicodeDecodeError, ValueError) as e:
    raise InteropError(f'{where}: not JSON ({e})') from e
  if not isinstance(splits, dict) or not set(splits) <= set(inr_trees.SPLITS):
    raise InteropError(f'{where}: must be {{split: {{"path": [...], "label": [...]}}}} with splits in '
                       f'{list(inr_trees.SPLITS)}')
  rows = []
  for split, entry in splits.items():
    paths, labels = (entry.get('path'), entry.get('label')) if isinstance(entry, dict) else (None, None)
    if not isinstance(paths, list) or not isinstance(labels, list) or len(paths) != len(labels):
      raise InteropError(f'{where}: {split!r} must hold "path" and "label" lists of one length')
    for path, label in zip(paths, labels):
      inside(src, path, where)
      rows.append({'path': path, 'label': _label(label, where), 'split': split})
  table = pd.DataFrame(rows, columns=['path', 'label', 'split'])
  if table['path'].duplicated().any():
    raise InteropError(f'{where}: lists {table.loc[table["path"].duplicated(), "path"].iloc[0]} twice')
  return table.assign(prefix=found[0][:-len('_splits.json')])


def _label(value, where: str) -> int:
  """A label as the loaders read it (int(label)): an int or a string of digits, >= 0."""
  if isinstance(value, bool) or not isinstance(value, (int, str)) or (
      isinstance(value, str) and not re.fullmatch(r'\d{1,9}', value)) or int(value) < 0:
    raise InteropError(f'{where}: label {value!r} is not a non-negative integer (allowed: 0, 1, 2, ... or their '
                       f'digits as a string)')
  return int(value)


def _nfn_tree(src: str) -> pd.DataFrame:
  """path, label, view, image of every net<idx>.pth in the randinit_smaller folders of the one siren_<d>_wts."""
  roots = [src] if inr_trees.NFN_ROOT.fullmatch(os.path.basename(os.path.normpath(src))) else \
      sorted(n for n in os.listdir(src) if inr_trees.NFN_ROOT.fullmatch(n))
  if len(roots) != 1:
    raise InteropError(f'{src}: holds {roots or "no"} siren_<dataset>_wts folders; an NFN tree has exactly one')
  root_rel = '' if roots[0] == src else roots[0]
  base = inside(src, root_rel, src) if root_rel else src
  rows = []
  for folder in sorted(os.listdir(base)):
    match = inr_trees.NFN_FOLDER.fullmatch(folder)
    if not match or not os.path.isdir(os.path.join(base, folder)):
      continue
    view = 0 if match.group(1) is None else int(match.group(1)) + 1
    for file in sorted(os.listdir(os.path.join(base, folder))):
      got = inr_trees.NFN_FILE.fullmatch(file)
      if got:
        rel = '/'.join(p for p in (root_rel, folder, file) if p)
        inside(src, rel, src)
        rows.append({'path': rel, 'label': int(match.group(2)), 'view': view, 'image': int(got.group(1))})
  table = pd.DataFrame(rows, columns=['path', 'label', 'view', 'image'])
  if not len(table):
    raise InteropError(f'{base}: holds no randinit_smaller_<label>s/net<idx>.pth files')
  twice = table[table.duplicated(['image', 'view'], keep=False)]
  if len(twice):
    raise InteropError(f'{base}: image {twice["image"].iloc[0]} view {twice["view"].iloc[0]} is in '
                       f'{sorted(twice["path"].head(2))} (two labels for one fit)')
  name = inr_trees.NFN_ROOT.fullmatch(os.path.basename(os.path.normpath(base))).group(1)
  return table.sort_values(['image', 'view'], kind='stable').reset_index(drop=True).assign(prefix=name)


# --- metadata -----------------------------------------------------------------------------------------------------
def _metadata(src: str, fmt: str, tree: pd.DataFrame):
  """(metadata rows in tree order, arch, input shape, notes): the sidecar's, checked against the tree, or the
  tree's own."""
  if os.path.lexists(os.path.join(src, inr_trees.SIDECAR)):
    return _from_sidecar(src, fmt, tree)
  arch, notes = resolve(f'siren_{fmt}'), [f'no {inr_trees.SIDECAR} (not a popnet export): architecture '
                                          f'siren_{fmt}, input shape {DEFAULT_INPUT_SHAPE}']
  names = inr_trees.DWS_PREFIX if fmt == 'dws' else inr_trees.NFN_NAME
  table = tree.drop(columns='prefix').assign(dataset=inr_trees.dataset_of(tree['prefix'].iloc[0], names))
  table = _dws_images(table, notes) if fmt == 'dws' else _nfn_splits(table, notes)
  table.insert(0, 'member_id', np.arange(len(table)))
  table = table.assign(snapshot=0, arch=arch.name, architecture=arch.name, status='ok', source_path=table['path'])
  return table, arch, DEFAULT_INPUT_SHAPE, notes


def _dws_images(table: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
  """image (index into train + test) and view 0 from <p>_inrs/{train,test}/model_<i>.pth."""
  parsed = [inr_trees.DWS_MODEL.fullmatch(p) for p in table['path']]
  folder = np.array([m.group(1) if m else '' for m in parsed])
  index = np.array([int(m.group(2)) if m else -1 for m in parsed], np.int64)
  n_train = int(index[folder == 'train'].max()) + 1 if (folder == 'train').any() else 0
  notes.append(f'image = i of train/model_<i>.pth, {n_train} + i of test/model_<i>.pth ({n_train} = the largest '
               f'train index + 1); -1 for {int((index < 0).sum())} paths of another form')
  image = np.where(folder == 'test', n_train + index, index)
  return table.assign(image=np.where(index < 0, -1, image), view=0)


def _nfn_splits(table: pd.DataFrame, notes: list[str]) -> pd.DataFrame:
  val, test = NFN_SPLIT_POINTS
  notes.append(f'split by index as NFN\'s configs: train < {val} <= val < {test} <= test')
  image = table['image'].to_numpy()
  return table.assign(split=np.where(image < val, 'train', np.where(image < test, 'val', 'test')))


def _from_sidecar(src: str, fmt: str, tree: pd.DataFrame):
  where = os.path.join(src, inr_trees.SIDECAR)
  try:
    info = json.loads(read_regular(where).decode('utf-8'))
    arch = from_json(info['arch'])
    input_shape = tuple(int(s) for s in info['input_shape'])
    strings = [str(c) for c in info.get('string_columns', [])]
    arch.layout()  # a malformed architecture fails here, not inside the writer
  except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise InteropError(f'{where}: invalid ({e!r})') from e
  if not isinstance(arch, SirenArch) or arch.family != fmt or len(input_shape) != 3:
    raise InteropError(f'{where}: describes {info.get("arch")} on {info.get("input_shape")}; a {fmt.upper()} '
                       f'tree holds siren_{fmt} SIRENs on an [H, W, C] grid')
  safe_name(arch.name, 'architecture', where)
  meta_file = os.path.join(src, inr_trees.SIDECAR_METADATA)
  inside(src, inr_trees.SIDECAR_METADATA, where)
  try:
    meta = read_metadata(io.BytesIO(read_regular(meta_file)), strings)
  except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
    raise InteropError(f'{meta_file}: cannot be parsed ({e})') from e
  return _agree(meta, tree, meta_file), arch, input_shape, []


def _agree(meta: pd.DataFrame, tree: pd.DataFrame, meta_file: str) -> pd.DataFrame:
  """The sidecar's rows in tree order, after checking that they name exactly the tree's files with its labels,
  splits and images."""
  if 'path' not in meta or meta['path'].duplicated().any() or set(meta['path']) != set(tree['path']):
    raise InteropError(f'{meta_file}: does not list exactly the INR files of the tree (one row per file, by '
                       f'path); it was edited, or files were added or removed')
  meta = meta.set_index('path').loc[tree['path']].reset_index()
  for column in [c for c in ('label', 'split', 'view', 'image') if c in tree]:
    if column not in meta or (meta[column].astype(str).to_numpy() != tree[column].astype(str).to_numpy()).any():
      raise InteropError(f'{meta_file}: its {column} column disagrees with the tree\'s files; refused')
  return meta


# --- writing ------------------------------------------------------------------------------------------------------
def _read_all(src: str, arch: SirenArch, table: pd.DataFrame) -> np.ndarray:
  """Every INR file of the tree as a vector [n, values], all checked before anything is written."""
  layout = arch.layout()
  return np.stack([_read_inr(src, p, arch, layout, label) for p, label in zip(table['path'], table['label'])])


def _read_inr(src: str, path: str, arch: SirenArch, layout, label: int) -> np.ndarray:
  full = inside(src, path, src)
  state = inr_state_dict.load(full)
  if isinstance(state, dict) and 'label' in state and (
      isinstance(state['label'], bool) or not isinstance(state['label'], int) or state['label'] != int(label)):
    raise InteropError(f'{full}: its label {state["label"]!r} is not the {int(label)} its splits file gives')
  return inr_state_dict.from_state_dict(arch, layout, state, full)


def _write(out, arch: SirenArch, input_shape, table: pd.DataFrame, vectors: np.ndarray, manifest: dict,
           block_bytes: int) -> None:
  writer = ZooWriter(out, {arch.name: arch}, input_shape, {arch.name: len(table)}, manifest)
  done = writer.written()
  records = table.drop(columns='path').assign(weights_file=weights_file(arch.name),
                                               weights_row=np.arange(len(table)))
  step = rows_per_block(vectors.shape[1], 4, block_bytes)
  for start in range(0, len(table), step):
    block = records.iloc[start:start + step]
    if done and all(k in done for k in zip(block['member_id'].tolist(), block['snapshot'].tolist())):
      continue
    writer.write(arch.name, np.arange(start, start + len(block)), vectors[start:start + step],
                 block.to_dict('records'))
  writer.write_manifest(complete=True)
  writer.close()
