"""The plan: nws_main's members in a few dozen padded programs, the cost model's trade-off, the dry run."""
import os

import pytest

from popnet import buckets, configs, hparams, models, supernet
from popnet import train as train_lib


@pytest.fixture(scope='module')
def main_members():
  config = configs.get('nws_main')
  return config, hparams.sample_members(dict(config.hparams), config.population, config.seed)


def nominal(dataset):
  return 50000


def test_nws_main_plans_into_a_few_dozen_programs(main_members):
  config, members = main_members
  assert len(members) == 13000 and members['arch'].nunique() == 243
  plan = buckets.plan(members, config.input_shape, config.epochs, nominal, cost=buckets.CostModel(max_programs=32))
  assert len(plan) <= 32
  assert sorted(m for b in plan for m in b.members['member_id']) == list(range(13000))  # each member once
  for b in plan:
    assert b.members['batch_size'].nunique() == 1 and b.members['batch_size'].iloc[0] == b.batch_size
    assert set(b.members['arch']) == {a.name for a in b.archs}
    assert isinstance(b.network, supernet.Supernet) and b.padded_work >= b.own_work > 0
  report = buckets.summary(plan, buckets.CostModel())
  assert 1.0 < report['padded_compute_overhead'] < 2.0, report['padded_compute_overhead']
  assert report['members'] == 13000 and len(report['buckets']) == len(plan)
  per_arch = buckets.plan(members, config.input_shape, config.epochs, nominal, grouping='architecture')
  assert len(per_arch) == members.groupby(['arch', 'batch_size']).ngroups == 972


def test_compilation_cost_decides_how_far_buckets_split(main_members):
  config, members = main_members
  members = members.iloc[:2000]
  expensive = buckets.plan(members, config.input_shape, config.epochs, nominal,
                           cost=buckets.CostModel(compile_seconds=1e15, max_programs=32))
  assert len(expensive) == 4  # one per batch size: no split pays for its compilation
  cheap = buckets.plan(members, config.input_shape, config.epochs, nominal,
                       cost=buckets.CostModel(compile_seconds=0.0, max_programs=12))
  assert len(cheap) == 12
  overhead = lambda plan: sum(b.padded_work for b in plan) / sum(b.own_work for b in plan)
  assert overhead(cheap) < overhead(expensive)


def test_own_shape_convs_keep_buckets_large(main_members):
  """One member at a time (the CPU default) conv layers run at each member's own shape: only the FC layers'
  padding costs compute, so fewer, larger buckets pay."""
  config, members = main_members
  members = members.iloc[:2000]
  cost = dict(compile_seconds=30.0, max_programs=32)
  padded = buckets.plan(members, config.input_shape, 2, lambda d: 2000, cost=buckets.CostModel(**cost))
  own = buckets.plan(members, config.input_shape, 2, lambda d: 2000,
                     cost=buckets.CostModel(**cost, own_shape_convs=True))
  assert len(own) < len(padded)
  for b in own:
    assert b.own_work <= b.padded_work < 1.1 * b.own_work  # the FC layers' padding only
  report = buckets.summary(own, buckets.CostModel(own_shape_convs=True))
  assert report['own_shape_convs'] and '(conv layers at own shapes)' in buckets.format_plan(report)


def test_own_shape_convs_mix_conv_widths_only_where_compilation_costs_more(main_members):
  """One member at a time a narrower member's activations are padded to its bucket's conv width: the plan
  keeps widths apart when training is long and mixes them when compilation dominates (a short run)."""
  config, members = main_members
  members = members.iloc[:256]
  cost = buckets.CostModel(max_programs=32, own_shape_convs=True)
  widths = lambda plan: [len({a.conv[0].features for a in b.archs}) for b in plan]
  long = buckets.plan(members, config.input_shape, 20, lambda d: 50000, cost=cost)
  assert max(widths(long)) == 1 and len(long) >= 12  # 4 batch sizes x 3 widths
  short = buckets.plan(members, config.input_shape, 1, lambda d: 500, cost=cost)
  assert len(short) == 4 and min(widths(short)) == 3  # one bucket per batch size
  mixed = next(b for b in short)
  narrow = [a for a in mixed.archs if a.conv[0].features == 4]
  alone = buckets._Group(mixed.batch_size, tuple(narrow), (1.0,) * len(narrow), tuple(config.input_shape))
  inside = buckets._Group(mixed.batch_size, mixed.archs, tuple(float(a in narrow) for a in mixed.archs),
                          tuple(config.input_shape))
  assert inside.work(1, True)[1] > 2.5 * alone.work(1, True)[1]  # width 4 in a width-12 bucket: ~3x


def test_architectures_that_cannot_pad_run_alone():
  members = hparams.sample_members({'architecture': 'choice(nws, smallcnnzoo)', 'filter_size': 'choice(3, 5)',
                                    'batch_size': 32}, 40, seed=0)
  plan = buckets.plan(members, (32, 32, 3), 1, nominal, cost=buckets.CostModel(compile_seconds=0.0))
  alone = [b for b in plan if models.smallcnnzoo_arch().name in {a.name for a in b.archs}]
  assert len(alone) == 1 and len(alone[0].archs) == 1 and isinstance(alone[0].network, models.CNN)


def test_plan_only_prints_the_plan_and_writes_nothing(tmp_path):
  config = configs.get('nws_main')
  config.population = 500
  config.plan_only = True
  lines = []
  summary = train_lib.train(config, str(tmp_path / 'run'), log=lines.append)
  assert not os.path.exists(tmp_path / 'run')
  assert summary['plan']['programs'] == len(summary['plan']['buckets']) <= config.max_programs
  assert 'programs for 500 members; padded compute' in lines[-1]
