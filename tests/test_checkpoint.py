"""Checkpoints are sealed with an integrity record; resume restores only an intact step and falls back past
damaged ones, saying which and why."""
import errno
import os
import shutil

import numpy as np
import pytest

from popnet.checkpoint import CheckpointError, ProgramCheckpoints

MEMBERS = 3


def state(epoch):
  """A small population pytree: every leaf has the population axis first (one padding row, as on devices)."""
  rng = np.random.default_rng(epoch)
  return {'params': {'w': rng.normal(size=(MEMBERS + 1, 64, 16)).astype(np.float32),
                     'b': rng.normal(size=(MEMBERS + 1, 16)).astype(np.float32)},
          'step': np.full((MEMBERS + 1,), 10 * epoch, np.int32)}


def saved(directory, epochs=(1, 2), log=None):
  checkpoints = ProgramCheckpoints(directory, log=log)
  for epoch in epochs:
    checkpoints.save(epoch, state(epoch), MEMBERS)
    checkpoints.wait()
  checkpoints.close()
  return directory


def assert_state(restored, epoch):
  expected = state(epoch)
  np.testing.assert_array_equal(restored['params']['w'], expected['params']['w'][:MEMBERS])
  np.testing.assert_array_equal(restored['params']['b'], expected['params']['b'][:MEMBERS])
  np.testing.assert_array_equal(restored['step'], expected['step'][:MEMBERS])


def largest_file(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs]
  return max(files, key=os.path.getsize)


def flip_bytes(step_dir):
  path = largest_file(step_dir)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    f.write(b'\xff' * 64)


def truncate(step_dir):
  path = largest_file(step_dir)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


def corrupt_metadata(step_dir):
  with open(os.path.join(step_dir, '_CHECKPOINT_METADATA'), 'w') as f:
    f.write('{"item_handlers": ')


def junk_step(step_dir):
  junk = os.path.join(os.path.dirname(step_dir), '3')
  os.mkdir(junk)
  with open(os.path.join(junk, 'notes.txt'), 'w') as f:
    f.write('not a checkpoint')


def no_record(step_dir):
  os.remove(os.path.join(os.path.dirname(step_dir), 'integrity', '2.json'))


@pytest.mark.parametrize('damage, step, why', [
    (flip_bytes, 2, r'has changed since it was written \(sha256 mismatch'),
    (truncate, 2, r'bytes, \d+ were written \(truncated'),
    (empty, 2, r'\d+ of its \d+ files are missing'),
    (lambda d: shutil.rmtree(os.path.join(d, 'state')), 2, r'files are missing \(state/'),
    (corrupt_metadata, 2, r'_CHECKPOINT_METADATA has \d+ bytes'),
    (junk_step, 3, r'it has no integrity record'),
    (no_record, 2, r'it has no integrity record'),
])
def test_damaged_newest_step_falls_back_to_the_older_intact_one(tmp_path, damage, step, why):
  directory = saved(str(tmp_path / 'cohort_0000'))
  damage(os.path.join(directory, '2'))
  lines = []
  checkpoints = ProgramCheckpoints(directory, log=lines.append)
  epoch, restored = checkpoints.restore_latest(state(0), MEMBERS)
  assert epoch == (2 if step == 3 else 1)
  assert_state(restored, epoch)
  assert len(lines) == 1, lines
  assert f'checkpoint {os.path.join(directory, str(step))} is damaged: ' in lines[0]
  assert __import__('re').search(why, lines[0]), lines[0]
  assert os.path.isdir(os.path.join(directory, 'damaged', str(step))) and not os.path.exists(
      os.path.join(directory, str(step)))
  # training goes on: the next saves work and are restored
  for later in (step, step + 1):
    checkpoints.save(later, state(later), MEMBERS)
    checkpoints.wait()
  checkpoints.close()
  again = ProgramCheckpoints(directory, log=lines.append)
  epoch, restored = again.restore_latest(state(0), MEMBERS)
  assert epoch == step + 1 and len(lines) == 1
  assert_state(restored, step + 1)
  again.close()


def test_no_intact_step_means_train_from_scratch(tmp_path):
  directory = saved(str(tmp_path / 'c'))
  flip_bytes(os.path.join(directory, '1'))
  truncate(os.path.join(directory, '2'))
  lines = []
  checkpoints = ProgramCheckpoints(directory, log=lines.append)
  assert checkpoints.restore_latest(state(0), MEMBERS) is None
  assert len(lines) == 2 and checkpoints.steps() == [] and checkpoints.latest_epoch() is None
  checkpoints.close()


def test_old_methods_and_kept_steps(tmp_path):
  directory = saved(str(tmp_path / 'c'), epochs=(1, 2, 3))
  checkpoints = ProgramCheckpoints(directory)
  assert checkpoints.latest_epoch() == 3 and checkpoints.steps() == [2, 3]  # max_to_keep=2
  assert sorted(os.listdir(os.path.join(directory, 'integrity'))) == ['2.json', '3.json']  # no stale record
  assert_state(checkpoints.restore(2, state(0), MEMBERS), 2)
  assert checkpoints.verify(3) is None
  with pytest.raises(CheckpointError, match=r'/c/3: holds 3 members, expected 2'):
    checkpoints.restore(3, state(0), 2)
  checkpoints.close()


def test_save_errors_are_one_line_naming_the_path(tmp_path, monkeypatch):
  checkpoints = ProgramCheckpoints(str(tmp_path / 'c'))

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device\n  (a long orbax traceback would follow)')

  monkeypatch.setattr(checkpoints.manager, 'save', full)
  with pytest.raises(CheckpointError) as error:
    checkpoints.save(1, state(1), MEMBERS)
  assert str(error.value) == (f'{tmp_path}/c/1: saving the checkpoint failed '
                              f'(OSError: [Errno 28] No space left on device)')
  monkeypatch.undo()
  checkpoints.save(1, state(1), MEMBERS)
  monkeypatch.setattr(checkpoints.manager, 'wait_until_finished', full)
  with pytest.raises(CheckpointError, match=r'/c: saving the checkpoint of epoch\(s\) \[1\] failed \(OSError'):
    checkpoints.wait()
