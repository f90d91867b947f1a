"""NFN's permutation-equivariant layers and invariant models (Zhou et al. 2023, "Permutation Equivariant Neural
Functionals"), in Flax linen, on the weight space of meta/equivariant.py.

A port of github.com/AllanYangZhou/nfn `nfn/layers/layers.py` (NPLinear, HNPLinear, NPPool, HNPPool) and
`experiments/models.py` (InvariantNFN, MlpHead), term by term (docs/meta-equivariant.md lists the differences).
Features are channels-last: layer i's weight features are [batch, n_out, n_in, F_i] with F_i = channels x spatial_i,
ordered as NFN's "b (c h w) o i" (channel-major), its bias features [batch, n_out, channels]; every flattening of
fixed units (HNP) and the pooled vector are ordered as NFN's too, so each Dense's kernel is the transpose of the
matching NFN map's weight (tests/test_nfn_torch_parity.py runs both on the same inputs). Per layer i, with row means (over W_i's rows,
one per column), column means (over its columns, one per row), and the means over everything:

  NP (every unit permutable, inputs and outputs too):
    W_i' = A W_i + B [all means of every W_j and b_j] + C [row means of W_i; column means of W_{i-1}; b_{i-1}]
           (broadcast over rows) + D [column means of W_i; b_i; row means of W_{i+1}] (broadcast over columns)
    b_i' = E [column means of W_i; b_i; row means of W_{i+1}] + F [all means]
  HNP (hidden units permutable; the network's inputs and outputs keep their order): the middle layers as NP,
    with the all-means input extended by W_0's row means, W_{L-1}'s column means and b_{L-1} (all their fixed
    units); layer 1 also reads W_0 whole per column and layer L-2 W_{L-1} whole per row; W_0's and b_0's rows
    read W_0 whole per row, W_1's row means and b_0 (and W_{L-1} when L = 2); W_{L-1}'s columns read W_{L-1}
    whole per column and W_{L-2}'s column means (and W_0 when L = 2); b_{L-1} reads the all-means input.

Every map is an affine Dense; a group of maps summed into one output is initialized as NFN's set_init_ does:
weights and biases U(+-1/sqrt(total fan-in of the group)); HNP's first-layer weight maps and last bias map keep
PyTorch's default, U(+-1/sqrt(own fan-in)).
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from meta.equivariant import WeightSpace, WeightSpaceError

MODES = ('np', 'hnp')


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


def _maps(inputs: dict, features: int, joint: bool = True) -> dict:
  """{name: Dense(features)(x)}; joint: one U(+-1/sqrt(sum of fan-ins)) init for the group (NFN's set_init_),
  else each map U(+-1/sqrt(its fan-in)) (PyTorch's default)."""
  total = sum(x.shape[-1] for x in inputs.values())
  out = {}
  for name, x in inputs.items():
    bound = 1.0 / math.sqrt(total if joint else x.shape[-1])
    out[name] = nn.Dense(features, kernel_init=_uniform(bound), bias_init=_uniform(bound), name=name)(x)
  return out


def _cat(xs):
  return jnp.concatenate(xs, axis=-1)


def _row_means(weights):
  return [w.mean(1) for w in weights]  # [B, n_in, F]: over rows, one per column


def _col_means(weights):
  return [w.mean(2) for w in weights]  # [B, n_out, F]: over columns, one per row


def _all_means(weights, biases):
  return [w.mean((1, 2)) for w in weights] + [b.mean(1) for b in biases]


def _per_row(w):
  """W [B, n_out, n_in, F] -> [B, n_out, F * n_in]: every row with its whole (fixed-order) columns, NFN's
  "b c nrow ncol -> b (c ncol) nrow" (feature-major)."""
  return jnp.swapaxes(w, 2, 3).reshape(w.shape[0], w.shape[1], -1)


def _per_col(w):
  """W [B, n_out, n_in, F] -> [B, n_in, F * n_out]: every column with its whole (fixed-order) rows, NFN's
  "b c nrow ncol -> b (c nrow) ncol"."""
  return _per_row(jnp.swapaxes(w, 1, 2))


def _units_flat(x):
  """[B, n, F] -> [B, F * n] (feature-major, NFN's torch.flatten of "b c n")."""
  return jnp.swapaxes(x, 1, 2).reshape(x.shape[0], -1)


def _unflat_units(z, n_units: int, f_out: int):
  """[B, m, f_out * n_units] (feature-major, NFN's "b (c n) m") -> [B, m, n_units, f_out]."""
  return jnp.swapaxes(z.reshape(z.shape[0], z.shape[1], f_out, n_units), 2, 3)


def _middle(i: int, w, b, rc, row_in, col_in, f_out: int, channels: int):
  """NFN's layer_i / layer_i_rc / layer_i_r / layer_i_c and bias_i / bias_i_rc terms."""
  z = _maps({f'layer_{i}': w, f'layer_{i}_rc': rc, f'layer_{i}_r': _cat(row_in), f'layer_{i}_c': _cat(col_in)}, f_out)
  u = _maps({f'bias_{i}': _cat(col_in), f'bias_{i}_rc': rc}, channels)
  w_out = z[f'layer_{i}'] + z[f'layer_{i}_rc'][:, None, None] + z[f'layer_{i}_r'][:, None] + z[f'layer_{i}_c'][:, :, None]
  return w_out, u[f'bias_{i}'] + u[f'bias_{i}_rc'][:, None]


class NPLinear(nn.Module):
  """NFN's NPLinear: equivariant to permutations of every layer's units (inputs and outputs included).
  io_embed: NFN's NP-PosEmb (learned embeddings of the input columns and output rows, added first)."""
  space: WeightSpace
  channels: int
  io_embed: bool = False

  @nn.compact
  def __call__(self, weights, biases):
    if self.io_embed:
      weights, biases = self._embed(list(weights), list(biases))
    L, rows, cols = len(weights), _row_means(weights), _col_means(weights)
    rc = _cat(_all_means(weights, biases))
    out_w, out_b = [], []
    for i, (w, b) in enumerate(zip(weights, biases)):
      row_in = [rows[i]] + ([cols[i - 1], biases[i - 1]] if i > 0 else [])
      col_in = [cols[i], b] + ([rows[i + 1]] if i < L - 1 else [])
      w_i, b_i = _middle(i, w, b, rc, row_in, col_in, self.space.layers[i].spatial * self.channels, self.channels)
      out_w.append(w_i)
      out_b.append(b_i)
    return tuple(out_w), tuple(out_b)

  def _embed(self, weights, biases):
    normal = nn.initializers.normal(1.0)
    weights[0] = weights[0] + self.param('in_embed', normal, weights[0].shape[2:])[None, None]
    weights[-1] = weights[-1] + self.param('out_embed', normal, (weights[-1].shape[1], weights[-1].shape[3]))[
        None, :, None]
    biases[-1] = biases[-1] + self.param('out_bias_embed', normal, biases[-1].shape[1:])[None]
    return weights, biases


class HNPLinear(nn.Module):
  """NFN's HNPLinear: equivariant to permutations of hidden units only (needs at least two layers)."""
  space: WeightSpace
  channels: int

  @nn.compact
  def __call__(self, weights, biases):
    L, (n_in, n_out) = len(weights), self.space.io
    if L < 2:
      raise WeightSpaceError('nfn_hnp: the network has one layer (no hidden units); HNP needs at least two')
    rows, cols = _row_means(weights), _col_means(weights)
    rc = _cat(_all_means(weights, biases) + [_units_flat(rows[0]), _units_flat(cols[-1]), _units_flat(biases[-1])])
    out_w, out_b = [], []
    for i, (w, b) in enumerate(zip(weights, biases)):
      f_out, c = self.space.layers[i].spatial * self.channels, self.channels
      if i == 0:
        rpt = [_per_row(w), rows[1], b] + ([_per_col(weights[-1])] if L == 2 else [])
        z = _maps({'w0_rpt': _cat(rpt), 'w0_rbdcst': rc}, n_in * f_out, joint=False)
        w_i = _unflat_units(z['w0_rpt'] + z['w0_rbdcst'][:, None], n_in, f_out)
        u = _maps({'bias_0': _cat(rpt), 'bias_0_rc': rc}, c)
        b_i = u['bias_0'] + u['bias_0_rc'][:, None]
      elif i == L - 1:
        cpt = [_per_col(w), cols[-2]] + ([_per_row(weights[0])] if L == 2 else [])
        z = _maps({'wfin_cpt': _cat(cpt), 'wfin_cbdcst': rc}, n_out * f_out)
        w_i = jnp.swapaxes(_unflat_units(z['wfin_cpt'] + z['wfin_cbdcst'][:, None], n_out, f_out), 1, 2)
        b_i = _unflat_units(_maps({'bias_fin_rc': rc}, n_out * c)['bias_fin_rc'][:, None], n_out, c)[:, 0]
      else:
        row_in = [rows[i], cols[i - 1], biases[i - 1]] + ([_per_row(weights[0])] if i == 1 else [])
        col_in = [cols[i], b, rows[i + 1]] + ([_per_col(weights[-1])] if i == L - 2 else [])
        w_i, b_i = _middle(i, w, b, rc, row_in, col_in, f_out, c)
      out_w.append(w_i)
      out_b.append(b_i)
    return tuple(out_w), tuple(out_b)


def _by_channel(x, c: int):
  """[B, n, F] with F = (channel, position) -> [B, c, n * positions] (NFN's unshaped "b c n h w", flattened)."""
  return jnp.swapaxes(x.reshape(x.shape[0], x.shape[1], c, -1), 1, 2).reshape(x.shape[0], c, -1)


def _pooled(parts, c: int):
  """NFN's pooling heads' output: the parts concatenated per channel, then flattened channel-major."""
  return _cat([_by_channel(x, c) for x in parts]).reshape(parts[0].shape[0], -1)


def np_pool(weights, biases):
  """NFN's NPPool: per layer the mean of W_i over rows and columns and the mean of b_i -> [B, C * (sum s_i + L)]."""
  parts = [x for w, b in zip(weights, biases) for x in (w.mean((1, 2))[:, None], b.mean(1, keepdims=True))]
  return _pooled(parts, biases[0].shape[-1])


def hnp_pool(weights, biases):
  """NFN's HNPPool: W_0 averaged over rows (its input columns kept), W_{L-1} over columns (its output rows kept),
  the others over both; every bias averaged but b_{L-1}, kept whole."""
  L, parts = len(weights), []
  for i, (w, b) in enumerate(zip(weights, biases)):
    parts.append(w.mean(1) if i == 0 else w.mean(2) if i == L - 1 else w.mean((1, 2))[:, None])
    parts.append(b if i == L - 1 else b.mean(1, keepdims=True))
  return _pooled(parts, biases[0].shape[-1])


class EquivariantStack(nn.Module):
  """NFN's nfnet_features: [batch, size] flat rows -> the weight space -> NP or HNP layers, each followed by
  ReLU -> (weights, biases) features, equivariant to the mode's permutations."""
  space: WeightSpace
  mode: str = 'hnp'
  channels: tuple[int, ...] = (16, 16, 5)
  io_embed: bool = False

  @nn.compact
  def __call__(self, x):
    if self.mode not in MODES:
      raise ValueError(f'nfn mode must be one of {list(MODES)}, got {self.mode!r}')
    weights, biases = self.space.split(x)
    for j, c in enumerate(self.channels):
      if self.mode == 'np':
        weights, biases = NPLinear(self.space, c, self.io_embed, name=f'np_{j}')(weights, biases)
      else:
        weights, biases = HNPLinear(self.space, c, name=f'hnp_{j}')(weights, biases)
      weights, biases = tuple(map(nn.relu, weights)), tuple(map(nn.relu, biases))
    return weights, biases


class InvariantNFN(nn.Module):
  """NFN's InvariantNFN with its MlpHead: the EquivariantStack -> pooling -> Linear(head) -> ReLU ->
  Linear(head) -> ReLU -> Linear(num_outputs) (logits, or values on the standardized target scale). Invariant to
  every hidden-unit permutation of the input network (NP with pool 'np': to input and output permutations too).
  pool: NFN's MlpHead pool_mode, 'hnp' (its default, kept by every NFN config, np_inv included) or 'np'."""
  num_outputs: int
  space: WeightSpace
  mode: str = 'hnp'
  channels: tuple[int, ...] = (16, 16, 5)   # NFN's predict_gen hnp_inv / np_inv hchannels
  head: int = 1000                          # NFN's MlpHead h_size
  dropout: float = 0.0
  io_embed: bool = False                    # NP only: NFN's NP-PosEmb (its np_inv config)
  pool: str = 'hnp'

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.pool not in MODES:
      raise ValueError(f'nfn pool must be one of {list(MODES)}, got {self.pool!r}')
    weights, biases = EquivariantStack(self.space, self.mode, self.channels, self.io_embed, name='features')(x)
    h = (np_pool if self.pool == 'np' else hnp_pool)(weights, biases)
    for j, width in enumerate((self.head, self.head, self.num_outputs)):
      bound = 1.0 / math.sqrt(h.shape[-1])  # PyTorch's default nn.Linear init
      h = nn.Dense(width, kernel_init=_uniform(bound), bias_init=_uniform(bound), name=f'head_{j}')(h)
      if j < 2:
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
    return h
