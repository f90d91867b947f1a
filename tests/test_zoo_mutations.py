"""A zoo is a sealed whole: every edit of what a row means is damage, refused by `python -m popnet.zoo verify`
(exit 1, naming the file), by Zoo.open / vectors, by export, by meta and by resume (which writes nothing).

Each case below edits one thing of a complete zoo behind popnet's back, as a user or a bad copy would: every
metadata column, a blanked checksum, the row rule, layout entries, the architecture, snapshot epochs, other
manifest fields, the seal itself, the evaluation subsets, the weights. The last tests check that this suite
fails when one of the seal's digests is skipped."""
import contextlib
import io
import json
import os

import numpy as np
import pandas as pd
import pytest

from popnet import models
from popnet.zoo import Zoo, ZooError, ZooWriter, seal, snapshot_records, snapshot_row
from popnet.zoo.__main__ import main as zoo_main
from tests.zoo_forgery import read_manifest, write_manifest

ARCH = models.Arch('tiny', (models.ConvLayer(2, 3, pool=True), models.ConvLayer(3, 3)), (4,), 3, False)
SHAPE, SNAPSHOTS = (4, 4, 1), 3
MEMBERS = pd.DataFrame({'member_id': [1, 3, 5, 7], 'arch': 'tiny', 'dataset': 'digits',
                        'learning_rate': [0.01, 0.02, 0.03, 0.04], 'optimizer': ['adam', 'sgd', 'adam', 'rmsprop'],
                        'activation': ['relu', 'elu', 'tanh', 'relu'], 'seed': [11, 12, 13, 14]})
EVALUATION = [np.arange(10), np.arange(10, 20), np.arange(100, 110)]


def new_writer(path):
  return ZooWriter(path, {'tiny': ARCH}, SHAPE, {'tiny': len(MEMBERS) * SNAPSHOTS},
                   {'members': len(MEMBERS), 'snapshot_epochs': [0, 2, 4], 'seed': 7}, row_rule=True)


def build_zoo(path):
  writer = new_writer(path)
  size = writer.layouts['tiny'].size
  for k in range(SNAPSHOTS):
    rows = snapshot_row(np.arange(len(MEMBERS)), k, SNAPSHOTS)
    metrics = np.random.default_rng(k).uniform(size=(len(MEMBERS), 3, 3)) + 1
    records = snapshot_records(MEMBERS, k, 2 * k, metrics, np.zeros(len(MEMBERS), bool), np.zeros(len(MEMBERS)),
                               10, rows)
    weights = np.stack([np.random.default_rng([m, k]).normal(size=size) for m in MEMBERS['member_id']])
    writer.write('tiny', rows, weights, records)
  writer.write_evaluation_sets(path, 'digits', 100, EVALUATION)
  writer.write_manifest(complete=True, timings={'total': 1.0})
  writer.close()
  return path


# --- the mutations ---------------------------------------------------------------------------------------------------
def edit_csv(path, edit):
  file = os.path.join(path, 'metadata.csv')
  table = pd.read_csv(file, dtype=str, keep_default_na=False)
  result = edit(table)
  (table if result is None else result).to_csv(file, index=False)


def changed(value: str) -> str:
  """Another value of the same kind: a number off by more than rounding, a different word."""
  try:
    number = float(value)
  except ValueError:
    return value + 'x'
  return str(int(number) + 2) if value.lstrip('-').isdigit() else repr(number * 10 + 1)


def edit_column(column):
  return lambda path: edit_csv(path, lambda t: t.__setitem__(column, t[column].where(t.index != 4,
                                                                                    changed(t.loc[4, column]))))


def swap_hyperparameters(path):
  def edit(t):
    a, b = t.index[t.member_id == '1'], t.index[t.member_id == '3']
    for c in ('learning_rate', 'optimizer', 'activation', 'seed'):
      t.loc[a, c], t.loc[b, c] = t.loc[b, c].to_numpy(), t.loc[a, c].to_numpy()
  edit_csv(path, edit)


