"""Every bad input of every command line (popnet.train, popnet.zoo, meta.*, benchmarks.*) is one line, exit 2
(verify: exit 1, its damage code), no traceback, and nothing written: the directory the command runs in is
byte-for-byte the same after it.

    python -m tests.test_bad_inputs        # counts the cases that hold (the issue's before/after numbers)
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from tests.signals import WITH_DEFAULT_SIGINT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = {
    'syntax.py': 'def get_config(:\n  return 1\n',
    'no_get_config.py': 'population = 4\n',
    'returns_dict.py': 'def get_config():\n  return {"population": 4}\n',
    'returns_int.py': 'def get_config():\n  return 3\n',
    'raises.py': 'def get_config():\n  raise ValueError("no such experiment")\n',
    'imports_missing.py': 'import no_such_module_anywhere\n\ndef get_config():\n  return None\n',
}
META = ('--zoo', 'syn', '--target', 'planted', '--model', 'statnn_gbt', '--analyses', 'none', '--epochs', '1')
REPORT = ('--zoo', 'syn', '--targets', 'planted', '--models', 'statnn_gbt', '--epochs', '1')
TRAIN = ('popnet.train', '--noprogress', '--config', 'smoke')
# (name, argv after `python -m`, the exit code a refusal has[, what the line must name])
CASES = [
    *[(f'train config {name}', ('popnet.train', '--noprogress', '--config', name, '--workdir', 'w'), 2, name)
      for name in CONFIG_FILES],
    ('train flag type', (*TRAIN, '--workdir', 'w', '--host_devices=abc'), 2),
    ('train unknown flag', (*TRAIN, '--workdir', 'w', '--no_such_flag'), 2),
    ('train config field type', (*TRAIN, '--workdir', 'w', '--config.population=abc'), 2),
    ('train workdir under /proc', (*TRAIN, '--workdir', '/proc/popnet_bad_input'), 2, '--workdir'),
    ('train workdir under a file', (*TRAIN, '--workdir', 'a_file/w'), 2),
    ('train resume non-utf8 metadata', (*TRAIN, '--workdir', 'run_bad_metadata'), 2, 'metadata.csv'),
    ('train resume empty metadata', (*TRAIN, '--workdir', 'run_empty_metadata'), 2, 'metadata.csv'),
    ('train resume non-utf8 manifest', (*TRAIN, '--workdir', 'run_bad_manifest'), 2, 'manifest.json'),
    ('zoo verify non-utf8 manifest', ('popnet.zoo', 'verify', 'run_bad_manifest'), 1, 'manifest.json'),
    ('zoo verify missing', ('popnet.zoo', 'verify', 'nowhere'), 1),
    ('zoo no command', ('popnet.zoo',), 2),
    ('zoo export non-utf8 manifest', ('popnet.zoo', 'export', '--format', 'smallcnnzoo', '--zoo', 'run_bad_manifest',
                                      '--out', 'export'), 2, 'manifest.json'),
    ('zoo export block type', ('popnet.zoo', 'export', '--format', 'smallcnnzoo', '--zoo', 'syn', '--out', 'export',
                               '--block_mb', 'abc'), 2),
    ('zoo export out under /proc', ('popnet.zoo', 'export', '--format', 'smallcnnzoo', '--zoo', 'syn', '--out',
                                    '/proc/popnet_bad_input'), 2),
    ('meta.train lr nan', ('meta.train', *META, '--lr', 'nan'), 2),
    ('meta.train lr inf', ('meta.train', *META, '--lr', 'inf'), 2),
    ('meta.train lr negative', ('meta.train', *META, '--lr', '-1e-3'), 2),
    ('meta.train epochs -3', ('meta.train', *META, '--epochs', '-3'), 2),
    ('meta.train batch_size 0', ('meta.train', *META, '--batch_size', '0'), 2),
    ('meta.train lr_decay nan', ('meta.train', *META, '--lr_decay', 'nan'), 2),
    ('meta.train dropout 1.5', ('meta.train', *META, '--dropout', '1.5'), 2),
    ('meta.train window 0', ('meta.train', *META, '--window', '0'), 2),
    ('meta.train min_steps -1', ('meta.train', *META, '--min_steps', '-1'), 2),
    ('meta.train hidden text', ('meta.train', *META, '--hidden', 'a,b'), 2),
    ('meta.train memory budget nan', ('meta.train', *META, '--memory_budget_mb', 'nan'), 2),
    ('meta.train split nan', ('meta.train', *META, '--split', 'nan,0.1'), 2),
    ('meta.train split text', ('meta.train', *META, '--split', 'a,b'), 2),
    ('meta.train model choice', ('meta.train', *META, '--model', 'svm'), 2),
    ('meta.train out under /proc', ('meta.train', *META, '--out', '/proc/popnet_bad_input'), 2),
    ('meta.train out is a file', ('meta.train', *META, '--out', 'a_file'), 2),
    ('meta.train non-utf8 manifest', ('meta.train', *META[2:], '--zoo', 'run_bad_manifest'), 2, 'manifest.json'),
    ('meta.train zoo missing', ('meta.train', *META[2:], '--zoo', 'nowhere'), 2),
    ('meta.report epochs -3', ('meta.report', *REPORT, '--out', 'rep', '--epochs', '-3'), 2),
    ('meta.report out under /proc', ('meta.report', *REPORT, '--out', '/proc/popnet_bad_input'), 2),
    ('meta.synthetic members 0', ('meta.synthetic', '--out', 'new', '--members', '0'), 2),
    ('meta.synthetic planted 2', ('meta.synthetic', '--out', 'new', '--planted', '2'), 2),
    ('meta.synthetic out under /proc', ('meta.synthetic', '--out', '/proc/popnet_bad_input'), 2),
    *[(f'config_run config {name}', ('benchmarks.config_run', '--config', name, '--out', 'bench'), 2, name)
      for name in ('syntax.py', 'returns_dict.py', 'raises.py')],
    ('config_run set without =', ('benchmarks.config_run', '--config', 'smoke', '--set', 'population',
                                  '--out', 'bench'), 2),
    ('config_run set unknown field', ('benchmarks.config_run', '--config', 'smoke', '--set', 'no_such=3',
                                      '--out', 'bench'), 2),
    ('config_run out under /proc', ('benchmarks.config_run', '--config', 'smoke', '--out',
                                    '/proc/popnet_bad_input'), 2),
    ('sweep populations text', ('benchmarks.sweep', '--populations', 'a,b', '--out', 'rows.jsonl'), 2),
    ('sweep populations 0', ('benchmarks.sweep', '--populations', '0', '--out', 'rows.jsonl'), 2),
    ('throughput batch 0', ('benchmarks.throughput', '--batch', '0'), 2),
]


def make_inputs(root: str, reference: str) -> None:
  """The files the cases read: config files, a synthetic zoo, copies of a trained run with damaged files."""
  for name, text in CONFIG_FILES.items():
    with open(os.path.join(root, name), 'w') as f:
      f.write(text)
  with open(os.path.join(root, 'a_file'), 'w') as f:
    f.write('not a directory\n')
  subprocess.run([sys.executable, '-m', 'meta.synthetic', '--out', os.path.join(root, 'syn'), '--members', '64',
                  '--snapshots', '2'], check=True, capture_output=True, env=env())
  for name, file, data in (('run_bad_metadata', 'metadata.csv', b'member_id,\xff\xfe\n'),
                           ('run_empty_metadata', 'metadata.csv', b''),
                           ('run_bad_manifest', 'manifest.json', b'{"format": "\xff\xfe"}')):
    shutil.copytree(reference, os.path.join(root, name))
    with open(os.path.join(root, name, 'zoo', file), 'wb') as f:
      f.write(data)


def env(**extra) -> dict:
  return dict(os.environ, PYTHONPATH=ROOT, PYTHONDONTWRITEBYTECODE='1', PYTHONUNBUFFERED='1', **extra)


def tree(root: str) -> dict:
  """Every path under root with its bytes' digest (directories with None; a workdir lock's record of its holder
  is left out: a refused run took the lock, and left it)."""
  out = {}
  for r, dirs, names in os.walk(root):
    for d in dirs:
      out[os.path.relpath(os.path.join(r, d), root)] = None
    for n in names:
      if n == '.lock':
        out[os.path.relpath(os.path.join(r, n), root)] = None
        continue
      with open(os.path.join(r, n), 'rb') as f:
        out[os.path.relpath(os.path.join(r, n), root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def run_case(argv, root: str, extra_env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', *argv], cwd=root, capture_output=True, text=True, timeout=300,
                        env=env(**(extra_env or {})))


def problems(proc: subprocess.CompletedProcess, code: int, before: dict, after: dict, mention='') -> list[str]:
  """What is wrong with a refusal: not one line (naming `mention`), another exit code, a traceback, something
  written."""
  lines = (proc.stdout + proc.stderr).strip().splitlines()
  found = []
  if len(lines) != 1:
    found.append(f'{len(lines)} lines')
  elif mention not in lines[0]:
    found.append(f'does not name {mention!r}')
  if proc.returncode != code:
    found.append(f'exit {proc.returncode}')
  if 'Traceback' in proc.stdout + proc.stderr:
    found.append('traceback')
  if after != before:
    found.append(f'wrote {sorted(set(after.items()) ^ set(before.items()))[:3]}')
  return found


@pytest.fixture(scope='module')
def inputs(cli, digits_dir, tmp_path_factory):
  reference = str(tmp_path_factory.mktemp('reference') / 'run')
  cli('--config', 'smoke', '--workdir', reference)
  root = str(tmp_path_factory.mktemp('inputs'))
  make_inputs(root, reference)
  return root, digits_dir


@pytest.mark.parametrize('case', CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(inputs, case):
  (root, digits_dir), (_, argv, code, *mention) = inputs, case
  before = tree(root)
  proc = run_case(argv, root, {'TFDS_DATA_DIR': digits_dir})
  found = problems(proc, code, before, tree(root), *mention)
  assert not found, (found, proc.stdout[-1500:], proc.stderr[-3000:])


def count(root: str, reference: str) -> None:
  make_inputs(root, reference)
  held = 0
  for name, argv, code, *mention in CASES:
    before = tree(root)
    proc = run_case(argv, root)
    found = problems(proc, code, before, tree(root), *mention)
    held += not found
    print(f'{"ok  " if not found else "FAIL"} {name}: {"; ".join(found)}', flush=True)
  print(f'{held} of {len(CASES)} bad inputs: one line, the refusal exit code, no traceback, nothing written')


if __name__ == '__main__':  # python -m tests.test_bad_inputs [a trained smoke workdir]
  reference = sys.argv[1] if len(sys.argv) > 1 else None
  with tempfile.TemporaryDirectory() as tmp:
    if reference is None:
      reference = os.path.join(tmp, 'reference')
      subprocess.run([sys.executable, '-m', 'popnet.train', '--noprogress', '--config', 'smoke', '--workdir',
                      reference], check=True, env=env())
    root = os.path.join(tmp, 'inputs')
    os.makedirs(root)
    count(root, reference)


def handles_sigalrm(pid: int) -> bool:
  """Whether the process has installed popnet.cli's signal handlers (SIGALRM, which Python leaves alone)."""
  with open(f'/proc/{pid}/status') as f:
    caught = next(line for line in f if line.startswith('SigCgt:')).split()[1]
  return bool(int(caught, 16) >> (signal.SIGALRM - 1) & 1)


