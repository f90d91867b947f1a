"""meta.train and meta.report end to end on small synthetic zoos: printed tables, JSON keys, PNG files."""
import json
import os
import subprocess
import sys

import pytest

from meta import report, synthetic, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--epochs', '20', '--batch-size', '32', '--lr', '3e-3', '--window', '256', '--windows', '16',
        '--val_windows', '4', '--dmc_size', 'tiny', '--hidden', '64', '--gbt_max_iter', '30', '--min_steps', '0']


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
  return synthetic.make_zoo(str(tmp_path_factory.mktemp('meta_cli_zoo')), members=96, snapshots=3, seed=1)


def _png(path):
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_train_cli_subprocess_regression(zoo, tmp_path):
  out = str(tmp_path / 'gbt')
  proc = subprocess.run([sys.executable, '-m', 'meta.train', '--zoo', zoo, '--target', 'test_accuracy', '--model',
                         'statnn_gbt', '--snapshots', '1-2', '--out', out, *FAST], cwd=ROOT, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'test R2' in proc.stdout and 'Kendall tau' in proc.stdout
  with open(os.path.join(out, 'result.json')) as f:
    r = json.load(f)
  assert {'zoo', 'target', 'model', 'data', 'test', 'chance', 'parts', 'when', 'when_by_epoch', 'plots'} <= set(r)
  assert r['target']['kind'] == 'regression' and r['chance'] is None
  assert {'r2', 'kendall_tau', 'mae', 'rmse', 'n'} <= set(r['test']) and r['test']['r2'] > 0.3
  assert set(r['parts']) == {'all', 'conv', 'fc'} and r['when']['snapshot'] == [1, 2]
  assert set(r['plots']) == {'predictions', 'where', 'when'}
  assert all(_png(p) for p in r['plots'].values())


def test_train_cli_dmc_with_where_and_when(zoo, tmp_path, capsys):
  out = str(tmp_path / 'dmc')
  assert train.main(['--zoo', zoo, '--target', 'activation', '--model', 'dmc', '--snapshots', '1-2', '--out', out,
                     *FAST]) == 0
  text = capsys.readouterr().out
  assert 'test accuracy per network' in text and 'chance 0.250' in text and '<- predicted' in text
  with open(os.path.join(out, 'result.json')) as f:
    r = json.load(f)
  t = r['test']
  assert t['chance'] == pytest.approx(0.25) and t['accuracy'] > 0.5
  assert set(t['per_class_accuracy']) == {'elu', 'relu', 'sigmoid', 'tanh'} and len(t['confusion']) == 4
  assert r['test_per_window']['n'] == t['n'] * 16
  assert len(r['where']['position']) == len(r['where']['score']) == 16
  assert set(r['parts']) == {'all', 'conv', 'fc'} and all('score' in v for v in r['parts'].values())
  assert r['when']['snapshot'] == [1, 2] and len(r['when']['score']) == 2
  assert set(r['plots']) == {'confusion', 'where', 'when'} and all(_png(p) for p in r['plots'].values())
  for cls in ('elu', 'relu', 'sigmoid', 'tanh'):
    assert cls in text


def test_report_cli(tmp_path, capsys):
  zoo = synthetic.make_zoo(str(tmp_path / 'mixed'), members=64, snapshots=3, seed=2, mixed=True)
  out = str(tmp_path / 'report')
  assert report.main(['--zoo', zoo, '--out', out, '--snapshots', '1-2', '--targets',
                      'activation,dataset,width_conv,learning_rate', '--models', 'dmc,statnn_gbt,mlp', *FAST]) == 0
  with open(os.path.join(out, 'report.json')) as f:
    r = json.load(f)
  assert r['models'] == ['dmc', 'statnn_gbt', 'mlp']
  assert [row['target'] for row in r['rows']] == ['activation', 'width_conv', 'learning_rate']
  assert 'dataset' in r['skipped'] and 'does not vary' in r['skipped']['dataset']
  act = r['rows'][0]
  assert act['chance'] == pytest.approx(0.25) and act['cells']['dmc']['test']['accuracy'] > 0.5
  assert 'error' in act['cells']['mlp'] and any('one architecture' in n for n in r['notes'])
  lr = r['rows'][2]
  assert lr['kind'] == 'regression' and lr['log'] and {'r2', 'kendall_tau'} <= set(lr['cells']['statnn_gbt']['test'])
  with open(os.path.join(out, 'report.md')) as f:
    md = f.read()
  assert '| target | kind | n | dmc | statnn_gbt | mlp |' in md and '(0.250)' in md and 'R²' in md and 'n/a' in md
  assert '- dataset:' in md
  assert md in capsys.readouterr().out


def test_damaged_zoo_is_a_one_line_error(zoo, tmp_path, capsys):
  import shutil

  import pandas as pd
  copy = str(tmp_path / 'damaged')
  shutil.copytree(zoo, copy)
  metadata = pd.read_csv(os.path.join(copy, 'metadata.csv'))
  metadata.loc[metadata.index[-1], 'weights_row'] = metadata['weights_row'].iloc[0]  # a duplicated row
  metadata.to_csv(os.path.join(copy, 'metadata.csv'), index=False)
  for main, args in ((train.main, ['--target', 'activation', '--model', 'statnn_gbt', '--out', str(tmp_path / 'o')]),
                     (report.main, ['--targets', 'activation', '--models', 'statnn_gbt',
                                    '--out', str(tmp_path / 'r')])):
    assert main(['--zoo', copy, *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('error: ') and 'metadata.csv: edited or damaged' in err[-1], err


@pytest.mark.parametrize('command,bad,error', [
    (['meta.train', '--zoo', 'z', '--target', 't'], ['--model', 'svm'], "argument --model: invalid choice: 'svm'"),
    (['meta.train', '--zoo', 'z', '--target', 't'], ['--analyses', 'who'], "--analyses: unknown ['who']"),
    (['meta.report', '--zoo', 'z', '--out', 'o'], ['--models', 'dmc,svm'], "--models: unknown ['svm']"),
    (['meta.report', '--zoo', 'z', '--out', 'o'], ['--split', '0.1'], '--split: give val,test (two finite numbers'),
    (['meta.synthetic', '--out', 'o'], ['--members', 'many'], "argument --members: invalid int value: 'many'"),
])
def test_bad_flag_is_one_line_before_jax_or_any_file(tmp_path, command, bad, error):
  """The command line is parsed first (meta/cli.py): a bad flag answers with exit 2 before JAX loads."""
  proc = subprocess.run([sys.executable, '-X', 'importtime', '-m', *command, *bad], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
  messages = [line for line in proc.stderr.splitlines() if not line.startswith('import time:')]
  assert proc.returncode == 2 and error in messages[-1], proc.stderr[-2000:]
  imported = {line.split('|')[-1].strip().split('.')[0] for line in proc.stderr.splitlines()
              if line.startswith('import time:')}
  assert not imported & {'jax', 'flax', 'optax'} and os.listdir(tmp_path) == []


def test_the_command_lines_offer_what_the_models_have():
  """meta/options.py names the DMC presets without JAX; they are meta.models' presets."""
  from meta import models, options
  assert sorted(options.DMC_SIZE_NAMES) == sorted(models.DMC_SIZES) and models.EVAL_NORMS == options.EVAL_NORMS
