"""The zoo's integrity promises: checksummed rows, a checked row mapping, resume that never extends or blesses
damage, atomic files a concurrent reader can always open, and disk-full errors that lose nothing."""
import errno
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from popnet import models, zoo as zoo_lib
from popnet.zoo import Zoo, ZooError, ZooWriter, snapshot_records, snapshot_row
from tests.conftest import ROOT
from tests.zoo_forgery import forge, unseal

ARCH = models.Arch('tiny', (models.ConvLayer(2, 3, pool=True),), (4,), 3, False)
SHAPE = (4, 4, 1)
MEMBERS, SNAPSHOTS = 5, 3


def members():
  return pd.DataFrame({'member_id': np.arange(MEMBERS) * 2 + 1, 'arch': 'tiny', 'learning_rate': 0.01,
                       'optimizer': ['adam', 'sgd', 'adam', 'rmsprop', 'sgd']})


def weights_of(member_id, snapshot, size):
  return np.random.default_rng([member_id, snapshot]).normal(size=size).astype(np.float32)


def write_snapshot(writer, table, k, **kwargs):
  size = writer.layouts['tiny'].size
  rows = snapshot_row(np.arange(len(table)), k, SNAPSHOTS)
  metrics = np.ones((len(table), 3, 3))
  records = snapshot_records(table, k, 2 * k, metrics, np.zeros(len(table), bool), np.zeros(len(table)), 10, rows)
  writer.write('tiny', rows, np.stack([weights_of(m, k, size) for m in table['member_id']]), records, **kwargs)


def new_writer(path):
  return ZooWriter(path, {'tiny': ARCH}, SHAPE, {'tiny': MEMBERS * SNAPSHOTS},
                   {'members': MEMBERS, 'snapshot_epochs': [0, 2, 4]}, row_rule=True)


def make_zoo(path, snapshots=SNAPSHOTS, finish=True):
  writer = new_writer(path)
  for k in range(snapshots):
    write_snapshot(writer, members(), k)
  if finish:
    writer.write_manifest(complete=True, timings={'total': 12.5}, summary={'members': MEMBERS})
  writer.close()
  return path


def files_of(path):
  return {name: open(os.path.join(path, name), 'rb').read()
          for name in ('weights/tiny.npy', 'metadata.csv', 'manifest.json', 'layouts/tiny.json')}


def edit_metadata(path, edit, forge_seal=True):
  """Edits metadata.csv; forge_seal (default) also recomputes the zoo's seal over the edit, as a forger would,
  so what is tested is the check behind the seal (tests/test_zoo_mutations.py tests the seal itself)."""
  csv = os.path.join(path, 'metadata.csv')
  table = pd.read_csv(csv)
  edit(table)
  table.to_csv(csv, index=False)
  if forge_seal:
    forge(path)


