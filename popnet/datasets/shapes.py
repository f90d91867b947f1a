"""Converts images between shapes, so that datasets of different shapes feed one architecture: an antialiased
bilinear resize (jax.image.resize's 'linear', done as two small matmuls on the host) and 1 <-> 3 channels."""
from __future__ import annotations

import numpy as np

_CHUNK = 4096  # images per step, to bound temporary memory
_LUMINANCE = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601


def _resize_weights(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] weights of jax.image.resize's antialiased bilinear ('linear') resize along one axis.

  Resizing is linear and separable, so two small matmuls resize a whole batch on the host at BLAS speed.
  """
  scale = size_out / size_in
  kernel_scale = max(1 / scale, 1.0)  # antialiasing widens the triangle kernel when shrinking
  centers = (np.arange(size_out) + 0.5) / scale - 0.5
  weights = np.maximum(0.0, 1 - np.abs(centers[:, None] - np.arange(size_in)[None, :]) / kernel_scale)
  return (weights / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def _resize(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """float32 [k,h,w,c] -> [k,H,W,c]: rows @ plane @ cols.T for every image plane."""
  k, h, w, c = images.shape
  planes = images.transpose(0, 3, 1, 2).reshape(k * c * h, w) @ cols.T
  planes = np.matmul(rows, planes.reshape(k * c, h, -1))
  return planes.reshape(k, c, *planes.shape[1:]).transpose(0, 2, 3, 1)


def to_common_shape(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
  """uint8 [N,h,w,c] -> uint8 [N,H,W,C], so datasets of different shapes feed one architecture.

  Antialiased bilinear resize; channels 1->3 by tiling, 3->1 by BT.601 luminance. Same shape: x itself.
  """
  height, width, channels = shape
  n, h, w, c = x.shape
  if (h, w, c) == (height, width, channels):
    return x
  if c not in (1, 3) or channels not in (1, 3):
    raise ValueError(f'cannot convert {c} channels to {channels}: only 1 and 3 are supported')
  rows, cols = _resize_weights(h, height), _resize_weights(w, width)
  out = np.empty((n, height, width, channels), np.uint8)
  for start in range(0, n, _CHUNK):
    chunk = x[start:start + _CHUNK].astype(np.float32)
    if c == 3 and channels == 1:  # before resizing: less to resize
      chunk = chunk @ _LUMINANCE[:, None]
    if (h, w) != (height, width):
      chunk = _resize(chunk, rows, cols)
    chunk = np.clip(np.rint(chunk), 0, 255).astype(np.uint8)
    if c == 1 and channels == 3:  # after resizing: less to resize; repeat is 3x faster than a broadcast store
      chunk = np.repeat(chunk, 3, axis=-1)
    out[start:start + _CHUNK] = chunk
  return out
