"""NFN's weight space and models (meta/equivariant.py, meta/nfn.py) respect the networks' symmetry.

The flat permutation (WeightSpace.permutation_index) is checked to be a true symmetry: the permuted network computes
the same logits (an NWS CNN with batch norm and a flattened 2 x 2 map, a user's Flax MLP). Then, on every kind of
layout popnet writes (NWS CNN, Small CNN Zoo CNN, a user MLP from Layout.of_tree, a SIREN), NP and HNP models give
the same invariant output on the permuted network, and their equivariant layers' output is the original's,
permuted the same way (rows of W_i and b_i by P_i, columns of W_i by P_{i-1}).
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from meta import data, equivariant, methods, nfn, synthetic, train, windows
from popnet import arch as arch_lib
from popnet import models
from popnet.layout import Layout
from popnet.zoo import Zoo

NWS_SHAPE = (12, 12, 1)  # three pools: a 2 x 2 x 8 map flattened into dense_0


class UserMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    for i, units in enumerate((6, 5, 4, 3, 4, 5, 6, 5, 4, 3, 7)):  # Dense_10 sorts before Dense_2 in of_tree
      x = nn.Dense(units, name=f'Dense_{i}')(x)
      x = nn.tanh(x) if i < 10 else x
    return x


def _nws():
  return arch_lib.nws_arch(filter_size=3, depth_conv=3, width_conv=2, depth_fc=2, width_fc=8, num_outputs=3)


def _user_mlp_variables():
  return UserMLP().init(jax.random.key(0), jnp.zeros((1, 3)))


LAYOUTS = {
    'nws_cnn': lambda: _nws().layout(NWS_SHAPE),
    'smallcnnzoo_cnn': lambda: arch_lib.smallcnnzoo_arch().layout((8, 8, 1)),
    'user_mlp': lambda: Layout.of_tree(_user_mlp_variables()),
    'siren': lambda: arch_lib.SirenArch('siren_nfn', 'nfn').layout(),
}


def _rows(layout, n=3, seed=0):
  return np.random.default_rng(seed).normal(size=(n, layout.size)).astype(np.float32)


def test_permutation_index_keeps_the_function():
  arch = _nws()
  variables = models.init(arch, jax.random.key(0), NWS_SHAPE, 2)
  variables = jax.tree_util.tree_map_with_path(  # batch norm away from its constants: each unit's own values
      lambda p, x: x + 0.1 * jnp.abs(jax.random.normal(jax.random.key(len(str(p))), x.shape)), variables)
  layout = arch.layout(NWS_SHAPE)
  space = equivariant.WeightSpace.of_layout(layout)
  assert [l.kind for l in space.layers] == ['conv'] * 3 + ['flatten', 'dense', 'dense']
  assert space.layers[3].spatial == 4 and space.hidden_units == (2, 4, 8, 8, 4)
  row = np.asarray(layout.flatten(variables))
  index = space.permutation_index(space.random_permutations(np.random.default_rng(0)))
  assert not np.array_equal(index, np.arange(layout.size))
  images = jax.random.uniform(jax.random.key(1), (4,) + NWS_SHAPE)
  logits = models.apply(arch, variables, images, train=False, activation=0)[0]
  permuted = models.apply(arch, layout.unflatten(row[index]), images, train=False, activation=0)[0]
  np.testing.assert_allclose(permuted, logits, atol=1e-5)

  mlp = _user_mlp_variables()
  layout = Layout.of_tree(mlp)
  space = equivariant.WeightSpace.of_layout(layout)
  assert [l.layer for l in space.layers] == [f'Dense_{i}' for i in range(11)]  # natural order, not sorted keys
  row = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(mlp)])
  index = space.permutation_index(space.random_permutations(np.random.default_rng(1)))
  x = jax.random.normal(jax.random.key(2), (5, 3))
  permuted = {'params': layout.unflatten(row[index])['params']}
  np.testing.assert_allclose(UserMLP().apply(permuted, x), UserMLP().apply(mlp, x), atol=1e-5)


def test_split_reads_the_kernels_as_nfn_does():
  layout = LAYOUTS['nws_cnn']()
  space = equivariant.WeightSpace.of_layout(layout)
  rows = _rows(layout, 2)
  weights, biases = space.split(rows)
  conv1 = layout.entry('conv_1/kernel')
  k = rows[1, conv1.start:conv1.end].reshape(conv1.shape)  # HWIO
  np.testing.assert_array_equal(weights[1][1, 3, 1], k[:, :, 1, 3].reshape(-1))  # [out, in, kh * kw]
  dense = layout.entry('dense_0/kernel')  # rows (h, w, channel), channel fastest
  k = rows[0, dense.start:dense.end].reshape(dense.shape)
  np.testing.assert_array_equal(weights[3][0, 5, 7], k[[7, 15, 23, 31], 5])
  bn = [layout.entry(f'conv_0/{n}') for n in ('bias', 'bn_beta', 'bn_gamma', 'bn_mean', 'bn_var')]
  np.testing.assert_array_equal(biases[0][0], np.stack([rows[0, e.start:e.end] for e in bn], -1))
  assert biases[-1].shape == (2, 3, 1)
  plain = equivariant.WeightSpace.of_layout(layout, batch_norm=False)
  assert [l.bias_channels for l in plain.layers] == [1] * 6


def _permute_space(weights, biases, perms):
  """The weight-space features with hidden boundary i's units in order perms[i] (no layout involved)."""
  L, out_w, out_b = len(weights), [], []
  for i, (w, b) in enumerate(zip(weights, biases)):
    if i < L - 1:
      w, b = w[:, perms[i]], b[:, perms[i]]
    if i > 0:
      w = w[:, :, perms[i - 1]]
    out_w.append(w)
    out_b.append(b)
  return out_w, out_b


