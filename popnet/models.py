"""The CNN family of the NWS study and the Small CNN Zoo, as pure functions on plain pytrees.

One member's network is `apply(arch, variables, images, ...)`; the population axis is added outside by
vmap / lax.map, so every per-member choice (activation, initialization, dropout rate) is an argument that may
be a traced per-member array. Choices that are the same for a whole program can be passed as Python values,
which skips the per-member select.

Layer order follows the NWS generator (Eilertsen et al. 2020, gabrieleilertsen/nws model.py): conv + bias ->
batch norm -> activation (-> 2x2 max-pool at the end of a block); dense + bias -> activation -> batch norm ->
dropout; a linear output layer.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.ad_checkpoint import checkpoint_name

from popnet import conv as conv_lib
from popnet.arch import (ACTIVATIONS, ARCHITECTURES, CNN_INITS, INITS, PRESETS, TRUNC_STD,  # noqa: F401
                         Arch, ConvLayer, flops_per_example, kernel_fans, nws_arch, resolve, smallcnnzoo_arch, tensor_specs)
from popnet.layout import Layout
from popnet.network import single_architecture_rows

BN_EPSILON = 1e-5     # TensorLayer 1.x BatchNormLayer's default, which NWS's model.py uses (Keras' is 1e-3)
BN_MOMENTUM = 0.99


# --- initialization -----------------------------------------------------------------------------------------


def init(arch: Arch, key: jax.Array, input_shape, init_scheme) -> dict[str, Any]:
  """Fresh variables {'params', 'batch_stats'}: kernels by `init_scheme` (index into INITS), biases zero.

  Schemes: constant 0.1; N(0, 1); Glorot uniform U(+-sqrt(6 / (fan_in + fan_out))); Glorot normal and He normal
  as truncated normals (+-2 std) with variance 2 / (fan_in + fan_out) and 2 / fan_in. All kernels are cut from
  three random vectors (uniform, normal, truncated normal) drawn once per member: few random ops keep the
  compiled program small, and a traced per-member scheme only selects among cheap transforms."""
  layout = arch.layout(input_shape)
  kernels = [e for e in layout.entries if e.name == 'kernel']
  total = sum(e.size for e in kernels)
  ku, kn, kt = jax.random.split(key, 3)
  uniform = jax.random.uniform(ku, (total,), jnp.float32, -1.0, 1.0)
  normal = jax.random.normal(kn, (total,), jnp.float32)
  truncated = jax.random.truncated_normal(kt, -2.0, 2.0, (total,), jnp.float32) / TRUNC_STD
  variables: dict[str, Any] = {'params': {}, 'batch_stats': {}}
  offset = 0
  for e in layout.entries:
    if e.name == 'kernel':
      fan_in, fan_out = kernel_fans(e.shape)
      sl = slice(offset, offset + e.size)
      offset += e.size
      candidates = (lambda: jnp.full(e.shape, 0.1, jnp.float32),
                    lambda: normal[sl].reshape(e.shape),
                    lambda: uniform[sl].reshape(e.shape) * math.sqrt(6.0 / (fan_in + fan_out)),
                    lambda: truncated[sl].reshape(e.shape) * math.sqrt(2.0 / (fan_in + fan_out)),
                    lambda: truncated[sl].reshape(e.shape) * math.sqrt(2.0 / fan_in))
      value = candidates[init_scheme]() if isinstance(init_scheme, int) else jax.lax.switch(init_scheme, candidates)
    elif e.name in ('bn_gamma', 'bn_var'):
      value = jnp.ones(e.shape, jnp.float32)
    else:
      value = jnp.zeros(e.shape, jnp.float32)
    variables[e.collection].setdefault(e.layer, {})[e.name] = value
  return variables


# --- forward pass ---------------------------------------------------------------------------------------------
_EXP_CLIP = 80.0  # exp(80) is finite in float32; sigmoid/tanh are saturated far before


def _exp_argument(x, activation):
  """The one exponential each activation needs: elu exp(min(x, 0)), sigmoid exp(-x), tanh exp(-2x)."""
  if isinstance(activation, int):
    arg = (None, jnp.minimum(x, 0.0), -x, -2.0 * x)[activation]
  else:
    arg = jnp.where(activation == 1, jnp.minimum(x, 0.0), jnp.where(activation == 2, -x, -2.0 * x))
  return jnp.exp(jnp.clip(arg, -_EXP_CLIP, _EXP_CLIP))


def activate(x, activation):
  """`activation` indexes ACTIVATIONS: a Python int (that formula alone) or a traced per-member scalar.

  All four are written around a single exponential, so a traced choice costs one transcendental and a few
  selects that XLA fuses, instead of computing relu, elu, sigmoid and tanh side by side (transcendentals
  dominate a small CNN's step on CPU). Both paths use the same formulas, so the results are identical."""
  if isinstance(activation, int) and activation == 0:
    return jnp.maximum(x, 0.0)
  z = _exp_argument(x, activation)
  candidates = (lambda: jnp.maximum(x, 0.0), lambda: jnp.where(x > 0, x, z - 1.0), lambda: 1.0 / (1.0 + z),
                lambda: 2.0 / (1.0 + z) - 1.0)
  if isinstance(activation, int):
    return candidates[activation]()
  out = candidates[3]()
  for i in (2, 1, 0):
    out = jnp.where(activation == i, candidates[i](), out)
  return out


def _batch_norm(x, params, stats, train, axes):
  if train:
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean), axis=axes)
    new_stats = {'bn_mean': BN_MOMENTUM * stats['bn_mean'] + (1 - BN_MOMENTUM) * mean,
                 'bn_var': BN_MOMENTUM * stats['bn_var'] + (1 - BN_MOMENTUM) * var}
  else:
    mean, var, new_stats = stats['bn_mean'], stats['bn_var'], stats
  y = (x - mean) * jax.lax.rsqrt(var + BN_EPSILON) * params['bn_gamma'] + params['bn_beta']
  return y, new_stats


