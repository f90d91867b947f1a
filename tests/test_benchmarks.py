"""The benchmark scripts run end to end on a tiny configuration and write what their READMEs quote."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  proc = subprocess.run([sys.executable, '-m', *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout


def test_throughput_benchmark_writes_json_and_table(tmp_path):
  out = tmp_path / 'results'
  _run(['benchmarks.throughput', '--populations', '2', '--archs', 'smallcnnzoo', '--seconds', '0.05',
        '--memory_population', '4', '--out', str(out)], tmp_path)
  result = json.loads((out / 'throughput_cpu.json').read_text())
  (row,) = result['rows']
  assert row['arch'] == 'smallcnnzoo' and row['population'] == 2 and result['machine']['backend'] == 'cpu'
  for key in ('popnet_model_samples_per_s', 'baseline_model_samples_per_s', 'xla_gflops_per_step',
              'fraction_of_ceiling', 'compile_seconds', 'mib_per_member'):
    assert row[key] > 0, key
  # XLA's FLOP count (x trip counts) agrees with the analytic count of the convolutions and dense layers, once
  # the population is padded to a multiple of the device count
  n_dev = result['machine']['device_count']
  padded = -(-2 // n_dev) * n_dev
  assert 0.8 < row['xla_gflops_per_step'] / (row['analytic_gflops_per_step'] * padded / 2) < 1.5
  assert result['memory']['population'] == 4 and result['memory']['process_max_rss_bytes'] > 0
  table = (out / 'throughput_cpu.md').read_text()
  assert '| smallcnnzoo (28, 28, 1) | 2 |' in table and 'Command: `python -m benchmarks.throughput' in table


def test_op_profile_lists_the_train_program_ops(tmp_path):
  out = tmp_path / 'profile.md'
  _run(['benchmarks.op_profile', '--arch', 'smallcnnzoo', '--population', '2', '--steps', '2', '--top', '5',
        '--out', str(out)], tmp_path)
  text = out.read_text()
  assert 'ms per member-step' in text and text.count('\n| ') >= 6 and 'The other ' in text