@pytest.mark.parametrize('mode', nfn.MODES)
@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_invariant_output_and_equivariant_layers(name, mode):
  layout = LAYOUTS[name]()
  space = equivariant.WeightSpace.of_layout(layout)
  rows = _rows(layout)
  perms = space.random_permutations(np.random.default_rng(3))
  permuted = rows[:, space.permutation_index(perms)]
  pw, pb = _permute_space(*space.split(rows), perms)  # the flat permutation is the weight space's permutation
  sw, sb = space.split(permuted)
  for a, b in zip(pw + pb, list(sw) + list(sb)):
    np.testing.assert_array_equal(a, b)

  model = nfn.InvariantNFN(4, space, mode, channels=(6, 5), head=32, pool=mode)
  variables = model.init(jax.random.key(0), jnp.asarray(rows))
  apply = jax.jit(model.apply)
  out, out_permuted = np.asarray(apply(variables, rows)), np.asarray(apply(variables, permuted))
  assert out.shape == (3, 4) and np.isfinite(out).all()
  assert np.abs(out - out[::-1]).max() > 1e-4  # different networks, different outputs
  np.testing.assert_allclose(out_permuted, out, atol=1e-5, rtol=0)

  stack = nfn.EquivariantStack(space, mode, (6, 5))
  stack_vars = {'params': variables['params']['features']}
  weights, biases = jax.jit(stack.apply)(stack_vars, rows)
  expected_w, expected_b = _permute_space(weights, biases, perms)
  got_w, got_b = jax.jit(stack.apply)(stack_vars, permuted)
  for got, want in zip(list(got_w) + list(got_b), expected_w + expected_b):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  assert [w.shape[1:] for w in weights] == [(l.n_out, l.n_in, l.spatial * 5) for l in space.layers]


def _io_permutation(layout, rng):
  """A flat index that reorders a SIREN's input coordinates and its outputs (not a symmetry of its function)."""
  index = np.arange(layout.size)
  kernels = [e for e in layout.entries if e.name == 'kernel']
  first, last = kernels[0], kernels[-1]
  bias = layout.entry(f'{last.layer}/bias')
  index[first.start:first.end] = index[first.start:first.end].reshape(first.shape)[rng.permutation(first.shape[0])].ravel()
  out = rng.permutation(last.shape[1])
  index[last.start:last.end] = index[last.start:last.end].reshape(last.shape)[:, out].ravel()
  index[bias.start:bias.end] = index[bias.start:bias.end][out]
  return index


def test_np_ignores_input_and_output_order_hnp_and_embeddings_read_it():
  layout = arch_lib.SirenArch('s', 'nfn', in_dim=3, out_dim=3).layout()
  space = equivariant.WeightSpace.of_layout(layout)
  rows = _rows(layout)
  permuted = rows[:, _io_permutation(layout, np.random.default_rng(0))]
  hidden = rows[:, space.permutation_index(space.random_permutations(np.random.default_rng(1)))]
  for mode, io_embed, pool, invariant in (('np', False, 'np', True), ('hnp', False, 'hnp', False),
                                          ('np', True, 'hnp', False), ('np', False, 'hnp', False)):
    model = nfn.InvariantNFN(2, space, mode, channels=(6,), head=32, io_embed=io_embed, pool=pool)  # nfn_np: 3rd
    variables = model.init(jax.random.key(1), jnp.asarray(rows))
    out = model.apply(variables, rows)
    gap = np.abs(out - model.apply(variables, permuted)).max()
    assert (gap <= 1e-5) == invariant, (mode, io_embed, pool, gap)
    np.testing.assert_allclose(model.apply(variables, hidden), out, atol=1e-5, rtol=0)


