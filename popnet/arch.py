"""Architecture descriptions of the built-in CNN family: frozen dataclasses, presets, their layouts and JSON form.

Nothing here imports jax: reading a zoo (popnet.zoo) needs an architecture's shapes and layout, not the code
that runs it. The forward pass and initialization of these architectures are popnet/models.py; the network
interface the engine trains through is popnet/network.py.

The family follows the NWS generator (Eilertsen et al. 2020, gabrieleilertsen/nws model.py) and the Small CNN
Zoo (Unterthiner et al. 2020): conv layers (+ batch norm) in pooling blocks, hidden FC layers (+ batch norm),
a linear output layer.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import math
import os
import re
from typing import Any

from popnet.layout import Layout

ACTIVATIONS = ('relu', 'elu', 'sigmoid', 'tanh')
TRUNC_STD = 0.87962566103423978  # std of a unit normal truncated to [-2, 2] (as jax.nn.initializers / Keras)
CNN_INITS = ('constant', 'normal', 'glorot_uniform', 'glorot_normal', 'he_normal')  # what the built-in CNNs draw
INITS = CNN_INITS + ('module',)  # 'module': a user module's own initializers (popnet/flax_network.py)
PADDINGS = ('SAME', 'VALID')


def output_size(size: int, kernel: int, stride: int, padding: str = 'SAME') -> int:
  """Spatial size after a convolution: SAME keeps ceil(size / stride); VALID uses only whole windows."""
  if padding == 'SAME':
    return -(-size // stride)
  if padding == 'VALID':
    if size < kernel:
      raise ValueError(f'a {kernel}x{kernel} VALID convolution needs inputs of at least {kernel} pixels, got {size}')
    return (size - kernel) // stride + 1
  raise ValueError(f'padding must be one of {PADDINGS}, got {padding!r}')


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  features: int
  kernel: int
  stride: int = 1
  pool: bool = False  # 2x2 max-pool, stride 2, after the activation
  padding: str = 'SAME'  # or 'VALID' (Keras' default: the Small CNN Zoo release's CNN)

  def __post_init__(self):
    if self.padding not in PADDINGS:
      raise ValueError(f'ConvLayer padding must be one of {PADDINGS}, got {self.padding!r}')

  def output_size(self, size: int) -> int:
    return output_size(size, self.kernel, self.stride, self.padding)


@dataclasses.dataclass(frozen=True)
class Arch:
  """Everything that fixes a network's shapes (and so a program's compiled shapes)."""
  name: str
  conv: tuple[ConvLayer, ...]
  dense: tuple[int, ...]          # hidden units of the FC part
  num_outputs: int
  batch_norm: bool
  global_pool: bool = False       # global average pool after the conv part (else flatten)

  def layout(self, input_shape: tuple[int, int, int]) -> Layout:
    """The flattened-vector layout of this architecture on `input_shape` (H, W, C)."""
    return Layout.from_specs(tensor_specs(self, input_shape))


def tensor_specs(arch: Arch, input_shape):
  """(collection, layer, name, shape) of every tensor of `arch` on `input_shape`, in the zoo's order."""
  h, w, c = input_shape
  for i, layer in enumerate(arch.conv):
    name = f'conv_{i}'
    yield ('params', name, 'kernel', (layer.kernel, layer.kernel, c, layer.features))
    yield ('params', name, 'bias', (layer.features,))
    if arch.batch_norm:
      yield from _bn_specs(name, layer.features)
    c = layer.features
    h, w = layer.output_size(h), layer.output_size(w)
    if layer.pool:
      h, w = -(-h // 2), -(-w // 2)
  features = c if arch.global_pool else h * w * c
  for i, units in enumerate(arch.dense):
    name = f'dense_{i}'
    yield ('params', name, 'kernel', (features, units))
    yield ('params', name, 'bias', (units,))
    if arch.batch_norm:
      yield from _bn_specs(name, units)
    features = units
  yield ('params', 'output', 'kernel', (features, arch.num_outputs))
  yield ('params', 'output', 'bias', (arch.num_outputs,))


def _bn_specs(layer, n):
  yield ('params', layer, 'bn_beta', (n,))
  yield ('params', layer, 'bn_gamma', (n,))
  yield ('batch_stats', layer, 'bn_mean', (n,))
  yield ('batch_stats', layer, 'bn_var', (n,))


def kernel_fans(shape) -> tuple[int, int]:
  """(fan_in, fan_out) of a kernel [..., in, out] (receptive field x channels, as Keras / jax initializers)."""
  receptive = math.prod(shape[:-2])
  return shape[-2] * receptive, shape[-1] * receptive


# --- named architectures ------------------------------------------------------------------------------------
def nws_arch(filter_size: int = 5, depth_conv: int = 3, width_conv: int = 8, depth_fc: int = 2,
             width_fc: int = 128, batch_norm: bool = True, num_outputs: int = 20) -> Arch:
  """The NWS generator's family (Eilertsen et al. 2020, section 3): 3 blocks, block c has width*2**c channels."""
  per_block = {3: (1, 1, 1), 4: (1, 1, 2), 5: (1, 2, 2)}
  if depth_conv not in per_block:
    raise ValueError(f'depth_conv must be one of {sorted(per_block)}, got {depth_conv}')
  conv = []
  for block, n_layers in enumerate(per_block[depth_conv]):
    for j in range(n_layers):
      conv.append(ConvLayer(width_conv * 2**block, filter_size, 1, pool=(j == n_layers - 1)))
  dense = tuple(int(width_fc * 2.0**-i) for i in range(depth_fc))
  name = f'nws_f{filter_size}_c{depth_conv}x{width_conv}_fc{depth_fc}x{width_fc}' + ('' if batch_norm else '_nobn')
  return Arch(name, tuple(conv), dense, num_outputs, batch_norm)


def smallcnnzoo_arch(num_outputs: int = 10, padding: str = 'SAME') -> Arch:
  """Unterthiner et al. 2020: 3 x conv 16 3x3 stride 2 -> global average pool -> dense 10 (4,970 values on 1 channel).

  padding='VALID' is the release's own Keras model (Conv2D's default padding; dnn_predict_accuracy
  train_network.py, which feeds grayscale images scaled to [-1, 1]): same tensors, different forward pass."""
  name = 'smallcnnzoo' if padding == 'SAME' else 'smallcnnzoo_valid'
  return Arch(name, tuple(ConvLayer(16, 3, 2, padding=padding) for _ in range(3)), (), num_outputs, False,
              global_pool=True)


PRESETS = {
    'nws_fixed': lambda: dataclasses.replace(nws_arch(), name='nws_fixed'),
    'smallcnnzoo': smallcnnzoo_arch,
    'smallcnnzoo_valid': lambda: smallcnnzoo_arch(padding='VALID'),
    'siren_dws': lambda: SirenArch('siren_dws', 'dws'),  # the SIREN families of INR zoos (popnet/siren.py)
    'siren_nfn': lambda: SirenArch('siren_nfn', 'nfn'),
}
ARCHITECTURES = tuple(PRESETS) + ('nws',)


def resolve(name: str, **kwargs) -> Arch:
  """An Arch from a preset name, or 'nws' with the NWS architecture hyper-parameters."""
  if name == 'nws':
    return nws_arch(**kwargs)
  if name not in PRESETS:
    raise ValueError(f'architecture must be one of {ARCHITECTURES}, got {name!r}')
  arch = PRESETS[name]()
  if 'num_outputs' in kwargs and kwargs['num_outputs'] != arch.num_outputs:
    arch = dataclasses.replace(arch, num_outputs=kwargs['num_outputs'])
  return arch


def flops_per_example(arch: Arch, input_shape, part: str = 'all') -> int:
  """Multiply-adds x 2 of one forward pass: part 'all' (convs and dense layers), 'conv' or 'dense'."""
  h, w, c = input_shape
  conv = 0
  for layer in arch.conv:
    h, w = layer.output_size(h), layer.output_size(w)
    conv += 2 * h * w * layer.kernel**2 * c * layer.features
    c = layer.features
    if layer.pool:
      h, w = -(-h // 2), -(-w // 2)
  features, dense = (c if arch.global_pool else h * w * c), 0
  for units in arch.dense + (arch.num_outputs,):
    dense += 2 * features * units
    features = units
  return {'all': conv + dense, 'conv': conv, 'dense': dense}[part]


# --- the SIREN families of INR zoos (popnet/siren.py runs them; docs/inr.md cites their sources) ------------------
SIREN_FAMILIES = ('dws', 'nfn')


@dataclasses.dataclass(frozen=True)
class SirenArch:
  """A SIREN of one reference family: `in_dim` coordinates -> (1 + hidden_layers) sine layers of `hidden` units
  -> a linear layer of `out_dim` values. The family fixes the initialization, output offset, coordinate order and
  target scaling (docs/inr.md). Layers are named as the family's PyTorch state dict names them; kernels are
  stored [in, out] (PyTorch's `weight` is the kernel transposed)."""
  name: str
  family: str              # 'dws' (AvivNavon/DWSNets nn/inr.py) | 'nfn' (AllanYangZhou/nfn siren_utils.py)
  in_dim: int = 2
  hidden: int = 32
  hidden_layers: int = 1
  out_dim: int = 1
  w0: float = 30.0

  def __post_init__(self):
    if self.family not in SIREN_FAMILIES:
      raise ValueError(f'SirenArch.family: got {self.family!r}; allowed: {list(SIREN_FAMILIES)}')

  @property
  def num_outputs(self) -> int:
    return self.out_dim

  @property
  def layer_names(self) -> tuple[str, ...]:
    """The PyTorch module paths of the layers: DWS `seq.<i>`, NFN `net.<i>.linear` (sine) and `net.<i>` (last)."""
    sine = 1 + self.hidden_layers
    if self.family == 'dws':
      return tuple(f'seq.{i}' for i in range(sine + 1))
    return tuple(f'net.{i}.linear' for i in range(sine)) + (f'net.{sine}',)

  @property
  def widths(self) -> tuple[int, ...]:
    return (self.in_dim,) + (self.hidden,) * (1 + self.hidden_layers) + (self.out_dim,)

  def layout(self, input_shape=None) -> Layout:
    """kernel [in, out] then bias [out] per layer, in forward order (the coordinates, not the image, are the
    input: input_shape is not read)."""
    w = self.widths
    return Layout.from_specs(spec for name, fan_in, fan_out in zip(self.layer_names, w[:-1], w[1:])
                             for spec in (('params', name, 'kernel', (fan_in, fan_out)),
                                          ('params', name, 'bias', (fan_out,))))

  def network(self, input_shape):
    from popnet import siren
    return siren.Siren(self, tuple(input_shape))

  def flops_per_example(self, input_shape) -> int:
    """Multiply-adds x 2 of one coordinate (an INR's example is one pixel)."""
    w = self.widths
    return sum(2 * a * b for a, b in zip(w[:-1], w[1:]))


# --- a user's Flax module (popnet/flax_network.py runs it) -----------------------------------------------------
MODULE_SPEC = re.compile(r'^(?P<source>[^:]+\.py|[A-Za-z_][\w.]*):(?P<name>[A-Za-z_]\w*)$')


class ModelError(ValueError):
  """A user's module cannot be found, loaded or run as the contract says; the message names the model."""


def is_module_spec(value) -> bool:
  """Whether an `architecture` value names a user's module: 'package.module:Name' or 'path/to/file.py:Name'."""
  return isinstance(value, str) and MODULE_SPEC.match(value) is not None


@dataclasses.dataclass(frozen=True)
class ModuleArch:
  """A user's flax.linen / flax.nnx network, named by its import path and pinned by its source file's sha256."""
  name: str            # the zoo's architecture name (the module's attribute name)
  model: str           # 'package.module:Name' or 'path/to/file.py:Name', as the config gave it
  source_sha256: str   # of the file that defines it, when the zoo was written

  def layout(self, input_shape) -> Layout:
    return self.network(input_shape).layout

  def network(self, input_shape):
    from popnet import flax_network
    return flax_network.FlaxNetwork.of(self, tuple(input_shape))

  def flops_per_example(self, input_shape) -> int:
    return self.network(input_shape).flops_per_example()


def source_file(model: str) -> str:
  """The file that defines a module spec's source (a .py path as given, or the module's file on sys.path)."""
  source = MODULE_SPEC.match(model)['source']
  if source.endswith('.py'):
    return source
  spec = importlib.util.find_spec(source)
  if spec is None or not spec.origin or not os.path.isfile(spec.origin):
    raise ModelError(f'model {model!r}: no importable module {source!r} (is it on PYTHONPATH?)')
  return spec.origin


def source_sha256(model: str) -> str:
  path = source_file(model)
  if not os.path.isfile(path):
    raise ModelError(f'model {model!r}: no file {path!r} (a path is read relative to the working directory)')
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


@functools.lru_cache(maxsize=None)
def module_arch(model: str) -> ModuleArch:
  """The description of a module spec, pinned to its source file as it is now."""
  if not is_module_spec(model):
    raise ModelError(f"model {model!r}: a module is named 'package.module:Name' or 'path/to/file.py:Name'")
  return ModuleArch(MODULE_SPEC.match(model)['name'], model, source_sha256(model))


# --- JSON form (the zoo's manifest and interchange files) ----------------------------------------------------
def to_json(arch) -> dict[str, Any]:
  if isinstance(arch, ModuleArch):
    return {'kind': 'module', **dataclasses.asdict(arch)}
  if isinstance(arch, SirenArch):
    return {'kind': 'siren', **dataclasses.asdict(arch)}
  return dataclasses.asdict(arch)


def from_json(d: dict[str, Any]):
  if d.get('kind') == 'module':
    return ModuleArch(d['name'], d['model'], d['source_sha256'])
  if d.get('kind') == 'siren':
    return SirenArch(**{k: v for k, v in d.items() if k != 'kind'})
  return Arch(d['name'], tuple(ConvLayer(**c) for c in d['conv']), tuple(d['dense']), d['num_outputs'],
              d['batch_norm'], d.get('global_pool', False))
