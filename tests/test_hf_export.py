"""`python -m popnet.zoo export --format hf` (popnet/interop/hf.py, hf_card.py), read back offline with the
Hugging Face `datasets` library: every row's weights and metadata equal the zoo's, splits follow the zoo's split
column or the rule by member, the card's YAML carries the license and split sizes (a lost shard is caught on
load), and the export refuses damaged zoos and occupied directories without writing."""
import glob
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip('pyarrow')
datasets = pytest.importorskip('datasets')

from popnet import hparams  # noqa: E402
from popnet.interop import InteropError, export_hf, member_splits  # noqa: E402
from popnet.interop.hf import DROPPED  # noqa: E402
from popnet.zoo import Zoo, ZooError, ZooWriter  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.helpers import space  # noqa: E402
from tests.test_interop import make_popnet_zoo  # noqa: E402

VALUES = 4970  # the Small CNN Zoo's row on (28, 28, 1)
NWS_FAMILY = ('filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc', 'batch_norm')
MACHINE = {'machine': {'cpu': 'test cpu', 'cores': 2}, 'backend': 'cpu', 'host': 'testhost',
           'versions': {'popnet': '0.1.0'}}


@pytest.fixture(scope='module')
def zoo_path(tmp_path_factory):
  return make_popnet_zoo(str(tmp_path_factory.mktemp('hf_zoo')), space(), (28, 28, 1), members=7)[0]


def load(out, tmp_path, monkeypatch, name=None):
  """datasets.load_dataset(out) with the Hub off and a cache of the test's own."""
  monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
  monkeypatch.setenv('HF_HUB_OFFLINE', '1')
  monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', True, raising=False)
  return datasets.load_dataset(out, name, cache_dir=str(tmp_path / 'hf_cache'))


def export_cli(*args):
  return subprocess.run([sys.executable, '-m', 'popnet.zoo', 'export', '--format', 'hf', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))


def check_equal_to_zoo(loaded, zoo, expected_splits):
  """Every row of the zoo once, with its weights and metadata; split of each row as `expected_splits` says."""
  meta = zoo.metadata.set_index(['member_id', 'snapshot'])
  seen = []
  for split, ds in loaded.items():
    table = ds.to_pandas()
    keys = list(zip(table['member_id'], table['snapshot']))
    rows = zoo.metadata.set_index(['member_id', 'snapshot']).loc[keys].reset_index()
    np.testing.assert_array_equal(np.stack(table['weights'].to_numpy()), zoo.vectors(rows))
    want = rows.drop(columns=list(DROPPED)).dropna(axis=1, how='all')  # another architecture's columns
    pd.testing.assert_frame_equal(table.drop(columns=['weights']), want[list(table.columns[1:])], check_dtype=False)
    assert set(table.columns[1:]) == set(want.columns)
    assert all(expected_splits[k] == split for k in keys)
    seen += keys
  assert sorted(seen) == sorted(meta.index)


def test_export_loads_offline_with_datasets_and_equals_the_zoo(zoo_path, tmp_path, monkeypatch):
  out = str(tmp_path / 'hf')
  zoo = Zoo.open(zoo_path)
  zoo.manifest.update(MACHINE)
  summary = export_hf(zoo, out, license='cc-by-4.0', shard_bytes=4 * VALUES * 4, block_bytes=3 * VALUES * 4)
  assert len(glob.glob(os.path.join(out, 'data', 'smallcnnzoo', 'train-*.parquet'))) > 1  # sharded, streamed
  loaded = load(out, tmp_path, monkeypatch)
  assert set(loaded) == {'train', 'validation', 'test'}
  assert loaded['train'].features['weights'] == datasets.List(datasets.Value('float32'))
  split = member_splits(zoo.metadata['member_id'].to_numpy(), 0)
  by_member = dict(zip(zoo.metadata['member_id'], split))
  assert sorted(pd.Series(by_member).value_counts().items()) == [('test', 1), ('train', 5), ('validation', 1)]
  check_equal_to_zoo(loaded, zoo, {k: by_member[k[0]] for k in zip(zoo.metadata['member_id'],
                                                                     zoo.metadata['snapshot'])})
  assert summary['rows'] == len(zoo.metadata) == 21
  from huggingface_hub import DatasetCard
  card = DatasetCard.load(os.path.join(out, 'README.md'))
  assert card.data.license == 'cc-by-4.0'
  assert '## Citation' in card.text and '@software{popnet' in card.text and 'testhost' in card.text
  assert 'python -m popnet.train --config CONFIG' in card.text and '"test cpu"' in card.text


def with_split_column(zoo_path, path, names):
  shutil.copytree(zoo_path, path)
  zoo = Zoo.open(path)
  return zoo.add_column('split', zoo.metadata['member_id'].map(lambda m: names[m % 3]).to_numpy())


def test_splits_follow_the_zoo_split_column(zoo_path, tmp_path, monkeypatch):
  zoo = with_split_column(zoo_path, str(tmp_path / 'zoo'), ['train', 'val', 'test'])
  export_hf(zoo.path, str(tmp_path / 'hf'))
  loaded = load(str(tmp_path / 'hf'), tmp_path, monkeypatch)
  names = {'train': 'train', 'val': 'validation', 'test': 'test'}
  check_equal_to_zoo(loaded, zoo, {(m, s): names[v] for m, s, v in
                                   zip(zoo.metadata['member_id'], zoo.metadata['snapshot'], zoo.metadata['split'])})
  bad = with_split_column(zoo_path, str(tmp_path / 'bad_zoo'), ['train', 'dev', 'test'])
  with pytest.raises(InteropError, match=r"split column holds \['dev'\]; allowed"):
    export_hf(bad, str(tmp_path / 'hf_bad'))
  assert not os.path.exists(str(tmp_path / 'hf_bad'))


