"""Shards (--shard k/n): separate processes, one SIGKILLed and rerun, merge into the zoo the unsharded run writes,
byte for byte; missing, duplicated, foreign and other-config shards are refused with one line; the Ray launcher
retries a killed shard. The rule itself (balance, determinism, every member once) on synthetic plans."""
import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pandas as pd
import pytest

from popnet import buckets, shards
from popnet.zoo import Zoo, ZooError
from tests.conftest import ROOT

ARGS = ('--config', 'smoke', '--config.steps_per_call=7')  # 42 steps per epoch in calls of 7 (tests/test_resume.py)
ZOO_FILES = ('weights/smallcnnzoo.npy', 'metadata.csv', 'layouts/smallcnnzoo.json', 'evaluation/digits.npz')


def zoo_bytes(zoo_dir):
  return {name: open(os.path.join(zoo_dir, name), 'rb').read() for name in ZOO_FILES}


def zoo_cli(*args, env=None):
  return subprocess.run([sys.executable, '-m', 'popnet.zoo', *args], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, **(env or {})), timeout=300)


def train_env(digits_dir, compilation_cache, **extra):
  return dict(os.environ, TFDS_DATA_DIR=digits_dir, JAX_COMPILATION_CACHE_DIR=compilation_cache,
              XLA_FLAGS='--xla_force_host_platform_device_count=2', PYTHONUNBUFFERED='1', **extra)


@pytest.fixture(scope='module')
def reference(cli, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('unsharded') / 'run')
  cli(*ARGS, '--workdir', workdir)
  return os.path.join(workdir, 'zoo')


@pytest.fixture(scope='module')
def sharded(cli, digits_dir, compilation_cache, tmp_path_factory):
  """3 shards as 3 processes at once; shard 1 SIGKILLed in its 3rd training call, then rerun. Returns the
  workdir and what was seen while shard 1 lay dead."""
  workdir = str(tmp_path_factory.mktemp('sharded') / 'run')
  procs = [subprocess.Popen([sys.executable, '-m', 'popnet.train', '--noprogress', *ARGS, '--workdir', workdir,
                             '--shard', f'{k}/3'], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=train_env(digits_dir, compilation_cache,
                                          **({'POPNET_KILL_AT': 'train_call:3'} if k == 1 else {})))
           for k in range(3)]
  outputs = [p.communicate(timeout=600) for p in procs]
  assert [p.returncode for p in procs] == [0, -9, 0], [err[-2000:] for _, err in outputs]
  seen = {'status': zoo_cli('status', workdir)}
  with pytest.raises(ZooError) as refused:
    Zoo.open(workdir)
  seen['open'] = str(refused.value)
  rerun = cli(*ARGS, '--workdir', workdir, '--shard', '1/3')
  assert 'resuming' in rerun.stdout
  return workdir, seen


def test_three_shards_one_killed_merge_into_the_unsharded_zoo_byte_for_byte(sharded, reference, tmp_path):
  workdir, seen = sharded
  assert seen['status'].returncode == 1
  lines = seen['status'].stdout.splitlines()
  assert 'done' in lines[0] and 'stopped' in lines[1] and 'done' in lines[2], seen['status'].stdout
  assert 'shard 1/3' in seen['open'] and 'not complete' in seen['open']
  assert 'stopped: rerun its command to resume it' in seen['open']
  out = str(tmp_path / 'merged')
  merged = zoo_cli('merge', workdir, '--out', out)
  assert merged.returncode == 0, merged.stderr
  assert zoo_bytes(out) == zoo_bytes(reference)  # weights, metadata, layouts, evaluation subsets
  assert zoo_cli('verify', out).returncode == 0
  manifest = json.load(open(os.path.join(out, 'manifest.json')))
  assert [s['shard'] for s in manifest['shards']] == ['0/3', '1/3', '2/3'] and manifest['complete']
  assert sum(p['shard'] == '1/3' for p in manifest['processes']) == 2  # the killed process left its record
  again = zoo_cli('merge', workdir, '--out', out)
  assert again.returncode == 0 and 'already merged' in again.stdout
  # Zoo.open(workdir) reads the shards as one zoo: the same rows
  zoo, ref = Zoo.open(workdir), Zoo.open(reference)
  np.testing.assert_array_equal(zoo.vectors(zoo.metadata), ref.vectors(ref.metadata.sort_values(['member_id',
                                                                                                 'snapshot'])))
  assert zoo.evaluate(zoo.metadata.iloc[:2]).tolist() == pytest.approx(zoo.metadata['test_accuracy'][:2].tolist())
  status = zoo_cli('status', workdir)
  assert status.returncode == 0 and '3 of 3 shards done' in status.stdout
  verified = zoo_cli('verify', workdir)  # every row of every shard; one digest per shard
  assert verified.returncode == 0, verified.stdout
  assert verified.stdout.strip().split('digest sha256:')[1].split(',') == [s['digest'] for s in manifest['shards']]


