"""Untrusted zoos and exports never write outside --out: every name read from a file is checked before it builds a
path, special files and symlinks out of the tree are refused, an import never replaces another zoo unless told
to, and exported files carry no path of the producing machine. Each refusal is one line, exit 2."""
import json
import os
import shutil

import pandas as pd
import pytest

from popnet import interop
from popnet.zoo import Zoo
from tests.test_zoo_mutations import build_zoo
from tests.zoo_forgery import forge, read_manifest


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  root = tmp_path_factory.mktemp('untrusted')
  zoo = build_zoo(str(root / 'zoo'))
  assert interop.main(['export', '--format', 'smallcnnzoo', '--zoo', zoo, '--out', str(root / 'export')]) == 0
  return zoo, str(root / 'export')


def files_under(root):
  return sorted(os.path.relpath(os.path.join(r, f), root) for r, _, names in os.walk(root) for f in names)


def refused(capsys, argv, root):
  """Runs the interop command; asserts one line, exit 2, and that nothing appeared under root outside --out."""
  out = argv[argv.index('--out') + 1]
  before = [f for f in files_under(root) if not os.path.join(root, f).startswith(out)]
  assert interop.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: ') and 'Traceback' not in err[0], err
  after = [f for f in files_under(root) if not os.path.join(root, f).startswith(out)]
  assert after == before
  return err[0]


def copy_zoo(source, tmp_path):
  path = str(tmp_path / 'deep' / 'er' / 'zoo')
  shutil.copytree(source[0], path)
  return path


def edit_forged(path, column, value):
  table = pd.read_csv(os.path.join(path, 'metadata.csv'))
  table[column] = value
  table.to_csv(os.path.join(path, 'metadata.csv'), index=False)
  forge(path)  # a hostile zoo, sealed over its edit


def test_export_records_no_path_of_this_machine(source):
  zoo, export = source
  with open(os.path.join(export, 'popnet_arch.json')) as f:
    text = f.read()
  assert os.path.dirname(zoo) not in text and '"/' not in text
  assert json.loads(text)['source_zoo_digest'] == 'sha256:' + read_manifest(zoo)['seal']['manifest']


def test_an_architecture_name_that_climbs_out_is_refused_on_import(source, tmp_path, capsys):
  export = str(tmp_path / 'deep' / 'er' / 'export')
  shutil.copytree(source[1], export)
  sidecar = os.path.join(export, 'popnet_arch.json')
  with open(sidecar) as f:
    d = json.load(f)
  d['arch']['name'] = '../../../OUTSIDE'
  with open(sidecar, 'w') as f:
    json.dump(d, f)
  line = refused(capsys, ['import', '--format', 'smallcnnzoo', '--src', export, '--out',
                          str(tmp_path / 'deep' / 'er' / 'imported')], str(tmp_path))
  assert "architecture name '../../../OUTSIDE' is not a safe name" in line
  assert not os.path.exists(tmp_path / 'deep' / 'er' / 'imported')


@pytest.mark.parametrize('column, value, message', [
    ('dataset', '../../X', "dataset '../../X' is not a safe name"),
    ('weights_file', '/etc/foreign.npy', "weights_file '/etc/foreign.npy' is not a weights file of a zoo"),
    ('weights_file', 'weights/../../../foreign.npy', 'is not a weights file of a zoo'),
])
def test_names_in_a_hostile_zoo_never_build_paths_outside(source, tmp_path, capsys, column, value, message):
  path = copy_zoo(source, tmp_path)
  edit_forged(path, column, value)
  line = refused(capsys, ['export', '--format', 'smallcnnzoo', '--zoo', path, '--out', str(tmp_path / 'out')],
                 str(tmp_path))
  assert message in line


def test_a_weights_file_linked_out_of_the_zoo_is_refused(source, tmp_path, capsys):
  path = copy_zoo(source, tmp_path)
  weights = os.path.join(path, 'weights', 'tiny.npy')
  shutil.move(weights, tmp_path / 'foreign.npy')
  os.symlink(tmp_path / 'foreign.npy', weights)
  line = refused(capsys, ['export', '--format', 'smallcnnzoo', '--zoo', path, '--out', str(tmp_path / 'out')],
                 str(tmp_path))
  assert 'leads out of' in line and 'through a symlink' in line


def test_a_fifo_in_place_of_a_weights_file_is_refused_not_waited_on(source, tmp_path, capsys):
  path = copy_zoo(source, tmp_path)
  weights = os.path.join(path, 'weights', 'tiny.npy')
  os.remove(weights)
  os.mkfifo(weights)
  line = refused(capsys, ['export', '--format', 'smallcnnzoo', '--zoo', path, '--out', str(tmp_path / 'out')],
                 str(tmp_path))
  assert 'is not a regular file' in line


def test_import_never_replaces_another_zoo_unless_overwrite(source, tmp_path, capsys):
  trained = copy_zoo(source, tmp_path)
  manifest = open(os.path.join(trained, 'manifest.json'), 'rb').read()
  line = refused(capsys, ['import', '--format', 'smallcnnzoo', '--src', source[1], '--out', trained], str(tmp_path))
  assert 'holds another zoo' in line and '--overwrite' in line
  assert open(os.path.join(trained, 'manifest.json'), 'rb').read() == manifest
  assert interop.main(['import', '--format', 'smallcnnzoo', '--src', source[1], '--out', trained,
                       '--overwrite']) == 0
  capsys.readouterr()
  imported = Zoo.open(trained)
  assert imported.manifest['imported_from'] == {'format': 'smallcnnzoo', 'path': 'export'} and imported.sealed
  assert not os.path.exists(os.path.join(trained, '.lock'))
  # the same import again resumes it (nothing to replace), without --overwrite
  assert interop.main(['import', '--format', 'smallcnnzoo', '--src', source[1], '--out', trained]) == 0


def test_export_never_writes_into_a_zoo(source, tmp_path, capsys):
  path = copy_zoo(source, tmp_path)
  line = refused(capsys, ['export', '--format', 'smallcnnzoo', '--zoo', source[0], '--out', path, '--overwrite'],
                 str(tmp_path))
  assert 'holds a popnet zoo' in line