def make_mixed_zoo(path, members=6, snapshots=2, shape=(8, 8, 1)):
  """A zoo of two architectures (smallcnnzoo and nws_fixed members), random weights, via ZooWriter."""
  table = hparams.sample_members(space(architecture='choice(smallcnnzoo, nws_fixed)'), members, 0)  # 3 of each
  archs = {a: hparams.arch_of(table[table['arch'] == a].iloc[0].to_dict()) for a in pd.unique(table['arch'])}
  writer = ZooWriter(path, archs, shape, {a: int((table['arch'] == a).sum()) * snapshots for a in archs},
                     manifest={'members': members, 'snapshot_epochs': list(range(snapshots))})
  rng = np.random.default_rng(0)
  for a in archs:
    own = table[table['arch'] == a].to_dict('records')
    if a != 'nws_fixed':  # as the trainer writes them: the NWS family's columns only on its rows
      own = [{k: v for k, v in m.items() if k not in NWS_FAMILY} for m in own]
    rows = np.arange(len(own) * snapshots)
    records = [dict(m, snapshot=k, epoch=k, step=k, status='ok', diverged_epoch=-1, weights_file=f'weights/{a}.npy',
                    weights_row=r * snapshots + k, test_accuracy=float(rng.uniform()), test_loss=1.0,
                    train_accuracy=0.5, train_loss=1.0, val_accuracy=0.5, val_loss=1.0)
               for r, m in enumerate(own) for k in range(snapshots)]
    writer.write(a, rows, rng.normal(size=(len(rows), writer.layouts[a].size)).astype(np.float32), records)
  writer.write_manifest(complete=True)
  return path


def test_each_architecture_is_a_config_of_its_own(tmp_path, monkeypatch):
  zoo = Zoo.open(make_mixed_zoo(str(tmp_path / 'zoo')))
  summary = export_hf(zoo, str(tmp_path / 'hf'))
  assert summary['configs'] == ['nws_fixed', 'smallcnnzoo'] and summary['rows'] == 12
  for name in summary['configs']:
    loaded = load(str(tmp_path / 'hf'), tmp_path, monkeypatch, name)
    rows = zoo.metadata[zoo.metadata['arch'] == name]
    sub = Zoo(zoo.path, zoo.manifest, rows.reset_index(drop=True), zoo.layouts)
    check_equal_to_zoo(loaded, sub, dict(zip(zip(rows['member_id'], rows['snapshot']),
                                             member_splits(rows['member_id'].to_numpy(), 0))))
  assert 'width_conv' in load(str(tmp_path / 'hf'), tmp_path, monkeypatch, 'nws_fixed')['train'].column_names
  assert 'width_conv' not in load(str(tmp_path / 'hf'), tmp_path, monkeypatch, 'smallcnnzoo')['train'].column_names


def test_a_lost_shard_is_caught_on_load(zoo_path, tmp_path, monkeypatch):
  out = str(tmp_path / 'hf')
  export_hf(zoo_path, out, shard_bytes=4 * VALUES * 4)
  os.remove(sorted(glob.glob(os.path.join(out, 'data', 'smallcnnzoo', 'train-*.parquet')))[0])
  from datasets.exceptions import NonMatchingSplitsSizesError
  with pytest.raises(NonMatchingSplitsSizesError, match='num_examples'):
    load(out, tmp_path, monkeypatch)


def test_export_refuses_damage_and_occupied_directories_without_writing(zoo_path, tmp_path):
  occupied = tmp_path / 'occupied'
  occupied.mkdir()
  (occupied / 'notes.txt').write_text('mine')
  proc = export_cli('--zoo', zoo_path, '--out', str(occupied))
  assert proc.returncode == 2 and proc.stderr.count('\n') == 1 and 'is not empty' in proc.stderr
  assert os.listdir(occupied) == ['notes.txt']
  proc = export_cli('--zoo', zoo_path, '--out', str(occupied), '--overwrite', '--shard_mb', '1')
  assert proc.returncode == 0, proc.stderr
  assert 'wrote 21 rows' in proc.stdout and (occupied / 'notes.txt').read_text() == 'mine'
  assert sorted(os.listdir(occupied)) == ['README.md', 'data', 'layouts', 'notes.txt', 'popnet_export.json']
  proc = export_cli('--zoo', zoo_path, '--out', str(tmp_path / 'x'), '--license', 'Not A License')
  assert proc.returncode == 2 and '--license' in proc.stderr and not os.path.exists(tmp_path / 'x')
  damaged = str(tmp_path / 'damaged')
  shutil.copytree(zoo_path, damaged)
  weights = np.load(os.path.join(damaged, 'weights', 'smallcnnzoo.npy'), mmap_mode='r+')
  weights[5, 100] += 1.0
  weights.flush()
  del weights
  with pytest.raises(ZooError, match='crc32'):
    export_hf(damaged, str(tmp_path / 'from_damaged'), block_bytes=2 * VALUES * 4)
  assert not os.path.exists(tmp_path / 'from_damaged')


def test_the_benchmark_runs_end_to_end_on_a_tiny_zoo(tmp_path, monkeypatch):
  """benchmarks/torch_hf.py, which docs/pytorch.md quotes (tested here: it needs torch and datasets too)."""
  pytest.importorskip('torch')
  from benchmarks.torch_hf import measure
  monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', True, raising=False)
  result = measure(str(tmp_path), members=4, snapshots=1, batch_size=2)
  assert result['rows'] == result['loaded_rows'] == 4 and result['values'] == VALUES
  assert min(result[k] for k in result if k.endswith('_s')) > 0
