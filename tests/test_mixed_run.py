"""A run whose architectures differ trains them padded in one program and writes a zoo in which every
architecture's rows are its own vectors in its own layout: Zoo.open and meta.report work unchanged."""
import numpy as np
import pytest

from meta import report
from popnet import hparams, train
from popnet.zoo import Zoo
from tests.test_train_cli import smoke_config


@pytest.fixture(scope='module')
def mixed_run(digits_dir, tmp_path_factory):
  config = smoke_config(**{'population': 32, 'epochs': 1, 'snapshots': 2, 'data_dir': digits_dir,
                           'max_programs': 1, 'hparams.architecture': 'nws', 'hparams.filter_size': 'choice(1, 3)',
                           'hparams.depth_conv': 4, 'hparams.width_conv': 'choice(2, 4)', 'hparams.depth_fc': 1,
                           'hparams.width_fc': 8})
  workdir = str(tmp_path_factory.mktemp('mixed') / 'run')
  summary = train.train(config, workdir, progress=False, log=lambda *_: None)
  return config, workdir, summary


def test_mixed_run_is_one_program_and_its_zoo_opens(mixed_run):
  config, workdir, summary = mixed_run
  assert summary['plan']['programs'] == 1 and summary['plan']['buckets'][0]['architectures'] == 4
  assert summary['plan']['padded_compute_overhead'] > 1
  zoo = Zoo.open(workdir)
  meta = zoo.metadata
  assert len(meta) == 32 * 2 and (meta['status'] == 'ok').all()
  for name in zoo.architectures:
    arch = hparams.arch_of(meta[meta['arch'] == name].iloc[0])
    assert zoo.layout(name) == arch.layout(tuple(config.input_shape))  # its own layout, no padding
    rows = meta[meta['arch'] == name]
    assert zoo.weights(name).shape == (len(rows), arch.layout(tuple(config.input_shape)).size)
    assert np.isfinite(zoo.vectors(rows)).all()
  assert meta['test_accuracy'].between(0, 1).all() and np.isfinite(meta['test_loss']).all()
  first, last = (meta[meta['epoch'] == e].sort_values('member_id') for e in (0, 1))
  assert not np.allclose(zoo.vectors(first.iloc[:1]), zoo.vectors(last.iloc[:1]))  # trained


def test_meta_report_runs_on_a_mixed_zoo(mixed_run, tmp_path):
  _, workdir, _ = mixed_run
  # 32 members of 4 architectures: a 40% test split keeps >= 2 test networks per class (meta refuses fewer)
  table = report.build(workdir, targets=('arch', 'filter_size', 'width_conv'), models=('statnn_gbt',),
                       log=lambda *_: None, fractions=(0.4, 0.2, 0.4))
  assert [row['target'] for row in table['rows']] == ['arch', 'filter_size', 'width_conv'], table['skipped']
