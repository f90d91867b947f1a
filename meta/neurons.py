"""Per-neuron features for the neuron-set meta-model (meta.models.NeuronSet): one row of numbers per neuron.

A network's function does not change when the neurons of a hidden layer are reordered (together with the next
layer's matching inputs). The DMC and the whole-vector MLP read the weights in one fixed order and must learn
that symmetry from data; StatNN discards it with whole-tensor statistics. Here every neuron (a conv filter or a
dense unit) is described by numbers that do not depend on the order of any layer's neurons:

  in:*     statistics of its incoming weights (mean, std, mean |w|, 0/25/50/75/100 % quantiles)
  out:*    the same statistics of the weights it sends to the next layer (none for the output layer)
  spatial  for conv filters, the kernel averaged over input channels (kh x kw values; the spatial pattern)
  own      its bias and batch-norm beta, gamma, moving mean and moving variance (whichever the layer has)

Layers keep their identity (each layer gets its own feature block and, in the model, its own encoder), so a
layer's features form a set of `units` rows: the model pools over them with mean and max, which makes its
prediction invariant to every permutation of hidden neurons. One architecture at a time (the layout fixes the
layers). Kernels are stored HWIO for convolutions and (in, out) for dense layers (popnet/layout.py), and a dense
layer after the conv part reads the pooled feature map flattened as (h, w, channel), channel fastest
(popnet/models.py:apply).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from popnet.layout import Layout

STATS = ('mean', 'std', 'abs_mean', 'q0', 'q25', 'q50', 'q75', 'q100')
OWN = ('bias', 'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var')


@dataclasses.dataclass(frozen=True)
class LayerBlock:
  """One layer's block of the flat feature row: `units` neurons x `dim` numbers each."""
  layer: str
  units: int
  dim: int
  names: tuple[str, ...]


def _stats(w: np.ndarray) -> np.ndarray:
  """[n, units, k] weights per neuron -> [n, units, 8] statistics (STATS order)."""
  q = np.moveaxis(np.quantile(w, (0.0, 0.25, 0.5, 0.75, 1.0), axis=-1), 0, -1)
  return np.concatenate([w.mean(-1, keepdims=True), w.std(-1, keepdims=True), np.abs(w).mean(-1, keepdims=True),
                         q], axis=-1)


def _kernel_layers(layout: Layout) -> list[str]:
  paths = {e.path for e in layout.entries}
  return [l for l in layout.layers if f'{l}/kernel' in paths]


def _outgoing(kernel_next: np.ndarray, units: int) -> np.ndarray:
  """[n, units, k]: the next layer's weights read from each of this layer's `units` outputs."""
  n = len(kernel_next)
  if kernel_next.ndim == 5:  # conv -> conv: HWIO, this layer's neuron is the I axis
    return np.moveaxis(kernel_next, 3, 1).reshape(n, units, -1)
  fan_in = kernel_next.shape[1]  # -> dense: rows are (h, w, channel) flattened, channel fastest
  return kernel_next.reshape(n, fan_in // units, units, -1).transpose(0, 2, 1, 3).reshape(n, units, -1)


def blocks(layout: Layout) -> list[LayerBlock]:
  """The feature blocks of `layout`, in layer order (shapes only)."""
  layers = _kernel_layers(layout)
  out = []
  paths = {e.path for e in layout.entries}
  for i, layer in enumerate(layers):
    kernel = layout.entry(f'{layer}/kernel')
    names = [f'in:{s}' for s in STATS]
    if i + 1 < len(layers):
      names += [f'out:{s}' for s in STATS]
    if len(kernel.shape) == 4:
      names += [f'spatial:{h},{w}' for h in range(kernel.shape[0]) for w in range(kernel.shape[1])]
    names += [n for n in OWN if f'{layer}/{n}' in paths]
    out.append(LayerBlock(layer, kernel.shape[-1], len(names), tuple(names)))
  return out


def features(layout: Layout, v: np.ndarray) -> np.ndarray:
  """[n, sum(units * dim)] flat feature rows of the weight vectors v [n, layout.size] (blocks in layer order,
  each [units, dim] row-major)."""
  v = np.asarray(v, np.float32)
  n, layers = len(v), _kernel_layers(layout)
  tensors = {e.path: v[:, e.start:e.end].reshape((n,) + e.shape) for e in layout.entries}
  cols = []
  for i, block in enumerate(blocks(layout)):
    kernel = tensors[f'{block.layer}/kernel']
    parts = [_stats(kernel.reshape(n, -1, block.units).transpose(0, 2, 1))]
    if i + 1 < len(layers):
      parts.append(_stats(_outgoing(tensors[f'{layers[i + 1]}/kernel'], block.units)))
    if kernel.ndim == 5:
      parts.append(kernel.mean(3).reshape(n, -1, block.units).transpose(0, 2, 1))
    parts += [tensors[f'{block.layer}/{name}'][..., None] for name in OWN if name in block.names]
    cols.append(np.concatenate(parts, axis=-1).reshape(n, -1))
  return np.concatenate(cols, axis=1).astype(np.float32)
