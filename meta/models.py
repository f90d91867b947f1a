"""The meta-models' networks (Flax linen): the deep meta-classifier (DMC) and an MLP.

DMC (Eilertsen et al. 2020; reference/nws.md section 5) reads a window of consecutive raw weights as a 1-D signal:
conv1d (kernel 5) -> ReLU -> batch norm, max-pool 2 between groups, then an FC stack with dropout 0.5. The paper's
network has ~10.4M parameters, too slow to train on a CPU, so sizes are presets: `small` (the default, ~0.4M
parameters on 5,000-weight windows), `tiny` (tests) and `paper` (12 conv layers 8..256 then 256 x6, FC 1024 x4
-> 64: 10.39M parameters on 5,000 weights and 4 classes; the pooling positions are inferred to match the published
count). The MLP is the head of StatNN (on per-tensor statistics) and the whole-vector baseline.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class DMCSize:
  groups: tuple[tuple[int, ...], ...]   # conv widths per group; max-pool 2 between consecutive groups
  fc: tuple[int, ...]
  kernel: int = 5
  dropout: float = 0.5


DMC_SIZES = {
    'tiny': DMCSize(((8,), (16,), (16,)), (32,)),
    'small': DMCSize(((8,), (16,), (32,), (32,), (64,), (64,), (64,), (64,)), (128, 64)),
    'paper': DMCSize(((8,), (16,), (32,), (64,), (128,), (256,), (256,), (256,), (256, 256, 256, 256)),
                     (1024, 1024, 1024, 1024, 64)),
}


class DMC(nn.Module):
  """Deep meta-classifier over [batch, window] weights; outputs [batch, num_outputs] logits (or values)."""
  num_outputs: int
  groups: tuple[tuple[int, ...], ...] = DMC_SIZES['small'].groups
  fc: tuple[int, ...] = DMC_SIZES['small'].fc
  kernel: int = 5
  dropout: float = 0.5

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x[..., None]  # [batch, length, 1 channel]
    for g, widths in enumerate(self.groups):
      if g and x.shape[1] >= 2:
        x = nn.max_pool(x, (2,), strides=(2,))
      for w in widths:
        x = nn.Conv(w, (self.kernel,), padding='SAME')(x)
        x = nn.relu(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3)(x)
    x = x.reshape(x.shape[0], -1)
    for units in self.fc:
      x = nn.relu(nn.Dense(units)(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


def dmc(num_outputs: int, size: str | DMCSize = 'small') -> DMC:
  if isinstance(size, str) and size not in DMC_SIZES:
    raise ValueError(f'DMC size must be one of {sorted(DMC_SIZES)}, got {size!r}')
  s = DMC_SIZES[size] if isinstance(size, str) else size
  return DMC(num_outputs, tuple(tuple(g) for g in s.groups), tuple(s.fc), s.kernel, s.dropout)


class MLP(nn.Module):
  """Dense -> ReLU -> dropout stack on standardized features."""
  num_outputs: int
  hidden: tuple[int, ...] = (256, 128)
  dropout: float = 0.1

  @nn.compact
  def __call__(self, x, train: bool = False):
    for units in self.hidden:
      x = nn.relu(nn.Dense(units)(x))
      if self.dropout:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs)(x)


def mlp(num_outputs: int, hidden: Sequence[int] = (256, 128), dropout: float = 0.1) -> MLP:
  return MLP(num_outputs, tuple(int(h) for h in hidden), float(dropout))


def num_params(module: nn.Module, input_length: int) -> int:
  """Parameter count of `module` on inputs of `input_length` values (shape-only, nothing computed)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, input_length), jnp.float32)))
  return sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes["params"]))
