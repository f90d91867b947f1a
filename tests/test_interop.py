"""popnet.interop as a package and a command line, and the helpers the format tests share: a popnet zoo written
the way the trainer writes one (the external files are built in test_interop_smallcnnzoo.py and
test_interop_nws.py as the releases lay them out)."""
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from popnet import hparams, interop, models
from popnet.zoo import ZooWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def perturbed_variables(arch, input_shape, key, init_scheme, rng):
  """models.init variables with every leaf perturbed (so biases and batch-norm vectors are not constants)."""
  v = jax.tree_util.tree_map(np.asarray, models.init(arch, jax.random.PRNGKey(key), input_shape, init_scheme))
  out = {}
  for coll, layers in v.items():
    out[coll] = {}
    for layer, leaves in layers.items():
      out[coll][layer] = {}
      for name, x in leaves.items():
        noise = rng.normal(0, 0.1, x.shape)
        x = x * np.exp(noise) if name == 'bn_var' else x + noise
        out[coll][layer][name] = x.astype(np.float32)
  return out


def make_popnet_zoo(path, hp_space, input_shape, members=4, snapshots=3, seed=0):
  """A zoo with ZooWriter, metadata columns as popnet.train writes them; the last member diverges at its last
  snapshot. Members are written in reverse rank order so rows are not in member order.
  Returns (zoo path, {(member_id, snapshot): variables})."""
  table = hparams.sample_members(hp_space, members, seed)
  arch = hparams.arch_of(table.to_dict('records')[0])
  assert (table['arch'] == arch.name).all()
  epochs = [0, 1, 3][:snapshots]
  writer = ZooWriter(path, {arch.name: arch}, input_shape, {arch.name: members * snapshots},
                     manifest={'members': members, 'snapshot_epochs': epochs,
                               'config': {'epochs': epochs[-1], 'val_fraction': 0.1}})
  layout = writer.layouts[arch.name]
  rng = np.random.default_rng(seed)
  variables, rows, vectors, records = {}, [], [], []
  for rank, member in enumerate(table.to_dict('records')):
    for k, epoch in enumerate(epochs):
      v = perturbed_variables(arch, input_shape, 100 * member['member_id'] + k, models.INITS.index(member['init']),
                              rng)
      variables[(member['member_id'], k)] = v
      row = (members - 1 - rank) * snapshots + k
      diverged = rank == members - 1 and k == snapshots - 1
      rec = dict(member, snapshot=k, epoch=epoch, step=epoch * 7, status='diverged' if diverged else 'ok',
                 diverged_epoch=epoch - 1 if diverged else -1, weights_file=f'weights/{arch.name}.npy',
                 weights_row=row)
      for seg in ('train', 'val', 'test'):
        rec[f'{seg}_loss'] = float(rng.uniform(0.1, 2.0))
        rec[f'{seg}_accuracy'] = float(rng.uniform(0, 1))
      rows.append(row)
      vectors.append(np.asarray(layout.flatten(v)))
      records.append(rec)
  writer.write(arch.name, np.array(rows), np.stack(vectors), records)
  writer.write_manifest(complete=True)
  return path, variables


def tree_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_package_modules_are_short_and_the_zoo_does_not_import_them():
  folder = os.path.join(ROOT, 'popnet', 'interop')
  for name in os.listdir(folder):
    if name.endswith('.py'):
      with open(os.path.join(folder, name)) as f:
        assert len(f.read().splitlines()) <= 400, name
  proc = subprocess.run([sys.executable, '-c', 'import sys, popnet.zoo; print("popnet.interop" in sys.modules)'],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert proc.stdout.strip() == 'False', proc.stderr[-2000:]


def test_cli_export_and_import(tmp_path, capsys):
  from tests.helpers import space
  from tests.test_interop_nws import make_nws_tree
  zoo, _ = make_popnet_zoo(str(tmp_path / 'zoo'), space(), (28, 28, 1))
  nws_root, _ = make_nws_tree(tmp_path / 'nws', np.random.default_rng(3))
  out = str(tmp_path / 'export')
  proc = subprocess.run([sys.executable, '-m', 'popnet.interop', 'export', '--format', 'smallcnnzoo', '--zoo', zoo,
                         '--out', out, '--arch', 'smallcnnzoo', '--final-step-as', '86', '--split-seed', '3'],
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert ('wrote 12 rows (4 members) of smallcnnzoo, 4970 values each, keras (release) varnames, split file '
          'fashion_mnist_split.csv') in proc.stdout
  with open(os.path.join(out, 'popnet_arch.json')) as f:
    assert '"final_step_as": 86' in f.read()
  assert interop.main(['import', '--format', 'smallcnnzoo', '--src', out, '--out', str(tmp_path / 'a')]) == 0
  assert interop.main(['import', '--format', 'nws', '--src', nws_root, '--out', str(tmp_path / 'b')]) == 0
  text = capsys.readouterr().out
  assert '12 snapshots of 4 members' in text and '60 snapshots of 3 members' in text
  assert interop.main(['export', '--format', 'smallcnnzoo', '--zoo', zoo, '--out', out]) == 2
  assert 'already holds' in capsys.readouterr().err
  assert interop.main(['export', '--format', 'smallcnnzoo', '--zoo', zoo, '--out', str(tmp_path / 'c'),
                       '--final-step-as', '1']) == 2
  assert 'final_step_as: 1 must exceed every earlier snapshot epoch (the largest is 1)' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'c')


def test_release_directory_with_images_too_small_for_its_network_is_one_line(tmp_path, capsys):
  from tests.helpers import space
  zoo, _ = make_popnet_zoo(str(tmp_path / 'zoo'), space(dataset='digits'), (8, 8, 1))
  out = str(tmp_path / 'export')
  assert interop.main(['export', '--format', 'smallcnnzoo', '--zoo', zoo, '--out', out]) == 0
  os.remove(os.path.join(out, 'popnet_arch.json'))  # as the release ships it: the Keras (VALID) CNN is assumed
  capsys.readouterr()
  assert interop.main(['import', '--format', 'smallcnnzoo', '--src', out, '--out', str(tmp_path / 'a')]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "architecture 'smallcnnzoo_valid' cannot run on input (8, 8, 1)" in err[0], err