def refused(workdir, tmp_path, *expected):
  """merge and Zoo.open refuse the workdir with one line naming `expected`; nothing is written."""
  out = str(tmp_path / 'out')
  proc = zoo_cli('merge', workdir, '--out', out)
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert all(e in proc.stderr for e in expected), proc.stderr
  assert not os.path.exists(out) and not os.path.exists(out + '.merging')
  with pytest.raises(ZooError, match='|'.join(map(__import__('re').escape, expected[:1]))):
    Zoo.open(workdir)


def copy_of(workdir, tmp_path):
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  return copy


def shard_dir(workdir, k, n=3):
  return os.path.join(workdir, 'shards', f'shard-{k:05d}-of-{n:05d}')


def test_a_missing_shard_is_refused(sharded, tmp_path):
  copy = copy_of(sharded[0], tmp_path)
  shutil.rmtree(shard_dir(copy, 2))
  refused(copy, tmp_path, 'shard 2/3 is missing', '--shard 2/3')
  status = zoo_cli('status', copy)
  assert status.returncode == 1 and 'missing' in status.stdout.splitlines()[2]


def test_a_duplicated_shard_is_refused(sharded, tmp_path):
  copy = copy_of(sharded[0], tmp_path)
  shutil.rmtree(shard_dir(copy, 1))
  shutil.copytree(shard_dir(copy, 0), shard_dir(copy, 1))
  refused(copy, tmp_path, 'shard 1/3', 'a duplicate: its zoo holds shard 0/3')


def test_a_member_in_two_shards_is_refused_even_when_resealed(sharded, tmp_path):
  """A copy of shard 0 relabelled as shard 1 and sealed again passes every per-shard check: the exactly-once check
  across shards is what refuses it."""
  copy = copy_of(sharded[0], tmp_path)
  shutil.rmtree(shard_dir(copy, 1))
  shutil.copytree(shard_dir(copy, 0), shard_dir(copy, 1))
  manifest_file = os.path.join(shard_dir(copy, 1), 'zoo', 'manifest.json')
  manifest = json.load(open(manifest_file))
  manifest['shard']['index'] = 1
  json.dump(manifest, open(manifest_file, 'w'))
  assert zoo_cli('sign', os.path.join(shard_dir(copy, 1), 'zoo')).returncode == 0
  refused(copy, tmp_path, 'shard 1/3', 'member 0 is also in shard 0/3')


def test_a_shard_of_another_config_is_refused(sharded, cli, tmp_path):
  other = str(tmp_path / 'other')
  cli(*ARGS, '--config.seed=1', '--workdir', other, '--shard', '2/3')
  copy = copy_of(sharded[0], tmp_path)
  shutil.rmtree(shard_dir(copy, 2))
  shutil.copytree(shard_dir(other, 2), shard_dir(copy, 2))
  refused(copy, tmp_path, 'shard 2/3', "trained another config than shard 0/3 (fields that differ: ['seed'])")
  # and a shard of another config is refused before it trains into the workdir of the others: where its own part
  # holds a run (the run's record, checked before any plan line) and where it does not yet (the siblings' check)
  proc = cli(*ARGS, '--config.seed=1', '--workdir', sharded[0], '--shard', '2/3', check=False)
  assert proc.returncode == 2 and "holds a run of a different config (fields that differ: ['seed'])" in proc.stderr
  shutil.rmtree(shard_dir(copy, 2))
  proc = cli(*ARGS, '--config.seed=1', '--workdir', copy, '--shard', '2/3', check=False)
  assert proc.returncode == 2 and "trains another config (fields that differ: ['seed'])" in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1 and not os.path.exists(shard_dir(copy, 2)), proc.stderr