def renumber_member(path):
  edit_csv(path, lambda t: t.__setitem__('member_id', t['member_id'].replace('7', '9')))


def flip_weight_byte(path, row=4):
  zoo = Zoo.open(path)
  offset = zoo.weights('tiny').offset + row * zoo.layout('tiny').size * 4 + 5
  with open(os.path.join(path, 'weights', 'tiny.npy'), 'r+b') as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0x40]))


def blank_crc_and_flip(path):
  row = int(pd.read_csv(os.path.join(path, 'metadata.csv')).loc[4, 'weights_row'])
  flip_weight_byte(path, row)
  edit_csv(path, lambda t: t.__setitem__('weights_crc32', t['weights_crc32'].where(t.index != 4, '')))


def swap_rows_without_row_rule(path):
  edit_manifest(lambda m: m.pop('row_rule'))(path)
  edit_csv(path, lambda t: t.__setitem__('weights_row', t['weights_row'].replace({'0': '3', '3': '0'})))


def delete_row(path):
  edit_csv(path, lambda t: t.drop(index=4))


def edit_manifest(edit):
  def mutate(path):
    manifest = read_manifest(path)
    edit(manifest)
    write_manifest(path, manifest)
  return mutate


def set_in(keys, value):
  def edit(manifest):
    target = manifest
    for key in keys[:-1]:
      target = target[key]
    target[keys[-1]] = value
  return edit


def edit_layout(edit):
  def mutate(path):
    file = os.path.join(path, 'layouts', 'tiny.json')
    with open(file) as f:
      entries = json.load(f)
    with open(file, 'w') as f:
      json.dump(edit(entries), f, indent=1)
  return mutate


def swap_conv_layers(entries):
  """conv_0 and conv_1 renamed into each other's place, offsets kept consistent: a well-formed, wrong layout."""
  for e in entries:
    e['layer'] = {'conv_0': 'conv_1', 'conv_1': 'conv_0'}.get(e['layer'], e['layer'])
  return entries


def swap_first_entries(entries):
  a, b = entries[0], entries[1]
  entries[0], entries[1] = dict(b, start=0, end=b['end'] - b['start']), dict(a, start=b['end'] - b['start'],
                                                                          end=b['end'] - b['start'] + a['end'])
  return entries


def reshape_kernel(entries):
  entries[0]['shape'] = entries[0]['shape'][:2] + entries[0]['shape'][2:][::-1]
  return entries


def rewrite_evaluation(edit):
  def mutate(path):
    file = os.path.join(path, 'evaluation', 'digits.npz')
    with np.load(file) as f:
      arrays = {k: f[k].copy() for k in f.files}
    edit(arrays)
    np.savez(file, **arrays)
  return mutate


def add_file(relative, data=b'x'):
  def mutate(path):
    with open(os.path.join(path, relative), 'wb') as f:
      f.write(data)
  return mutate


def remove_file(relative):
  return lambda path: os.remove(os.path.join(path, relative))


def fifo_weights(path):
  file = os.path.join(path, 'weights', 'tiny.npy')
  os.remove(file)
  os.mkfifo(file)


METADATA_COLUMNS = ['member_id', 'arch', 'dataset', 'learning_rate', 'optimizer', 'activation', 'seed', 'snapshot',
                    'epoch', 'step', 'status', 'diverged_epoch', 'weights_file', 'weights_row', 'train_loss',
                    'train_accuracy', 'val_loss', 'val_accuracy', 'test_loss', 'test_accuracy', 'weights_crc32']
