"""meta guards the user: planted signals are recovered at their known ceiling, selections and splits are checked,
windows are clipped, every score has n and a 95% interval, several member splits give mean +- sd."""
import dataclasses
import re
import subprocess
import sys

import numpy as np
import pytest

from meta import analysis, data, methods, plots, report, synthetic, train
from popnet.zoo import Zoo

FAST = methods.Options(epochs=2, batch_size=32, window=256, windows=8, val_windows=2, dmc_size='tiny',
                       hidden=(32,), gbt_max_iter=30, min_steps=0)


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
  return Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('guards')), members=240, snapshots=2, seed=5))


def test_planted_signal_recovered_at_its_ceiling(zoo):
  d = data.load(zoo, 'planted', snapshots='last', fractions=(0, 0.1, 0.35))
  r = methods.run('statnn_gbt', d, FAST)
  test = r.index['test']
  shown = (d.rows['planted_shown'].to_numpy()[test] == np.array(d.target.classes)[r.output['test'].argmax(1)])
  assert shown.mean() >= 0.95  # the model reads what the weights show ...
  truthful = (d.rows['planted_shown'] == d.rows['planted']).to_numpy()[test].mean()
  m = r.metrics(d)
  assert abs(truthful - 0.8) < 0.1  # the planted ceiling, on this split's test networks
  assert abs(m['accuracy'] - truthful) <= 0.05  # ... so it scores the ceiling, not more, not much less
  lo, hi = m['ci95']
  assert lo <= m['accuracy'] <= hi and hi - lo < 0.3 and m['networks'] == len(d.members['test'])


def test_small_test_split_warns_and_refuses(zoo, capsys):
  d = data.load(zoo, 'activation', fractions=(0, 0.1, 12))
  assert any(re.search(r'WARNING: the test split is small: 1[0-2] networks \(elu: \d', n) for n in d.notes)
  assert 'WARNING: the test split is small' in capsys.readouterr().err
  with pytest.raises(data.MetaDataError, match=r'the test split has \d networks .*at least 2 per class'):
    data.load(zoo, 'activation', fractions=(0, 0.1, 4))
  quiet = data.load(zoo, 'planted', fractions=(0, 0.1, 0.5))  # 120 networks, 60 a class: no warning
  assert not any('WARNING' in n for n in quiet.notes)


def test_window_longer_than_vector_is_clipped_and_where_says_so(zoo, tmp_path, capsys):
  d = data.load(zoo, 'activation', snapshots='last', fractions=(0, 0.15, 0.3))
  r = methods.run('dmc', d, dataclasses.replace(FAST, window=5000))
  assert r.info['window'] == 4970 and r.info['window_requested'] == 5000 and r.info['whole_vectors']
  assert 'clipped to 4970' in capsys.readouterr().err
  where = analysis.where_positions(r, d)
  assert 'cannot be placed' in where['skipped']
  out = train.run(zoo, 'activation', 'dmc', dataclasses.replace(FAST, window=5000), analyses=('where',),
                  out=str(tmp_path), data=d)
  text = train.format_report(out)
  assert 'clipped to 4970' in text and 'where (window position): not measured' in text
  assert 'NWS score (fraction of 8 windows correct)' in text and '95% [' in text and 'n = ' in text


def test_one_snapshot_when_plot_has_a_readable_axis(monkeypatch, tmp_path):
  figs = []
  monkeypatch.setattr(plots, '_save', lambda fig, path: figs.append(fig) or path)
  series = {'epoch': [2.0], 'score': [0.6], 'ci95': [[0.5, 0.7]], 'networks': [40], 'metric': 'accuracy',
            'chance': 0.25}
  plots.when(series, None, str(tmp_path / 'when.png'))
  assert figs[0].axes[0].get_xlim() == (1.0, 3.0)
  caps = [line for line in figs[0].axes[0].get_lines() if line.get_linestyle() == 'None']
  assert caps  # error bar caps drawn


def test_multi_split_reporting(zoo, capsys):
  r = train.run_splits(zoo, 'activation', 'statnn_gbt', FAST, splits=3, seed=4, analyses=(), snapshots='last')
  sp = r['splits']
  assert sp['seeds'] == [4, 5, 6] and sp['score']['splits'] == 3 and len(sp['test_networks']) == 3
  singles = [train.run(zoo, 'activation', 'statnn_gbt', dataclasses.replace(FAST, seed=s), analyses=(),
                       snapshots='last', seed=s)['test']['accuracy'] for s in (4, 5, 6)]
  assert sp['score']['values'] == pytest.approx(singles)
  assert sp['score']['mean'] == pytest.approx(np.mean(singles))
  assert sp['score']['sd'] == pytest.approx(np.std(singles, ddof=1))
  text = train.format_report(r)
  assert 'over 3 splits' in text and re.search(r'test accuracy per network +[01]\.\d+ +95% \[', text)
  table = report.build(zoo, ['activation'], ['statnn_gbt'], FAST, log=lambda *_: None, splits=2, seed=0,
                       snapshots='last')
  cell = table['rows'][0]['cells']['statnn_gbt']
  assert cell['score']['splits'] == 2 and len(cell['networks']) == 2 and '±' in report.cell_text(cell)
  assert 'mean ± sd over 2 member splits' in report.markdown(table)


@pytest.mark.parametrize('module', ['meta.train', 'meta.report', 'meta.synthetic'])
def test_help_has_description_defaults_and_example(module):
  out = subprocess.run([sys.executable, '-m', module, '--help'], capture_output=True, text=True, timeout=120).stdout
  assert '(default:' in out and 'example:' in out and f'python -m {module}' in out
  assert '--snake' not in out and '--memory-budget' not in out and '--batch-size' not in out  # one style shown


def test_other_member_splits_reuse_the_weights(zoo):
  first = data.load(zoo, 'activation', snapshots='last', seed=0)
  second = data.load(zoo, 'activation', snapshots='last', seed=1, store=first.store)
  assert second.store is first.store and not np.array_equal(first.members['test'], second.members['test'])
  with pytest.raises(data.MetaDataError, match='other rows'):
    data.load(zoo, 'activation', snapshots='first', store=first.store)


def test_old_kebab_flags_are_hidden_aliases():
  from meta import cli
  p = cli.parser('x', 'doc', 'example')
  cli.add_data_args(p)
  cli.add_model_args(p)
  old = p.parse_args(['--zoo', 'z', '--snapshot-epochs', '5-10', '--batch-size', '16', '--dmc-size', 'paper'])
  new = p.parse_args(['--zoo', 'z', '--snapshot_epochs', '5-10', '--batch_size', '16', '--dmc_size', 'paper'])
  assert vars(old) == vars(new) and new.batch_size == 16
  assert p.parse_args(['--zoo', 'z']).batch_size == 64  # the alias does not override the default
