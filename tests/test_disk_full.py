"""A full disk (a small tmpfs, when this process may mount one) stops a run with one line naming the path; after
space is freed, the same command resumes into the zoo an uninterrupted run writes."""
import os
import subprocess

import pytest


@pytest.fixture
def small_tmpfs(tmp_path):
  mountpoint = tmp_path / 'disk'
  mountpoint.mkdir()
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=800k', 'tmpfs', str(mountpoint)],
                    capture_output=True).returncode != 0:
    pytest.skip('cannot mount a tmpfs here (needs root); the injected-ENOSPC tests in test_zoo.py still run')
  try:
    yield mountpoint
  finally:
    subprocess.run(['umount', str(mountpoint)], capture_output=True)


def test_disk_full_is_one_line_and_resume_is_identical(cli, small_tmpfs, tmp_path):
  reference, workdir = str(tmp_path / 'reference'), str(small_tmpfs / 'run')
  cli('--config', 'smoke', '--workdir', reference)
  proc = cli('--config', 'smoke', '--workdir', workdir, check=False)
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {workdir}/') and 'free' in last and 'Traceback' not in proc.stderr, proc.stderr
  subprocess.run(['mount', '-o', 'remount,size=64m', str(small_tmpfs)], check=True)
  cli('--config', 'smoke', '--workdir', workdir)
  for name in ('weights/smallcnnzoo.npy', 'metadata.csv'):
    with open(os.path.join(reference, 'zoo', name), 'rb') as a, open(os.path.join(workdir, 'zoo', name), 'rb') as b:
      assert a.read() == b.read(), name
