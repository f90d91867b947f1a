"""Which members share a compiled program: the cost model and the plan.

Members that can run in one program: the same batch size (a program's batch shape) and architectures that pad
into one network (popnet/supernet.py: the NWS generator's family with equal block count, outputs and batch
norm); any other architecture runs alone in its own program. Datasets are data (popnet/pipeline.py) and never
split a program.

Inside such a group the cost model trades compilation against padded compute. A bucket costs
`compile_seconds` plus its padded training work (members x epochs x training examples x 3 x the padded
network's forward FLOPs, models.flops_per_example) at `flops_per_second`. Where members run one at a time
(`own_shape_convs`: member_chunk 1, the CPU default) each conv layer runs at the member's own shape
(popnet/supernet.py apply(own_shapes=True)): filter sizes and depths mix for free, the FC layers' padding
costs its FLOPs, and a member narrower than its bucket's conv width has its activations padded to that width
between layers (padding, pooling and cutting them again, forward and backward), counted as its own conv work
scaled by bucket width / own width (a width-4 member in a width-12 bucket: 3x; fitted to the measured cost of
mixed-width buckets, docs/engine.md "The cost model"); vmapped (accelerators), every member computes the
padded convolutions. Starting from one bucket per group,
the plan greedily applies the split (by one architecture part: filter size, conv width, conv depth, FC width
or FC depth, at a threshold) that lowers the total cost most, until no split pays for its compilation or
the run has `max_programs` programs. grouping='architecture' gives today's one program per architecture
(and batch size), for comparison.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import pandas as pd

from popnet import hparams
from popnet import network as network_lib
from popnet import progress
from popnet import supernet as supernet_lib

GROUPINGS = ('buckets', 'architecture')
PARTS = {  # architecture part -> its value on an Arch (the padded network grows with each)
    'filter_size': lambda a: max(layer.kernel for layer in a.conv),
    'width_conv': lambda a: a.conv[0].features,
    'depth_conv': lambda a: len(a.conv),
    'width_fc': lambda a: max(a.dense) if a.dense else 0,
    'depth_fc': lambda a: len(a.dense),
}


@dataclasses.dataclass(frozen=True)
class CostModel:
  compile_seconds: float = 30.0      # one program's compilation
  flops_per_second: float = 5e10     # sustained training throughput of the device(s)
  max_programs: int = 32             # at most this many programs in the run
  own_shape_convs: bool = False      # members run one at a time, conv layers at their own shapes


@dataclasses.dataclass
class PlannedProgram:
  """One program of the plan: its members, their architectures, and the network they run in (popnet/network.py:
  one architecture as itself, or several padded into one)."""
  batch_size: int
  archs: tuple
  members: pd.DataFrame
  network: network_lib.Network
  own_work: float                    # FLOPs of training every member in its own architecture
  padded_work: float                 # FLOPs as run (padded)

  @property
  def overhead(self) -> float:
    return self.padded_work / self.own_work if self.own_work else 1.0

  def describe(self) -> str:
    datasets = ', '.join(sorted(self.members['dataset'].unique()))
    return f'{len(self.members)} members, {len(self.archs)} architecture(s) in {self.network.name}, on {datasets}'


@functools.lru_cache(maxsize=None)
def _flops(arch, input_shape, part: str = 'all') -> int:
  return network_lib.flops_per_example(arch, input_shape, part)


@dataclasses.dataclass(frozen=True)
class _Group:
  """A candidate bucket while planning: its architectures and their training examples (summed over members)."""
  batch_size: int
  archs: tuple
  examples: tuple[float, ...]
  input_shape: tuple

  @functools.cached_property
  def network(self) -> network_lib.Network:
    return network_lib.build(self.archs, self.input_shape)

  def work(self, epochs: int, own_shape_convs: bool) -> tuple[float, float]:
    """(own, as run) training FLOPs: epochs x examples x 3 (forward and backward) x forward FLOPs; as run,
    the padded network's (with own_shape_convs, its FC layers and the members' own conv layers, each scaled by
    the bucket's conv width / the member's: its activations are padded to the bucket's width between layers)."""
    own = sum(e * _flops(a, self.input_shape) for a, e in zip(self.archs, self.examples))
    padded = self.network.training_flops(self.archs, self.examples, own_shape_convs)
    return 3 * epochs * own, 3 * epochs * padded

  def seconds(self, epochs: int, cost: CostModel) -> float:
    return cost.compile_seconds + self.work(epochs, cost.own_shape_convs)[1] / cost.flops_per_second

  def splits(self):
    """Every split of the group in two by one architecture part at one threshold."""
    if len(self.archs) < 2:  # one architecture (e.g. a user's module) has nothing to split
      return
    for value in PARTS.values():
      values = sorted({value(a) for a in self.archs})
      for threshold in values[:-1]:
        left = [value(a) <= threshold for a in self.archs]
        yield self._subset(left), self._subset([not x for x in left])

  def _subset(self, keep):
    idx = [i for i, k in enumerate(keep) if k]
    return _Group(self.batch_size, tuple(self.archs[i] for i in idx), tuple(self.examples[i] for i in idx),
                  self.input_shape)


