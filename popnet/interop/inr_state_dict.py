"""A SIREN's zoo vector <-> its family's PyTorch state dict, exactly as the reference modules hold it (docs/inr.md):

    DWS (DWSNets nn/inr.py INR):           seq.0.weight [32, 2], seq.0.bias [32], seq.1.weight, seq.1.bias,
                                           seq.2.weight [1, 32], seq.2.bias [1]
    NFN (nfn experiments/siren_utils.py):  net.0.linear.weight, net.0.linear.bias, net.1.linear.weight,
                                           net.1.linear.bias, net.2.weight, net.2.bias

float32 tensors, weights PyTorch's [out, in] (popnet stores the kernel [in, out]: the weight is its transpose),
keys in the modules' order (weight, bias per layer, forward order; NFN's loader requires it). torch is imported
by the caller's command only (`pip install .[torch]`)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from popnet.arch import SirenArch
from popnet.interop.common import InteropError
from popnet.layout import Layout


def keys(arch: SirenArch) -> list[str]:
  """The state dict's keys in the module's order."""
  return [f'{layer}.{kind}' for layer in arch.layer_names for kind in ('weight', 'bias')]


def shapes(arch: SirenArch) -> dict[str, tuple[int, ...]]:
  """PyTorch shapes of the keys: weight [out, in], bias [out]."""
  w = arch.widths
  out = {}
  for layer, fan_in, fan_out in zip(arch.layer_names, w[:-1], w[1:]):
    out[f'{layer}.weight'], out[f'{layer}.bias'] = (fan_out, fan_in), (fan_out,)
  return out


def to_state_dict(arch: SirenArch, layout: Layout, vector: np.ndarray) -> 'OrderedDict':
  """One zoo vector -> the family's state dict of float32 torch tensors (contiguous, [out, in] weights)."""
  import torch
  params = layout.unflatten(np.asarray(vector, np.float32))['params']
  state = OrderedDict()
  for layer in arch.layer_names:
    state[f'{layer}.weight'] = torch.from_numpy(np.ascontiguousarray(params[layer]['kernel'].T))
    state[f'{layer}.bias'] = torch.from_numpy(np.ascontiguousarray(params[layer]['bias']))
  return state


def from_state_dict(arch: SirenArch, layout: Layout, state, source: str) -> np.ndarray:
  """The family's state dict (extra keys, e.g. DWS's `label`, ignored) -> one float32 zoo vector; InteropError
  naming `source` unless every key is present, in the module's order, with its shape, float32 and finite."""
  import torch
  want = keys(arch)
  if not isinstance(state, dict):
    raise InteropError(f'{source}: holds a {type(state).__name__}, not a state dict of {want}')
  have = [k for k in state if k in set(want)]
  if have != want:
    raise InteropError(f'{source}: state dict keys {list(state)} are not {arch.family.upper()}\'s {want} in '
                       f'this order')
  vector = np.empty(layout.size, np.float32)
  for key, shape in shapes(arch).items():
    tensor = state[key]
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape or tensor.dtype != torch.float32:
      got = (tuple(tensor.shape), str(tensor.dtype)) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
      raise InteropError(f'{source}: {key} is {got}; {arch.family.upper()} has a float32 tensor of shape {shape}')
    value = tensor.detach().cpu().numpy()
    layer, kind = key.rsplit('.', 1)
    entry = layout.entry(f'{layer}/kernel' if kind == 'weight' else f'{layer}/bias')
    vector[entry.start:entry.end] = (value.T if kind == 'weight' else value).reshape(-1)
  if not np.isfinite(vector).all():
    raise InteropError(f'{source}: holds non-finite values')
  return vector


def load(path: str, source: str | None = None):
  """torch.load of an untrusted file: weights_only=True (tensors and plain containers, no code), on the CPU."""
  import pickle
  import torch
  from popnet.zoo.names import check_regular
  check_regular(path)
  try:
    return torch.load(path, map_location='cpu', weights_only=True)
  except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
    raise InteropError(f'{source or path}: cannot be read as a PyTorch file with weights_only=True '
                       f'({str(e).splitlines()[0] if str(e) else type(e).__name__})') from e
