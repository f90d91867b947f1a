"""2-D convolution formulations that stay fast when a population axis is added by vmap.

`jax.vmap` of `lax.conv_general_dilated` over per-member kernels becomes a grouped convolution
(feature_group_count = members), which XLA:CPU runs slowly (reference/perf.md). `im2col` builds the patch
matrix from kh*kw strided slices and does one matmul per member instead; under vmap that is a batched matmul.
Every formulation computes the same function (SAME or VALID padding, HWIO kernels) and is tested for equality.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

CONV_IMPLS = ('auto', 'xla', 'im2col')
PADDINGS = ('SAME', 'VALID')
CHANNEL_MAJOR_MAX_CHANNELS = 4  # im2col inputs with at most this many channels use the [C, B, H, W] patch order


def resolve_impl(impl: str) -> str:
  """'auto' -> im2col on CPU (measured fastest there), XLA's native convolution on GPU/TPU."""
  if impl not in CONV_IMPLS:
    raise ValueError(f'conv_impl must be one of {CONV_IMPLS}, got {impl!r}')
  if impl == 'auto':
    return 'im2col' if jax.default_backend() == 'cpu' else 'xla'
  return impl


def output_size(size: int, kernel: int, stride: int, padding: str = 'SAME') -> int:
  """Spatial size after a convolution: SAME keeps ceil(size / stride); VALID uses only whole windows."""
  if padding == 'SAME':
    return -(-size // stride)
  if padding == 'VALID':
    if size < kernel:
      raise ValueError(f'a {kernel}x{kernel} VALID convolution needs inputs of at least {kernel} pixels, got {size}')
    return (size - kernel) // stride + 1
  raise ValueError(f'padding must be one of {PADDINGS}, got {padding!r}')


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def conv2d(x, kernel, stride: int = 1, impl: str = 'auto', padding: str = 'SAME'):
  """Convolution of x [B, H, W, C] with kernel [kh, kw, C, O] -> [B, H', W', O], SAME or VALID padding."""
  impl = resolve_impl(impl)
  kh, kw, c, o = kernel.shape
  b, h, w, _ = x.shape
  oh, ow = output_size(h, kh, stride, padding), output_size(w, kw, stride, padding)
  if impl == 'xla':
    return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  if padding == 'SAME':
    ph, pw = _same_padding(h, kh, stride), _same_padding(w, kw, stride)
  else:
    ph, pw = (0, 0), (0, 0)
  if c <= CHANNEL_MAJOR_MAX_CHANNELS:
    return _im2col_channel_major(x, kernel, stride, ph, pw, oh, ow)
  xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
  patches = [xp[:, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride, :]
             for i in range(kh) for j in range(kw)]
  cols = jnp.concatenate(patches, axis=-1)  # [B, oh, ow, kh*kw*C] in (i, j, c) order = HWIO's row order
  return (cols.reshape(b * oh * ow, kh * kw * c) @ kernel.reshape(kh * kw * c, o)).reshape(b, oh, ow, o)


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
