"""A network's weights as NFN's weight space (Zhou et al. 2023), built from a zoo layout: no per-architecture code.

A layout (popnet/layout.py) lists tensors; NFN reads a network as its sequence of layers i = 0..L-1, each a weight
W_i [n_out, n_in, (spatial)...] and a bias b_i [n_out], where layer i's outputs are layer i+1's inputs. Hidden
units can be reordered without changing the function: a permutation P_i of layer i's outputs acts on W_i's rows,
b_i, and W_{i+1}'s columns. `WeightSpace.of_layout` finds that sequence in any layout:

  a layer       every layout layer with a `kernel`: dense [in, out], or conv HWIO [kh, kw, in, out]
  W_i           [n_out, n_in, spatial]: dense kernels transposed (spatial 1); conv kernels as channel x channel
                blocks with the kh x kw extent flattened (spatial kh * kw), as NFN's shape_wsfeat_symmetry does
  flatten       a dense layer whose fan-in is a multiple s > 1 of the previous conv's channels reads the flattened
                (h, w, channel) map, channel fastest (popnet/models.py): its kernel becomes [n_out, channels, s],
                the map's s positions a spatial extent like a conv's (NFN's zoos pool globally; docs/meta-equivariant.md)
  b_i           [n_out, channels]: channel 0 the bias (zeros if the layer has none), then, with batch_norm=True, the
                layer's other per-unit vectors (popnet's bn_beta, bn_gamma, bn_mean, bn_var) as extra channels

The order of the layers is the layout's, or (a layout from `Layout.of_tree`, whose keys sort 'Dense_10' before
'Dense_2') the natural order of the layer names, whichever chains (each layer's n_in the previous one's n_out).
`split` turns flat weight rows [batch, layout.size] into the weights' [batch, n_out, n_in, spatial] and the
biases' [batch, n_out, channels] (traceable: the meta-model does it on the device); `permutation_index` gives the
flat index that reorders hidden units consistently across every tensor (tests, augmentation).
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from popnet.layout import Layout, LayoutEntry


class WeightSpaceError(ValueError):
  """The layout is not a sequence of dense / conv layers NFN can read; the message names the tensor."""


@dataclasses.dataclass(frozen=True)
class LayerSpace:
  """One layer of the weight space: where its kernel and per-unit vectors sit in the flat row, and its shape."""
  layer: str
  kernel: LayoutEntry
  vectors: tuple[LayoutEntry, ...]  # bias first (when the layer has one), then the other per-unit vectors
  n_out: int
  n_in: int
  spatial: int                      # kh * kw (conv), s positions of a flattened map (flatten), 1 (dense)
  kind: str                         # 'conv' | 'flatten' | 'dense'
  has_bias: bool

  @property
  def bias_channels(self) -> int:
    return len(self.vectors) + (0 if self.has_bias else 1)


@dataclasses.dataclass(frozen=True)
class WeightSpace:
  """The sequence of layers of one architecture, in forward order."""
  layers: tuple[LayerSpace, ...]
  size: int  # values of a flat row (the layout's size)

  def __len__(self) -> int:
    return len(self.layers)

  @property
  def io(self) -> tuple[int, int]:
    """(n_in of the first layer, n_out of the last): the units NFN's HNP keeps fixed."""
    return self.layers[0].n_in, self.layers[-1].n_out

  @property
  def hidden_units(self) -> tuple[int, ...]:
    """Units of every hidden boundary (layer i's outputs = layer i+1's inputs), i = 0..L-2."""
    return tuple(l.n_out for l in self.layers[:-1])

  @classmethod
  def of_layout(cls, layout: Layout, batch_norm: bool = True) -> 'WeightSpace':
    kernels = [e for e in layout.entries if e.name == 'kernel']
    if not kernels:
      raise WeightSpaceError('layout: no tensor named "kernel"; NFN reads dense [in, out] and conv HWIO kernels')
    for e in layout.entries:
      if not any(e.layer == k.layer for k in kernels):
        raise WeightSpaceError(f'layout tensor {e.path}: its layer has no kernel; NFN reads layers made of a dense '
                               f'or conv kernel and per-unit vectors')
    for order in (kernels, sorted(kernels, key=lambda e: _natural_key(e.layer))):
      if _chains(order):
        break
    else:
      raise WeightSpaceError(f'layout: the kernels {[k.path for k in kernels]} do not chain in layout or name order '
                             f'(each layer\'s fan-in must be the previous layer\'s units, or a multiple for a '
                             f'flattened conv map)')
    layers = [_layer(layout, k, order[i - 1] if i else None, batch_norm) for i, k in enumerate(order)]
    return cls(tuple(layers), layout.size)

  # --- flat rows -> the weight space (traceable) -----------------------------------------------------------
  def split(self, x):
    """[batch, size] rows (numpy or jax) -> (weights, biases): tuples of [batch, n_out, n_in, spatial] and
    [batch, n_out, bias_channels] per layer."""
    xp = _array_module(x)
    weights, biases = [], []
    for l in self.layers:
      weights.append(_kernel_to_space(xp, x[:, l.kernel.start:l.kernel.end], l))
      channels = [x[:, v.start:v.end] for v in l.vectors]
      if not l.has_bias:
        channels.insert(0, xp.zeros((x.shape[0], l.n_out), x.dtype))
      biases.append(xp.stack(channels, axis=-1))
    return tuple(weights), tuple(biases)

  # --- hidden-unit permutations ------------------------------------------------------------------------------
  def random_permutations(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """One random order of every hidden boundary's units."""
    return tuple(rng.permutation(n) for n in self.hidden_units)

  def permutation_index(self, perms) -> np.ndarray:
    """[size] flat index: row[index] is the network with boundary i's units in order perms[i] (layer i's kernel
    outputs and per-unit vectors, layer i+1's kernel inputs: HWIO axis I, a dense row, or a flattened map's
    channel); the function the network computes does not change."""
    if len(perms) != len(self.hidden_units):
      raise ValueError(f'perms: one per hidden boundary ({len(self.hidden_units)}), got {len(perms)}')
    index = np.arange(self.size)
    for i, perm in enumerate(perms):
      perm = np.asarray(perm)
      producer, consumer = self.layers[i], self.layers[i + 1]
      for e in (producer.kernel,) + producer.vectors:
        index[e.start:e.end] = index[e.start:e.end].reshape(e.shape)[..., perm].reshape(-1)
      index[consumer.kernel.start:consumer.kernel.end] = _permute_inputs(
          index[consumer.kernel.start:consumer.kernel.end], consumer, perm)
    return index

  def random_indices(self, rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, size] flat indices, each an independent random hidden-unit permutation (weight-space augmentation:
    np.take_along_axis(rows, index, 1) gives networks computing the same functions)."""
    return np.stack([self.permutation_index(self.random_permutations(rng)) for _ in range(n)])


def tensor_standardizer(layout: Layout, chunks) -> tuple[np.ndarray, np.ndarray]:
  """([size] mean, [size] std): one mean and one std per tensor of the layout over the rows of `chunks` (an
  iterable of [n, size] blocks of the training networks), broadcast over the tensor's values. One scalar per tensor
  keeps standardized rows equivariant (a per-value mean and std, as NFN's `normalize`, would not be)."""
  total = np.zeros((3, len(layout.entries)), np.float64)  # count, sum, sum of squares per tensor
  for block in chunks:
    block = np.asarray(block, np.float64)
    for j, e in enumerate(layout.entries):
      values = block[:, e.start:e.end]
      total[:, j] += values.size, values.sum(), np.square(values).sum()
  mean, std = np.zeros(layout.size, np.float32), np.ones(layout.size, np.float32)
  for j, e in enumerate(layout.entries):
    count, s, sq = total[:, j]
    m = s / max(count, 1)
    sd = np.sqrt(max(sq / max(count, 1) - m * m, 0.0))
    mean[e.start:e.end], std[e.start:e.end] = m, sd if sd > 1e-8 else 1.0
  return mean, std


def _natural_key(name: str):
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def _fan_in(kernel: LayoutEntry) -> int:
  return kernel.shape[-2]


def _chains(order: list[LayoutEntry]) -> bool:
  for prev, cur in zip(order, order[1:]):
    units, fan_in = prev.shape[-1], _fan_in(cur)
    if len(cur.shape) == 4 and (len(prev.shape) != 4 or fan_in != units):
      return False
    if len(cur.shape) == 2 and fan_in != units and not (len(prev.shape) == 4 and fan_in % units == 0):
      return False
  return True


def _layer(layout: Layout, kernel: LayoutEntry, previous: LayoutEntry | None, batch_norm: bool) -> LayerSpace:
  if len(kernel.shape) not in (2, 4):
    raise WeightSpaceError(f'layout tensor {kernel.path}: shape {kernel.shape}; NFN reads dense [in, out] and conv '
                           f'HWIO [kh, kw, in, out] kernels')
  n_out = kernel.shape[-1]
  vectors = [e for e in layout.entries if e.layer == kernel.layer and e.name != 'kernel']
  for e in vectors:
    if e.shape != (n_out,):
      raise WeightSpaceError(f'layout tensor {e.path}: shape {e.shape}; a layer\'s other tensors must be per-unit '
                             f'vectors of its {n_out} units')
  vectors.sort(key=lambda e: e.name != 'bias')  # the bias first, the rest in layout order
  has_bias = bool(vectors) and vectors[0].name == 'bias'
  if not batch_norm:
    vectors = vectors[:1] if has_bias else []
  if len(kernel.shape) == 4:
    kind, n_in, spatial = 'conv', kernel.shape[2], kernel.shape[0] * kernel.shape[1]
  elif previous is not None and len(previous.shape) == 4 and kernel.shape[0] != previous.shape[-1]:
    kind, n_in = 'flatten', previous.shape[-1]
    spatial = kernel.shape[0] // n_in
  else:
    kind, n_in, spatial = 'dense', kernel.shape[0], 1
  return LayerSpace(kernel.layer, kernel, tuple(vectors), n_out, n_in, spatial, kind, has_bias)


def _array_module(x):
  if isinstance(x, np.ndarray):
    return np
  import jax.numpy as jnp
  return jnp


def _kernel_to_space(xp, flat, l: LayerSpace):
  """[batch, kernel.size] -> [batch, n_out, n_in, spatial]."""
  b = flat.shape[0]
  if l.kind == 'conv':  # HWIO -> O I (H W)
    k = flat.reshape((b,) + l.kernel.shape)
    return xp.transpose(k, (0, 4, 3, 1, 2)).reshape(b, l.n_out, l.n_in, l.spatial)
  # dense [in, out], a flattened map's rows ordered (position, channel), channel fastest
  k = flat.reshape(b, l.spatial, l.n_in, l.n_out)
  return xp.transpose(k, (0, 3, 2, 1))


def _permute_inputs(flat_index: np.ndarray, l: LayerSpace, perm: np.ndarray) -> np.ndarray:
  """A consumer kernel's flat index with its inputs (the previous layer's units) in order `perm`."""
  if l.kind == 'conv':
    return flat_index.reshape(l.kernel.shape)[:, :, perm, :].reshape(-1)
  return flat_index.reshape(l.spatial, l.n_in, l.n_out)[:, perm, :].reshape(-1)