def test_status_names_the_holder_of_a_running_shard(sharded, tmp_path):
  from popnet.workdir import WorkdirLock
  copy = copy_of(sharded[0], tmp_path)
  with WorkdirLock(shard_dir(copy, 0)):
    status = zoo_cli('status', copy)
  assert status.returncode == 1 and f'running  24 of' not in status.stdout
  assert 'running' in status.stdout.splitlines()[0] and f'pid {os.getpid()}' in status.stdout.splitlines()[0]


@pytest.mark.parametrize('value, message', [
    ('3/3', "--shard: got '3/3'; expected k/n with 0 <= k < n"),
    ('1-of-3', "--shard: got '1-of-3'"),
    ('0/9', '--shard: 9 shards for 8 members; at most one shard per member'),
])
def test_bad_shard_values_exit_2_with_one_line_and_write_nothing(cli, tmp_path, value, message):
  workdir = str(tmp_path / 'run')
  proc = cli(*ARGS, '--workdir', workdir, '--shard', value, check=False)
  assert proc.returncode == 2 and message in proc.stderr, proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1 and not os.path.exists(workdir)


def test_shards_and_an_unsharded_run_never_share_a_workdir(reference, cli):
  workdir = os.path.dirname(reference)
  proc = cli(*ARGS, '--workdir', workdir, '--shard', '0/3', check=False)
  assert proc.returncode == 2 and 'holds an unsharded run' in proc.stderr


# --- the rule and SLURM's variables (no training) -------------------------------------------------------------------
def test_slurm_array_variables_give_the_shard():
  env = {'SLURM_ARRAY_TASK_ID': '5', 'SLURM_ARRAY_TASK_MIN': '1', 'SLURM_ARRAY_TASK_MAX': '8',
         'SLURM_ARRAY_TASK_COUNT': '8'}
  assert shards.resolve('', env, distributed=False) == shards.Shard(4, 8)
  assert shards.resolve('', dict(env, SLURM_ARRAY_TASK_STEP='2', SLURM_ARRAY_TASK_COUNT='4', SLURM_ARRAY_TASK_ID='7'),
                        distributed=False) == shards.Shard(3, 4)
  assert shards.resolve('2/3', env, distributed=False) == shards.Shard(2, 3)  # --shard wins
  assert shards.resolve('none', env, distributed=False) is None
  assert shards.resolve('', env, distributed=True) is None  # a jax.distributed job under SLURM is one run
  with pytest.raises(shards.ShardError, match='not a range'):
    shards.from_slurm(dict(env, SLURM_ARRAY_TASK_COUNT='3'))  # --array=1,4,8
  with pytest.raises(shards.ShardError, match='cannot also be a jax.distributed job'):
    shards.resolve('0/2', {}, distributed=True)


def fake_plan(sizes_and_seconds):
  """Planned programs of the given (members, seconds of work) with consecutive member_ids."""
  out, start = [], 0
  for size, seconds in sizes_and_seconds:
    out.append(types.SimpleNamespace(members=pd.DataFrame({'member_id': np.arange(start, start + size)}),
                                     padded_work=seconds * 1e10))
    start += size
  return out


