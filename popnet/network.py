"""The network interface: everything the engine needs of a network, whatever kind it is.

The engine (popnet/member.py, population.py, buckets.py, train.py) trains members through this protocol and
never asks which kind of network it holds. Three kinds implement it:

    popnet.models.CNN              one built-in architecture (popnet/arch.py), run as itself
    popnet.supernet.Supernet       several NWS-family architectures padded into one network, per-member masks
    popnet.flax_network.FlaxNetwork  a user's flax.linen or flax.nnx module (popnet/flax_network.py)

A network is a frozen (hashable) dataclass: it is part of a program's static spec, so equal networks share
compiled executables. `build(archs, input_shape)` is the one way to get the network of a program's
architectures; `configured(conv_impl, own_shapes)` fixes how it runs on the program's devices.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import numpy as np
import pandas as pd

from popnet.layout import Layout

Variables = Any  # {'params': ..., 'batch_stats': ...} of one member (jax arrays inside a program)


class Network(Protocol):
  """What the engine needs of any network (one member's view; the population axis is added outside)."""
  name: str        # the program's network (a padded one's own name; never a zoo architecture name for padding)
  layout: Layout   # fixed-order layout of the program's variables (checkpoints, device flattening)

  def configured(self, conv_impl: str, own_shapes: bool) -> 'Network':
    """This network run with `conv_impl` (popnet.conv) and, one member at a time, at members' own shapes."""

  def member_arrays(self, members: pd.DataFrame) -> dict[str, np.ndarray]:
    """Host: per-member arrays [P, ...] the network reads from a member's `hp` ({} when it needs none)."""

  def init(self, hp, key, init_scheme) -> Variables:
    """One member's fresh variables from its key and its init scheme (index into popnet.arch.INITS)."""

  def apply(self, hp, variables: Variables, images, *, train: bool, activation, dropout=0.0, key=None):
    """(logits [B, outputs], new batch_stats) of one member on images [B, H, W, C] in [0, 1]."""

  def own_values(self, hp) -> Callable[[Any], Any]:
    """tree -> tree with values that are not the member's own (padding) zeroed; the identity when unpadded."""

  def zoo_rows(self, members: pd.DataFrame, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Host: {architecture: (positions of its members, their zoo rows in its own layout)} from the program's
    flattened rows [P, layout.size] of `members`."""

  def training_flops(self, archs: Sequence[Any], examples: Sequence[float], own_shape_convs: bool) -> float:
    """Forward FLOPs as run, summed over training examples (examples[i] of archs[i]): the cost model's work."""


def flops_per_example(arch, input_shape, part: str = 'all') -> int:
  """Forward FLOPs of one example through an architecture of any kind (part: 'all', 'conv' or 'dense')."""
  if hasattr(arch, 'flops_per_example'):  # a user module measures its own (popnet/flax_network.py)
    return arch.flops_per_example(input_shape) if part == 'all' else 0
  from popnet import arch as arch_lib
  return arch_lib.flops_per_example(arch, input_shape, part)


def build(archs: Sequence[Any], input_shape) -> Network:
  """The network of a program: several architectures padded into one (popnet/supernet.py), or one architecture
  as itself (a built-in one, popnet/models.py; a user module, popnet/flax_network.py)."""
  archs, input_shape = tuple(archs), tuple(input_shape)
  if len(archs) > 1:
    from popnet import supernet
    return supernet.build(archs, input_shape)
  if hasattr(archs[0], 'network'):  # a description that knows its network (popnet/flax_network.py FlaxArch)
    return archs[0].network(input_shape)
  from popnet import models
  return models.CNN(archs[0], input_shape)


def single_architecture_rows(arch_name: str, rows: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """zoo_rows of an unpadded network: every member is of `arch_name` and its row is already its own."""
  return {arch_name: (np.arange(len(rows)), rows)}
