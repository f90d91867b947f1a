"""The experiment configs live in the repository's top-level configs/ and install with the package: after a
non-editable `pip install .`, `--config nws_fixed` works from any directory and reads the installed copy."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = shutil.ignore_patterns('.git', 'runs', 'build', '__pycache__', '*.egg-info', '.pytest_cache')


def test_pyproject_lists_every_package_and_maps_configs():
  tomllib = pytest.importorskip('tomllib')
  from setuptools import find_packages
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    setuptools_table = tomllib.load(f)['tool']['setuptools']
  found = set(find_packages(ROOT, include=['popnet*', 'meta*']))
  assert set(setuptools_table['packages']) == found | {'popnet.configs.experiments'}
  assert setuptools_table['package-dir'] == {'popnet.configs.experiments': 'configs'}


def _install_copy(tmp_path):
  """A fresh venv (seeing this interpreter's packages) with a non-editable install of a copy of the repository;
  the copy is deleted afterwards, so only the installed files remain."""
  source, venv = tmp_path / 'source', tmp_path / 'venv'
  shutil.copytree(ROOT, source, ignore=SKIP)
  subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True)
  pip = subprocess.run([str(venv / 'bin' / 'pip'), 'install', '--no-deps', '--no-build-isolation', '--no-index',
                        str(source)], capture_output=True, text=True, timeout=300)
  assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
  shutil.rmtree(source)
  return str(venv / 'bin' / 'python')


def test_config_by_name_after_a_non_editable_install_from_another_directory(tmp_path):
  python = _install_copy(tmp_path)
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
  where = subprocess.run([python, '-c', 'from popnet import configs; print(configs.path("nws_fixed"))'],
                         cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
  assert where.stdout.strip() == os.path.join(
      subprocess.run([python, '-c', 'import popnet, os; print(os.path.dirname(popnet.__file__))'], cwd=elsewhere,
                     env=env, capture_output=True, text=True, check=True).stdout.strip(),
      'configs', 'experiments', 'nws_fixed.py')
  assert where.stdout.startswith(str(tmp_path / 'venv'))
  shown = subprocess.run([python, '-m', 'popnet.train', '--config', 'nws_fixed', '--print_config'], cwd=elsewhere,
                         env=env, capture_output=True, text=True, timeout=120)
  assert shown.returncode == 0, shown.stderr[-2000:]
  lines = shown.stdout.splitlines()
  assert '  population: 3000' in lines and any(l.split()[:2] == ['architecture', 'nws_fixed'] for l in lines)
  plan = subprocess.run([python, '-m', 'popnet.train', '--config', 'nws_fixed', '--config.plan_only=true',
                         '--workdir', str(elsewhere / 'run')], cwd=elsewhere, env=env, capture_output=True,
                        text=True, timeout=300)
  assert plan.returncode == 0, plan.stderr[-2000:]
  assert '4 programs for 3000 members' in plan.stdout, plan.stdout[-2000:]
  assert not os.listdir(elsewhere)  # a plan writes nothing


def test_a_config_file_of_ones_own_still_works(tmp_path):
  own = tmp_path / 'mine.py'
  own.write_text('from popnet.configs import common\nfrom popnet.config import base_config\n\n\n'
                 'def get_config():\n  config = common.fixed_evaluation_subsets(base_config())\n'
                 '  config.population = 7\n  return config\n')
  from popnet import configs
  assert configs.path(str(own)) == str(own) and configs.load(str(own)).population == 7
  proc = subprocess.run([sys.executable, '-m', 'popnet.train', '--config', str(own), '--print_config'],
                        cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0 and '  population: 7' in proc.stdout.splitlines(), proc.stderr[-2000:]
