"""The README's quick start as CI runs it (.ci/quickstart): the set-up fences taken verbatim, the apt-get one left
to CI; under CI=true the whole quick start runs from a clean clone in a fresh venv."""
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, '.ci', 'quickstart')


def set_up_section() -> str:
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  start = text.index('\n## Set up\n')
  return text[start:text.index('\n## ', start + 1)]


def test_quickstart_takes_the_set_up_commands_verbatim_without_apt():
  proc = subprocess.run([QUICKSTART, '--print'], capture_output=True, text=True, timeout=60)
  assert proc.returncode == 0, proc.stderr
  commands = proc.stdout.splitlines()
  assert commands[:2] == ['cd popnet', 'python3 -m venv .venv && . .venv/bin/activate']
  assert 'pip install .' in commands and 'python -m popnet.train' in commands
  assert not any('apt-get' in c for c in commands)
  section = set_up_section()
  assert all(f'\n{c}\n' in section for c in commands)  # each a whole line of the README's set-up fences


@pytest.mark.skipif(os.environ.get('CI') != 'true', reason='CI only: pip installs from PyPI, ~8 min')
def test_quickstart_runs_verbatim_in_a_fresh_venv():
  proc = subprocess.run([QUICKSTART], capture_output=True, text=True, timeout=1200)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert 'quickstart: zoo with' in proc.stdout
