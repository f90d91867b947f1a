"""meta's progress: plain lines off a terminal, 'cell i/N' with an ETA per meta-model, and meta.report's log."""
import io

from meta import progress, report, synthetic
from tests.test_meta_cli import FAST


def test_durations():
  assert progress.duration(8.44) == '8.4 s'
  assert progress.duration(125) == '2 min 05 s'
  assert progress.duration(3780) == '1 h 03 min'


def test_plain_lines_off_a_terminal():
  stream = io.StringIO()
  bar = progress.Bar(10, 'statnn all', every=0, stream=stream, tty=False)
  bar.set_postfix(loss='0.500')
  for _ in range(10):
    bar.update()
  bar.close()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 9  # one per update but the last (the caller reports the end)
  assert lines[3].startswith('statnn all: 4/10 steps (40%), ') and 'ETA' in lines[3] and '(loss 0.500)' in lines[3]
  assert bar.bar is None


def test_plain_lines_wait_for_their_interval():
  stream = io.StringIO()
  bar = progress.Bar(1000, 'dmc all', stream=stream, tty=False)
  for _ in range(1000):
    bar.update()
  assert stream.getvalue() == ''  # a quick fit prints nothing; a line comes every PLAIN_EVERY seconds


def test_cells_eta_per_kind():
  cells = progress.Cells(['gbt', 'mlp', 'gbt', 'gbt', 'mlp'])
  assert cells.finished('gbt', 1.0) == 'cell 1/5, ETA ~4.0 s'  # mlp not timed yet: counted at the mean so far
  assert cells.finished('mlp', 9.0) == 'cell 2/5, ETA 11.0 s'  # 2 gbt x 1 s + 1 mlp x 9 s
  cells.drop(['gbt'])  # a cell that will not run
  assert cells.finished('gbt', 3.0) == 'cell 3/4, ETA 9.0 s'
  assert cells.finished('mlp', 11.0) == 'cell 4/4'


def test_report_logs_cells_with_eta_and_plain_fit_lines(tmp_path, capsys, monkeypatch):
  monkeypatch.setattr(progress, 'PLAIN_EVERY', 0.0)
  zoo = synthetic.make_zoo(str(tmp_path / 'zoo'), members=64, snapshots=3, seed=2)
  lines = []
  table = report.build(zoo, ['activation', 'dataset', 'learnig_rate', 'learning_rate'], ['statnn_gbt', 'statnn'],
                       _fast_options(), log=lines.append, snapshots='1-2', fractions=(0.0, 0.15, 0.3))
  assert lines[:3] == ['skip dataset: ' + table['skipped']['dataset'],
                       "skip learnig_rate: target 'learnig_rate' is not a metadata column (did you mean "
                       "'learning_rate'?)",  # without the zoo's whole column list
                       '2 targets x 2 models = 4 cells (2 targets skipped)']
  cells = [x for x in lines if x.startswith('cell ')]
  assert [x.split(':')[0].split(',')[0] for x in cells] == ['cell 1/4', 'cell 2/4', 'cell 3/4', 'cell 4/4']
  assert cells[0].startswith('cell 1/4, ETA ~')  # statnn not timed yet: an estimate
  assert cells[1].startswith('cell 2/4, ETA ') and '~' not in cells[1].split(':')[0]
  assert cells[3].startswith('cell 4/4: learning_rate')
  assert 'activation' in cells[0] and 'statnn_gbt' in cells[0]
  err = capsys.readouterr().err  # stderr is not a terminal under pytest: the statnn fits printed plain lines
  assert 'statnn all epoch 1/20: ' in err and ' steps (' in err and 'ETA' in err


def _fast_options():
  import argparse
  p = argparse.ArgumentParser()
  report.cli.add_data_args(p)
  report.cli.add_model_args(p)
  return report.cli.options(p.parse_args(['--zoo', '-', *FAST]))


def test_default_models_leave_out_the_dmc():
  assert 'dmc' not in report.DEFAULT_MODELS and report.DEFAULT_MODELS[0] == 'statnn_gbt'
