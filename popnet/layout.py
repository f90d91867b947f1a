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

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class LayoutEntry:
  """One tensor of the flattened vector: rows[start:end] reshaped to `shape`."""
  collection: str  # 'params' or 'batch_stats'
  layer: str
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

  def flatten(self, variables: dict[str, Any]) -> jax.Array:
    """{'params': ..., 'batch_stats': ...} with leading batch dims [...] -> [..., size] in layout order."""
    pieces = []
    for e in self.entries:
      leaf = variables[e.collection][e.layer][e.name]
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
      out.setdefault(e.collection, {}).setdefault(e.layer, {})[e.name] = piece
    return out

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
