"""The SIREN families of INR zoos as networks of the engine (popnet/network.py): DWS's and NFN's, exactly as their
sources define them (docs/inr.md has the citations).

    DWS (AvivNavon/DWSNets nn/inr.py, INR(in_dim=2, n_layers=3, up_scale=16)):
      seq.0 Siren(2, 32), seq.1 Siren(32, 32): sin(30 (x W + b)), W ~ U(+-sqrt(6 / fan_in) / 30), b = 0
      seq.2 nn.Linear(32, 1), PyTorch's default init: W, b ~ U(+-1 / sqrt(fan_in)); output + 0.5
      coordinates (column, row) in [-1, 1] (np.meshgrid 'xy'); targets in [0, 1]
    NFN (AllanYangZhou/nfn experiments/siren_utils.py, Siren(2, 32, 1, 1, outermost_linear=True)):
      net.0.linear: W ~ U(+-1 / fan_in) (is_first), net.1.linear: W ~ U(+-sqrt(6 / fan_in) / 30), both sin(30 (.))
      net.2: W ~ U(+-sqrt(6 / 32) / 30); every bias PyTorch's default U(+-1 / sqrt(fan_in)); no offset
      coordinates (row, column) in [-1, 1] (torch.meshgrid 'ij'); targets in [-1, 1]

A member's input is a batch of coordinates [B, in_dim] (not an image); `coordinates` and `targets` turn an image
into the family's (coordinates, pixel values) pairs in the family's pixel order (row-major, as both decoders
reshape their output).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from popnet.arch import SirenArch
from popnet.layout import Layout
from popnet.network import single_architecture_rows
from popnet.sine import sine

# (low, high) of the targets each family fits: DWS's + 0.5 offset fits [0, 1] (docs/inr.md: assumed), NFN [-1, 1]
TARGET_RANGE = {'dws': (0.0, 1.0), 'nfn': (-1.0, 1.0)}
OUTPUT_OFFSET = {'dws': 0.5, 'nfn': 0.0}


def init_bounds(arch: SirenArch) -> list[tuple[float, float]]:
  """(weight bound, bias bound) of U(-bound, bound) per layer in forward order; a bias bound 0 means zeros."""
  w = arch.widths
  fans = list(zip(w[:-1], w[1:]))
  pytorch_default = [1.0 / math.sqrt(fan_in) for fan_in, _ in fans]
  sine = [math.sqrt(6.0 / fan_in) / arch.w0 for fan_in, _ in fans]
  if arch.family == 'dws':  # every Siren layer without is_first, zero biases; the last a default nn.Linear
    return [(sine[i], 0.0) for i in range(len(fans) - 1)] + [(pytorch_default[-1], pytorch_default[-1])]
  first = (1.0 / fans[0][0], pytorch_default[0])
  return [first] + [(sine[i], pytorch_default[i]) for i in range(1, len(fans))]


def init(arch: SirenArch, key) -> dict:
  """Fresh {'params': {layer: {'kernel' [in, out], 'bias'}}, 'batch_stats': {}} of the family's init; each
  tensor drawn from its own key fold_in(key, its position in the layout)."""
  params = {}
  for i, ((name, (fan_in, fan_out)), (w_bound, b_bound)) in enumerate(
      zip(zip(arch.layer_names, zip(arch.widths[:-1], arch.widths[1:])), init_bounds(arch))):
    kernel = jax.random.uniform(jax.random.fold_in(key, 2 * i), (fan_in, fan_out), jnp.float32, -w_bound, w_bound)
    bias = (jax.random.uniform(jax.random.fold_in(key, 2 * i + 1), (fan_out,), jnp.float32, -b_bound, b_bound)
            if b_bound else jnp.zeros((fan_out,), jnp.float32))
    params[name] = {'kernel': kernel, 'bias': bias}
  return {'params': params, 'batch_stats': {}}


def apply(arch: SirenArch, params, coords):
  """Outputs [B, out_dim] at coordinates [B, in_dim]: sin(w0 (x K + b)) per sine layer, then x K + b (+ offset)."""
  x = coords
  names = arch.layer_names
  for name in names[:-1]:
    x = sine(arch.w0 * (x @ params[name]['kernel'] + params[name]['bias']))  # popnet/sine.py: jnp.sin, vectorized
  x = x @ params[names[-1]]['kernel'] + params[names[-1]]['bias']
  offset = OUTPUT_OFFSET[arch.family]
  return x + offset if offset else x


def coordinates(arch: SirenArch, height: int, width: int) -> np.ndarray:
  """[H * W, 2] float32 coordinates of the pixels in row-major order: DWS (x = column, y = row), NFN (row, column),
  each linspace(-1, 1) along its axis (DWS: experiments/utils.py make_coordinates; NFN: siren_utils.get_mgrid)."""
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  lin_h, lin_w = np.linspace(-1, 1, height), np.linspace(-1, 1, width)
  pair = (lin_w[cols], lin_h[rows]) if arch.family == 'dws' else (lin_h[rows], lin_w[cols])
  return np.stack([p.reshape(-1) for p in pair], axis=1).astype(np.float32)


def targets(arch: SirenArch, images):
  """uint8 images [..., H, W, C] -> [..., H * W, C] float32 targets in the family's range (row-major pixels)."""
  low, high = TARGET_RANGE[arch.family]
  x = images.astype(jnp.float32) / 255.0
  x = x * (high - low) + low if (low, high) != (0.0, 1.0) else x
  return x.reshape(x.shape[:-3] + (-1, x.shape[-1]))


def psnr(mse, arch: SirenArch):
  """10 log10(R^2 / MSE) in dB, R the family's target range (1 for DWS's [0, 1], 2 for NFN's [-1, 1])."""
  low, high = TARGET_RANGE[arch.family]
  return 10.0 * jnp.log10((high - low) ** 2 / mse)


# --- the network interface (popnet/network.py) -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Siren:
  """One SIREN family as a network of the engine: every member runs `arch` on coordinates."""
  arch: SirenArch
  input_shape: tuple[int, int, int]   # the images the members fit (H, W, C): the coordinate grid

  @property
  def name(self) -> str:
    return self.arch.name

  @property
  def layout(self) -> Layout:
    return self.arch.layout()

  @property
  def num_outputs(self) -> int:
    return self.arch.out_dim

  def configured(self, conv_impl: str, own_shapes: bool) -> 'Siren':
    return self  # no convolutions, no padding

  def member_arrays(self, members) -> dict:
    return {}

  def init(self, hp, key, init_scheme):
    """The family's own initialization (hparams.init is not read: each family has exactly one)."""
    return init(self.arch, key)

  def apply(self, hp, variables, coords, *, train: bool = False, activation=None, dropout=0.0, key=None):
    return apply(self.arch, variables['params'], coords), {}

  def own_values(self, hp):
    return lambda tree: tree

  def zoo_rows(self, members, rows):
    return single_architecture_rows(self.arch.name, rows)

  def training_flops(self, archs, examples, own_shape_convs: bool) -> float:
    return sum(e * a.flops_per_example(self.input_shape) for a, e in zip(archs, examples))

  def coordinates(self) -> np.ndarray:
    return coordinates(self.arch, *self.input_shape[:2])

  def targets(self, images):
    return targets(self.arch, images)

  def psnr(self, mse):
    return psnr(mse, self.arch)