CASES = {f'metadata column {c}': (edit_column(c), 'metadata.csv') for c in METADATA_COLUMNS}
CASES.update({
    'hyper-parameters swapped between members': (swap_hyperparameters, 'metadata.csv'),
    'member renumbered': (renumber_member, 'metadata.csv'),
    'crc blanked, weights flipped': (blank_crc_and_flip, 'metadata.csv'),
    'row_rule removed, rows swapped': (swap_rows_without_row_rule, 'manifest.json'),
    'row deleted': (delete_row, 'metadata.csv'),
    'metadata removed': (remove_file('metadata.csv'), 'metadata.csv'),
    'column added by hand': (lambda p: edit_csv(p, lambda t: t.insert(0, 'mine', '1')), 'metadata.csv'),
    'row_rule removed': (edit_manifest(lambda m: m.pop('row_rule')), 'manifest.json'),
    'conv stride edited': (edit_manifest(set_in(['architectures', 'tiny', 'conv', 1, 'stride'], 2)), 'manifest.json'),
    'conv features edited': (edit_manifest(set_in(['architectures', 'tiny', 'conv', 0, 'features'], 3)),
                             'manifest.json'),
    'snapshot epochs edited': (edit_manifest(set_in(['snapshot_epochs'], [0, 3, 4])), 'manifest.json'),
    'members edited': (edit_manifest(set_in(['members'], 3)), 'manifest.json'),
    'seed edited': (edit_manifest(set_in(['seed'], 8)), 'manifest.json'),
    'input shape edited': (edit_manifest(set_in(['input_shape'], [4, 4, 3])), 'manifest.json'),
    'complete flipped': (edit_manifest(set_in(['complete'], False)), 'manifest.json'),
    'seal digest edited': (edit_manifest(set_in(['seal', 'manifest'], '0' * 64)), 'manifest.json'),
    'seal of metadata edited': (edit_manifest(set_in(['seal', 'files', 'metadata.csv'], 'f' * 64)), 'manifest.json'),
    'seal removed': (edit_manifest(lambda m: m.pop('seal')), 'manifest.json'),
    'pending injected': (edit_manifest(set_in(['seal', 'pending'], {'metadata.csv': 'e' * 64})), 'manifest.json'),
    'manifest not UTF-8': (add_file('manifest.json', b'\xff\xfe{'), 'manifest.json'),
    'layout conv layers swapped': (edit_layout(swap_conv_layers), 'tiny.json'),
    'layout entries swapped': (edit_layout(swap_first_entries), 'tiny.json'),
    'layout kernel reshaped': (edit_layout(reshape_kernel), 'tiny.json'),
    'layout entry dropped': (edit_layout(lambda e: e[:-1]), 'tiny.json'),
    'layout removed': (remove_file('layouts/tiny.json'), 'tiny.json'),
    'evaluation index flipped': (rewrite_evaluation(lambda a: a['test'].__setitem__(0, 50)), 'digits.npz'),
    'evaluation subsets swapped': (rewrite_evaluation(lambda a: a.update(train=a['val'], val=a['train'])),
                                   'digits.npz'),
    'evaluation removed': (remove_file('evaluation/digits.npz'), 'digits.npz'),
    'evaluation added': (add_file('evaluation/mnist.npz'), 'mnist.npz'),
    'weight byte flipped': (flip_weight_byte, 'tiny.npy'),
    'weights file a FIFO': (fifo_weights, 'tiny.npy'),
})


@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
  return build_zoo(str(tmp_path_factory.mktemp('pristine') / 'zoo'))


def mutated(pristine, tmp_path, name):
  import shutil
  path = str(tmp_path / 'zoo')
  shutil.copytree(pristine, path)
  CASES[name][0](path)
  return path


def tree(path):
  out = {}
  for root, _, names in os.walk(path):
    for name in names:
      full = os.path.join(root, name)
      out[os.path.relpath(full, path)] = 'fifo' if not os.path.isfile(full) else open(full, 'rb').read()
  return out


def verify(path):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = zoo_main(['verify', path])
  return code, out.getvalue()


def test_the_pristine_zoo_is_sealed_and_intact(pristine):
  code, out = verify(pristine)
  assert code == 0 and out.startswith('ok: ') and 'sealed' in out, out
  zoo = Zoo.open(pristine)
  assert zoo.sealed and len(zoo.vectors()) == len(MEMBERS) * SNAPSHOTS
  assert set(zoo.manifest['seal']['files']) == {'metadata.csv', 'layouts/tiny.json', 'evaluation/digits.npz'}


