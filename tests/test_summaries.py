"""TensorBoard event files (config.tensorboard): written per program, readable back with the expected population
summaries (quantiles and mean of each curve column, the diverged fraction, the training rate); a missing writer
is one line naming the extra."""
import glob
import os
import struct
import sys

import numpy as np
import pandas as pd
import pytest

from popnet import config as config_lib
from popnet import curves as curves_lib
from popnet import summaries

pytest.importorskip('tensorboardX')  # in the [test] extra


def read_scalars(directory: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of every event file under `directory`, parsed from the TFRecord framing (8-byte length,
  4-byte CRC, the Event protobuf, 4-byte CRC) with tensorboardX's own Event message."""
  from tensorboardX.proto import event_pb2
  scalars: dict[str, dict[int, float]] = {}
  for path in sorted(glob.glob(os.path.join(directory, 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def test_population_scalars_skip_diverged_members():
  rows = [{'member_id': i, 'epoch': 3, 'val_accuracy': a, 'diverged': d}
          for i, (a, d) in enumerate([(0.1, False), (0.5, False), (0.9, False), (0.0, True)])]
  s = summaries.population_scalars(rows, 1234.0)
  assert s['population/diverged_fraction'] == 0.25 and s['population/model_samples_per_second'] == 1234.0
  assert s['val_accuracy/p50'] == pytest.approx(0.5) and s['val_accuracy/mean'] == pytest.approx(0.5)
  assert s['val_accuracy/p10'] == pytest.approx(np.quantile([0.1, 0.5, 0.9], 0.1))
  assert not any(tag.startswith(('member_id', 'epoch', 'diverged/')) for tag in s)


def test_missing_writer_is_one_line_naming_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorboardX', None)  # import fails as if not installed
  with pytest.raises(config_lib.ConfigError, match=r"pip install 'popnet\[tensorboard\]'"):
    summaries.require_writer()


def test_run_writes_readable_population_summaries(cli, tmp_path):
  workdir = str(tmp_path / 'run')
  cli('--config', 'smoke', '--workdir', workdir, '--config.tensorboard=True')
  runs = sorted(os.listdir(os.path.join(workdir, 'tensorboard')))
  assert runs == ['program_1']
  scalars = read_scalars(os.path.join(workdir, 'tensorboard', 'program_1'))
  for column in curves_lib.METRICS:
    for stat in ('p10', 'p50', 'p90', 'mean'):
      assert f'{column}/{stat}' in scalars, (column, stat, sorted(scalars))
  assert len(scalars) < 50  # population summaries, not one curve per member
  table = curves_lib.read(workdir)
  for epoch in (0, 1, 2):
    ok = table[(table['epoch'] == epoch) & ~table['diverged']]
    assert scalars['test_accuracy/p50'][epoch] == pytest.approx(ok['test_accuracy'].median(), abs=1e-6)
    assert scalars['val_loss/mean'][epoch] == pytest.approx(ok['val_loss'].mean(), rel=1e-5)
    assert scalars['population/diverged_fraction'][epoch] == pytest.approx(table[table['epoch'] == epoch]
                                                                           ['diverged'].mean())
  assert set(scalars['population/model_samples_per_second']) == {1, 2} and \
      min(scalars['population/model_samples_per_second'].values()) > 0