def test_unreadable_layouts_are_named():
  bad = Layout.from_specs([('params', 'embed', 'table', (10, 4)), ('params', 'dense', 'kernel', (4, 2))])
  with pytest.raises(equivariant.WeightSpaceError, match='embed/table'):
    equivariant.WeightSpace.of_layout(bad)
  broken = Layout.from_specs([('params', 'a', 'kernel', (4, 3)), ('params', 'b', 'kernel', (5, 2))])
  with pytest.raises(equivariant.WeightSpaceError, match='do not chain'):
    equivariant.WeightSpace.of_layout(broken)


# --- as meta-models (meta.methods) --------------------------------------------------------------------------------
FAST = methods.Options(epochs=15, batch_size=32, learning_rate=3e-3, min_steps=0, hidden=(64,), nfn_channels=(8, 8),
                       nfn_head=64)


@pytest.fixture(scope='module')
def planted(tmp_path_factory):
  zoo = Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('nfn_planted')), members=96, snapshots=2, seed=3))
  return data.load(zoo, 'planted', snapshots='all', seed=0)


@pytest.mark.parametrize('model', ['nfn_np', 'nfn_hnp'])
def test_planted_signal_is_recovered(planted, model):
  r = methods.run(model, planted, FAST)
  m = r.metrics(planted, 'test')
  assert m['chance'] == pytest.approx(0.5)
  assert 0.65 <= m['accuracy'], (model, m)  # the ceiling is 0.8 (meta/synthetic.py: planted)
  assert r.info['layers'] == ['conv_0', 'conv_1', 'conv_2', 'output'] and r.info['params'] > 0


def test_weight_augment_trains_on_permuted_networks(planted):
  space = equivariant.WeightSpace.of_layout(next(iter(planted.store.layouts.values())))
  index = space.random_indices(np.random.default_rng(0), 4)
  assert index.shape == (4, space.size) and len({tuple(i) for i in index}) == 4
  assert (np.sort(index, axis=1) == np.arange(space.size)).all()  # each a permutation of the row
  m = methods.run('mlp', planted, dataclasses.replace(FAST, weight_augment=True)).metrics(planted)
  assert m['accuracy'] >= 0.65, m


def test_dmc_weight_augment_cuts_windows_from_permuted_networks(planted):
  store, rows = planted.store, planted.splits['train'][:6]
  space = equivariant.WeightSpace.of_layout(next(iter(store.layouts.values())))
  starts, ends = np.array([0, 3, 50, 7, 0, 11]), store.size[rows].copy()
  ends[1] = 20  # zeros past a part's end
  got = windows.permuted_windows(store, {store.arch[0]: space}, np.random.default_rng(4), rows, starts, 32, ends)
  index = space.random_indices(np.random.default_rng(4), len(rows))
  want = np.take_along_axis(store.vectors(rows), index, 1)
  for j, (s, e) in enumerate(zip(starts, ends)):
    np.testing.assert_array_equal(got[j, :min(32, e - s)], want[j, s:min(s + 32, e)])
    assert not got[j, min(32, e - s):].any()
  assert not np.array_equal(got, store.windows(rows, starts, 32, ends))
  r = methods.run('dmc', planted, dataclasses.replace(FAST, weight_augment=True, dmc_size='tiny', epochs=2,
                                                      window=64, windows=4, val_windows=2))
  assert r.info['weight_augment'] and np.isfinite(r.output['test']).all()


def test_several_architectures_are_refused_in_one_line(tmp_path, capsys):
  zoo = synthetic.make_zoo(str(tmp_path / 'mixed'), members=48, snapshots=2, seed=2, mixed=True)
  d = data.load(Zoo.open(zoo), 'planted')
  for model in ('nfn_np', 'nfn_hnp'):
    with pytest.raises(data.MetaDataError, match=f'{model} needs one architecture'):
      methods.run(model, d, FAST)
  assert train.main(['--zoo', zoo, '--target', 'planted', '--model', 'nfn_hnp', '--out', str(tmp_path / 'o')]) == 2
  errors = [l for l in capsys.readouterr().err.splitlines() if l.startswith('error')]
  assert len(errors) == 1 and 'nfn_hnp needs one architecture' in errors[0] and '--arch' in errors[0]
  with pytest.raises(SystemExit) as e:
    train.main(['--zoo', zoo, '--target', 'planted', '--model', 'nfn_hnp', '--nfn_channels', '8,x'])
  assert e.value.code == 2 and '--nfn_channels' in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    train.main(['--zoo', zoo, '--target', 'activation', '--model', 'statnn', '--weight_augment'])
  assert e.value.code == 2 and '--weight_augment' in capsys.readouterr().err


