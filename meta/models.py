"""The meta-models' networks (Flax linen): the deep meta-classifier (DMC) and an MLP.

The DMC (Eilertsen et al. 2020, "Classifying the classifier") reads a window of consecutive raw weights as a
1-D signal. Its layers follow a rule (`DMCSpec.layers`), written after NWS's published code,
github.com/gabrieleilertsen/nws `model.py`:

  model.py:cnn1D_small (windows <= 40,000 values; the network of the paper's 5,000-value windows):
    conv 8, pool, conv 16, pool, conv 32, conv 64, pool, conv 128, conv 256,
    then 6 times: "if sz[1] > 50: max_pool_2x1" followed by conv 256, then a final pool;
  model.py:cnn1D (windows > 40,000 values; chosen in meta_classifier.py by `if sz > 40000`):
    conv 8, 16, 32, 64, 128, 128, 128, 128, 128, each followed by a pool, then the conv pairs
    (128, 256), (256, 256), (256, 256), each pair followed by a pool;
  both: flatten, FC 1024, 1024, 1024, 1024, 64, each followed by dropout (keep_prob 0.5), linear output C.
  model.py:conv1d is conv (kernel 5, stride 1, SAME) + bias -> ReLU -> BatchNormLayer; model.py:fc is
  matmul + bias -> ReLU -> BatchNormLayer; model.py:max_pool_2x1 is max-pool 2, stride 2, VALID (rounds down);
  weights are Glorot normal (itype 3), biases zero; TensorLayer's BatchNormLayer has decay 0.9, epsilon 1e-5.

Evaluation normalizes with batch statistics, as NWS does (meta_classifier.py builds cnn1D_small with
training=True for evaluation too): `eval_norm='batch'` (default), with test windows evaluated in batches mixed
across networks like the training batches (meta/methods.py). Raw windows differ in scale by orders of magnitude
between networks (N(0, 1) vs Glorot vs constant initialization), so a DMC trained with batch statistics is
tied to them: one DMC fitted on the replication zoo while it was being built (activation, snapshots 10-19, 875 steps,
652 validation snapshots; `python -m benchmarks.dmc_eval_norm --zoo runs/replication --target activation`)
scored 0.40 per snapshot with mixed-batch statistics, 0.30 with its running averages, 0.29 with running
averages recomputed over 100 training batches and 0.12 with one snapshot's 64 windows as the batch (chance 0.25).
`eval_norm='running'` (running averages) is kept for comparison.

Presets (`DMC_SIZES`): `paper` is that network exactly (10.4M parameters on 5,000-value windows, 4 classes);
`small` (the default on a CPU, 0.27M parameters on 5,000-value windows) and `tiny` (tests) follow the same
rules with fewer channels.
The MLP is the head of StatNN (on per-tensor statistics) and the whole-vector baseline; NeuronSet reads per-neuron
features (meta/neurons.py) with one encoder per layer pooled over the layer's neurons.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from meta.options import EVAL_NORMS  # noqa: F401  (re-exported; the command line reads it without JAX)

POOL = 'pool'


@dataclasses.dataclass(frozen=True)
class DMCSpec:
  """A DMC's layer rule. `head` runs first (ints: conv widths; POOL: a max-pool 2); then `repeats` convs of
  `repeat_width`, each preceded by a pool while the length exceeds `pool_above`; then a final pool (when
  `final_pool`). Windows longer than `wide_above` use `wide` instead (NWS's cnn1D)."""
  head: tuple
  repeats: int
  repeat_width: int
  fc: tuple[int, ...]
  pool_above: int = 50
  final_pool: bool = True
  fc_batch_norm: bool = True
  kernel: int = 5
  dropout: float = 0.5
  wide: 'DMCSpec | None' = None
  wide_above: int = 40_000

  def layers(self, length: int) -> tuple:
    """The conv/pool sequence on windows of `length` values (e.g. (8, 'pool', 16, ...))."""
    if self.wide is not None and length > self.wide_above:
      return self.wide.layers(length)
    out = list(self.head)
    n = length
    for op in self.head:
      n = n // 2 if op == POOL else n
    for _ in range(self.repeats):
      if n > self.pool_above:
        out.append(POOL)
        n //= 2
      out.append(self.repeat_width)
    if self.final_pool:
      out.append(POOL)
    return tuple(out)


_FC_PAPER = (1024, 1024, 1024, 1024, 64)
NWS_CNN1D = DMCSpec(  # model.py:cnn1D
    head=(8, POOL, 16, POOL, 32, POOL, 64, POOL, 128, POOL, 128, POOL, 128, POOL, 128, POOL, 128, POOL,
          128, 256, POOL, 256, 256, POOL, 256, 256, POOL), repeats=0, repeat_width=256, fc=_FC_PAPER,
    final_pool=False)
DMC_SIZES = {
    'tiny': DMCSpec(head=(8, POOL, 16), repeats=2, repeat_width=16, fc=(32,)),
    'small': DMCSpec(head=(8, POOL, 16, POOL, 32, 32, POOL, 64), repeats=4, repeat_width=64, fc=(128, 64)),
    'paper': DMCSpec(head=(8, POOL, 16, POOL, 32, 64, POOL, 128, 256), repeats=6, repeat_width=256,  # cnn1D_small
                     fc=_FC_PAPER, wide=NWS_CNN1D),
}


def _batch_norm(batch_statistics: bool):
  return nn.BatchNorm(use_running_average=not batch_statistics, momentum=0.9, epsilon=1e-5)


class DMC(nn.Module):
  """Deep meta-classifier over [batch, window] weights; outputs [batch, num_outputs] logits (or values)."""
  num_outputs: int
  spec: DMCSpec = DMC_SIZES['small']
  eval_norm: str = 'batch'  # EVAL_NORMS

  @nn.compact
  def __call__(self, x, train: bool = False):
    """Evaluation (train=False) with eval_norm 'batch' normalizes with the batch's statistics: apply it with
    mutable=['batch_stats'] (the updated running averages are discarded, meta/fit.py:predict)."""
    s = self.spec
    batch_statistics = train or self.eval_norm == 'batch'
    if batch_statistics and not train and not (self.is_initializing() or self.is_mutable_collection('batch_stats')):
      raise ValueError("DMC(eval_norm='batch') evaluates with batch statistics: apply it with "
                       "mutable=['batch_stats'] (meta/fit.py:predict does), or use eval_norm='running'")
    init = nn.initializers.glorot_normal()
    x = x[..., None]  # [batch, length, 1 channel]
    for op in s.layers(x.shape[1]):
      if op == POOL:
        x = nn.max_pool(x, (2,), strides=(2,), padding='VALID') if x.shape[1] >= 2 else x
      else:
        x = _batch_norm(batch_statistics)(nn.relu(nn.Conv(op, (s.kernel,), padding='SAME', kernel_init=init)(x)))
    x = x.reshape(x.shape[0], -1)
    for units in s.fc:
      x = nn.relu(nn.Dense(units, kernel_init=init)(x))
      if s.fc_batch_norm:
        x = _batch_norm(batch_statistics)(x)
      x = nn.Dropout(s.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_outputs, kernel_init=init)(x)


def dmc(num_outputs: int, size: str | DMCSpec = 'small', eval_norm: str = 'batch') -> DMC:
  if isinstance(size, str) and size not in DMC_SIZES:
    raise ValueError(f'DMC size must be one of {sorted(DMC_SIZES)}, got {size!r}')
  if eval_norm not in EVAL_NORMS:
    raise ValueError(f'DMC eval_norm must be one of {list(EVAL_NORMS)}, got {eval_norm!r}')
  return DMC(num_outputs, DMC_SIZES[size] if isinstance(size, str) else size, eval_norm)


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


class NeuronSet(nn.Module):
  """Permutation-invariant meta-model over neurons (meta/neurons.py): the flat feature row [batch, sum(units *
  dim)] is cut into one [units, dim] set per layer; each layer's own encoder (Dense -> ReLU, twice) runs on every
  neuron, the set is pooled by mean and max, the layers' pooled vectors are concatenated and an MLP head reads
  them. Reordering the neurons of any layer permutes the rows of its set only, so the output does not change."""
  num_outputs: int
  sets: tuple[tuple[int, int], ...]  # (units, dim) per layer, in the row's order
  width: int = 64
  hidden: tuple[int, ...] = (256, 128)
  dropout: float = 0.1

  @nn.compact
  def __call__(self, x, train: bool = False):
    pooled, start = [], 0
    for i, (units, dim) in enumerate(self.sets):
      h = x[:, start:start + units * dim].reshape(x.shape[0], units, dim)
      start += units * dim
      for j in range(2):
        h = nn.relu(nn.Dense(self.width, name=f'layer{i}_encoder{j}')(h))
      pooled += [h.mean(1), h.max(1)]
    return MLP(self.num_outputs, self.hidden, self.dropout)(jnp.concatenate(pooled, axis=-1), train)


def variable_counts(module: nn.Module, input_length: int) -> dict[str, int]:
  """{collection: number of values} of `module` on inputs of `input_length` values (shapes only, nothing run)."""
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, input_length), jnp.float32)))
  return {k: sum(math.prod(x.shape) for x in jax.tree_util.tree_leaves(v)) for k, v in shapes.items()}


def num_params(module: nn.Module, input_length: int) -> int:
  """Trainable parameter count of `module` on inputs of `input_length` values."""
  return variable_counts(module, input_length)['params']
