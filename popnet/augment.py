"""On-device data augmentation: the NWS paper's geometric + photometric set (Eilertsen et al. 2020, section 3).

One affine warp per image (shift, rotation, zoom, shear about the centre) by bilinear sampling with
nearest-edge filling (Keras ImageDataGenerator's default), then brightness, contrast, hue and saturation
(colour images only), Gaussian noise and clipping to [0, 1]. Pure jnp: it runs inside the population program,
vmaps over members, and draws all per-image parameters from one small random call (few random ops keep
compile time low; pixel noise comes from a cheap integer hash, see _hash_noise).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
  """Ranges of the random transforms; the defaults are the NWS paper's."""
  shift: float = 3.0                            # pixels, uniform in [-shift, shift] per axis
  rotate: float = 15.0                          # degrees
  zoom: float = 0.1                             # scale uniform in [1 - zoom, 1 + zoom]
  shear: float = 3.0                            # degrees
  brightness: float = 0.2                       # additive, uniform in [-b, b]
  contrast: tuple[float, float] = (0.5, 1.5)    # multiplicative around the per-image mean
  hue: float = 0.08                             # fraction of a full turn, colour images only
  saturation: tuple[float, float] = (0.3, 1.5)  # colour images only
  noise: float = 0.03                           # Gaussian noise, sigma ~ U(0, noise) per image


# RGB <-> YIQ (NTSC): hue is a rotation of the (I, Q) plane, saturation a scaling of it.
# numpy constants: importing this module must not initialize a JAX backend (the CLI sets XLA_FLAGS after imports)
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def _warp(image, inverse, offset):
  """Bilinear sample of image [H, W, C] at inverse @ (dst - centre) + centre + offset, edges clamped."""
  h, w, c = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing='ij')
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  dy, dx = ys - cy, xs - cx
  sy = inverse[0, 0] * dy + inverse[0, 1] * dx + cy + offset[0]
  sx = inverse[1, 0] * dy + inverse[1, 1] * dx + cx + offset[1]
  sy, sx = jnp.clip(sy, 0, h - 1), jnp.clip(sx, 0, w - 1)
  y0, x0 = jnp.floor(sy), jnp.floor(sx)
  wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  flat = image.reshape(h * w, c)
  at = lambda y, x: flat[(y * w + x).reshape(-1)].reshape(h, w, c)
  top = at(y0, x0) * (1 - wx) + at(y0, x1) * wx
  bottom = at(y1, x0) * (1 - wx) + at(y1, x1) * wx
  return top * (1 - wy) + bottom * wy


def _inverse_affine(angle, shear, zoom):
  """Inverse of rotation @ shear @ zoom, in (y, x) coordinates."""
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotation_inv = jnp.array([[cos, sin], [-sin, cos]])
  shear_inv = jnp.array([[1.0, 0.0], [-jnp.tan(shear), 1.0]])
  return (shear_inv @ rotation_inv) / zoom


def _hash_noise(seeds, shape):
  """Approximately standard-normal noise [B, ...] from a per-image uint32 seed: a murmur3 finalizer of
  (seed, element index) gives 32 random bits, whose four bytes summed (Irwin-Hall, n = 4) are close to
  Gaussian. A few integer ops per element, where threefry's normals dominate a small CNN's step on CPU."""
  index = jnp.arange(math.prod(shape[1:]), dtype=jnp.uint32).reshape(shape[1:])
  h = index[None] * jnp.uint32(0x9E3779B1) ^ seeds.reshape((-1,) + (1,) * (len(shape) - 1))
  h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
  h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
  h = h ^ (h >> 16)
  total = sum(((h >> (8 * k)) & 0xFF).astype(jnp.float32) for k in range(4))
  return (total - 4 * 127.5) / math.sqrt(4 * (256**2 - 1) / 12.0)


def augment_batch(key: jax.Array, images: jax.Array, spec: AugmentSpec = AugmentSpec()) -> jax.Array:
  """images float32 [B, H, W, C] in [0, 1] -> augmented images."""
  b, h, w, c = images.shape
  # One random call for everything: per image, ten uniforms in [0, 1) made from 23 random mantissa bits as
  # jax.random.uniform does, and a noise seed. Compile time on XLA:CPU: each threefry call costs ~0.3 s, and a
  # 2-D draw like (b, 11) ~1 s (~5 s under vmap over members), a flat (b * 11,) one ~0.3 s.
  bits = jax.random.bits(key, (b * 11,), jnp.uint32).reshape(b, 11)
  u = jax.lax.bitcast_convert_type((bits[:, :10] >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0
  noise_seeds = bits[:, 10]
  sym = lambda i, r: (2.0 * u[:, i] - 1.0) * r          # uniform in [-r, r]
  rng = lambda i, lo_hi: lo_hi[0] + u[:, i] * (lo_hi[1] - lo_hi[0])
  offset = jnp.stack([sym(0, spec.shift), sym(1, spec.shift)], axis=-1)
  angle, shear = sym(2, math.radians(spec.rotate)), sym(3, math.radians(spec.shear))
  zoom = 1.0 + sym(4, spec.zoom)
  inverse = jax.vmap(_inverse_affine)(angle, shear, zoom)
  x = jax.vmap(_warp)(images, inverse, -offset)

  brightness = sym(5, spec.brightness)[:, None, None, None]
  # Contrast scales around the image mean. The mean is taken on the input (the warp preserves it up to edge
  # effects): a reduction over the warped image made XLA:CPU recompute the gathers, 4x the cost of the warp.
  mean = jnp.mean(images, axis=(1, 2, 3), keepdims=True) + brightness
  x = (x + brightness - mean) * rng(6, spec.contrast)[:, None, None, None] + mean
  if c == 3:
    # Hue (rotation of the YIQ chroma plane) and saturation (its scaling) as one RGB -> RGB 3x3 matrix per image,
    # applied as 9 broadcast multiply-adds: a [..., 3] @ [3, 3] matmul costs ~10x more on CPU (tiny contraction).
    theta = sym(7, 2.0 * math.pi * spec.hue)
    sat = rng(8, spec.saturation)
    cos, sin = jnp.cos(theta) * sat, jnp.sin(theta) * sat
    one, zero = jnp.ones_like(cos), jnp.zeros_like(cos)
    chroma = jnp.stack([jnp.stack([one, zero, zero], -1), jnp.stack([zero, cos, -sin], -1),
                        jnp.stack([zero, sin, cos], -1)], -2)                       # [B, 3, 3] in YIQ
    matrix = jnp.asarray(_YIQ_TO_RGB) @ chroma @ jnp.asarray(_RGB_TO_YIQ)           # [B, 3 out, 3 in]
    x = sum(x[..., k:k + 1] * matrix[:, None, None, :, k] for k in range(3))
  sigma = u[:, 9] * spec.noise
  x = x + sigma[:, None, None, None] * _hash_noise(noise_seeds, x.shape)
  x = jnp.clip(x, 0.0, 1.0)
  # Materialize the result: otherwise XLA fuses the gathers into every consumer (e.g. the kh*kw slices of an
  # im2col convolution) and recomputes them there.
  return jax.lax.optimization_barrier(x)