@pytest.mark.parametrize('count', [1, 2, 3, 4, 7, 16])
def test_the_rule_covers_every_member_once_balances_the_cost_and_is_stable(count):
  cost = buckets.CostModel(compile_seconds=30, flops_per_second=1e10)
  planned = fake_plan([(500, 4000), (64, 3000), (200, 100), (3, 10), (1, 2000)])
  assigned = shards.assign(planned, count, cost)
  ids = np.sort(np.concatenate([part for shard in assigned for _, part in shard]))
  np.testing.assert_array_equal(ids, np.arange(768))  # every member exactly once
  assert all(assigned[k] for k in range(count))  # no shard is empty
  def work(j, part):
    return planned[j].padded_work / 1e10 * len(part) / len(planned[j].members)
  load = [sum(work(j, p) for j, p in s) + 30 * len({j for j, _ in s}) for s in assigned]  # one compile per program
  largest_slice = max(work(j, p) for s in assigned for j, p in s)
  assert max(load) <= (4000 + 3000 + 100 + 10 + 2000) / count + largest_slice + 30 * 5  # greedy's bound
  again = shards.assign(fake_plan([(500, 4000), (64, 3000), (200, 100), (3, 10), (1, 2000)]), count, cost)
  assert all(len(a) == len(b) and all(j == i and np.array_equal(p, q) for (j, p), (i, q) in zip(a, b))
             for a, b in zip(assigned, again))
  if count == 4:  # the costly programs are cut, the one-member program (2,000 s) stays whole, loads near the mean
    assert sum(len(p) for s in assigned for j, p in s if j == 0) == 500 and max(load) < 1.15 * np.mean(load), load


# --- the Ray launcher ------------------------------------------------------------------------------------------------
def launch(*args, env=None, timeout=900):
  return subprocess.run([sys.executable, '-m', 'popnet.launch', *args], cwd=ROOT, capture_output=True, text=True,
                        env=env or dict(os.environ), timeout=timeout)


def test_four_shards_as_ray_tasks_one_killed_is_retried_and_the_zoo_equals_the_unsharded(reference, digits_dir,
                                                                                         compilation_cache, tmp_path):
  pytest.importorskip('ray')
  workdir, marker = str(tmp_path / 'ray'), str(tmp_path / 'killed')
  env = train_env(digits_dir, compilation_cache, POPNET_KILL_AT='train_call:3', POPNET_KILL_ONCE=marker)
  proc = launch('ray', '--shards', '4', *ARGS, '--workdir', workdir, '--num_cpus', '2', '--max_retries', '2', env=env)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  killed = int(open(marker).read().split('--shard ')[1].split('/')[0])  # the first attempt that reached the point
  for k in range(4):
    log = open(os.path.join(workdir, 'logs', f'shard-{k:05d}-of-00004.log')).read()
    assert log.count('--- attempt') == (2 if k == killed else 1), log[-2000:]
    assert f'shard {k}/4: done on' in proc.stdout and f'({2 if k == killed else 1} attempt(s))' in proc.stdout
  manifest = json.load(open(os.path.join(shard_dir(workdir, killed, 4), 'zoo', 'manifest.json')))
  assert len(manifest['processes']) == 2  # the killed attempt's record, then the retry's
  assert zoo_bytes(os.path.join(workdir, 'merged')) == zoo_bytes(reference)


@pytest.mark.parametrize('args, message', [
    (('--shards', '0'), 'error: --shards: got 0; allowed: an integer >= 1'),
    (('--shards', '2', '--max_retries', '-1'), 'error: --max_retries: got -1; allowed: an integer >= 0'),
    (('--shards', '2', '--config', 'no_such_config'), 'no_such_config'),
])
def test_the_launcher_refuses_bad_input_with_one_line(tmp_path, args, message):
  pytest.importorskip('ray')
  proc = launch('ray', '--workdir', str(tmp_path / 'w'), *args, timeout=120)
  assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
  assert not os.path.exists(tmp_path / 'w')


