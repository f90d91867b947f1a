"""benchmarks/replication.py end to end on a small synthetic zoo with a planted activation signal: every stage
writes its cells, the report shows multi-split mean +- sd, where and when, and a rerun fits nothing again."""
import json
import os
import re

import pytest

from benchmarks import replication
from meta import synthetic

ARGS = ['--preset', 'test', '--targets', 'activation,learning_rate', '--models', 'dmc,statnn_gbt,neurons']
STAGES = ['--stages', 'zoo,table,when,where,report']


def test_replication_stages_report_and_resume(tmp_path, capsys):
  zoo = synthetic.make_zoo(str(tmp_path / 'zoo'), members=96, snapshots=3, seed=1)
  out = str(tmp_path / 'out')
  assert replication.main(['--zoo', zoo, '--out', out] + ARGS + STAGES) == 0
  cells = sorted(os.listdir(os.path.join(out, 'cells')))
  # 2 targets x (1 DMC split + 2 splits of 2 models), 3 "where" parts, 2 "when" snapshots, the zoo summary
  assert len(cells) == 2 * 5 + 3 + 2 + 1, cells
  report = open(os.path.join(out, 'report.md')).read()
  for section in ("## The zoo", "## How much", "## Where", "## When", "## The paper's claims"):
    assert section in report
  table = json.load(open(os.path.join(out, 'report.json')))['table']
  gbt = table['activation']['statnn_gbt']
  assert gbt['score']['splits'] == 2 and len(gbt['networks']) == 2 and gbt['score']['mean'] > 0.6  # planted
  assert table['activation']['dmc']['score']['splits'] == 1 and len(table['activation']['dmc']['ci95']) == 2
  assert table['learning_rate']['neurons']['regression']
  assert '± ' in report and 'R² ' in report
  mtimes = {c: os.path.getmtime(os.path.join(out, 'cells', c)) for c in cells if c != 'zoo.json'}
  capsys.readouterr()
  assert replication.main(['--zoo', zoo, '--out', out] + ARGS + STAGES) == 0
  assert 'fitting' not in capsys.readouterr().err  # every cell came from the cache
  assert mtimes == {c: os.path.getmtime(os.path.join(out, 'cells', c)) for c in mtimes}
  # the where table: intervals for the refits the preset plans, '—' for targets it does not refit
  assert re.search(r'\| activation \|( [0-9.]+ \[[0-9.]+, [0-9.]+\] \|){4} ', report)
  assert re.search(r'\| learning_rate \| [-0-9.]+ \[[-0-9.]+, [-0-9.]+\] \| — \| — \| — \| ', report)
  os.remove(os.path.join(out, 'cells', 'where__activation__dmc__fc.json'))
  assert replication.main(['--zoo', zoo, '--out', out, '--stages', 'report'] + ARGS) == 0
  report = open(os.path.join(out, 'report.md')).read()
  assert '| not run |' in report and 'where/activation/dmc/fc,' in report.split('## Not run yet')[1]
  assert 'control/activation/dmc/no_running_stats/split0' in report.split('## Not run yet')[1]
  assert '## Deviations from NWS' in report and 'BN_MOMENTUM' in report


def test_replication_controls_and_nws_order_pair_with_the_table(tmp_path):
  """The controls and NWS-order stages on the table's splits, paired network by network. The synthetic zoo has no
  batch norm, so the control removes nothing: every gain is exactly 0 (and says so)."""
  zoo = synthetic.make_zoo(str(tmp_path / 'zoo'), members=96, snapshots=3, seed=1)
  out = str(tmp_path / 'out')
  args = ['--zoo', zoo, '--out', out, '--preset', 'test', '--targets', 'activation', '--models', 'dmc,statnn_gbt']
  assert replication.main(args + ['--stages', 'table,controls,nws,report']) == 0
  report = open(os.path.join(out, 'report.md')).read()
  controls = report.split('## Controls')[1].split('\n## ')[0]
  assert controls.count('| +0.000 [0.000, 0.000] | no difference |') == 3, controls  # dmc, gbt, gbt reverse
  pairs = json.load(open(os.path.join(out, 'report.json')))['pairs']
  nws = next(p for p in pairs if p['comparison'].startswith('DMC in NWS order'))
  assert nws['difference']['splits'] == 1 and len(nws['difference']['ci95']) == 2
  assert '| activation | dmc | dmc_nws |' not in report and 'dmc_nws' in report.split('## How much')[1]


