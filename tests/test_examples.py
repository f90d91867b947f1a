"""examples/first_hour.sh runs as written, offline, from another directory."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_first_hour_runs_from_another_directory(tmp_path, compilation_cache):
  env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / 'tfds'), JAX_COMPILATION_CACHE_DIR=compilation_cache,
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  proc = subprocess.run(['bash', os.path.join(ROOT, 'examples', 'first_hour.sh'), 'w', '64'], cwd=str(tmp_path),
                        env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 're-evaluated 64 networks on the recorded test subset' in proc.stdout
  assert 'model-sample' in proc.stderr  # the training progress is shown (the example does not turn it off)
  assert 'test accuracy per network' in proc.stdout and 'first hour: done in' in proc.stdout
  assert (tmp_path / 'w' / 'curves.png').stat().st_size > 0
  assert (tmp_path / 'w' / 'meta' / 'activation' / 'result.json').exists()


def _zoo_tour():
  import importlib.util
  spec = importlib.util.spec_from_file_location('zoo_tour', os.path.join(ROOT, 'examples', 'zoo_tour.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_majority_vote_is_the_most_frequent_answer():
  import numpy as np
  answers = np.array([[2, 0, 1, 9],
                      [3, 0, 1, 9],
                      [3, 5, 2, 0],
                      [2, 5, 2, 0],
                      [3, 5, 7, 1]])  # networks x images
  # per image: 3 beats 2 (3 votes to 2; a median would say 3 as well, but of [2, 3] it says 2.5), 5 beats 0,
  # a 2-2 tie goes to the smaller class, 9 and 0 tie (2 each) -> 0
  assert _zoo_tour().majority_vote(answers, 10).tolist() == [3, 5, 1, 0]
  assert _zoo_tour().majority_vote(answers[:2], 10).tolist() == [2, 0, 1, 9]  # median would give 2.5 on image 0
