"""Ctrl-C or SIGTERM stops every meta command line (meta.train, meta.report, meta.synthetic) as it stops
popnet.train (popnet/stopping.py): one line on stderr, exit 130 or 143, no traceback, --out's lock released and
nothing of the run left in --out as if complete (here --out is new: it is gone again)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.signals import WITH_DEFAULT_SIGINT
from tests.test_bad_inputs import env, handles_sigalrm

# an MLP fit of 100,000 epochs (about an hour on a 2-core CPU): still running when any signal arrives
FIT = ('--target', 'planted', '--epochs', '100000', '--analyses', 'none')
COMMANDS = {
    'meta.train': ('meta.train', *FIT, '--model', 'mlp'),
    'meta.report': ('meta.report', '--targets', 'planted', '--models', 'mlp', '--epochs', '100000'),
}
NOTES = {'meta.train': '{out} holds no result.json of this run (it is written last)',
         'meta.report': '{out} holds no report.md or report.json of this run (they are written last)'}


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('meta_stop') / 'syn')
  subprocess.run([sys.executable, '-m', 'meta.synthetic', '--out', path, '--members', '64', '--snapshots', '2'],
                 check=True, capture_output=True, env=env())
  return path


def start(argv, cwd) -> subprocess.Popen:
  """The command with a default SIGINT (tests/signals.py), once it has installed its handlers."""
  proc = subprocess.Popen([sys.executable, '-c', WITH_DEFAULT_SIGINT, '-m', *argv], cwd=cwd,
                          env=env(PYTHONFAULTHANDLER='1'),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 60
  while not handles_sigalrm(proc.pid) and time.monotonic() < deadline:
    time.sleep(0.005)
  return proc


def finish(proc: subprocess.Popen) -> tuple[int, str]:
  """(exit code, stderr) of the stopped command; one that goes on is aborted (faulthandler: where it was)."""
  try:
    _, err = proc.communicate(timeout=120)
  except subprocess.TimeoutExpired:
    proc.send_signal(signal.SIGABRT)
    _, err = proc.communicate()
    raise AssertionError(f'still running 120 s after the signal:\n{err[-4000:]}') from None
  return proc.returncode, err


def wait_for_line(proc: subprocess.Popen, text: str) -> None:
  for line in proc.stderr:
    if text in line:
      return
  raise AssertionError(f'{text!r} never printed; exit {proc.wait()}')


@pytest.mark.parametrize('signum, code, stopped', [(signal.SIGINT, 130, 'interrupted'),
                                                   (signal.SIGTERM, 143, 'terminated')])
@pytest.mark.parametrize('command', sorted(COMMANDS))
@pytest.mark.parametrize('when', ['start-up', 'fitting'])
def test_a_stopped_meta_command_is_one_line_and_leaves_nothing_in_out(zoo, tmp_path, command, when, signum, code,
                                                                       stopped):
  out = str(tmp_path / 'out' / 'meta')
  proc = start((*COMMANDS[command], '--zoo', zoo, '--out', out), str(tmp_path))
  if when == 'fitting':
    wait_for_line(proc, 'fitting mlp')  # numpy, JAX and the zoo loaded: the fit has begun
  proc.send_signal(signum)
  returncode, err = finish(proc)
  lines = err.strip().splitlines()
  assert returncode == code and 'Traceback' not in err, (returncode, err[-3000:])
  note = f'; {NOTES[command].format(out=out)}'
  assert sum('rerun the same command' in line for line in lines) == 1, err[-3000:]
  if when == 'start-up':  # while the flags are still being read, the line cannot name --out yet (on a loaded
    # machine the signal may also land after start-up, past the first progress lines)
    assert lines[-1] in (f'{stopped}{note}; rerun the same command', f'{stopped}; rerun the same command'), err[-3000:]
  else:
    assert lines[-1] == f'{stopped}{note}; rerun the same command', err[-3000:]
  assert not os.path.exists(tmp_path / 'out'), os.listdir(tmp_path / 'out')


def test_a_stopped_meta_synthetic_is_one_line_and_writes_nothing(tmp_path):
  out = str(tmp_path / 'new' / 'zoo')
  proc = start(('meta.synthetic', '--out', out, '--members', '4096'), str(tmp_path))
  proc.send_signal(signal.SIGINT)
  returncode, err = finish(proc)
  assert returncode == 130 and 'Traceback' not in err, err[-3000:]
  assert err.strip().splitlines()[0] in (f'interrupted; the part of a zoo written to {out} was removed; rerun the '
                                         f'same command', 'interrupted; rerun the same command'), err[-3000:]
  assert len(err.strip().splitlines()) == 1
  assert os.listdir(tmp_path) == []
