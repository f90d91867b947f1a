"""layout.csv, the Small CNN Zoo's table of tensors in a weight row, and the variable names in it
(docs/interchange.md)."""
from __future__ import annotations

import ast
import dataclasses
import math
import re
from typing import Sequence

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet.interop.common import InteropError, read_table
from popnet.layout import Layout
from popnet.zoo import atomic_write_text

LAYOUT_COLUMNS = ('varname', 'start', 'end', 'shape', 'start_idx', 'end_idx')
EXPORT_TENSOR_ORDER = ('bias', 'kernel', 'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var')


def is_smallcnnzoo(arch: arch_lib.Arch) -> bool:
  """True for the Small CNN Zoo's CNN, SAME or VALID padded (whatever the output count and name)."""
  return any(dataclasses.replace(arch, name='x') == dataclasses.replace(arch_lib.smallcnnzoo_arch(arch.num_outputs, p),
                                                                        name='x') for p in arch_lib.PADDINGS)


def smallcnnzoo_name(arch: arch_lib.Arch) -> str:
  """The preset name of a Small CNN Zoo CNN: 'smallcnnzoo' (SAME, popnet's default) or 'smallcnnzoo_valid'."""
  return arch_lib.smallcnnzoo_arch(arch.num_outputs, arch.conv[0].padding).name


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
  table = read_table(path)
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


def same_tensors(a: Layout, b: Layout) -> tuple[list, list]:
  sa, sb = {(e.path, e.shape) for e in a.entries}, {(e.path, e.shape) for e in b.entries}
  return sorted(sb - sa), sorted(sa - sb)
