"""A zoo row in PyTorch's layouts, with numpy only (no torch): the names, shapes and axis orders PyTorch
modules and the PyTorch weight-space libraries (NFN, Neural Graphs, ScaleGMN) use, and UNF's perm_spec.

    tensors = torch_tensors(arch, input_shape)          # TorchTensor per zoo tensor: its state-dict key and shape
    sd = state_dict(arch, input_shape, vectors)          # {key: array [..., *torch shape]} for rows [..., values]
    weights, biases = nfn_weights_biases(arch, input_shape, vectors)   # NFN's tuples, with its channel dim
    layer_layout(arch, input_shape)                      # [1, 16, 16, 16, 10] for the Small CNN Zoo
    unf_perm_spec(arch, input_shape)                     # for universal_neural_functional on zoo.unflatten(...)

PyTorch's layouts (docs/pytorch.md): convolution weights [out, in, kh, kw] (popnet stores HWIO), dense weights
[out, in] (popnet stores [in, out]); batch norm as `<layer>_bn.weight` (gamma), `.bias` (beta), `.running_mean`,
`.running_var`. A dense layer that follows a flatten (no global pool) has its input features reordered from
popnet's (h, w, c) flatten of NHWC maps to torch.flatten's (c, h, w) of NCHW maps, so `F.linear(x.flatten(1), w)`
on NCHW activations is the zoo's layer. SIREN layers keep their reference family's names (`seq.<i>`,
`net.<i>.linear`). A user's Flax module (`--config.model`) has no known PyTorch counterpart and is refused.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from popnet import arch as arch_lib
from popnet.layout import LayoutEntry

BN_NAMES = {'bn_gamma': 'weight', 'bn_beta': 'bias', 'bn_mean': 'running_mean', 'bn_var': 'running_var'}


class TorchLayoutError(ValueError):
  """The architecture has no PyTorch form of the kind asked for; the message says why."""


@dataclasses.dataclass(frozen=True)
class TorchTensor:
  """One zoo tensor as PyTorch holds it."""
  key: str                  # the state-dict key: 'conv_0.weight', 'conv_0_bn.running_var', 'seq.1.bias'
  entry: LayoutEntry        # where it lies in the zoo's row, in popnet's shape
  shape: tuple[int, ...]    # PyTorch's shape
  flatten_from: tuple[int, int, int] | None = None  # (h, w, c) of the map a dense weight's inputs are flattened from

  @property
  def is_weight(self) -> bool:
    return self.entry.name == 'kernel'

  def convert(self, vectors: np.ndarray) -> np.ndarray:
    """This tensor of rows [..., values], in PyTorch's shape [..., *shape] (a new C-contiguous array)."""
    x = np.asarray(vectors[..., self.entry.start:self.entry.end])
    x = x.reshape(x.shape[:-1] + self.entry.shape)
    batch = x.ndim - len(self.entry.shape)
    lead = tuple(range(batch))
    if self.entry.name == 'kernel' and len(self.entry.shape) == 4:  # HWIO -> OIHW
      x = x.transpose(lead + (batch + 3, batch + 2, batch, batch + 1))
    elif self.entry.name == 'kernel':                                # [in, out] -> [out, in]
      if self.flatten_from is not None:                              # inputs (h, w, c) -> (c, h, w)
        h, w, c = self.flatten_from
        x = x.reshape(x.shape[:batch] + (h, w, c, self.shape[0]))
        x = x.transpose(lead + (batch + 3, batch + 2, batch, batch + 1))
      else:
        x = np.swapaxes(x, -1, -2)
    return np.ascontiguousarray(x).reshape(x.shape[:batch] + self.shape)


def _checked(arch) -> Any:
  if isinstance(arch, arch_lib.ModuleArch):
    raise TorchLayoutError(f'architecture {arch.name!r} is a user\'s Flax module ({arch.model}); its PyTorch '
                           f'names and flatten order are not known: read it with zoo.unflatten')
  if not isinstance(arch, (arch_lib.Arch, arch_lib.SirenArch)):
    raise TorchLayoutError(f'expected a popnet.arch.Arch or SirenArch, got {type(arch).__name__}')
  return arch


