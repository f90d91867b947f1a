"""Reliability: a run SIGKILLed at any point resumes with the same command into a byte-identical zoo (every file;
the manifest up to its record of processes and timings), identical curves, and no temp file left."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from popnet.zoo import Zoo

# 42 steps per epoch in calls of 7: 6 train calls per epoch, checkpoint after epoch 1 (between calls 6 and 7)
ARGS = ('--config', 'smoke', '--config.steps_per_call=7')


def zoo_files(workdir):
  zoo = os.path.join(workdir, 'zoo')
  return {name: open(os.path.join(zoo, name), 'rb').read() for name in ('weights/smallcnnzoo.npy', 'metadata.csv')}


def zoo_tree(workdir):
  """Every file of the zoo, by path, with its bytes."""
  zoo = os.path.join(workdir, 'zoo')
  return {os.path.relpath(os.path.join(r, f), zoo): open(os.path.join(r, f), 'rb').read()
          for r, _, names in os.walk(zoo) for f in names}


# what a manifest records of the processes that built the zoo (when, how long): the rest must be identical
RUN_RECORD = ('processes', 'timings')
RUN_SUMMARY = ('wall_seconds', 'model_samples_per_second', 'model_samples_per_second_per_model', 'timings', 'build')


def built_zoo(workdir):
  """The zoo as its bytes (every file; the manifest without its run record) and the curves."""
  tree = zoo_tree(workdir)
  manifest = json.loads(tree.pop('manifest.json'))
  for key in RUN_RECORD:
    manifest.pop(key)
  for key in RUN_SUMMARY:
    manifest['summary'].pop(key)
  manifest['seal'].pop('manifest')  # the digest of the manifest itself, run record included
  curves = {name: open(os.path.join(workdir, 'curves', name), 'rb').read()
            for name in os.listdir(os.path.join(workdir, 'curves'))}
  return tree, manifest, curves


def temp_files(workdir):
  """Temp files of interrupted writes (`<file>.tmp-...`) anywhere in the workdir."""
  return [os.path.join(r, f) for r, _, names in os.walk(workdir) for f in names if '.tmp-' in f]


@pytest.fixture(scope='module')
def reference(cli, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference') / 'run')
  cli(*ARGS, '--workdir', workdir)
  return workdir


# atomic_write:n kills between the n-th atomic write's temp file and its rename (in a smoke run with these ARGS:
# 10 the first metadata.csv, 12 the curves after epoch 1, 16 the epoch-1 checkpoint's integrity record, 19 a
# manifest.json); the others inside training, a checkpoint save and a zoo write
KILL_POINTS = ['train_call:3', 'train_call:10', 'checkpoint_save:1', 'zoo_write:2', 'atomic_write:10',
               'atomic_write:12', 'atomic_write:16', 'atomic_write:19']


@pytest.mark.parametrize('kill_at', KILL_POINTS)
def test_sigkill_then_resume_gives_identical_zoo(cli, reference, tmp_path, kill_at):
  workdir = str(tmp_path / 'run')
  killed = cli(*ARGS, '--workdir', workdir, env={'POPNET_KILL_AT': kill_at}, check=False)
  assert killed.returncode == -9, killed.stderr[-2000:]
  partial = Zoo.open(workdir)  # what a reader sees after the crash: only completed snapshots
  assert len(partial) < 24 and not partial.manifest['complete']
  assert np.isfinite(partial.vectors(partial.metadata)).all() if len(partial) else True
  if kill_at.startswith('atomic_write'):  # the kill left the temp file of the write it interrupted
    assert temp_files(workdir)
  resumed = cli(*ARGS, '--workdir', workdir)
  assert 'resuming' in resumed.stdout
  (tree, manifest, curves), expected = built_zoo(workdir), built_zoo(reference)
  assert tree == expected[0] and manifest == expected[1] and curves == expected[2]
  assert temp_files(workdir) == []
  assert len(Zoo.open(workdir)) == 24


def test_curves_do_not_depend_on_how_steps_are_grouped_into_calls(cli, reference, tmp_path):
  """The minibatch losses are summed one step at a time across calls: calls of 5 steps give the bytes of 7."""
  workdir = str(tmp_path / 'run')
  cli('--config', 'smoke', '--config.steps_per_call=5', '--workdir', workdir)
  assert built_zoo(workdir)[2] == built_zoo(reference)[2]
  assert zoo_files(workdir) == zoo_files(reference)


def test_two_device_run_resumed_on_one_device(cli, reference, tmp_path):
  workdir = str(tmp_path / 'run')
  killed = cli(*ARGS, '--workdir', workdir, devices=2, env={'POPNET_KILL_AT': 'train_call:10'}, check=False)
  assert killed.returncode == -9
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', 'cohort_0000', '1'))  # resumes from a checkpoint
  cli(*ARGS, '--workdir', workdir, '--host_devices=1', devices=1)
  a, b = Zoo.open(workdir), Zoo.open(reference)
  pd.testing.assert_frame_equal(a.metadata.drop(columns=[c for c in a.metadata if 'loss' in c or 'accuracy' in c]),
                                b.metadata.drop(columns=[c for c in b.metadata if 'loss' in c or 'accuracy' in c]))
  np.testing.assert_allclose(a.weights('smallcnnzoo'), b.weights('smallcnnzoo'), rtol=1e-5, atol=1e-6)
  assert json.load(open(os.path.join(workdir, 'zoo', 'manifest.json')))['devices'] == ['cpu:0']


def test_finished_run_is_not_retrained(cli, reference):
  before = zoo_files(reference)
  proc = cli(*ARGS, '--workdir', reference)
  assert 'resuming: 1 of 1 program(s) already complete' in proc.stdout
  assert zoo_files(reference) == before


def test_workdir_of_another_config_is_refused_unless_overwrite(cli, reference, tmp_path):
  import shutil
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference, workdir)
  proc = cli(*ARGS, '--workdir', workdir, '--config.seed=1', check=False)
  assert proc.returncode == 2 and "different config (fields that differ: ['seed'])" in proc.stderr
  assert zoo_files(workdir) == zoo_files(reference)  # nothing touched
  cli(*ARGS, '--workdir', workdir, '--config.seed=1', '--overwrite')
  assert zoo_files(workdir) != zoo_files(reference) and len(Zoo.open(workdir)) == 24


def test_a_lost_metadata_file_is_damage_resume_writes_nothing(cli, tmp_path):
  """metadata.csv lost (its seal still lists it): the rerun exits 2 with one line naming it and the recovery, and
  writes nothing into the zoo."""
  workdir = str(tmp_path / 'run')
  args = ('--config', 'smoke', '--config.epochs=4', '--config.snapshots=3', '--workdir', workdir)
  cli(*args)
  os.remove(os.path.join(workdir, 'zoo', 'metadata.csv'))
  before = zoo_tree(workdir)
  proc = cli(*args, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "metadata.csv: missing (the zoo's seal lists it); resume writes nothing into a damaged zoo" in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert zoo_tree(workdir) == before


def test_flipped_checkpoint_bytes_fall_back_to_the_older_step_and_the_zoo_is_identical(cli, tmp_path):
  """Killed in epoch 3 (checkpoints of epochs 2 and 3 kept), 64 bytes flipped in the newest step: the rerun warns,
  restores epoch 2 and writes the zoo an uninterrupted run writes; verify passes; a no-op rerun keeps timings."""
  args = ('--config', 'smoke', '--config.steps_per_call=7', '--config.epochs=4', '--config.snapshots=3')
  reference, workdir = str(tmp_path / 'reference'), str(tmp_path / 'run')
  cli(*args, '--workdir', reference)
  killed = cli(*args, '--workdir', workdir, env={'POPNET_KILL_AT': 'train_call:20'}, check=False)
  assert killed.returncode == -9
  step = os.path.join(workdir, 'checkpoints', 'cohort_0000', '3')
  files = [os.path.join(r, f) for r, _, fs in os.walk(step) for f in fs]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, 'r+b') as f:
    f.seek(os.path.getsize(biggest) // 2)
    f.write(b'\xff' * 64)
  resumed = cli(*args, '--workdir', workdir)
  assert 'damaged' in resumed.stdout + resumed.stderr and 'resumed from its epoch-2 checkpoint' in resumed.stdout
  assert zoo_files(workdir) == zoo_files(reference)
  assert Zoo.open(workdir).verify()['checksummed'] == 8 * 3
  manifest = json.load(open(os.path.join(workdir, 'zoo', 'manifest.json')))
  check_processes_add_up(manifest, json.load(open(os.path.join(reference, 'zoo', 'manifest.json'))))
  cli(*args, '--workdir', workdir)
  again = json.load(open(os.path.join(workdir, 'zoo', 'manifest.json')))
  assert again['timings'] == manifest['timings'] and again['processes'] == manifest['processes']


def check_processes_add_up(resumed: dict, uninterrupted: dict) -> None:
  """The killed process left its record (up to its last snapshot or checkpoint) and the resumed one added its
  own; the summary's whole-build totals are their sums, and cover at least an uninterrupted run's samples."""
  (one,) = uninterrupted['processes']
  assert uninterrupted['summary']['build']['model_samples'] == one['model_samples'] > 0
  killed, finished = resumed['processes']
  assert 0 < killed['model_samples'] < one['model_samples'] and killed['started'] <= finished['started']
  build = resumed['summary']['build']
  assert build['processes'] == 2 and build['model_samples'] == killed['model_samples'] + finished['model_samples']
  assert build['model_samples'] >= one['model_samples']  # the epoch after the restored checkpoint ran twice
  for key in ('train', 'evaluate', 'total'):
    assert build['timings'][key] == pytest.approx(killed['timings'][key] + finished['timings'][key], abs=0.02)
  assert finished['timings'] == pytest.approx(resumed['timings'], abs=0.02)  # the last process's own split


def test_truncated_weights_file_is_refused_not_zero_filled(cli, reference, tmp_path):
  import shutil
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference, workdir)
  weights = os.path.join(workdir, 'zoo', 'weights', 'smallcnnzoo.npy')
  os.truncate(weights, os.path.getsize(weights) - 100)
  before = open(weights, 'rb').read()
  proc = cli(*ARGS, '--workdir', workdir, check=False)
  assert proc.returncode == 2 and 'smallcnnzoo.npy' in proc.stderr and 'Traceback' not in proc.stderr
  assert open(weights, 'rb').read() == before


def test_bytes_appended_to_a_weights_file_are_damage_to_readers_and_resume(cli, reference, tmp_path):
  """19 KB appended after the rows: Zoo.open and resume both refuse, naming the file; resume's advice is what
  recovers (--overwrite), not deleting the file (the rerun then lacks the rows its checkpoints cannot redo)."""
  import shutil
  from popnet.zoo import ZooError
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference, workdir)
  weights = os.path.join(workdir, 'zoo', 'weights', 'smallcnnzoo.npy')
  with open(weights, 'ab') as f:
    f.write(b'\0' * 19 * 1024)
  with pytest.raises(ZooError, match='smallcnnzoo.npy: .* bytes, but its header'):
    Zoo.open(workdir)
  proc = cli(*ARGS, '--workdir', workdir, check=False)
  assert proc.returncode == 2 and 'smallcnnzoo.npy' in proc.stderr and 'Traceback' not in proc.stderr
  assert 'rerun with --overwrite' in proc.stderr and 'delete it' not in proc.stderr


def flip_a_row(weights: str) -> None:
  with open(weights, 'r+b') as f:
    f.seek(os.path.getsize(weights) - 4 * 100)
    f.write(b'\x7f' * 16)


def append_bytes(weights: str) -> None:
  with open(weights, 'ab') as f:
    f.write(b'\0' * 1024)


@pytest.mark.parametrize('damage, extra, names', [
    (None, ('--config.epochs=3',), "different config (fields that differ: ['epochs'])"),
    (None, ('--config.seed=1',), "fields that differ: ['seed']"),
    (append_bytes, (), 'smallcnnzoo.npy: 478,272 bytes, but'),
    (flip_a_row, (), 'does not match its weights_crc32'),
], ids=['epochs differ', 'seed differs', 'bytes appended', 'row flipped'])
def test_a_resume_refusal_is_one_line_before_any_plan_line_and_writes_nothing(cli, reference, tmp_path, damage,
                                                                               extra, names):
  """Another config's run or a damaged zoo in the workdir: refused before the member table, data or program plan
  is printed (stdout empty), one line on stderr, exit 2, and the workdir byte for byte as it was."""
  import shutil
  from tests.test_bad_inputs import tree
  workdir = str(tmp_path / 'copy')
  shutil.copytree(reference, workdir)
  if damage:
    damage(os.path.join(workdir, 'zoo', 'weights', 'smallcnnzoo.npy'))
  before = tree(workdir)
  proc = cli(*ARGS, '--workdir', workdir, *extra, check=False)
  assert (proc.returncode, proc.stdout) == (2, ''), (proc.returncode, proc.stdout, proc.stderr[-2000:])
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ') and names in lines[0], proc.stderr[-2000:]
  assert tree(workdir) == before
