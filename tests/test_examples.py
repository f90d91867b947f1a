"""examples/first_hour.sh runs as written, offline, from another directory."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_first_hour_runs_from_another_directory(tmp_path, compilation_cache):
  env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / 'tfds'), JAX_COMPILATION_CACHE_DIR=compilation_cache,
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  proc = subprocess.run(['bash', os.path.join(ROOT, 'examples', 'first_hour.sh'), 'w'], cwd=str(tmp_path),
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 're-evaluated 64 networks on the recorded test subset' in proc.stdout
  assert (tmp_path / 'w' / 'curves.png').stat().st_size > 0
  assert (tmp_path / 'w' / 'meta' / 'activation' / 'result.json').exists()
