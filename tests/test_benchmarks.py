"""The benchmark scripts run end to end on a tiny configuration and write what their READMEs quote."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  proc = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_throughput_benchmark_times_three_programs_and_writes_only_with_out(tmp_path):
  out = tmp_path / 'results'
  stdout = _run(['benchmarks.throughput', '--populations', '2', '--archs', 'smallcnnzoo', '--seconds', '0.05',
                 '--rounds', '1', '--memory_population', '4', '--popnet_per_core', '--out', str(out)], tmp_path)
  result = json.loads((out / 'throughput_cpu.json').read_text())
  (row,) = result['rows']
  assert row['arch'] == 'smallcnnzoo' and row['population'] == 2 and result['machine']['backend'] == 'cpu'
  rates = row['model_samples_per_s']
  assert set(rates) == {'popnet', 'loop_1proc', 'loop_per_core', 'popnet_per_core'} and min(rates.values()) > 0
  assert abs(row['popnet_per_core_vs_best'] - rates['popnet_per_core'] / max(rates['loop_1proc'],
                                                                           rates['loop_per_core'])) < 1e-9
  assert row['core_processes'] == min(2, len(os.sched_getaffinity(0)))
  best = max(('loop_1proc', 'loop_per_core'), key=rates.get)
  assert row['best_baseline'] == best and abs(row['speedup_vs_best'] - rates['popnet'] / rates[best]) < 1e-9
  # the pool by its last process to finish is never faster than the sum of its processes' rates
  assert 0 < row['loop_per_core_wall_model_samples_per_s'] <= rates['loop_per_core'] * (1 + 1e-9)
  for key in ('xla_gflops_per_step', 'achieved_gflops', 'compile_seconds', 'mib_per_member'):
    assert row[key] > 0, key
  # XLA's FLOP count (x trip counts) agrees with the analytic count of the convolutions and dense layers, once
  # the population is padded to a multiple of the device count
  n_dev = result['machine']['device_count']
  padded = -(-2 // n_dev) * n_dev
  assert 0.8 < row['xla_gflops_per_step'] / (row['analytic_gflops_per_step'] * padded / 2) < 1.5
  assert result['memory']['population'] == 4 and result['memory']['process_max_rss_bytes'] > 0
  assert len(result['machine']['load_average_start']) == 3
  table = (out / 'throughput_cpu.md').read_text()
  assert '| smallcnnzoo (28, 28, 1) | 2 |' in table and 'Command: `python -m benchmarks.throughput' in table
  assert table.strip() in stdout
  # without --out nothing is written, and bad input is refused before any measuring
  before = sorted(os.listdir(os.path.join(ROOT, 'benchmarks', 'results')))
  _run(['benchmarks.throughput', '--populations', '1', '--archs', 'smallcnnzoo', '--seconds', '0.01', '--rounds', '1',
        '--memory_population', '0', '--core_processes', '0'], tmp_path)
  assert sorted(os.listdir(os.path.join(ROOT, 'benchmarks', 'results'))) == before
  bad = subprocess.run([sys.executable, '-m', 'benchmarks.throughput', '--archs', 'resnet'], cwd=ROOT,
                       capture_output=True, text=True)
  assert bad.returncode == 2 and "--archs must be from smallcnnzoo, nws_fixed" in bad.stderr


def test_throughput_help_runs_from_another_directory(tmp_path):
  proc = subprocess.run([sys.executable, os.path.join(ROOT, 'benchmarks', 'throughput.py'), '--help'], cwd=tmp_path,
                        capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0 and '(default: 32)' in proc.stdout and 'example:' in proc.stdout


def test_device_check_quick_mode_runs_every_stage(tmp_path):
  out = tmp_path / 'check'
  _run(['benchmarks.device_check', '--out', str(out), '--quick', '--budget_s', '500'], tmp_path)
  summary = json.loads((out / 'summary.json').read_text())
  stages = {s['stage']: s for s in summary['stages']}
  assert set(stages) == {'tests', 'sweep_smallcnnzoo', 'default_run', 'nws_fixed_run', 'inr_fit_rate'}
  assert all(s['status'] == 'ok' for s in stages.values()), stages
  assert stages['tests']['results']['tests'] == 1 and stages['tests']['results']['failures'] == 0
  (row,) = stages['sweep_smallcnnzoo']['results']
  assert row['status'] == 'ok' and row['popnet_model_samples_per_s'] > 0 and row['loop_model_samples_per_s'] > 0
  for run in ('default_run', 'nws_fixed_run'):
    result = stages[run]['results']
    assert result['data'] in ('real', 'synthetic') and result['summary']['members'] == 2, run
    assert result['summary']['model_samples_per_second'] > 0 and result['process_max_rss_bytes'] > 0
  assert stages['nws_fixed_run']['results']['datasets'] == ['cifar10']
  inr = stages['inr_fit_rate']['results']
  assert set(inr['methods']) == {'popnet', 'jax_loop'} and inr['methods']['popnet']['hours_for_70k'] > 0
  assert inr['methods']['jax_loop']['curve_max_relative_difference'] < 1e-4
  text = (out / 'summary.md').read_text()
  assert '| sweep_smallcnnzoo | ok |' in text and '## Training runs' in text and '## INR fit rate' in text
  # a second run refuses a folder that already holds results
  again = subprocess.run([sys.executable, '-m', 'benchmarks.device_check', '--out', str(out), '--quick'], cwd=ROOT,
                         capture_output=True, text=True)
  assert again.returncode == 2 and 'is not empty' in again.stderr


def test_op_profile_lists_the_train_program_ops(tmp_path):
  out = tmp_path / 'profile.md'
  _run(['benchmarks.op_profile', '--arch', 'smallcnnzoo', '--population', '2', '--steps', '2', '--top', '5',
        '--out', str(out)], tmp_path)
  text = out.read_text()
  assert 'ms per member-step' in text and text.count('\n| ') >= 6 and 'The other ' in text


def test_dmc_eval_norm_scores_every_normalization(tmp_path, capsys):
  from benchmarks import dmc_eval_norm
  from meta import synthetic
  zoo = synthetic.make_zoo(str(tmp_path / 'zoo'), members=96, snapshots=3, seed=1)
  assert dmc_eval_norm.main(['--zoo', zoo, '--snapshots', '1-2', '--steps', '10', '--window', '256',
                             '--windows', '8', '--size', 'tiny', '--precise_batches', '3']) == 0
  out = capsys.readouterr().out
  for name in ('running', 'precise', 'per_network', 'mixed'):
    assert f'  {name} ' in out


def test_mixed_benchmark_trains_both_groupings_on_the_host_devices(tmp_path):
  """benchmarks.mixed end to end on 3 nws_main members: both modes train, evaluate and cut zoo rows; the JSON
  has the speed-up and the host devices popnet.train would use (one per usable core, up to 8)."""
  out = tmp_path / 'results'
  stdout = _run(['benchmarks.mixed', '--members', '3', '--images', '256', '--eval_images', '32', '--epochs', '1',
                 '--out', str(out)], tmp_path)
  result = json.loads((out / 'mixed_cpu_m3.json').read_text())
  assert len(result['devices']) == min(len(os.sched_getaffinity(0)), 8)
  assert set(result['modes']) == {'buckets', 'cohorts'}
  for mode in result['modes'].values():
    assert mode['programs'] >= 1 and mode['wall_seconds'] > mode['compile_seconds'] > 0
  assert result['modes']['cohorts']['programs'] == 3  # three architectures (the first members of the sample)
  assert abs(result['speedup'] - result['modes']['cohorts']['wall_seconds'] / result['modes']['buckets']['wall_seconds']) < 1e-9
  assert 'faster than per-cohort programs' in stdout


def test_inr_benchmark_times_every_method_on_the_same_work(tmp_path):
  """benchmarks.inr at a tiny size: every method fits the same 2 images from the same initial weights, so every
  loss curve equals popnet's (per step, to float32 rounding), and the rates and ratios are recorded."""
  pytest.importorskip('torch')
  out = tmp_path / 'inr'
  stdout = _run(['benchmarks.inr', '--dataset', 'synthetic', '--steps', '6', '--every', '1', '--seconds', '0',
                 '--fits', '2', '--group', '2', '--rounds', '1', '--out', str(out)], tmp_path)
  result = json.loads((out / 'inr_fit_rate_cpu.json').read_text())
  methods = result['methods']
  assert list(methods) == ['popnet', 'torch_loop', 'torch_vmap', 'jax_loop', 'jax_scan']
  for name, m in methods.items():
    assert m['fits'] == 2 and m['fits_per_s'] > 0 and m['rounds'][0]['compiled_during_round_s'] == 0, name
    assert abs(m['popnet_speedup'] - methods['popnet']['fits_per_s'] / m['fits_per_s']) < 1e-9
    agree = result['curve_agreement'][name]
    assert agree['fits_compared'] == 2 and agree['max_relative_difference'] < 1e-4, (name, agree)
  curves = np.asarray(result['curves_first_fits']['popnet'])
  assert curves.shape == (2, 6) and np.all(np.diff(curves[:, :2], axis=1) != 0)  # the fits moved
  assert set(result['targets']) == {'torch_loop', 'torch_vmap'} and result['machine']['torch']['torch_threads'] > 0
  assert '| torch_vmap |' in (out / 'inr_fit_rate_cpu.md').read_text() and 'Target popnet >= 20x' in stdout
  bad = subprocess.run([sys.executable, '-m', 'benchmarks.inr', '--steps', '10', '--every', '3'], cwd=ROOT,
                       capture_output=True, text=True)
  assert bad.returncode == 2 and '--every must divide --steps' in bad.stderr
