"""Members of different NWS-family architectures in one program: a padded network and per-member masks.

A bucket's `Supernet` is the padded architecture of its members: every conv block as deep as the deepest
member's, every layer as wide as the widest, every kernel as large as the largest, and as many hidden FC
layers as the deepest member has (each as wide as the widest member's layer at that depth). A member runs in
it as itself, exactly:

- filter size: its k x k kernel sits centred in the K x K one, the rest zero (a SAME convolution with the
  centred kernel computes the same sums plus zero terms);
- conv / FC width: its channels and units are the first ones; the others have zero kernels, biases and
  batch-norm parameters, so they output zeros that the next layer's zero kernel rows ignore;
- conv depth: a block's extra layers (the NWS generator adds them inside blocks, models.nws_arch) are
  skipped for the member (lax.cond: the identity; vmapped, a select);
- FC depth: all hidden FC layers run, and the output layer reads the member's last one (its features padded
  to the output kernel's width);
- every update is masked (gradients, new parameters, batch-norm statistics), so padded values stay exactly
  zero and optimizer states see only the member's own values.

Where members run one at a time (member_chunk 1, the CPU default: popnet/population.py) each conv layer
instead runs at the member's own shape (`apply(own_shapes=True)`): a lax.switch over the (kernel, in, out)
shapes the bucket's members have at that layer (`Supernet.conv_shapes`) cuts the member's kernel out of the
padded one, convolves only its own channels and pads the output back with zeros. One member at a time the
switch is a real branch, so padding costs no convolution work and buckets can be large (popnet/buckets.py);
vmapped, a switch would compute every branch, so accelerators run the padded convolutions.

Geometry (which layer is active, its kernel size, widths, where its kernel starts in the member's own kernel
values and its initialization scales) comes from the member's own Arch on the host (`member_arrays`) and is
traced per member. `init` draws the member's own random vectors (prefix-stable in length: JAX's partitionable
threefry) and gathers its own kernels from them, so it equals models.init of the member's architecture with
the same key. popnet/own_tensors.py cuts a member's own tensors out of the padded ones (its zoo row is its own
architecture's vector in its own layout).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from popnet import conv as conv_lib
from popnet import models
from popnet.layout import Layout

_SCALES = 3  # glorot uniform, glorot normal, he normal (models.init)


@dataclasses.dataclass(frozen=True)
class Supernet:
  arch: models.Arch                 # the padded network (its output layer reads `feature_width` features)
  input_shape: tuple[int, int, int]
  block_sizes: tuple[int, ...]      # conv layers per block
  kernel_values: int                # the longest own-kernel concatenation of any member (models.init)
  # per padded conv layer, the members' own (kernel, in, out) shapes run in it (`apply(own_shapes=True)`)
  conv_shapes: tuple[tuple[tuple[int, int, int], ...], ...] = ()
  conv_impl: str = 'auto'
  own_shapes: bool = False          # conv layers at each member's own shape (members run one at a time)

  # --- the network interface (popnet/network.py) ---
  @property
  def name(self) -> str:
    return self.arch.name

  def configured(self, conv_impl: str, own_shapes: bool) -> 'Supernet':
    return dataclasses.replace(self, conv_impl=conv_impl, own_shapes=own_shapes)

  def member_arrays(self, members) -> dict[str, np.ndarray]:
    from popnet import hparams
    return member_arrays(self, [hparams.arch_of(r) for r in members.to_dict('records')])

  def init(self, hp, key, init_scheme):
    return init(self, hp, key, init_scheme)

  def apply(self, hp, variables, images, **kwargs):
    return apply(self, hp, variables, images, conv_impl=self.conv_impl, own_shapes=self.own_shapes, **kwargs)

  def own_values(self, hp):
    mask = masks(self, hp)
    return lambda tree: apply_masks(tree, mask['params'] if 'params' not in tree else mask)

  def zoo_rows(self, members, rows):
    from popnet import hparams, own_tensors
    out = {}
    for name, positions in members.groupby('arch', sort=False).indices.items():
      arch = hparams.arch_of(members.iloc[positions[0]])
      out[name] = (positions, own_tensors.own_rows(self, arch, rows[positions]))
    return out

  def training_flops(self, archs, examples, own_shape_convs: bool) -> float:
    """Padded FLOPs; with own_shape_convs the FC layers padded and each member's own conv layers, scaled by
    the bucket's conv width / the member's (its activations are padded to the bucket's width between layers)."""
    if own_shape_convs:
      width = self.arch.conv[0].features
      padded = sum(e * models.flops_per_example(a, self.input_shape, 'conv') * width / a.conv[0].features
                   for a, e in zip(archs, examples))
      return padded + sum(examples) * models.flops_per_example(self.arch, self.input_shape, 'dense')
    return sum(examples) * models.flops_per_example(self.arch, self.input_shape)

  @property
  def feature_width(self) -> int:
    return max(self.arch.dense)

  @functools.cached_property
  def layout(self) -> Layout:
    """The padded variables' layout (checkpoints and device flattening; never the zoo)."""
    specs = [s if s[1:3] != ('output', 'kernel') else ('params', 'output', 'kernel',
                                                        (self.feature_width, self.arch.num_outputs))
             for s in models.tensor_specs(self.arch, self.input_shape)]
    return Layout.from_specs(specs)

  @property
  def flatten_groups(self) -> int:
    """Spatial positions of the conv features the first FC layer reads."""
    h, w, _ = self.input_shape
    for layer in self.arch.conv:
      h, w = layer.output_size(h), layer.output_size(w)
      if layer.pool:
        h, w = -(-h // 2), -(-w // 2)
    return h * w


# --- which architectures mix, and their padded network --------------------------------------------------------
def blocks(arch: models.Arch) -> list[list[int]]:
  """Conv layer indices per block (a block ends with a pooling layer)."""
  out, current = [], []
  for i, layer in enumerate(arch.conv):
    current.append(i)
    if layer.pool:
      out.append(current)
      current = []
  return out + ([current] if current else [])


def unmixable_reason(arch: models.Arch) -> str | None:
  """Why `arch` cannot be a member of a padded bucket, or None (the NWS generator's family can)."""
  if not isinstance(arch, models.Arch):
    return 'not a built-in CNN (a user module runs as itself)'
  if arch.global_pool or not arch.dense or not arch.conv:
    return 'needs conv layers, flattening and at least one hidden FC layer'
  if any(layer.stride != 1 or layer.padding != 'SAME' or layer.kernel % 2 == 0 for layer in arch.conv):
    return 'needs stride-1 SAME convolutions with odd kernels'
  if not arch.conv[-1].pool or any(len({arch.conv[i].features for i in b}) != 1 for b in blocks(arch)):
    return 'needs blocks that end with pooling and keep one width'
  return None


def signature(arch: models.Arch) -> tuple:
  """Architectures with equal signatures can share a padded network."""
  return (len(blocks(arch)), arch.num_outputs, arch.batch_norm)


def build(archs, input_shape) -> Supernet:
  """The padded network of `archs` (all mixable, with one signature)."""
  archs = list(archs)
  for arch in archs:
    reason = unmixable_reason(arch)
    if reason:
      raise ValueError(f'architecture {arch.name} cannot be padded: {reason}')
  if len({signature(a) for a in archs}) != 1:
    raise ValueError(f'architectures differ in blocks, outputs or batch norm: {sorted(a.name for a in archs)}')
  kernel = max(layer.kernel for a in archs for layer in a.conv)
  per_block = [list(zip(*[(len(b), a.conv[b[0]].features) for a in archs for b in [blocks(a)[i]]]))
               for i in range(len(blocks(archs[0])))]
  conv = tuple(models.ConvLayer(max(widths), kernel, 1, pool=(j == max(depths) - 1))
               for depths, widths in per_block for j in range(max(depths)))
  depth_fc = max(len(a.dense) for a in archs)
  dense = tuple(max(a.dense[i] for a in archs if len(a.dense) > i) for i in range(depth_fc))
  first = archs[0]
  name = f'padded_f{kernel}_c{len(conv)}x{conv[0].features}_fc{depth_fc}x{dense[0]}'
  arch = models.Arch(name, conv, dense, first.num_outputs, first.batch_norm)
  kernel_values = max(sum(e.size for e in a.layout(input_shape).entries if e.name == 'kernel') for a in archs)
  net = Supernet(arch, tuple(input_shape), tuple(max(d) for d, _ in per_block), kernel_values)
  shapes = [set() for _ in conv]
  for a in archs:
    for row, shape in _own_conv_shapes(net, a):
      shapes[row].add(shape)
  return dataclasses.replace(net, conv_shapes=tuple(tuple(sorted(s)) for s in shapes))


def _own_conv_shapes(net: Supernet, arch: models.Arch):
  """(padded conv layer, own (kernel, in, out)) of each of `arch`'s conv layers."""
  cin = net.input_shape[-1]
  for row, layer in zip(conv_map(net, arch), arch.conv):
    yield row, (layer.kernel, cin, layer.features)
    cin = layer.features


def conv_map(net: Supernet, arch: models.Arch) -> list[int]:
  """The padded conv layer that runs each of `arch`'s conv layers."""
  starts = np.cumsum((0,) + net.block_sizes)
  return [int(starts[b]) + j for b, layer_ids in enumerate(blocks(arch)) for j in range(len(layer_ids))]


# --- per-member geometry (host) ---------------------------------------------------------------------------------
def _scales(shape) -> list[float]:
  fan_in, fan_out = models.kernel_fans(shape)
  return [math.sqrt(6.0 / (fan_in + fan_out)), math.sqrt(2.0 / (fan_in + fan_out)), math.sqrt(2.0 / fan_in)]


def geometry(net: Supernet, arch: models.Arch) -> dict[str, np.ndarray]:
  """One member's traced geometry: conv rows (active, kernel, in, out, offset), dense and output rows (active,
  in per group, out, offset), the kernels' initialization scales, and its number of hidden FC layers."""
  conv = np.zeros((len(net.arch.conv), 5), np.int32)
  dense = np.zeros((len(net.arch.dense) + 1, 4), np.int32)
  conv_scale = np.zeros((len(conv), _SCALES), np.float32)
  dense_scale = np.zeros((len(dense), _SCALES), np.float32)
  kernels = [e for e in arch.layout(net.input_shape).entries if e.name == 'kernel']
  offsets = np.cumsum([0] + [e.size for e in kernels])
  targets = ([('conv', i) for i in conv_map(net, arch)] + [('dense', i) for i in range(len(arch.dense))]
             + [('dense', len(net.arch.dense))])
  channels = arch.conv[-1].features
  for (kind, row), e, offset in zip(targets, kernels, offsets):
    if kind == 'conv':
      k, _, cin, cout = e.shape
      conv[row], conv_scale[row] = (1, k, cin, cout, offset), _scales(e.shape)
    else:
      fin = channels if row == 0 else e.shape[0]
      dense[row], dense_scale[row] = (1, fin, e.shape[1], offset), _scales(e.shape)
  shape_index = np.zeros(len(conv), np.int32)
  for row, shape in _own_conv_shapes(net, arch):
    shape_index[row] = net.conv_shapes[row].index(shape)
  return {'geo_conv': conv, 'geo_conv_scale': conv_scale, 'geo_dense': dense, 'geo_dense_scale': dense_scale,
          'geo_depth_fc': np.int32(len(arch.dense)), 'geo_conv_shape': shape_index}


def member_arrays(net: Supernet, archs) -> dict[str, np.ndarray]:
  """Per-member geometry arrays [P, ...] of the members' architectures (popnet/population.py adds them to hp)."""
  cache: dict[str, dict] = {}
  rows = [cache.setdefault(a.name, geometry(net, a)) for a in archs]
  return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


# --- traced: kernel indices, masks, init ------------------------------------------------------------------------
def _conv_index(shape, row):
  """(valid [K, K, Ci, Co], index into the member's kernel values) of a padded conv kernel."""
  active, k, cin, cout, offset = (row[i] for i in range(5))
  a, b, ci, co = (jax.lax.broadcasted_iota(jnp.int32, shape, d) for d in range(4))
  pad = (shape[0] - k) // 2
  a, b = a - pad, b - pad
  valid = (active > 0) & (a >= 0) & (a < k) & (b >= 0) & (b < k) & (ci < cin) & (co < cout)
  return valid, jnp.where(valid, offset + ((a * k + b) * cin + ci) * cout + co, 0)


def _dense_index(shape, row, groups: int):
  """(valid [Fi, Fo], index) of a padded dense kernel whose rows are `groups` groups of per-group inputs."""
  active, fin, fout, offset = (row[i] for i in range(4))
  r, col = (jax.lax.broadcasted_iota(jnp.int32, shape, d) for d in range(2))
  group, ch = r // (shape[0] // groups), r % (shape[0] // groups)
  valid = (active > 0) & (ch < fin) & (col < fout)
  return valid, jnp.where(valid, offset + (group * fin + ch) * fout + col, 0)


def _layers(net: Supernet):
  """(layer name, 'conv' | 'dense', geometry row, rows' groups) of every padded layer in forward order."""
  out = [(f'conv_{i}', 'conv', i, 1) for i in range(len(net.arch.conv))]
  out += [(f'dense_{i}', 'dense', i, net.flatten_groups if i == 0 else 1) for i in range(len(net.arch.dense))]
  return out + [('output', 'dense', len(net.arch.dense), 1)]


def _layer(net: Supernet, name: str):
  return next(x for x in _layers(net) if x[0] == name)


def _kernel(hp, kind, row, groups, shape):
  """(valid, index into the member's kernel values, its three initialization scales) of a padded kernel."""
  if kind == 'conv':
    return _conv_index(shape, hp['geo_conv'][row]) + (hp['geo_conv_scale'][row],)
  return _dense_index(shape, hp['geo_dense'][row], groups) + (hp['geo_dense_scale'][row],)


def _unit_mask(hp, kind, row, n):
  g = hp['geo_conv'][row] if kind == 'conv' else hp['geo_dense'][row]
  out = g[3] if kind == 'conv' else g[2]
  return (g[0] > 0) & (jnp.arange(n) < out)


def masks(net: Supernet, hp):
  """1.0 on the member's own values, 0.0 on padding, for every padded variable."""
  out = {'params': {}, 'batch_stats': {}}
  for e in net.layout.entries:
    _, kind, row, groups = _layer(net, e.layer)
    if e.name == 'kernel':
      valid = _kernel(hp, kind, row, groups, e.shape)[0]
    else:
      valid = _unit_mask(hp, kind, row, e.shape[0])
    out[e.collection].setdefault(e.layer, {})[e.name] = valid.astype(jnp.float32)
  return out


def init(net: Supernet, hp, key, init_scheme):
  """The member's models.init(own arch, key, ...) embedded in the padded variables (zero elsewhere)."""
  ku, kn, kt = jax.random.split(key, 3)
  n = net.kernel_values
  uniform = jax.random.uniform(ku, (n,), jnp.float32, -1.0, 1.0)
  normal = jax.random.normal(kn, (n,), jnp.float32)
  truncated = jax.random.truncated_normal(kt, -2.0, 2.0, (n,), jnp.float32) / models.TRUNC_STD
  mask = masks(net, hp)
  variables = {'params': {}, 'batch_stats': {}}
  for e in net.layout.entries:
    value = mask[e.collection][e.layer][e.name] if e.name in ('bn_gamma', 'bn_var') else jnp.zeros(e.shape)
    if e.name == 'kernel':
      _, kind, row, groups = _layer(net, e.layer)
      valid, index, scale = _kernel(hp, kind, row, groups, e.shape)
      candidates = (lambda: jnp.full(e.shape, 0.1, jnp.float32), lambda: normal[index],
                    lambda: uniform[index] * scale[0], lambda: truncated[index] * scale[1],
                    lambda: truncated[index] * scale[2])
      chosen = candidates[init_scheme]() if isinstance(init_scheme, int) else jax.lax.switch(init_scheme, candidates)
      value = jnp.where(valid, chosen, 0.0)
    variables[e.collection].setdefault(e.layer, {})[e.name] = value
  return variables


def apply_masks(tree, mask):
  return jax.tree.map(lambda x, m: x * m, tree, mask)


# --- traced: forward pass -------------------------------------------------------------------------------------
def _own_shape_conv(x, params, stats, layer: models.ConvLayer, shape, **unit):
  """models.conv_unit at the member's own (kernel, in, out) shape, cut out of the padded layer; its output and
  statistics padded back (zeros in the padded channels, their statistics unchanged)."""
  k, cin, cout = shape
  p = (params['kernel'].shape[0] - k) // 2
  own = {name: (v[p:p + k, p:p + k, :cin, :cout] if name == 'kernel' else v[:cout]) for name, v in params.items()}
  own_stats = None if stats is None else {name: v[:cout] for name, v in stats.items()}
  y, new = models.conv_unit(x[..., :cin], own, own_stats, layer, **unit)
  y = jnp.pad(y, ((0, 0),) * 3 + ((0, params['kernel'].shape[-1] - cout),))
  if new is not None:
    new = {name: stats[name].at[:cout].set(v) for name, v in new.items()}
  return y, new


# A branch keeps only its convolution's output (and its inputs) for the backward pass and recomputes batch norm
# and the activation from it: everything a lax.switch branch keeps leaves it as a separate buffer, where a
# straight-line program would fuse it away (measured: 8 activation-sized buffers per layer without this, 1 with).
_BRANCH_REMAT = jax.checkpoint_policies.save_only_these_names(models.CONV_OUTPUT)


def _conv_layer(net: Supernet, hp, i: int, x, params, stats, layer, own_shapes: bool, **unit):
  """Padded conv layer `i`: the padded convolution (every member, masked), or with own_shapes the member's own
  shape alone (lax.switch over the shapes the bucket's members run in it: one member at a time, a real branch)."""
  if not own_shapes:
    return models.conv_unit(x, params, stats, layer, **unit)
  branches = [functools.partial(_own_shape_conv, layer=layer, shape=shape, **unit) for shape in net.conv_shapes[i]]
  if len(branches) == 1:  # no switch: XLA keeps what it needs
    return branches[0](x, params, stats)
  branches = [jax.checkpoint(b, policy=_BRANCH_REMAT) for b in branches]
  return jax.lax.switch(hp['geo_conv_shape'][i], branches, x, params, stats)


def apply(net: Supernet, hp, variables, images, *, train: bool, activation, dropout=0.0, key=None,
          conv_impl: str = 'auto', own_shapes: bool = False):
  """models.apply of the member's own architecture, run in the padded network: (logits, new batch_stats).

  own_shapes: conv layers run at the member's own shapes (lax.switch); only where members run one at a time
  (member_chunk 1: vmapped, a switch computes every branch). Otherwise padded convolutions (masked)."""
  arch, params, stats = net.arch, variables['params'], variables['batch_stats']
  new_stats = {}
  first_layers = set(np.cumsum((0,) + net.block_sizes[:-1]).tolist())
  unit = dict(batch_norm=arch.batch_norm, train=train, activation=activation, conv_impl=conv_impl)
  x = images
  for i, layer in enumerate(arch.conv):
    name = f'conv_{i}'

    def run(x, i=i, name=name, layer=layer):
      return _conv_layer(net, hp, i, x, params[name], stats.get(name), layer, own_shapes, **unit)

    if i in first_layers:  # every member runs a block's first layer
      x, new_stats[name] = run(x)
    else:
      x, new_stats[name] = jax.lax.cond(hp['geo_conv'][i][0] > 0, run, lambda x, name=name: (x, stats.get(name)), x)
    if layer.pool:
      x = conv_lib.max_pool_2x2(x)
  x = x.reshape(x.shape[0], -1)
  features = jnp.zeros((x.shape[0], net.feature_width), x.dtype)
  for i in range(len(arch.dense)):
    name = f'dense_{i}'
    x, new_stats[name] = models.dense_unit(x, params[name], stats.get(name), batch_norm=arch.batch_norm, train=train,
                                           activation=activation)
    if train:
      x = models.drop_units(x, dropout, key, i)
    padded = jnp.pad(x, ((0, 0), (0, net.feature_width - x.shape[1])))
    features = jnp.where(hp['geo_depth_fc'] == i + 1, padded, features)
  logits = features @ params['output']['kernel'] + params['output']['bias']
  return logits, {k: v for k, v in new_stats.items() if v is not None}