def flatten_shape(arch: arch_lib.Arch, input_shape) -> tuple[int, int, int] | None:
  """(h, w, c) of the feature map the first fully connected layer flattens, or None (global pooling)."""
  if arch.global_pool:
    return None
  h, w, c = input_shape
  for layer in arch.conv:
    h, w, c = layer.output_size(h), layer.output_size(w), layer.features
    if layer.pool:
      h, w = -(-h // 2), -(-w // 2)
  return h, w, c


def torch_tensors(arch, input_shape) -> list[TorchTensor]:
  """Every tensor of `arch`'s zoo rows, in the zoo's (forward) order, with its PyTorch key and shape."""
  arch = _checked(arch)
  layout = arch.layout(None if input_shape is None else tuple(input_shape))
  flat = flatten_shape(arch, input_shape) if isinstance(arch, arch_lib.Arch) else None
  first_fc = next((e.layer for e in layout.entries if e.name == 'kernel' and len(e.shape) == 2), None)
  out = []
  for e in layout.entries:
    if e.name == 'kernel' and len(e.shape) == 4:
      shape = (e.shape[3], e.shape[2], e.shape[0], e.shape[1])
    elif e.name == 'kernel':
      shape = (e.shape[1], e.shape[0])
    else:
      shape = e.shape
    if e.name in BN_NAMES:
      key = f'{e.layer}_bn.{BN_NAMES[e.name]}'
    elif e.name in ('kernel', 'bias'):
      key = f'{e.layer}.{"weight" if e.name == "kernel" else "bias"}'
    else:
      raise TorchLayoutError(f'{e.path}: no PyTorch name for a tensor called {e.name!r}')
    out.append(TorchTensor(key, e, shape, flat if e.name == 'kernel' and e.layer == first_fc else None))
  return out


def state_dict(arch, input_shape, vectors: np.ndarray) -> dict[str, np.ndarray]:
  """{state-dict key: [..., *PyTorch shape]} of rows `vectors` [..., values], in forward order."""
  return {t.key: t.convert(vectors) for t in torch_tensors(arch, input_shape)}


def nfn_tensors(arch, input_shape) -> list[TorchTensor]:
  """The kernels and biases NFN's tuples hold; refuses architectures with batch norm, which they cannot hold."""
  tensors = torch_tensors(arch, input_shape)
  if any(t.entry.name in BN_NAMES for t in tensors):
    raise TorchLayoutError(f'architecture {arch.name!r} has batch norm; NFN\'s (weights, biases) hold kernels and '
                           f'biases only (its ZooDataset reads the Small CNN Zoo, which has none): use the state dict')
  return tensors


def nfn_weights_biases(arch, input_shape, vectors: np.ndarray,
                       tensors: list[TorchTensor] | None = None) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
  """NFN's (weights, biases) of rows [..., values]: per layer [..., 1, out, in(, kh, kw)] and [..., 1, out], the
  1 being NFN's channel dim (AllanYangZhou/nfn experiments/data_utils.py ZooDataset.__getitem__ inserts it, and
  a DataLoader batch is then [B, 1, ...], the WeightSpaceFeatures that nfn.layers take). `tensors`: nfn_tensors'
  answer, when the caller has it."""
  tensors = nfn_tensors(arch, input_shape) if tensors is None else tensors
  weights = tuple(np.expand_dims(t.convert(vectors), -len(t.shape) - 1) for t in tensors if t.is_weight)
  biases = tuple(np.expand_dims(t.convert(vectors), -2) for t in tensors if t.entry.name == 'bias')
  return weights, biases


def layer_layout(arch, input_shape) -> list[int]:
  """Neurons per layer, input first: the `layer_layout` of Neural Graphs and ScaleGMN configs ([1, 16, 16, 16,
  10] for the Small CNN Zoo), which their datasets compute as [weights[0].shape[1]] + [b.shape[0] for b in
  biases] (mkofinas/neural-graphs experiments/data_generalization.py, jkalogero/scalegmn cifar10_dataset.py)."""
  tensors = [t for t in torch_tensors(arch, input_shape) if t.entry.name in ('kernel', 'bias')]
  first = next(t for t in tensors if t.is_weight)
  return [int(first.shape[1])] + [int(t.shape[0]) for t in tensors if t.entry.name == 'bias']


def unf_perm_spec(arch, input_shape) -> dict[str, dict[str, dict[str, tuple[int, ...]]]]:
  """UNF's perm_spec (AllanYangZhou/universal_neural_functional README) for the tree `zoo.unflatten(vector)`
  ({'params': ..., 'batch_stats': ...}, popnet's shapes): axis i of a tensor is permuted by permutation
  spec[i]. Permutation 0 acts on the input channels (or coordinates), permutation l + 1 on the neurons of layer
  l (its kernel's last axis, bias and batch-norm vectors, the next kernel's input axis); the input and output
  axes get permutations of their own, as UNF's README does. A convolution's two spatial axes are not a
  symmetry; each gets a permutation of its own (numbered after the neurons', one pair per layer), so a UNF is
  equivariant to more than the true symmetry there (docs/pytorch.md). Add UNF's trailing channel dim yourself
  (jax.tree.map(lambda x: x[..., None], tree))."""
  arch = _checked(arch)
  if isinstance(arch, arch_lib.Arch) and arch.conv and flatten_shape(arch, input_shape) is not None:
    raise TorchLayoutError(f'architecture {arch.name!r} flattens a feature map into a dense layer: a channel '
                           f'permutation moves blocks of that layer\'s inputs, which no perm_spec axis expresses')
  layout = arch.layout(None if input_shape is None else tuple(input_shape))
  layers = layout.layers
  spatial = len(layers) + 1
  spec: dict[str, dict[str, dict[str, tuple[int, ...]]]] = {'params': {}, 'batch_stats': {}}  # as unflatten
  for e in layout.entries:
    out = layers.index(e.layer) + 1
    if e.name == 'kernel' and len(e.shape) == 4:
      axes = (spatial, spatial + 1, out - 1, out)
      spatial += 2
    elif e.name == 'kernel':
      axes = (out - 1, out)
    else:
      axes = (out,)
    spec[e.collection].setdefault(e.layer, {})[e.name] = axes
  return spec
