"""Fixed-order flattening of a network's variables into one vector, and back.

A zoo stores every snapshot as one float32 row. The row's order is the network's forward order (layer by
layer, as the architecture lists them), never the order of sorted dict keys, so `conv_10` follows `conv_2`.
Within a layer the order is: kernel, bias, batch-norm beta, gamma, moving mean, moving variance (the NWS
order, as NWS exports its networks: docs/interchange.md). Kernels are stored as the model uses them, C order:
convolutions HWIO (height, width, in, out), dense layers (in, out).

Other readings of the same vector (`Layout.columns`): order 'nws' writes each output unit's weights contiguously,
exactly as NWS's exporter does (gabrieleilertsen/nws model.py `print_all_vars`: a conv kernel by output filter,
then input channel, each kh x kw kernel C-ordered; a dense kernel by output unit, its incoming weights
contiguous; 1-D tensors as they are), and a meta-model's input controls drop the batch-norm running statistics
(`running_stats`: the 'batch_stats' collection) or every batch-norm tensor (`batchnorm`), found from the entries'
collections and names alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np

ORDERS = ('popnet', 'nws')   # value orders within tensors (Layout.columns)

@dataclasses.dataclass(frozen=True)
class LayoutEntry:
  """One tensor of the flattened vector: rows[start:end] reshaped to `shape`."""
  collection: str  # 'params' or 'batch_stats'
  layer: str       # a module path: nested modules (a user's Flax network) are joined by '/'

  name: str
  shape: tuple[int, ...]
  start: int
  end: int

  @property
  def path(self) -> str:
    return f'{self.layer}/{self.name}'

  @property
  def size(self) -> int:
    return self.end - self.start


@dataclasses.dataclass(frozen=True)
class Layout:
  """The ordered table of tensors that make up one architecture's flattened vector."""
  entries: tuple[LayoutEntry, ...]

  @classmethod
  def from_specs(cls, specs: Iterable[tuple[str, str, str, Sequence[int]]]) -> 'Layout':
    """Builds a layout from (collection, layer, name, shape) tuples given in forward order."""
    entries, offset = [], 0
    for collection, layer, name, shape in specs:
      size = math.prod(shape)
      entries.append(LayoutEntry(collection, layer, name, tuple(int(s) for s in shape), offset, offset + size))
      offset += size
    return cls(tuple(entries))

  @property
  def size(self) -> int:
    return self.entries[-1].end if self.entries else 0

  @property
  def layers(self) -> list[str]:
    return list(dict.fromkeys(e.layer for e in self.entries))

  def entry(self, path: str) -> LayoutEntry:
    for e in self.entries:
      if e.path == path:
        return e
    raise KeyError(f'no tensor {path!r} in layout; have {[e.path for e in self.entries]}')

  def running_stats(self) -> list[LayoutEntry]:
    """Batch-norm running statistics: every entry of the 'batch_stats' collection (popnet's bn_mean / bn_var, a
    Flax BatchNorm's mean / var)."""
    return [e for e in self.entries if e.collection == 'batch_stats']

  def batchnorm(self) -> list[LayoutEntry]:
    """Every batch-norm tensor: the running statistics, popnet's bn_* parameters, and the parameters of a module
    that holds running statistics and no kernel (a Flax BatchNorm's scale and bias)."""
    stats_layers = {e.layer for e in self.running_stats()}
    kernel_layers = {e.layer for e in self.entries if e.name == 'kernel'}
    return [e for e in self.entries if e.collection == 'batch_stats' or e.name.startswith('bn_')
            or (e.layer in stats_layers and e.layer not in kernel_layers)]

  def columns(self, order: str = 'popnet', drop: Sequence[LayoutEntry] = ()) -> np.ndarray:
    """Flat column index: vector[..., index] is the vector without the entries `drop`, each remaining tensor's
    values in `order` (ORDERS). Tensors stay in layout order and contiguous, so `without(drop)` describes it."""
    if order not in ORDERS:
      raise ValueError(f'order must be one of {ORDERS}, got {order!r}')
    dropped = {e.path for e in drop}
    pieces = [e.start + _order_within(e, order) for e in self.entries if e.path not in dropped]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)

  def without(self, drop: Sequence[LayoutEntry]) -> 'Layout':
    """The layout of the vector without the entries `drop` (the rest re-offset, in layout order)."""
    dropped = {e.path for e in drop}
    return Layout.from_specs((e.collection, e.layer, e.name, e.shape) for e in self.entries if e.path not in dropped)

  def flatten(self, variables: dict[str, Any]):
    """{'params': ..., 'batch_stats': ...} with leading batch dims [...] -> [..., size] in layout order (a jax
    array; traceable)."""
    import jax.numpy as jnp  # only flattening needs jax: reading a zoo does not
    pieces = []
    for e in self.entries:
      leaf = _module(variables[e.collection], e.layer)[e.name]
      batch_shape = leaf.shape[:leaf.ndim - len(e.shape)]
      if tuple(leaf.shape[len(batch_shape):]) != e.shape:
        raise ValueError(f'{e.path}: shape {leaf.shape} does not end with layout shape {e.shape}')
      pieces.append(jnp.reshape(leaf, batch_shape + (e.size,)))
    return jnp.concatenate(pieces, axis=-1)

  def unflatten(self, vector) -> dict[str, Any]:
    """[..., size] -> {'params': ..., 'batch_stats': ...}; works on numpy (incl. memmaps) and jax arrays."""
    if vector.shape[-1] != self.size:
      raise ValueError(f'vector has {vector.shape[-1]} values, layout expects {self.size}')
    batch_shape = vector.shape[:-1]
    out: dict[str, Any] = {'params': {}, 'batch_stats': {}}  # both, even for networks without batch norm
    for e in self.entries:
      piece = vector[..., e.start:e.end].reshape(batch_shape + e.shape)
      _module(out.setdefault(e.collection, {}), e.layer, create=True)[e.name] = piece
    return out

  @classmethod
  def of_tree(cls, variables: dict[str, Any]) -> 'Layout':
    """The layout of a variables tree in jax's flattening order (jax.tree.leaves: dict keys sorted at every
    level, so 'batch_stats' before 'params'): a row is np.concatenate([x.ravel() for x in jax.tree.leaves(v)])."""
    specs = []
    for path, leaf in _leaves(variables, ()):
      if len(path) < 3:
        raise ValueError(f'variable {"/".join(path)}: expected collection/module/.../name, got {len(path)} levels')
      specs.append((path[0], '/'.join(path[1:-1]), path[-1], tuple(leaf.shape)))
    return cls.from_specs(specs)

  # --- persistence -------------------------------------------------------------------------------------
  def to_json(self) -> list[dict[str, Any]]:
    return [dataclasses.asdict(e) | {'shape': list(e.shape)} for e in self.entries]

  @classmethod
  def from_json(cls, rows: list[dict[str, Any]]) -> 'Layout':
    layout = cls(tuple(LayoutEntry(r['collection'], r['layer'], r['name'], tuple(r['shape']), int(r['start']),
                                   int(r['end'])) for r in rows))
    offset = 0
    for e in layout.entries:
      if e.start != offset or e.end - e.start != math.prod(e.shape):
        raise ValueError(f'inconsistent layout entry {e.path}: start={e.start} end={e.end} shape={e.shape}')
      offset = e.end
    return layout

  def save(self, path: str) -> None:
    with open(path, 'w') as f:
      json.dump(self.to_json(), f, indent=1)

  @classmethod
  def load(cls, path: str) -> 'Layout':
    with open(path) as f:
      return cls.from_json(json.load(f))

  def table(self) -> str:
    """A human-readable table: path, shape, start, end."""
    lines = [f'{"tensor":<24} {"shape":<18} {"start":>9} {"end":>9}']
    lines += [f'{e.path:<24} {str(e.shape):<18} {e.start:>9} {e.end:>9}' for e in self.entries]
    return '\n'.join(lines)