@pytest.mark.parametrize('after', [0.0, 1.5, 4.0])
def test_ctrl_c_during_start_up_is_the_one_resume_line(digits_dir, tmp_path, after):
  """SIGINT while popnet.train imports absl, JAX, reads its config or loads data: the one resume line on stderr,
  exit 130, no KeyboardInterrupt traceback. 400 epochs: on a fast machine the signal may come after start-up, but
  never after the run (a finished run has no handlers left, and SIGINT's default kills it: exit -2)."""
  workdir = str(tmp_path / 'w')
  proc = subprocess.Popen([sys.executable, '-c', WITH_DEFAULT_SIGINT, '-m', 'popnet.train', '--noprogress',
                           '--config', 'smoke', '--config.epochs=400', '--workdir', workdir], cwd=str(tmp_path),
                          env=env(TFDS_DATA_DIR=digits_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.monotonic() + 60
  while not handles_sigalrm(proc.pid) and time.monotonic() < deadline:
    time.sleep(0.005)
  time.sleep(after)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 130 and 'Traceback' not in out + err, (out[-1000:], err[-3000:])
  assert err.strip().splitlines() == [f'interrupted; rerun the same command to resume {workdir} from its last '
                                      'checkpoint'], err[-3000:]


def test_a_second_meta_train_on_the_same_out_is_refused(inputs):
  """meta.train holds --out for its whole run (popnet.workdir's lock): a second run there is one line, exit 2."""
  from popnet import workdir
  root, _ = inputs
  out = os.path.join(root, 'held')
  with workdir.WorkdirLock(out):  # as a running meta.train holds it
    before = tree(root)
    proc = run_case(('meta.train', *META, '--out', out), root)
    assert not problems(proc, 2, before, tree(root), 'is in use by pid'), (proc.stdout, proc.stderr[-2000:])
  shutil.rmtree(out)


def test_meta_train_removes_an_interrupted_write_and_leaves_no_directory_when_it_refuses(inputs):
  root, _ = inputs
  out = os.path.join(root, 'killed')
  os.makedirs(out)
  with open(os.path.join(out, 'result.json.tmp-123-456'), 'w') as f:
    f.write('{"half": ')
  proc = run_case(('meta.train', *META, '--target', 'no_such_column', '--out', out), root)
  assert proc.returncode == 2 and os.listdir(out) == ['.lock'], (os.listdir(out), proc.stderr[-2000:])
  shutil.rmtree(out)
  proc = run_case(('meta.train', *META, '--target', 'no_such_column', '--out', os.path.join(root, 'new', 'out')), root)
  assert proc.returncode == 2 and not os.path.exists(os.path.join(root, 'new')), proc.stderr[-2000:]