def _nfn_np_shapes(f, c_in, c_out):
  """{map: (fan-in, outputs)} of NFN's NPLinear.__init__ (nfn/layers/layers.py), its formulas transcribed."""
  L, n_rc, out = len(f), len(f) + sum(f), {}
  for i in range(L):
    row_in = f[i] * c_in + ((f[i - 1] + 1) * c_in if i > 0 else 0)
    col_in = (f[i] + 1) * c_in + (f[i + 1] * c_in if i < L - 1 else 0)
    out.update({f'layer_{i}': (f[i] * c_in, f[i] * c_out), f'layer_{i}_rc': (n_rc * c_in, f[i] * c_out),
                f'layer_{i}_r': (row_in, f[i] * c_out), f'layer_{i}_c': (col_in, f[i] * c_out),
                f'bias_{i}': (col_in, c_out), f'bias_{i}_rc': (n_rc * c_in, c_out)})
  return out


def _nfn_hnp_shapes(f, n_in, n_out, c_in, c_out):
  """{map: (fan-in, outputs)} of NFN's HNPLinear.__init__, its formulas transcribed."""
  L = len(f)
  n_rc, out = n_in * f[0] + n_out * f[-1] + L + n_out + sum(f), {}
  for i in range(L):
    if i == 0:
      rpt_in = f[0] * n_in + f[1] + 1 + (n_out * f[1] if L == 2 else 0)
      out.update({'w0_rpt': (rpt_in * c_in, n_in * f[0] * c_out), 'w0_rbdcst': (n_rc * c_in, n_in * f[0] * c_out),
                  'bias_0': (rpt_in * c_in, c_out), 'bias_0_rc': (n_rc * c_in, c_out)})
    elif i == L - 1:
      cpt_in = f[i] * n_out + f[i - 1] + (n_in * f[i - 1] if i == 1 else 0)
      out.update({'wfin_cpt': (cpt_in * c_in, n_out * f[i] * c_out),
                  'wfin_cbdcst': (n_rc * c_in, n_out * f[i] * c_out), 'bias_fin_rc': (n_rc * c_in, n_out * c_out)})
    else:
      row_in = (f[i - 1] + f[i] + 1) * c_in + (n_in * f[0] * c_in if i == 1 else 0)
      col_in = (f[i + 1] + f[i] + 1) * c_in + (n_out * f[-1] * c_in if i == L - 2 else 0)
      out.update({f'layer_{i}': (f[i] * c_in, f[i] * c_out), f'layer_{i}_rc': (n_rc * c_in, f[i] * c_out),
                  f'layer_{i}_r': (row_in, f[i] * c_out), f'layer_{i}_c': (col_in, f[i] * c_out),
                  f'bias_{i}': (col_in, c_out), f'bias_{i}_rc': (n_rc * c_in, c_out)})
  return out


@pytest.mark.parametrize('mode', nfn.MODES)
@pytest.mark.parametrize('layout', [
    _nws().layout(NWS_SHAPE), arch_lib.SirenArch('s', 'nfn', in_dim=3, out_dim=2).layout(),
    Layout.from_specs([('params', 'a', 'kernel', (3, 5)), ('params', 'a', 'bias', (5,)),
                       ('params', 'b', 'kernel', (5, 2)), ('params', 'b', 'bias', (2,))])], ids=['nws', 'siren', 'L2'])
def test_every_map_has_nfn_fan_in_and_init(layout, mode):
  """The maps of two stacked layers (1 -> 3 -> 2 channels; one bias channel, NFN's convention) have NFN's names,
  fan-ins and outputs, and NFN's set_init_ bounds (one per group of maps summed into one output)."""
  space = equivariant.WeightSpace.of_layout(layout, batch_norm=False)
  f, (n_in, n_out) = [l.spatial for l in space.layers], space.io
  stack = nfn.EquivariantStack(space, mode, (3, 2))
  params = stack.init(jax.random.key(0), jnp.zeros((1, layout.size)))['params']
  for j, (c_in, c_out) in enumerate(((1, 3), (3, 2))):
    want = _nfn_np_shapes(f, c_in, c_out) if mode == 'np' else _nfn_hnp_shapes(f, n_in, n_out, c_in, c_out)
    got = {name: p['kernel'].shape for name, p in params[f'{mode}_{j}'].items()}
    assert got == want
  first = params[f'{mode}_0']
  group = [k for k in first if k.startswith('layer_1')] or ['wfin_cpt', 'wfin_cbdcst']
  bound = 1 / np.sqrt(sum(first[k]['kernel'].shape[0] for k in group))
  values = np.abs(np.concatenate([np.ravel(first[k][w]) for k in group for w in ('kernel', 'bias')]))
  assert 0.8 * bound < values.max() <= bound