def _best_split(group: _Group, epochs: int, cost: CostModel):
  """(seconds saved, the two parts) of the group's best split, or None when no split pays."""
  best = None
  for parts in group.splits():
    gain = group.seconds(epochs, cost) - sum(p.seconds(epochs, cost) for p in parts)
    if gain > 0 and (best is None or gain > best[0]):
      best = (gain, parts)
  return best


def _initial_groups(members, archs, input_shape, examples, grouping) -> list[_Group]:
  """One group per batch size and mixable signature (or per architecture when it cannot pad)."""
  keyed: dict[tuple, dict[str, float]] = {}
  for r in members[['batch_size', 'arch', 'dataset']].to_dict('records'):
    arch = archs[r['arch']]
    mixable = grouping == 'buckets' and supernet_lib.unmixable_reason(arch) is None
    key = (int(r['batch_size']),) + (('mix', supernet_lib.signature(arch)) if mixable else ('alone', arch.name))
    per_arch = keyed.setdefault(key, {})
    per_arch[r['arch']] = per_arch.get(r['arch'], 0.0) + examples(r['dataset'])
  return [_Group(key[0], tuple(archs[n] for n in per_arch), tuple(per_arch.values()), tuple(input_shape))
          for key, per_arch in keyed.items()]


def plan(members: pd.DataFrame, input_shape, epochs: int, examples: Callable[[str], int], grouping: str = 'buckets',
         cost: CostModel = CostModel()) -> list[PlannedProgram]:
  """The run's programs, largest first. `examples(dataset)`: its training examples (nominal in a dry run)."""
  if grouping not in GROUPINGS:
    raise ValueError(f'config.grouping: got {grouping!r}; allowed: {list(GROUPINGS)}')
  archs = {r['arch']: hparams.arch_of(r) for r in members.drop_duplicates('arch').to_dict('records')}
  groups = _initial_groups(members, archs, input_shape, examples, grouping)
  best = {g: _best_split(g, epochs, cost) for g in groups}
  while len(groups) < cost.max_programs:
    splittable = [g for g in groups if best[g] is not None]
    if not splittable:
      break
    chosen = max(splittable, key=lambda g: best[g][0])
    groups.remove(chosen)
    for part in best[chosen][1]:
      groups.append(part)
      best[part] = _best_split(part, epochs, cost)
  buckets = []
  for g in groups:
    names = [a.name for a in g.archs]
    chosen = members[(members['batch_size'] == g.batch_size) & members['arch'].isin(names)]
    buckets.append(PlannedProgram(g.batch_size, g.archs, chosen.reset_index(drop=True), g.network,
                          *g.work(epochs, cost.own_shape_convs)))
  return sorted(buckets, key=lambda b: (-len(b.members), b.batch_size))


def summary(buckets: list[PlannedProgram], cost: CostModel) -> dict:
  """The plan as the run summary reports it."""
  own, padded = sum(b.own_work for b in buckets), sum(b.padded_work for b in buckets)
  return {
      'programs': len(buckets), 'members': int(sum(len(b.members) for b in buckets)),
      'padded_compute_overhead': padded / own if own else 1.0,
      'own_shape_convs': cost.own_shape_convs,
      'estimated_seconds': sum(cost.compile_seconds + b.padded_work / cost.flops_per_second for b in buckets),
      'buckets': [{'batch_size': b.batch_size, 'members': len(b.members), 'architectures': len(b.archs),
                   'datasets': int(b.members['dataset'].nunique()),
                   'padded_arch': b.network.name,
                   'overhead': round(b.overhead, 3)} for b in buckets],
  }


def format_plan(report: dict) -> str:
  """A table of the plan: one line per program, then the totals."""
  lines = [f'{"#":>3} {"batch":>5} {"members":>7} {"archs":>5} {"datasets":>8} {"overhead":>8}  padded network']
  for i, b in enumerate(report['buckets']):
    lines.append(f'{i:>3} {b["batch_size"]:>5} {b["members"]:>7} {b["architectures"]:>5} {b["datasets"]:>8} '
                 f'{b["overhead"]:>7.2f}x  {b["padded_arch"]}')
  lines.append(f'{report["programs"]} programs for {report["members"]} members; padded compute '
               f'{report["padded_compute_overhead"]:.2f}x the members\' own'
               f'{" (conv layers at own shapes)" if report.get("own_shape_convs") else ""}; estimated '
               f'{progress.duration(report["estimated_seconds"])} (cost model)')
  return '\n'.join(lines)
