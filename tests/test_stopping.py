"""popnet/stopping.py on its own: a Ctrl-C that the work swallowed is raised again until the work stops, and one
on its way out does not cut the clean-up short (its `finally` blocks run to the end)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.signals import WITH_DEFAULT_SIGINT
from tests.test_bad_inputs import env, handles_sigalrm

# work as a command line runs it: stopping.install(), then stopping.run(work, line); `ready` is printed on stdout
# once the handlers are in place
WORK = '''
import os, sys, time
from popnet import stopping
stopping.install()

def swallowing():  # as C code that clears the errors it meets (numpy's Generator.choice did): the work goes on
  end = time.monotonic() + 20
  print('ready', flush=True)
  while time.monotonic() < end:
    try:
      time.sleep(0.001)
    except KeyboardInterrupt:
      print('swallowed', file=sys.stderr, flush=True)
      break
  while time.monotonic() < end:
    time.sleep(0.001)
  print('finished', flush=True)

def cleaning():  # a clean-up of 0.5 s on the way out (10 times the retry interval)
  try:
    print('ready', flush=True)
    time.sleep(20)
  finally:
    time.sleep(0.5)
    print('cleaned', flush=True)

stopping.run({'swallowing': swallowing, 'cleaning': cleaning}[sys.argv[1]],
             lambda signum: f'{stopping.STOPPED[signum]}; rerun the same command')
'''


def stopped(kind: str) -> tuple[int, str, str]:
  """(exit code, stdout, stderr) of the work `kind`, given SIGINT once it is ready."""
  proc = subprocess.Popen([sys.executable, '-c', WITH_DEFAULT_SIGINT, '-c', WORK, kind], env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline() == 'ready\n'
  assert handles_sigalrm(proc.pid)
  time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=60)
  return proc.returncode, out, err


def test_a_swallowed_stop_is_raised_again_until_the_work_stops():
  returncode, out, err = stopped('swallowing')
  assert returncode == 130, (returncode, out, err)
  assert err.splitlines() == ['swallowed', 'interrupted; rerun the same command'], err
  assert 'finished' not in out


def test_a_stop_on_its_way_out_lets_the_clean_up_finish():
  returncode, out, err = stopped('cleaning')
  assert returncode == 130, (returncode, out, err)
  assert out.splitlines() == ['cleaned'] and err.splitlines() == ['interrupted; rerun the same command'], (out, err)