def _cell(score, ci, chance=0.25, per_window=None):
  cell = {'test': {'accuracy': score, 'ci95': ci, 'networks': 100}, 'chance': chance}
  if per_window is not None:
    cell['test_per_window'] = {'accuracy': per_window[0], 'ci95': per_window[1]}
  return cell


def test_claims_follow_their_rules_on_the_intervals():
  from benchmarks import replication_claims as rr
  cells = {
      # window claim: optimizer's single window is above chance, activation's interval reaches chance
      'table/optimizer/dmc/split0': _cell(0.8, [0.7, 0.9], 1 / 3, per_window=(0.6, [0.55, 0.65])),
      'table/activation/dmc/split0': _cell(0.5, [0.4, 0.6], 0.25, per_window=(0.3, [0.24, 0.36])),
      # layers: dataset's conv and FC intervals are apart, at equal window length; optimizer's refit at the conv
      # part's window is missing, so it is not counted however far apart its 5,000-value FC refit is
      'where/dataset/dmc/conv': _cell(0.9, [0.85, 0.95], 0.5),
      'where/dataset/dmc/fc_equal': _cell(0.6, [0.55, 0.65], 0.5),
      'where/optimizer/dmc/conv': _cell(0.9, [0.85, 0.95], 0.5), 'where/optimizer/dmc/fc': _cell(0.4, [0.3, 0.5]),
      # training: optimizer rises from chance; dataset is above chance at initialization (a leak)
      'when/optimizer/statnn_gbt/snapshot00': _cell(0.33, [0.3, 0.36], 1 / 3),
      'when/optimizer/statnn_gbt/snapshot05': _cell(0.6, [0.55, 0.65], 1 / 3),
      'when/optimizer/statnn_gbt/snapshot19': _cell(0.8, [0.75, 0.85], 1 / 3),
      'when/dataset/statnn_gbt/snapshot00': _cell(0.7, [0.65, 0.75], 0.5),
      'when/dataset/statnn_gbt/snapshot19': _cell(0.7, [0.65, 0.75], 0.5),
  }
  for i, score in enumerate((0.85, 0.87, 0.86, 0.84, 0.88)):  # GBT over 5 splits: inside the DMC's interval
    cells[f'table/optimizer/statnn_gbt/split{i}'] = _cell(score, [score - 0.05, score + 0.05], 1 / 3)
  checked = {c['claim'].split(' (')[0]: c for c in rr.claims(cells, ('optimizer', 'activation', 'dataset'))}
  window = checked['Hyper-parameters are recoverable from a small random window of weights']
  assert window['verdict'] == 'partly agrees (1 of 2)', window
  layers = checked['Some properties are encoded more in some layers']
  assert layers['verdict'] == 'agrees' and layers['evidence'][0].endswith('-> conv better'), layers
  assert 'optimizer: not counted' in layers['evidence'][1]
  training = checked['Information builds up over training']
  assert training['verdict'] == 'partly agrees (1 of 2)' and 'ABOVE CHANCE AT INITIALIZATION' in training['evidence'][-1]
  stats = checked['Statistics + gradient boosted trees are strong on small zoos']
  assert stats['verdict'] == 'agrees' and stats['evidence'][0].endswith('-> tie')
  cells['where/dataset/dmc/fc_equal'] = _cell(0.88, [0.8, 0.93], 0.5)  # overlapping now
  assert rr.claims(cells, ('optimizer',))[1]['verdict'] == 'disagrees'
  cells['where/dataset/dmc/fc_equal'] = _cell(0.7, [0.6, 0.84], 0.5)   # apart by 0.01: marginal
  assert rr.claims(cells, ('optimizer',))[1]['verdict'] == 'agrees; 1 of them marginal'
  cells['table/optimizer/dmc/split0']['test_per_window']['ci95'] = [0.34, 0.4]  # clears 1/3 by 0.007
  assert 'marginal' in rr.claims(cells, ('optimizer',))[0]['verdict']
  assert rr.claims({}, ('optimizer',))[0]['verdict'] == 'not run yet'