# --- records and the written zoo --------------------------------------------------------------------------------
def test_snapshot_records_keys_order_and_values():
  table = members().iloc[:2]
  metrics = np.array([[[2.0, 3.0, 4.0], [1.0, 2.0, 0.0], [4.0, 4.0, 0.0]],
                      [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [2.0, 2.0, 2.0]]])
  records = snapshot_records(table, 1, 2, metrics, np.array([False, True]), np.array([0, 95]), 42, np.array([1, 4]))
  assert list(records[0]) == ['member_id', 'arch', 'learning_rate', 'optimizer', 'snapshot', 'epoch', 'step',
                              'status', 'diverged_epoch', 'weights_file', 'weights_row', 'train_loss',
                              'train_accuracy', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy']
  assert records[0]['status'] == 'ok' and records[0]['diverged_epoch'] == -1 and records[0]['weights_row'] == 1
  assert records[1]['status'] == 'diverged' and records[1]['diverged_epoch'] == 2  # 95 // 42
  assert records[0]['train_loss'] == 0.5 and records[0]['train_accuracy'] == 0.25  # loss 2 / 4, correct 1 / 4
  assert records[0]['val_loss'] == 0.75 and records[0]['test_loss'] == 4.0  # count 0 -> divided by 1
  assert records[1]['weights_file'] == 'weights/tiny.npy' and records[1]['epoch'] == 2 and records[1]['step'] == 84
  per_member = snapshot_records(table, 1, 2, metrics, np.array([False, True]), np.array([0, 95]), np.array([42, 30]),
                                np.array([1, 4]))  # members whose datasets differ in size
  assert [r['step'] for r in per_member] == [84, 60] and per_member[1]['diverged_epoch'] == 3  # 95 // 30


def test_written_zoo_opens_verifies_and_matches_np_load(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'))
  zoo = Zoo.open(path)
  assert zoo.verify() == {'rows': MEMBERS * SNAPSHOTS, 'checksummed': MEMBERS * SNAPSHOTS}
  assert zoo.manifest['row_rule'] == zoo_lib.ROW_RULE and zoo.manifest['complete']
  stored = np.load(os.path.join(path, 'weights', 'tiny.npy'))
  row = zoo.metadata[(zoo.metadata.member_id == 5) & (zoo.metadata.snapshot == 1)].iloc[0]
  np.testing.assert_array_equal(stored[row.weights_row], weights_of(5, 1, stored.shape[1]))
  assert row.weights_row == snapshot_row(2, 1, SNAPSHOTS)
  proc = subprocess.run([sys.executable, '-m', 'popnet.zoo', 'verify', path], cwd=ROOT, capture_output=True,
                        text=True)
  assert proc.returncode == 0 and proc.stdout.count('\n') == 1 and 'all 15 checksums intact' in proc.stdout


def test_verify_catches_a_flipped_weight_byte(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'))
  zoo = Zoo.open(path)
  offset = zoo.weights('tiny').offset + 7 * zoo.weights('tiny').shape[1] * 4 + 13
  with open(os.path.join(path, 'weights', 'tiny.npy'), 'r+b') as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0x10]))
  with pytest.raises(ZooError, match=r'weights/tiny\.npy: row 7 \(member 5 snapshot 1\) does not match'):
    Zoo.open(path).verify()
  proc = subprocess.run([sys.executable, '-m', 'popnet.zoo', 'verify', path], cwd=ROOT, capture_output=True,
                        text=True)
  assert proc.returncode == 1 and 'row 7' in proc.stdout
  with pytest.raises(ZooError, match=r'row 7 .* does not match .* resume writes nothing into a damaged zoo: rerun '
                                     r'with --overwrite'):
    new_writer(path)  # resume refuses to extend a damaged file
  damaged = Zoo.open(path)  # every read checks the rows it read: damage never reaches research code
  with pytest.raises(ZooError, match=r'weights/tiny\.npy: row 7 \(member 5 snapshot 1\) does not match'):
    damaged.vectors(damaged.metadata)
  intact = damaged.metadata[damaged.metadata['weights_row'] != 7]
  assert damaged.vectors(intact).shape == (len(intact), damaged.layout('tiny').size)
  assert damaged.verify(intact) == {'rows': len(intact), 'checksummed': len(intact)}
  assert len(damaged.vectors(damaged.metadata, verify=False)) == len(damaged.metadata)
  from meta.weights import WeightStore
  for budget in (1 << 30, 0):  # in memory and streamed from the memmap
    with pytest.raises(ZooError, match='row 7'):
      WeightStore(damaged, damaged.metadata, memory_budget=budget)
  usage = subprocess.run([sys.executable, '-m', 'popnet.zoo', 'verify'], cwd=ROOT, capture_output=True, text=True)
  assert usage.returncode == 2


def zoo_cli(*args):
  return subprocess.run([sys.executable, '-m', 'popnet.zoo', *args], cwd=ROOT, capture_output=True, text=True)


