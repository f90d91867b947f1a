"""One run per workdir: an OS lock naming its holder, released on crash; clear one-line errors for unusable
workdirs; --overwrite deletes a run only under the lock."""
import os
import signal
import subprocess
import sys

import pytest
from ml_collections import ConfigDict

from popnet.workdir import WorkdirError, WorkdirLock, holds_lock, prepare_workdir
from tests.conftest import ROOT

HOLD = ('import sys, time; from popnet.workdir import WorkdirLock; lock = WorkdirLock(sys.argv[1]).acquire(); '
        'print("locked", flush=True); time.sleep(60)')


def config(**overrides):
  return ConfigDict({'seed': 0, 'population': 8, 'steps_per_call': 0, **overrides})


def test_second_process_is_refused_at_once_naming_the_holder_and_crash_releases(tmp_path):
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen([sys.executable, '-c', HOLD, workdir], cwd=ROOT, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(WorkdirError, match=rf'{workdir} is in use by pid {holder.pid} on .* \(since .*\); wait for'):
      WorkdirLock(workdir).acquire()
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with WorkdirLock(workdir):  # the crashed holder's lock went with it
    assert holds_lock(workdir)
    with pytest.raises(WorkdirError, match=rf'in use by pid {os.getpid()}'):  # a second lock in this process too
      WorkdirLock(workdir).acquire()
  assert not holds_lock(workdir)


def test_parts_of_a_multi_process_run_lock_separately(tmp_path):
  with WorkdirLock(str(tmp_path), 0, 2), WorkdirLock(str(tmp_path), 1, 2):
    with pytest.raises(WorkdirError):
      WorkdirLock(str(tmp_path), 1, 2).acquire()


def test_unusable_workdirs_are_one_line_errors(tmp_path):
  file = tmp_path / 'file'
  file.write_text('x')
  with pytest.raises(WorkdirError, match=rf'^{file}: is a file, not a directory; give --workdir a directory$'):
    WorkdirLock(str(file)).acquire()
  with pytest.raises(WorkdirError, match=rf'^{file}/run: cannot be created \(Not a directory\)$'):
    WorkdirLock(str(file / 'run')).acquire()


def test_prepare_resumes_refuses_other_configs_and_overwrites_under_the_lock(tmp_path):
  workdir = str(tmp_path / 'run')
  with WorkdirLock(workdir):
    assert prepare_workdir(config(), workdir, overwrite=False) is False
    os.makedirs(os.path.join(workdir, 'zoo'))
    assert prepare_workdir(config(steps_per_call=7), workdir, overwrite=False) is True  # runtime-only field
    with pytest.raises(WorkdirError, match=r"holds a run of a different config \(fields that differ: \['seed'\]\)"):
      prepare_workdir(config(seed=1), workdir, overwrite=False)
  with pytest.raises(RuntimeError, match='needs the WorkdirLock'):
    prepare_workdir(config(seed=1), workdir, overwrite=True)
  assert os.path.isdir(os.path.join(workdir, 'zoo'))  # nothing deleted without the lock
  with WorkdirLock(workdir):
    assert prepare_workdir(config(seed=1), workdir, overwrite=True) is False
    assert not os.path.exists(os.path.join(workdir, 'zoo'))
    assert prepare_workdir(config(seed=1), workdir, overwrite=False) is True


def test_zoo_without_run_record_is_not_mixed(tmp_path):
  workdir = str(tmp_path / 'run')
  os.makedirs(os.path.join(workdir, 'zoo'))
  with WorkdirLock(workdir):
    with pytest.raises(WorkdirError, match='zoo exists but .*run_config.json does not'):
      prepare_workdir(config(), workdir, overwrite=False)