def test_zoo_section_reports_the_whole_resumed_build():
  """A zoo built by two processes: the report gives their summed split and span, then the last process's own."""
  from benchmarks import replication_report
  from popnet import progress
  processes = [{'started': '2026-11-30T06:19:00Z', 'updated': '2026-11-30T08:00:00Z', 'host': 'a',
                'model_samples': 10, 'timings': {'train': 100.0, 'evaluate': 20.0, 'total': 130.0}},
               {'started': '2026-11-30T09:00:00Z', 'updated': '2026-11-30T10:00:00Z', 'host': 'a',
                'model_samples': 5, 'timings': {'train': 50.0, 'evaluate': 10.0, 'total': 65.0}}]
  whole = progress.build_totals(processes)
  assert whole['model_samples'] == 15 and whole['timings'] == {'train': 150.0, 'evaluate': 30.0, 'total': 195.0}
  text = replication_report._build_text({'whole': whole})
  assert text.startswith('whole build over 2 process(es), 2026-11-30T06:19:00Z to 2026-11-30T10:00:00Z: '
                         'train 150 s, evaluate 30 s, total 195 s')
  assert replication_report._build_text({'timings': {'train': 1.0}}) == ''  # older zoos: last process only
  assert replication_report._cpu_text({'machine': {'cpu': 'Xeon', 'cores': 2}}) == ', CPU Xeon x 2'
  assert replication_report._cpu_text({}) == ''  # zoos built before the manifest recorded the machine


def _predicted(correct, members, classes=4):
  y = [i % classes for i in range(len(correct))]
  return {'test': {'accuracy': float(sum(correct) / len(correct)), 'networks': len(set(members))}, 'chance': 0.25,
          'test_predictions': {'member_id': members, 'snapshot': [0] * len(y), 'y': y,
                               'prediction': [v if c else (v + 1) % classes for v, c in zip(y, correct)]}}


def test_paired_differences_are_table_minus_control_on_the_same_rows():
  from benchmarks import replication_paired as rp
  members = list(range(40))
  cells = {'table/dataset/neurons/split0': _predicted([1] * 40, members),
           'control/dataset/neurons/no_running_stats/split0': _predicted([1, 0] * 20, members),
           'table/dataset/statnn/split0': _predicted([1] * 40, members),
           'control/dataset/statnn/running_stats/split0': _predicted([1] * 39 + [0], members)}
  rows = {r['model']: r for r in rp.control_rows(cells)}
  gain = rows['neurons']['gain']  # the running statistics help neurons by 0.5
  assert gain['difference'] == pytest.approx(0.5) and 0.3 < gain['ci95'][0] < 0.5 < gain['ci95'][1] < 0.7
  assert rows['neurons']['reading'] == 'higher'
  reverse = rows['statnn']['gain']  # given them, StatNN loses one row of 40: a tiny negative gain
  assert reverse['difference'] == pytest.approx(-1 / 40) and rows['statnn']['reading'] in ('no difference',
                                                                                          'marginal, lower')
  for i, share in enumerate((0.5, 0.4, 0.6)):  # three splits: a percentile interval over the splits
    n = int(40 * share)
    cells[f'table/augment/neurons/split{i}'] = _predicted([1] * 40, members)
    cells[f'control/augment/neurons/no_running_stats/split{i}'] = _predicted([1] * n + [0] * (40 - n), members)
  aug = next(r for r in rp.control_rows(cells) if r['target'] == 'augment')['gain']
  assert aug['splits'] == 3 and aug['difference'] == pytest.approx(0.5) and 0.4 <= aug['ci95'][0] < aug['ci95'][1] <= 0.6
  cells['control/augment/neurons/no_running_stats/split1']['test_predictions']['member_id'] = members[::-1]
  assert 'not tested on the same rows' in rp.paired(cells, 'table/augment/neurons',
                                                    'control/augment/neurons/no_running_stats')['error']
