"""A padded member's own tensors: cut out of its program's padded variables (popnet/supernet.py), so its zoo row is
its own architecture's vector in its own layout (host side, numpy or jax arrays)."""
from __future__ import annotations

import numpy as np

from popnet import arch as arch_lib
from popnet.supernet import Supernet, conv_map


def _own_slices(net: Supernet, arch: arch_lib.Arch):
  """{(layer, name): (padded layer, function padded tensor [n, ...] -> own tensor [n, ...])} of `arch`."""
  out = {}
  own = arch.layout(net.input_shape)
  padded_conv = conv_map(net, arch)
  for e in own.entries:
    if e.layer.startswith('conv_'):
      target = f'conv_{padded_conv[int(e.layer[5:])]}'
      if e.name == 'kernel':
        k, _, cin, cout = e.shape
        p = (net.arch.conv[0].kernel - k) // 2
        cut = (lambda t, p=p, k=k, cin=cin, cout=cout: t[:, p:p + k, p:p + k, :cin, :cout])
      else:
        cut = (lambda t, n=e.shape[0]: t[:, :n])
    else:
      target = e.layer
      if e.name != 'kernel':
        cut = (lambda t, n=e.shape[0]: t[:, :n])
      elif e.layer == 'dense_0':
        groups, fin = net.flatten_groups, e.shape[0] // net.flatten_groups
        cut = (lambda t, g=groups, fin=fin, fo=e.shape[1]: t.reshape(t.shape[0], g, -1, t.shape[-1])[:, :, :fin, :fo]
               .reshape(t.shape[0], g * fin, fo))
      else:
        cut = (lambda t, fi=e.shape[0], fo=e.shape[1]: t[:, :fi, :fo])
    out[(e.layer, e.name)] = (target, cut)
  return own, out


def extract(net: Supernet, arch: arch_lib.Arch, padded):
  """Own variables-shaped tree [n, ...] of `arch` from padded ones [n, ...] (any tree keyed like variables'
  'params' or a whole {'params', 'batch_stats'}; numpy or jax arrays)."""
  own, slices = _own_slices(net, arch)
  collections = padded if 'params' in padded else {'params': padded}
  out = {}
  for e in own.entries:
    if e.collection not in collections:
      continue
    target, cut = slices[(e.layer, e.name)]
    out.setdefault(e.collection, {}).setdefault(e.layer, {})[e.name] = cut(collections[e.collection][target][e.name])
  return out if 'params' in padded else out['params']


def own_rows(net: Supernet, arch: arch_lib.Arch, padded_rows: np.ndarray) -> np.ndarray:
  """Members' zoo rows in `arch`'s own layout [n, own size] from their padded rows [n, padded size]."""
  own = arch.layout(net.input_shape)
  tree = extract(net, arch, net.layout.unflatten(np.asarray(padded_rows)))
  n = len(padded_rows)
  return np.concatenate([np.asarray(tree[e.collection][e.layer][e.name]).reshape(n, e.size) for e in own.entries],
                        axis=1)