# --- the SLURM example ------------------------------------------------------------------------------------------------
FAKE_SBATCH = r'''#!/usr/bin/env python3
"""A stand-in for sbatch: runs an --array job's --wrap once per task with SLURM's array variables, in order, and
prints a job id (--parsable)."""
import os, subprocess, sys
args = dict(a[2:].split('=', 1) for a in sys.argv[1:] if a.startswith('--') and '=' in a)
with open(os.environ['SBATCH_CALLS'], 'a') as f:
  f.write(' '.join(sys.argv[1:]) + '\n')
low, high = map(int, args['array'].split('-')) if 'array' in args else (None, None)
for task in ([None] if low is None else range(low, high + 1)):
  env = dict(os.environ) if task is None else dict(os.environ, SLURM_ARRAY_TASK_ID=str(task),
      SLURM_ARRAY_TASK_MIN=str(low), SLURM_ARRAY_TASK_MAX=str(high), SLURM_ARRAY_TASK_COUNT=str(high - low + 1))
  with open(args['output'].replace('%a', str(task)), 'a') as log:  # the job's output goes where --output says
    code = subprocess.run(['bash', '-c', args['wrap']], env=env, stdout=log, stderr=log).returncode
  if code:
    sys.exit(code)
print(len(open(os.environ['SBATCH_CALLS']).readlines()))
'''


def test_the_slurm_array_example_trains_every_shard_then_merges(reference, digits_dir, compilation_cache, tmp_path):
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  (bin_dir / 'sbatch').write_text(FAKE_SBATCH)
  (bin_dir / 'sbatch').chmod(0o755)
  workdir, calls = str(tmp_path / 'run'), str(tmp_path / 'calls')
  env = train_env(digits_dir, compilation_cache, CONFIG='smoke', WORKDIR=workdir, SHARDS='2', SBATCH_CALLS=calls,
                  PATH=f'{bin_dir}:{os.environ["PATH"]}')
  proc = subprocess.run(['bash', os.path.join(ROOT, 'examples', 'slurm_array.sh')], cwd=str(tmp_path), env=env,
                        capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  submitted = open(calls).read().splitlines()
  assert '--array=0-1' in submitted[0] and '--requeue' in submitted[0]
  assert '--dependency=afterok:1' in submitted[1]
  assert sorted(os.listdir(os.path.join(workdir, 'shards'))) == ['shard-00000-of-00002', 'shard-00001-of-00002']
  merged = Zoo.open(os.path.join(workdir, 'merged'))
  assert len(merged) == 24 and [s['shard'] for s in merged.manifest['shards']] == ['0/2', '1/2']
  assert zoo_bytes(os.path.join(workdir, 'merged')) == zoo_bytes(reference)


def test_shards_of_a_padded_mixed_architecture_program_merge_into_the_unsharded_zoo(digits_dir, tmp_path):
  """NWS architectures padded into one program (its conv layers at each member's own shape): 2 shards, each
  with half of that program, trained in this process; merged, the weights and metadata are the unsharded run's."""
  from popnet import train
  from popnet.zoo.merge import merge
  from tests.test_train_cli import smoke_config
  config = smoke_config(**{'population': 12, 'epochs': 1, 'snapshots': 2, 'data_dir': digits_dir, 'max_programs': 1,
                           'steps_per_call': 7, 'hparams.architecture': 'nws', 'hparams.filter_size': 'choice(1, 3)',
                           'hparams.depth_conv': 4, 'hparams.width_conv': 'choice(2, 4)', 'hparams.depth_fc': 1,
                           'hparams.width_fc': 8})
  quiet = dict(progress=False, log=lambda *_: None)
  single = str(tmp_path / 'single')
  summary = train.train(config, single, **quiet)
  assert summary['plan']['programs'] == 1 and summary['plan']['buckets'][0]['architectures'] > 1  # padded
  workdir = str(tmp_path / 'sharded')
  parts = [train.train(config, workdir, shard=shards.Shard(k, 2), **quiet) for k in range(2)]
  assert sorted(p['plan']['members'] for p in parts) == [6, 6]
  merge(workdir, str(tmp_path / 'merged'))
  names = [n for n in os.listdir(os.path.join(single, 'zoo', 'weights'))]
  for name in ['metadata.csv'] + [f'weights/{n}' for n in names] + [f'layouts/{n[:-4]}.json' for n in names]:
    assert open(os.path.join(tmp_path, 'merged', name), 'rb').read() == \
        open(os.path.join(single, 'zoo', name), 'rb').read(), name