def drop_units(x, rate, key, index):
  """Inverted dropout of features [B, F]. The keep mask is drawn as [F, B] and transposed: with JAX's
  partitionable threefry, element (b, f) then depends only on (b, f), not on F, so a layer padded to more
  units (popnet/supernet.py) draws the same mask for its first F units."""
  if isinstance(rate, (int, float)) and rate == 0:
    return x
  key = jax.random.fold_in(key, index)

  def drop():
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape[::-1]).T
    return jnp.where(keep, x / (1.0 - rate), 0.0)

  return drop() if isinstance(rate, (int, float)) else jax.lax.cond(rate > 0, drop, lambda: x)


CONV_OUTPUT = 'conv_output'


def conv_unit(x, params, stats, layer: ConvLayer, *, batch_norm: bool, train: bool, activation, conv_impl: str):
  """conv + bias -> batch norm -> activation of one conv layer (no pooling); returns (x, new stats or None)."""
  x = conv_lib.conv2d(x, params['kernel'], layer.stride, impl=conv_impl, padding=layer.padding) + params['bias']
  x = checkpoint_name(x, CONV_OUTPUT)  # what a rematerialized conv unit keeps for its backward pass
  new_stats = None
  if batch_norm:
    x, new_stats = _batch_norm(x, params, stats, train, (0, 1, 2))
  return activate(x, activation), new_stats


def dense_unit(x, params, stats, *, batch_norm: bool, train: bool, activation):
  """dense + bias -> activation -> batch norm of one hidden FC layer; returns (x, new stats or None)."""
  x = activate(x @ params['kernel'] + params['bias'], activation)
  new_stats = None
  if batch_norm:
    x, new_stats = _batch_norm(x, params, stats, train, (0,))
  return x, new_stats


def apply(arch: Arch, variables, images, *, train: bool, activation, dropout=0.0, key=None,
          conv_impl: str = 'auto'):
  """Logits [B, num_outputs] for images [B, H, W, C]; returns (logits, new batch_stats)."""
  params, stats = variables['params'], variables.get('batch_stats', {})
  new_stats = {}
  x = images
  for i, layer in enumerate(arch.conv):
    name = f'conv_{i}'
    x, new_stats[name] = conv_unit(x, params[name], stats.get(name), layer, batch_norm=arch.batch_norm,
                                   train=train, activation=activation, conv_impl=conv_impl)
    if layer.pool:
      x = conv_lib.max_pool_2x2(x)
  x = jnp.mean(x, axis=(1, 2)) if arch.global_pool else x.reshape(x.shape[0], -1)
  for i in range(len(arch.dense)):
    name = f'dense_{i}'
    x, new_stats[name] = dense_unit(x, params[name], stats.get(name), batch_norm=arch.batch_norm, train=train,
                                    activation=activation)
    if train:
      x = drop_units(x, dropout, key, i)
  if train and not arch.dense:  # no hidden FC layer: drop the pooled features instead
    x = drop_units(x, dropout, key, 0)
  logits = x @ params['output']['kernel'] + params['output']['bias']
  return logits, {k: v for k, v in new_stats.items() if v is not None}


def per_example_loss_and_correct(logits, labels):
  """Softmax cross-entropy [B] and whether the argmax is the label [B] (callers reduce them)."""
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  correct = jnp.argmax(logits, axis=-1) == labels
  return loss, correct


def conv_impls(arch: Arch, conv_impl: str) -> tuple[str, ...]:
  """The convolution formulation each conv layer of `arch` runs with under `conv_impl` (auto picks per layer)."""
  return tuple(conv_lib.resolve_impl(conv_impl, layer.stride) for layer in arch.conv)


# --- the network interface (popnet/network.py) -----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CNN:
  """One built-in architecture as a network of the engine: every member runs `arch` as itself."""
  arch: Arch
  input_shape: tuple[int, int, int]
  conv_impl: str = 'auto'

  @property
  def name(self) -> str:
    return self.arch.name

  @functools.cached_property
  def layout(self) -> Layout:
    return self.arch.layout(self.input_shape)

  def configured(self, conv_impl: str, own_shapes: bool) -> 'CNN':
    return dataclasses.replace(self, conv_impl=conv_impl)  # own shapes are its shapes

  def member_arrays(self, members) -> dict:
    return {}

  def init(self, hp, key, init_scheme):
    return init(self.arch, key, self.input_shape, init_scheme)

  def apply(self, hp, variables, images, **kwargs):
    return apply(self.arch, variables, images, conv_impl=self.conv_impl, **kwargs)

  def own_values(self, hp):
    return lambda tree: tree

  def zoo_rows(self, members, rows):
    return single_architecture_rows(self.arch.name, rows)

  def training_flops(self, archs, examples, own_shape_convs: bool) -> float:
    return sum(e * flops_per_example(a, self.input_shape) for a, e in zip(archs, examples))