def _order_within(e: LayoutEntry, order: str) -> np.ndarray:
  """[e.size] positions (relative to e.start) of the tensor's values in `order`."""
  index = np.arange(e.size, dtype=np.int64)
  if order == 'popnet' or len(e.shape) <= 1:
    return index
  if len(e.shape) == 2:  # dense (in, out) -> by output unit: (out, in)
    return index.reshape(e.shape).T.ravel()
  if len(e.shape) == 4:  # conv HWIO -> by output filter, then input channel: (O, I, kh, kw)
    return index.reshape(e.shape).transpose(3, 2, 0, 1).ravel()
  raise ValueError(f'{e.path}: a {len(e.shape)}-D tensor; NWS\'s exporter writes only 1-D, 2-D (dense) and 4-D '
                   f'(conv HWIO) tensors')


def _module(tree: dict[str, Any], layer: str, create: bool = False) -> dict[str, Any]:
  """The sub-tree of a module path ('conv_0', or 'Block_0/Conv_1' for nested modules)."""
  for key in layer.split('/'):
    tree = tree.setdefault(key, {}) if create else tree[key]
  return tree


def _leaves(tree, path: tuple[str, ...]):
  """(key path, leaf) in jax's flattening order for nested dicts (keys sorted)."""
  if not isinstance(tree, dict):
    yield path, tree
    return
  for key in sorted(tree):
    yield from _leaves(tree[key], path + (str(key),))
