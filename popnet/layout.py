"""Fixed-order flattening of a network's variables into one vector, and back.

A zoo stores every snapshot as one float32 row. The row's order is the network's forward order (layer by
layer, as the architecture lists them), never the order of sorted dict keys, so `conv_10` follows `conv_2`.
Within a layer the order is: kernel, bias, batch-norm beta, gamma, moving mean, moving variance (the NWS
order, as NWS exports its networks: docs/interchange.md). Kernels are stored as the model uses them, C order:
convolutions HWIO (height, width, in, out), dense layers (in, out).
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Iterable, Sequence

import numpy as np


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
