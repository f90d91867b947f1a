"""benchmarks/replication.py end to end on a small synthetic zoo with a planted activation signal: every stage
writes its cells, the report shows multi-split mean +- sd, where and when, and a rerun fits nothing again."""
import json
import os

from benchmarks import replication
from meta import synthetic

ARGS = ['--preset', 'test', '--targets', 'activation,learning_rate', '--models', 'dmc,statnn_gbt,neurons']


def test_replication_stages_report_and_resume(tmp_path, capsys):
  zoo = synthetic.make_zoo(str(tmp_path / 'zoo'), members=96, snapshots=3, seed=1)
  out = str(tmp_path / 'out')
  assert replication.main(['--zoo', zoo, '--out', out] + ARGS) == 0
  cells = sorted(os.listdir(os.path.join(out, 'cells')))
  # 2 targets x (1 DMC split + 2 splits of 2 models), 2 "where" parts, 2 "when" snapshots, the zoo summary
  assert len(cells) == 2 * 5 + 2 + 2 + 1, cells
  report = open(os.path.join(out, 'report.md')).read()
  for section in ('## The zoo', '## How much', '## Where', '## When'):
    assert section in report
  table = json.load(open(os.path.join(out, 'report.json')))['table']
  gbt = table['activation']['statnn_gbt']
  assert gbt['score']['splits'] == 2 and len(gbt['networks']) == 2 and gbt['score']['mean'] > 0.6  # planted
  assert table['activation']['dmc']['score']['splits'] == 1 and len(table['activation']['dmc']['ci95']) == 2
  assert table['learning_rate']['neurons']['regression']
  assert '± ' in report and 'R² ' in report
  mtimes = {c: os.path.getmtime(os.path.join(out, 'cells', c)) for c in cells if c != 'zoo.json'}
  capsys.readouterr()
  assert replication.main(['--zoo', zoo, '--out', out] + ARGS) == 0
  assert 'fitting' not in capsys.readouterr().err  # every cell came from the cache
  assert mtimes == {c: os.path.getmtime(os.path.join(out, 'cells', c)) for c in mtimes}
