"""benchmarks/inr_classification.py and benchmarks/accuracy_prediction.py run end to end on tiny zoos: the INR
benchmark on the zoo's own split column, the accuracy benchmark on NFN's 50% / 40% / 10% member split, both
writing result.json and a README labelled as a smoke check; bad input is one line and exit 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import accuracy_prediction, inr_classification
from popnet.zoo import Zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ['--seeds', '2', '--epochs', '2', '--min_steps', '0', '--batch_size', '16', '--nfn_channels', '4,4',
        '--nfn_head', '16', '--hidden', '16', '--smoke']


def _zoo(tmp_path_factory, name, *config):
  workdir = str(tmp_path_factory.mktemp(name) / 'run')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run([sys.executable, '-m', 'popnet.train', '--noprogress', '--workdir', workdir, *config],
                        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.fixture(scope='module')
def inr_zoo(tmp_path_factory):
  return _zoo(tmp_path_factory, 'inr', '--config', 'inr_smoke', '--config.task.max_images=300')


@pytest.fixture(scope='module')
def cnn_zoo(tmp_path_factory):
  return _zoo(tmp_path_factory, 'cnn', '--config', 'smoke', '--config.population=16')


def test_inr_classification_uses_the_zoo_split(inr_zoo, tmp_path, capsys):
  out = tmp_path / 'inr'
  assert inr_classification.main(['--zoo', inr_zoo, '--out', str(out), '--models', 'statnn_gbt,mlp_augment,nfn_hnp',
                                  *FAST]) == 0
  r = json.loads((out / 'result.json').read_text())
  meta = Zoo.open(inr_zoo).metadata
  last = meta[meta['snapshot'] == meta['snapshot'].max()]
  for split in ('train', 'val', 'test'):
    assert r['data'][f'{split}_rows'] == int((last['split'] == split).sum())
  assert [row['label'] for row in r['rows']] == ['statnn_gbt', 'mlp_augment', 'nfn_hnp']
  for row in r['rows']:
    acc = row['test']['accuracy']
    assert acc['splits'] == 2 and 0 <= acc['mean'] <= 1 and row['wall_seconds']['mean'] > 0
  assert r['rows'][1]['options'] == {'weight_augment': True}
  text = (out / 'README.md').read_text()
  assert 'SMOKE CHECK' in text and '80.78' in text and 'Estimated wall time' in text
  assert '--weight_augment' in text

  with pytest.raises(SystemExit) as e:
    inr_classification.main(['--zoo', inr_zoo, '--models', 'mlp,nope'])
  assert e.value.code == 2 and '--models: nope' in capsys.readouterr().err


def test_accuracy_prediction_uses_nfn_protocol(cnn_zoo, tmp_path, capsys):
  out = tmp_path / 'acc'
  assert accuracy_prediction.main(['--zoo', cnn_zoo, '--out', str(out), '--models', 'statnn_gbt,nfn_hnp', *FAST]) == 0
  r = json.loads((out / 'result.json').read_text())
  assert (r['data']['train_members'], r['data']['val_members'], r['data']['test_members']) == (6, 2, 8)
  assert r['options']['select'] == 'kendall_tau'
  for row in r['rows']:
    assert row['test']['kendall_tau']['splits'] == 2 and np.isfinite(row['test']['r2']['mean'])
  assert r['rows'][1]['steps'] > 0 and len(r['rows'][1]['best_epoch']) == 2
  text = (out / 'README.md').read_text()
  assert 'SMOKE CHECK' in text and 'The zoo: 16 networks' in text and ', complete, sealed;' in text
  capsys.readouterr()
  assert inr_classification.main(['--zoo', cnn_zoo, '--out', str(tmp_path / 'none'), '--models', 'mlp']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "'label'" in err[0] and not (tmp_path / 'none').exists()


def test_selection_by_validation_tau():
  from meta import metrics
  ranks_well, fits_well = {'kendall_tau': 0.5, 'rmse': 9.0}, {'kendall_tau': 0.4, 'rmse': 1.0}
  assert metrics.selection('kendall_tau')(ranks_well) > metrics.selection('kendall_tau')(fits_well)
  assert metrics.selection('auto')(ranks_well) < metrics.selection('auto')(fits_well)
  assert metrics.selection('kendall_tau')({'kendall_tau': float('nan'), 'rmse': 0.0}) < \
      metrics.selection('kendall_tau')(fits_well)
  classes = {'accuracy': 0.9, 'log_loss': 0.3}
  assert metrics.selection('kendall_tau')(classes) == metrics.selection_key(classes)
  with pytest.raises(ValueError, match='select'):
    metrics.selection('r2')


def test_finished_fits_are_reused_and_never_mixed(cnn_zoo, tmp_path, capsys):
  """A rerun reuses every finished fit under --out (an interrupted benchmark resumes); a fit recorded on another
  zoo or with other options stops the run with one line, exit 2, before anything is fitted or written."""
  out = tmp_path / 'acc'
  argv = ['--zoo', cnn_zoo, '--out', str(out), '--models', 'statnn_gbt', *FAST]
  assert accuracy_prediction.main(argv) == 0
  first = json.loads((out / 'result.json').read_text())['rows']
  assert capsys.readouterr().err.count('; fitted)') == 2
  assert accuracy_prediction.main(argv) == 0
  err = capsys.readouterr().err
  assert err.count('reused from') == 2 and 'fitted)' not in err
  assert json.loads((out / 'result.json').read_text())['rows'] == first

  fit = out / 'fits' / 'statnn_gbt-seed1.json'
  record = json.loads(fit.read_text())
  before = (out / 'result.json').read_bytes()
  epochs = argv.index('--epochs') + 1
  other_epochs = argv[:epochs] + ['3'] + argv[epochs + 1:]
  for text, argv_k, expected in ((json.dumps(dict(record, zoo='0' * 64)), argv, 'another zoo'),
                                 (json.dumps(record), other_epochs, 'other options'),
                                 ('{"zoo": ', argv, 'not a finished fit')):
    fit.write_text(text)
    assert accuracy_prediction.main(argv_k) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and '/fits/statnn_gbt-seed' in lines[0], lines
    assert (out / 'result.json').read_bytes() == before


def test_zoo_facts_come_from_the_zoo_and_refuse_an_unfinished_build(cnn_zoo):
  """The README's paragraph on the zoo reads its manifest and its last snapshot; a zoo whose build has not
  finished gives no table unless the run is labelled a smoke check."""
  from benchmarks import weight_space_tables as tables
  from popnet.zoo import ZooError
  zoo = Zoo.open(cnn_zoo)
  facts = tables.zoo_facts(zoo, 'test_accuracy', smoke=False)
  meta = zoo.metadata
  last = meta[meta['epoch'] == meta['epoch'].max()]
  assert facts['complete'] and facts['members'] == 16 and facts['last_rows'] == 16
  assert facts['last_target']['median'] == round(float(last['test_accuracy'].median()), 4)
  assert facts['build_processes'] == 1 and facts['build_seconds'] > 0
  zoo.manifest['complete'] = False
  with pytest.raises(ZooError, match='has not finished'):
    tables.zoo_facts(zoo, 'test_accuracy', smoke=False)
  assert not tables.zoo_facts(zoo, 'test_accuracy', smoke=True)['complete']
