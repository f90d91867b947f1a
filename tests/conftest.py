"""Test session setup: two XLA host devices (sharding tests compare 1 and 2 devices in one process), a shared
persistent compilation cache (subprocess runs of the CLI compile each program once), and a prepared digits
dataset in a temporary TFDS data dir (nothing touches the user's real data dir)."""
import os
import subprocess
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=2').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def compilation_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp('xla_cache'))


@pytest.fixture(scope='session')
def digits_dir(tmp_path_factory):
  """A TFDS data dir holding the prepared `digits` dataset."""
  from popnet import data
  path = tmp_path_factory.mktemp('tfds_digits')
  data.prepare('digits', str(path))
  return str(path)


@pytest.fixture(scope='session')
def cli(digits_dir, compilation_cache):
  """Runs `python -m popnet.train ...` in a subprocess; returns the CompletedProcess."""

  def run(*args, devices=2, env=None, check=True, timeout=600):
    full_env = dict(os.environ, TFDS_DATA_DIR=digits_dir, JAX_COMPILATION_CACHE_DIR=compilation_cache,
                    XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, '-m', 'popnet.train', '--noprogress', *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
      raise AssertionError(f'popnet.train {args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}')
    return proc

  return run


@pytest.fixture(autouse=True, scope='module')
def free_compiled_programs():
  """After each test module, drops the compiled executables it left (popnet's cache and jax's): one process runs
  hundreds of programs, and each executable keeps its code mapped; the whole suite in one process aborted inside
  XLA's compiler at ~60% (the kernel's limit of memory mappings, vm.max_map_count 65530, is the likely cause)."""
  yield
  if 'jax' in sys.modules:
    import jax
    from popnet import population
    population._EXECUTABLES.clear()
    jax.clear_caches()
