"""2-D convolution formulations that stay fast inside a population program.

`xla`: `lax.conv_general_dilated` with JAX's own gradients. Under `jax.vmap` over per-member kernels it becomes a
grouped convolution (feature_group_count = members): what accelerators run well and XLA:CPU runs slowly
(benchmarks/results/README.md).

`xla_canonical`: the same forward convolution, with a custom VJP whose two gradient convolutions are written in
the NHWC / HWIO form that XLA:CPU's fast convolution path (YNNPACK / Eigen) takes. JAX's transpose rules emit
them with other dimension orders, and XLA:CPU only rewrites those into the fast form in the program's top-level
computation: inside the per-member loop (`lax.map`) they fall back to naive loops (an NWS member-step took
129 ms of XLA ops instead of 9.4, benchmarks/results/README.md).

`im2col`: the patch matrix from kh*kw strided slices and one matmul per member; under vmap a batched matmul.

`auto` picks per layer: on CPU `xla_canonical` for stride-1 layers and `im2col` for strided ones (the gradients
of a strided convolution need dilated convolutions, which XLA:CPU's fast path does not take; measured on the
NWS and Small CNN Zoo architectures); on GPU/TPU `xla`. Every formulation computes the same function (SAME or
VALID padding, HWIO kernels) and is tested for equality of values and gradients.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from popnet.arch import PADDINGS, output_size  # noqa: F401  (conv shapes are architecture facts)

CONV_IMPLS = ('auto', 'xla', 'xla_canonical', 'im2col')
CHANNEL_MAJOR_MAX_CHANNELS = 4  # im2col inputs with at most this many channels use the [C, B, H, W] patch order
_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def resolve_impl(impl: str, stride: int = 1) -> str:
  """The formulation a layer with this stride uses: 'auto' -> on CPU xla_canonical (stride 1) or im2col
  (strided), measured fastest there; XLA's native convolution on GPU/TPU."""
  if impl not in CONV_IMPLS:
    raise ValueError(f'conv_impl must be one of {CONV_IMPLS}, got {impl!r}')
  if impl == 'auto':
    if jax.default_backend() != 'cpu':
      return 'xla'
    return 'xla_canonical' if stride == 1 else 'im2col'
  return impl


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def conv2d(x, kernel, stride: int = 1, impl: str = 'auto', padding: str = 'SAME'):
  """Convolution of x [B, H, W, C] with kernel [kh, kw, C, O] -> [B, H', W', O], SAME or VALID padding."""
  impl = resolve_impl(impl, stride)
  kh, kw, c, o = kernel.shape
  b, h, w, _ = x.shape
  oh, ow = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
  if impl == 'xla':
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMENSIONS)
  if impl == 'xla_canonical':
    return _conv_canonical(x, kernel, stride, padding)
  ph, pw = _pads(h, w, kh, kw, stride, padding)
  if c <= CHANNEL_MAJOR_MAX_CHANNELS:
    return _im2col_channel_major(x, kernel, stride, ph, pw, oh, ow)
  xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
  patches = [xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
             for i in range(kh) for j in range(kw)]
  cols = jnp.concatenate(patches, axis=-1)  # [B, oh, ow, kh*kw*C] in (i, j, c) order = HWIO's row order
  return (cols.reshape(b * oh * ow, kh * kw * c) @ kernel.reshape(kh * kw * c, o)).reshape(b, oh, ow, o)


def _pads(h, w, kh, kw, stride, padding):
  """(low, high) padding of both spatial axes, as XLA's SAME / VALID."""
  if padding == 'SAME':
    return _same_padding(h, kh, stride), _same_padding(w, kw, stride)
  return (0, 0), (0, 0)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_canonical(x, kernel, stride, padding):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMENSIONS)


def _conv_canonical_fwd(x, kernel, stride, padding):
  return _conv_canonical(x, kernel, stride, padding), (x, kernel)


def _conv_canonical_bwd(stride, padding, residuals, g):
  """Both gradients as plain NHWC x HWIO -> NHWC convolutions (what JAX's transpose rules compute, with the
  operands transposed so that no dimension renumbering is left for XLA to do)."""
  x, kernel = residuals
  _, h, w, _ = x.shape
  kh, kw, _, _ = kernel.shape
  oh, ow = g.shape[1:3]
  (top, _), (left, _) = _pads(h, w, kh, kw, stride, padding)
  # input gradient: g (dilated by the stride) correlated with the flipped kernel, in/out channels swapped
  flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
  dx = jax.lax.conv_general_dilated(
      g, flipped, (1, 1), ((kh - 1 - top, h - 1 - (oh - 1) * stride + top),
                           (kw - 1 - left, w - 1 - (ow - 1) * stride + left)),
      lhs_dilation=(stride, stride), dimension_numbers=_DIMENSIONS)
  # kernel gradient: x as C images of B features [C, H, W, B] correlated with g as a kernel
  # [oh, ow, B, O]; rows and columns a VALID window never reaches are cut off instead of padded negatively
  bottom, right = kh - h - top + (oh - 1) * stride, kw - w - left + (ow - 1) * stride
  xs = x[:, :h + min(bottom, 0), :w + min(right, 0)]
  dk = jax.lax.conv_general_dilated(
      xs.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1), ((top, max(bottom, 0)), (left, max(right, 0))),
      rhs_dilation=(stride, stride), dimension_numbers=_DIMENSIONS)
  return dx, dk.transpose(1, 2, 0, 3)


_conv_canonical.defvjp(_conv_canonical_fwd, _conv_canonical_bwd)


def _im2col_channel_major(x, kernel, stride, ph, pw, oh, ow):
  """im2col for few input channels (RGB / grayscale first layers): with C last, every patch slice would copy
  runs of C floats; in [C, B, H, W] order it copies whole image rows, and the matmul's long axis is the
  pixels. On CPU this builds the 3-channel first layer's patches ~2x faster than the NHWC order (one
  concatenate instead of 25 slices + a concatenate) and makes the nws_fixed step ~10% faster
  (benchmarks/results/README.md)."""
  kh, kw, c, o = kernel.shape
  b = x.shape[0]
  xp = jnp.pad(jnp.transpose(x, (3, 0, 1, 2)), ((0, 0), (0, 0), ph, pw))
  patches = [xp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
             for i in range(kh) for j in range(kw)]
  cols = jnp.stack(patches).reshape(kh * kw * c, b * oh * ow)  # rows in (i, j, c) order = HWIO's row order
  y = kernel.reshape(kh * kw * c, o).T @ cols                    # [O, B * oh * ow]
  return jnp.transpose(y.reshape(o, b, oh, ow), (1, 2, 3, 0))


def max_pool_2x2(x):
  """2x2 max-pool, stride 2, SAME (odd sizes padded with -inf) via a reshape: cheap and vmap-friendly."""
  b, h, w, c = x.shape
  if h % 2 or w % 2:
    x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), constant_values=-jnp.inf)
    h, w = h + h % 2, w + w % 2
  return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
