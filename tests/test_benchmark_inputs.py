"""Every benchmark command line refuses a bad flag value (a count of 0 or below, a NaN or negative time, a --zoo
that is not there, an unknown name) with one line, exit 2, no traceback and nothing written, before any work
(popnet/usage.py). The commands run in parallel: each stops at its argument checks, in seconds."""
from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys

import pytest

from tests.test_bad_inputs import env, problems, tree

# (benchmark, its arguments with one bad value, what the line must name)
CASES = [
    ('accuracy_prediction', ('--zoo', 'nowhere', '--out', 'o'), '--zoo nowhere'),
    ('accuracy_prediction', ('--zoo', '.', '--out', 'o', '--epochs', '0'), '--epochs'),
    ('inr_classification', ('--zoo', 'nowhere', '--out', 'o'), '--zoo nowhere'),
    ('inr_classification', ('--zoo', '.', '--out', 'o', '--batch_size', '-1'), '--batch_size'),
    ('config_run', ('--config', 'smoke', '--out', 'o', '--synthetic_train', '0'), '--synthetic_train'),
    ('core_loops', ('--arch', 'smallcnnzoo', '--batch', '0', '--core', '0', '--members', '0,1'), '--batch'),
    ('core_loops', ('--arch', 'smallcnnzoo', '--batch', '8', '--core', '0', '--members', 'a'), '--members'),
    ('device_check', ('--out', 'o', '--budget_s', 'nan'), '--budget_s'),
    ('dmc_eval_norm', ('--zoo', 'nowhere'), '--zoo nowhere'),
    ('dmc_eval_norm', ('--zoo', '.', '--steps', '0'), '--steps'),
    ('inr', ('--steps', '0'), '--steps'),
    ('inr', ('--seconds', 'nan'), '--seconds'),
    ('inr', ('--member_chunk', '-2'), '--member_chunk'),
    ('inr_zoo_stats', ('--zoo', 'nowhere', '--out', 'o'), '--zoo nowhere'),
    ('inr_zoo_stats', ('--zoo', '.', '--log', 'nowhere.log', '--out', 'o'), '--log'),
    ('inr_profile', ('--chunks', '0,8'), '--chunks'),
    ('inr_profile', ('--activations', 'cos'), '--activations'),
    ('mixed', ('--members', '0', '--out', 'o'), '--members'),
    ('mixed', ('--epochs', '-1', '--out', 'o'), '--epochs'),
    ('op_profile', ('--population', '0'), '--population'),
    ('op_profile', ('--steps', '-5'), '--steps'),
    ('replication', ('--zoo', 'nowhere', '--out', 'o'), '--zoo nowhere'),
    ('sweep', ('--seconds', 'nan', '--out', 'rows.jsonl'), '--seconds'),
    ('sweep', ('--batch', '0', '--out', 'rows.jsonl'), '--batch'),
    ('throughput', ('--seconds', '-1'), '--seconds'),
    ('throughput', ('--memory_population', '-1'), '--memory_population'),
    ('torch_hf', ('--members', '0', '--workdir', 'w'), '--members'),
    ('zoo_ab', ('run', '--out', 'o', '--only', 'no_such_run'), '--only'),
]
IDS = [f'{name} {" ".join(args)}' for name, args, _ in CASES]


@pytest.fixture(scope='module')
def refusals(tmp_path_factory):
  """Each case run in a directory of its own (with a file, to see it is left alone): (CompletedProcess, the
  directory before, after)."""
  def run(i):
    root = str(tmp_path_factory.mktemp(f'bench{i}'))
    with open(os.path.join(root, 'existing.txt'), 'w') as f:
      f.write('left alone\n')
    before = tree(root)
    name, args, _ = CASES[i]
    proc = subprocess.run([sys.executable, '-m', f'benchmarks.{name}', *args], cwd=root, capture_output=True,
                          text=True, timeout=300, env=env(JAX_PLATFORMS='cpu'))
    return proc, before, tree(root)
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    return list(pool.map(run, range(len(CASES))))


@pytest.mark.parametrize('i', range(len(CASES)), ids=IDS)
def test_a_bad_benchmark_flag_is_one_line_exit_2_and_writes_nothing(refusals, i):
  proc, before, after = refusals[i]
  found = problems(proc, 2, before, after, CASES[i][2])
  assert not found, (found, proc.stdout[-1500:], proc.stderr[-3000:])
