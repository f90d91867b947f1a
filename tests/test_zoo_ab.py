"""benchmarks.zoo_ab compare: identical hash files pass, any changed, missing or extra file or run fails (no
training: synthetic hashes.json files)."""
import copy
import json

import pytest

from benchmarks import zoo_ab

RUN = {'config': 'smoke', 'covers': 'test', 'command': ['python', '-m', 'popnet.train', '--config', 'smoke'],
       'wall_seconds': 1.0, 'commit': 'd36709f' + '0' * 33, 'dirty': False,
       'files': {'members.csv': 'a' * 64, 'zoo/weights/smallcnnzoo.npy': 'b' * 64, 'zoo/manifest.json': 'c' * 64}}
HASHES = {'runs': {'smoke': copy.deepcopy(RUN), 'default': {**copy.deepcopy(RUN), 'config': 'default'}}}


def _compare(tmp_path, a, b):
  paths = []
  for name, hashes in (('a.json', a), ('b.json', b)):
    (tmp_path / name).write_text(json.dumps(hashes))
    paths.append(str(tmp_path / name))
  return zoo_ab.main(['compare', *paths])


def test_identical_hashes_compare_identical_with_another_wall_time(tmp_path, capsys):
  other = copy.deepcopy(HASHES)
  other['runs']['smoke']['wall_seconds'] = 99.0
  assert _compare(tmp_path, HASHES, other) == 0
  out = capsys.readouterr().out
  assert 'DIFFERENT' not in out and '8 identical, 0 different' in out


def _changed_weights(h):
  h['runs']['smoke']['files']['zoo/weights/smallcnnzoo.npy'] = 'd' * 64


def _missing_file(h):
  del h['runs']['default']['files']['members.csv']


def _extra_file(h):
  h['runs']['smoke']['files']['zoo/layouts/smallcnnzoo.json'] = 'e' * 64


def _missing_run(h):
  del h['runs']['default']


def _changed_command(h):
  h['runs']['smoke']['command'] = h['runs']['smoke']['command'] + ['--config.epochs=3']


@pytest.mark.parametrize('change, run, file', [
    (_changed_weights, 'smoke', 'zoo/weights/smallcnnzoo.npy'), (_missing_file, 'default', 'members.csv'),
    (_extra_file, 'smoke', 'zoo/layouts/smallcnnzoo.json'), (_missing_run, 'default', '(run)'),
    (_changed_command, 'smoke', '(command)')])
def test_any_difference_is_named_and_exits_1(tmp_path, capsys, change, run, file):
  other = copy.deepcopy(HASHES)
  change(other)
  assert _compare(tmp_path, HASHES, other) == 1
  different = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if 'DIFFERENT' in line]
  assert different == [[run, file]]


def test_a_file_that_is_not_hashes_json_is_one_line_and_exit_2(tmp_path, capsys):
  (tmp_path / 'bad.json').write_text('{"rows": []}')
  (tmp_path / 'good.json').write_text(json.dumps(HASHES))
  with pytest.raises(SystemExit) as e:
    zoo_ab.main(['compare', str(tmp_path / 'good.json'), str(tmp_path / 'bad.json')])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and 'bad.json' in err and '"runs"' in err


def test_manifest_digest_ignores_volatile_keys_only():
  manifest = {'members': 8, 'timings': {'total': 1.0}, 'processes': [{'started': 't'}],
              'summary': {'wall_seconds': 1.0, 'diverged': 0, 'build': {'first_started': 't', 'model_samples': 5}}}
  later = copy.deepcopy(manifest)
  later['timings']['total'], later['processes'][0]['started'] = 2.0, 'u'
  later['summary']['wall_seconds'], later['summary']['build']['first_started'] = 2.0, 'u'
  assert zoo_ab.without_volatile_keys(later) == zoo_ab.without_volatile_keys(manifest)
  later['summary']['build']['model_samples'] = 6
  assert zoo_ab.without_volatile_keys(later) != zoo_ab.without_volatile_keys(manifest)