def test_unsealed_zoo_opens_verify_says_so_and_sign_seals_it(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'))
  edit_metadata(path, lambda t: t.pop('weights_crc32'), forge_seal=False)
  unseal(path)  # a zoo written before seals (and checksums) existed
  zoo = Zoo.open(path)
  assert not zoo.sealed and zoo.verify() == {'rows': 15, 'checksummed': 0}
  proc = zoo_cli('verify', path)
  assert proc.returncode == 3 and proc.stdout.startswith('unsealed: ') and proc.stdout.count('\n') == 1
  assert f'seal it: python -m popnet.zoo sign {path}' in proc.stdout
  with pytest.raises(ZooError, match=r'written by popnet before zoos were sealed.*popnet\.zoo sign'):
    new_writer(path)  # resume does not bless it
  proc = zoo_cli('sign', path)
  assert proc.returncode == 0 and '15 rows had no checksum and got one' in proc.stdout
  proc = zoo_cli('verify', path)
  assert proc.returncode == 0 and 'all 15 checksums intact' in proc.stdout
  assert Zoo.open(path).sealed
  digest = proc.stdout.split('digest ')[1].strip()
  assert zoo_cli('verify', path, '--expect', digest).returncode == 0
  assert zoo_cli('verify', path, '--expect', 'sha256:' + '0' * 64).returncode == 1


# --- the row mapping ------------------------------------------------------------------------------------------------
def _swap_one_snapshot(t):
  a, b = t.index[(t.member_id == 3) & (t.snapshot == 0)][0], t.index[(t.member_id == 7) & (t.snapshot == 0)][0]
  t.loc[[a, b], 'weights_row'] = t.loc[[b, a], 'weights_row'].to_numpy()


def _swap_members(t):  # every snapshot of two members swapped
  a, b = t.index[t.member_id == 3], t.index[t.member_id == 7]
  t.loc[a.append(b), 'weights_row'] = t.loc[b.append(a), 'weights_row'].to_numpy()


def _swap_snapshots(t):
  a, b = t.index[(t.member_id == 3) & (t.snapshot == 0)][0], t.index[(t.member_id == 3) & (t.snapshot == 2)][0]
  t.loc[[a, b], 'weights_row'] = t.loc[[b, a], 'weights_row'].to_numpy()


def _duplicate(t):
  t.loc[(t.member_id == 5) & (t.snapshot == 1), 'weights_row'] = 1


def _fake_member(t):  # member 3 deleted, a member 100 claims its rows
  t.loc[t.member_id == 3, 'member_id'] = 100


def _outside(t):
  t.loc[(t.member_id == 9) & (t.snapshot == 2), 'weights_row'] = 99


@pytest.mark.parametrize('edit, message', [
    (_swap_one_snapshot, r'the snapshots of member 3 lie in different row blocks of weights/tiny\.npy'),
    (_swap_members, r'member 3 has weights_row 9 of weights/tiny\.npy \(block 3\), out of member_id order'),
    (_swap_snapshots, r'member 3 snapshot 0 has weights_row 5 of weights/tiny\.npy; the row rule'),
    (_duplicate, r'weights_row 1 of weights/tiny\.npy is listed for member 1 snapshot 1 and member 5 snapshot 1'),
    (_fake_member, r'member 5 has weights_row 6 .* out of member_id order'),
    (_outside, r'member 9 snapshot 2 points to weights_row 99 of weights/tiny\.npy, which holds rows 0\.\.14'),
])
def test_wrong_weights_rows_are_refused_on_open(tmp_path, edit, message):
  path = make_zoo(str(tmp_path / 'zoo'))
  edit_metadata(path, edit)
  with pytest.raises(ZooError, match=message):
    Zoo.open(path)


def test_row_rule_allows_ranks_not_written_yet_but_not_out_of_order(tmp_path):
  path = str(tmp_path / 'zoo')
  writer = new_writer(path)
  write_snapshot(writer, members().iloc[[1, 3]], 0)  # ranks 1 and 3 of the architecture: rows 3 and 9
  edit_metadata(path, lambda t: t.__setitem__('weights_row', [3 * 1, 3 * 3]))
  assert len(Zoo.open(path)) == 2
  edit_metadata(path, lambda t: t.__setitem__('weights_row', [3 * 3, 3 * 1]))
  with pytest.raises(ZooError, match='out of member_id order'):
    Zoo.open(path)


def test_zoos_without_the_row_rule_only_need_unique_rows(tmp_path):
  path = str(tmp_path / 'zoo')
  writer = ZooWriter(path, {'tiny': ARCH}, SHAPE, {'tiny': 4}, {'imported_from': {'format': 'nws'}})
  table = members().iloc[:2]
  rows = np.array([3, 0])  # any order
  records = snapshot_records(table, 0, 0, np.ones((2, 3, 3)), np.zeros(2, bool), np.zeros(2), 1, rows)
  writer.write('tiny', rows, np.ones((2, writer.layouts['tiny'].size)), records)
  writer.write_manifest(complete=True)
  assert len(Zoo.open(path)) == 2
  edit_metadata(path, lambda t: t.__setitem__('weights_row', [0, 0]))
  with pytest.raises(ZooError, match='weights_row 0 .* is listed for member 3 snapshot 0 and member 1 snapshot 0'):
    Zoo.open(path)


# --- resume -----------------------------------------------------------------------------------------------------------
def test_resume_is_byte_identical_and_no_op_rerun_keeps_timings(tmp_path):
  whole = make_zoo(str(tmp_path / 'whole'))
  path = make_zoo(str(tmp_path / 'resumed'), snapshots=1, finish=False)
  writer = new_writer(path)
  assert writer.written() == {(m, 0) for m in members()['member_id']}
  for k in (1, 2):
    write_snapshot(writer, members(), k)
  writer.write_manifest(complete=True, timings={'total': 12.5}, summary={'members': MEMBERS})
  assert files_of(path) == files_of(whole)

  again = new_writer(path)  # nothing left to write: a later run must not replace the timings
  kept = again.write_manifest(complete=True, timings={'total': 0.01}, summary={'members': 0})
  assert kept['timings'] == {'total': 12.5} and kept['summary'] == {'members': MEMBERS}
  assert files_of(path) == files_of(whole)
  assert again.write_manifest(work_done=True, timings={'total': 3.0})['timings'] == {'total': 3.0}


def test_truncated_weights_file_is_refused_never_zero_filled(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'), snapshots=2, finish=False)
  file = os.path.join(path, 'weights', 'tiny.npy')
  size = os.path.getsize(file)
  with open(file, 'r+b') as f:
    f.truncate(size - 10)
  with pytest.raises(ZooError, match=rf'{file}: {size - 10:,} bytes, but 15 rows .* truncated .*restore it from a '
                                     r'copy, or rerun with --overwrite'):
    new_writer(path)
  assert os.path.getsize(file) == size - 10  # untouched
  os.remove(file)  # its rows are forgotten; here every snapshot is written again (a run regenerates only those
                   # its kept checkpoints reach, so its advice is --overwrite)
  writer = new_writer(path)
  assert writer.written() == set() and len(writer.dropped) == 2 * MEMBERS
  for k in range(SNAPSHOTS):
    write_snapshot(writer, members(), k)
  writer.write_manifest(complete=True, timings={'total': 12.5}, summary={'members': MEMBERS})
  assert files_of(path) == files_of(make_zoo(str(tmp_path / 'whole')))


def test_complete_is_refused_while_rows_are_missing(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'), snapshots=2, finish=False)
  writer = new_writer(path)
  assert writer.missing(members()['member_id'], SNAPSHOTS) == [(m, 2) for m in members()['member_id']]
  with pytest.raises(ZooError, match=r'metadata\.csv: holds 10 of the 15 rows of the complete zoo'):
    writer.write_manifest(complete=True)
  assert not Zoo.open(path).manifest['complete']


def test_disk_full_while_writing_rows_is_a_zoo_error_and_loses_nothing(tmp_path, monkeypatch):
  path = make_zoo(str(tmp_path / 'zoo'), snapshots=1, finish=False)
  committed = files_of(path)['metadata.csv']
  writer = new_writer(path)

  def full(*args):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, 'pwrite', full)
  with pytest.raises(ZooError, match=rf'{os.path.join(path, "weights", "tiny.npy")}: writing 5 weight rows failed: '
                                     r'No space left on device'):
    write_snapshot(writer, members(), 1)
  monkeypatch.undo()
  assert files_of(path)['metadata.csv'] == committed and Zoo.open(path).verify()['rows'] == MEMBERS

  monkeypatch.setattr(os, 'fsync', full)  # the metadata commit fails: the previous metadata stays
  with pytest.raises(ZooError, match=r'No space left on device'):
    write_snapshot(writer, members(), 1)
  monkeypatch.undo()
  assert files_of(path)['metadata.csv'] == committed
  assert not [f for f in os.listdir(path) if '.tmp' in f]

  resumed = new_writer(path)
  for k in (1, 2):
    write_snapshot(resumed, members(), k)
  resumed.write_manifest(complete=True, timings={'total': 12.5}, summary={'members': MEMBERS})
  assert files_of(path) == files_of(make_zoo(str(tmp_path / 'whole')))


def test_creating_a_file_larger_than_the_disk_fails_before_any_row(tmp_path, monkeypatch):
  def full(fd, offset, length):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  monkeypatch.setattr(os, 'posix_fallocate', full)
  with pytest.raises(ZooError, match=r'weights/tiny\.npy: cannot be created .*No space left on device'):
    new_writer(str(tmp_path / 'zoo'))
  assert os.listdir(tmp_path / 'zoo' / 'weights') == []


# --- concurrent readers -----------------------------------------------------------------------------------------------
def test_reader_looping_open_while_a_writer_rewrites_never_fails(tmp_path):
  path = make_zoo(str(tmp_path / 'zoo'))
  stop, errors, opened = threading.Event(), [], []

  def read():
    while not stop.is_set():
      try:
        zoo = Zoo.open(path)
        opened.append((zoo.manifest['complete'], len(zoo)))
      except Exception as e:  # noqa: BLE001 - any failure is the bug under test
        errors.append(repr(e))

  reader = threading.Thread(target=read)
  reader.start()
  try:
    for i in range(30):
      writer = new_writer(path)  # reopening rewrites nothing that holds the same content...
      arch = ARCH if i % 2 else models.Arch('tiny', ARCH.conv, (4,), 3, False, global_pool=False)
      writer._write_if_changed('layouts/tiny.json', json.dumps(arch.layout(SHAPE).to_json(), indent=i % 2 + 1))
      writer.write_manifest(work_done=True, timings={'total': float(i)})  # ...these are real rewrites
      write_snapshot(writer, members(), i % SNAPSHOTS)
      writer.write_manifest(complete=True)
      writer.close()
  finally:
    stop.set()
    reader.join()
  assert not errors, errors[:3]
  assert len(opened) > 10 and all(n == MEMBERS * SNAPSHOTS for _, n in opened)


def test_cli_delegates_interchange_commands_without_an_import_cycle():
  proc = subprocess.run([sys.executable, '-m', 'popnet.zoo', 'export', '--help'], cwd=ROOT, capture_output=True,
                        text=True)
  assert proc.returncode == 0 and '--format' in proc.stdout
  check = 'import sys, popnet.zoo, popnet.zoo.writer, popnet.zoo.reader; print("popnet.interop" in sys.modules)'
  assert subprocess.run([sys.executable, '-c', check], cwd=ROOT, capture_output=True, text=True).stdout == 'False\n'


def test_temp_files_of_interrupted_writes_are_removed_on_the_next_run(tmp_path):
  whole = make_zoo(str(tmp_path / 'whole'))
  path = make_zoo(str(tmp_path / 'zoo'), snapshots=1, finish=False)
  for name in ('metadata.csv.tmp-123-456', 'manifest.json.tmp-9-9', 'weights/tiny.npy.tmp-77',
               'layouts/tiny.json.tmp-1-2'):
    with open(os.path.join(path, name), 'w') as f:
      f.write('half a write')
  writer = new_writer(path)
  assert len(writer.stale) == 4
  for k in (1, 2):
    write_snapshot(writer, members(), k)
  writer.write_manifest(complete=True, timings={'total': 12.5}, summary={'members': MEMBERS})
  listing = lambda p: sorted(os.path.relpath(os.path.join(r, f), p) for r, _, fs in os.walk(p) for f in fs)
  assert listing(path) == listing(whole) and files_of(path) == files_of(whole)