@pytest.mark.parametrize('name', list(CASES))
def test_every_mutation_is_refused_by_verify_open_export_meta_and_resume(pristine, tmp_path, name):
  from meta import data as meta_data
  from popnet import interop
  path = mutated(pristine, tmp_path, name)
  named = CASES[name][1]
  code, out = verify(path)
  assert code == 1 and out.startswith('damaged: ') and named in out and 'Traceback' not in out, out
  with pytest.raises(ZooError):
    Zoo.open(path).vectors()
  with pytest.raises(ZooError):
    interop.export_smallcnnzoo(path, str(tmp_path / 'export'))
  assert not os.path.exists(tmp_path / 'export')
  with pytest.raises(ZooError):
    meta_data.load(path, 'optimizer', status=None, fractions=(0.5, 0.25, 0.25))
  before = tree(path)
  with pytest.raises(ZooError):
    new_writer(path).close()
  assert tree(path) == before  # resume wrote nothing into the damaged zoo


def test_a_seal_removed_and_the_format_downgraded_reads_as_unsealed_never_as_intact(pristine, tmp_path):
  """The one forgery a seal cannot tell from an old zoo: verify says unsealed (exit 3), resume refuses."""
  path = mutated(pristine, tmp_path, 'seal removed')
  edit_manifest(set_in(['format_version'], 1))(path)
  edit_column('learning_rate')(path)
  code, out = verify(path)
  assert code == 3 and out.startswith('unsealed: ')
  with pytest.raises(ZooError, match='before zoos were sealed'):
    new_writer(path)


def test_legitimate_edits_go_through_add_column_and_keep_the_zoo_verifiable(pristine, tmp_path):
  import shutil
  path = str(tmp_path / 'zoo')
  shutil.copytree(pristine, path)
  zoo = Zoo.open(path).add_column('my_score', np.arange(len(MEMBERS) * SNAPSHOTS) / 10)
  assert zoo.sealed and list(zoo.metadata['my_score'])[:2] == [0.0, 0.1] and verify(path)[0] == 0
  with pytest.raises(ZooError, match="'learning_rate' is already a metadata column"):
    zoo.add_column('learning_rate', np.zeros(len(zoo)))
  flip_weight_byte(path)
  with pytest.raises(ZooError, match='does not match its weights_crc32'):
    Zoo.open(path).add_column('other', np.zeros(len(zoo)))  # sealing never blesses damaged weights
  new_writer(str(tmp_path / 'other')).close()
  edit_column('learning_rate')(path)
  assert zoo_main(['sign', path]) == 1  # sign refuses the damaged weights too


def blessed(pristine, tmp_path) -> list[str]:
  """The cases verify exits 0 on."""
  out = []
  for i, name in enumerate(CASES):
    import shutil
    path = str(tmp_path / f'case{i}')
    shutil.copytree(pristine, path)
    CASES[name][0](path)
    if verify(path)[0] == 0:
      out.append(name)
  return out


@pytest.mark.parametrize('skipped, exposed', [
    ('metadata.csv', 'metadata column learning_rate'),
    ('evaluation/digits.npz', 'evaluation index flipped'),
    ('manifest', 'seed edited'),
])
def test_the_suite_notices_a_skipped_digest(pristine, tmp_path, monkeypatch, skipped, exposed):
  """Mutation check of the suite: with one digest not compared, some case is blessed again."""
  if skipped == 'manifest':
    monkeypatch.setattr(seal, 'manifest_digest', lambda manifest: manifest['seal'].get('manifest'))
  else:
    check = seal._file_problems
    monkeypatch.setattr(seal, '_file_problems', lambda path, relative, *a: [] if relative == skipped else
                        check(path, relative, *a))
  assert exposed in blessed(pristine, tmp_path)
