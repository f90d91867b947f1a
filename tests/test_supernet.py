"""Padded buckets: a member trained among other architectures and datasets in one padded program equals the
same member trained alone in its own architecture on its own dataset (variables, batch-norm statistics and
optimizer state), for every kind of padding, one member at a time (lax.map) and vmapped.

Without batch norm, under Adam and RMSProp, every tensor is within 1e-5 relative of the member alone
(test_mixed_bucket_equals_alone_to_1e5_relative).
Padding adds zero terms to convolution and dense sums, which XLA may associate differently, so equality is to
floating-point rounding, not bitwise. Batch norm makes that rounding visible: the bias of a conv layer followed
by batch norm has an exactly zero gradient, so its computed gradient is rounding noise that Adam normalizes to
full-size steps, and the moving means absorb it. The same member alone differs from itself by as much under
two exact convolution formulations (im2col vs XLA's), so trained states are held to that reference: each
tensor's padded-vs-own difference at most twice the own-vs-own one, plus 1e-5 of its scale (a masking bug is
orders of magnitude larger); the conv biases themselves (and their optimizer states) are noise-sized and only
checked to stay so. Initialization is bitwise equal, and zoo rows are exactly the extracted own tensors."""

import chex
import jax
import numpy as np
import pytest

from popnet import hparams, models, own_tensors, pipeline, population, supernet

SHAPE = (8, 8, 1)
# (filter, depth_conv, width_conv, depth_fc, width_fc): filter 1/3/5, conv width 2/3/4, conv depth 3/4/5,
# FC depth 1/2/3, FC width 8/12/16 all differ inside the bucket
ARCHS = [(3, 3, 2, 2, 8), (5, 5, 4, 1, 16), (1, 4, 3, 3, 12), (3, 5, 2, 3, 16)]
DATASETS = ('fashion_mnist', 'digits', 'fashion_mnist', 'digits')


def host_dataset(seed, n_train, n_test):
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  labels = rng.integers(0, 10, n).astype(np.int32)
  base = rng.integers(0, 255, (10,) + SHAPE)
  images = np.clip(base[labels] * 0.7 + rng.integers(0, 80, (n,) + SHAPE), 0, 255).astype(np.uint8)
  segments = [np.arange(0, 32), np.arange(n_train, n_train + 16), np.arange(n_train, n)]
  return pipeline.HostDataset(images, labels, np.arange(n_train), segments, 10)


@pytest.fixture(scope='module')
def mesh():
  return population.make_mesh(jax.devices()[:1])


@pytest.fixture(scope='module')
def host():  # two datasets of different sizes: 6 and 10 steps per epoch at batch size 16
  return {'fashion_mnist': host_dataset(0, 96, 40), 'digits': host_dataset(1, 160, 24)}


def members(batch_norm=True, optimizers=('adam', 'rmsprop', 'sgd', 'adam')):
  space = dict(dataset='fashion_mnist', architecture='nws', batch_size=16, optimizer='choice(adam, rmsprop, sgd)',
               learning_rate='loguniform(3e-4, 3e-3)', eps=1e-3, activation='choice(relu, elu, sigmoid, tanh)',
               init='choice(glorot_uniform, he_normal, normal)', dropout=0.2, augment='choice(False, True)',
               weight_decay=1e-3, batch_norm=batch_norm)
  table = hparams.sample_members(space, len(ARCHS), seed=4)
  for i, (f, dc, wc, dfc, wfc) in enumerate(ARCHS):
    table.loc[i, ['filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc']] = [f, dc, wc, dfc, wfc]
  table['dataset'] = DATASETS
  table['optimizer'] = list(optimizers)
  table['activation'] = ['relu', 'sigmoid', 'elu', 'tanh']
  table['arch'] = [hparams.arch_of(r).name for r in table.to_dict('records')]
  return table


def train(program, data):
  """Epoch 0 whole (each member its own epoch length), then 3 steps of epoch 1."""
  state = program.init()
  for epoch, stop in ((0, program.spec.steps_per_epoch), (1, 3)):
    state, _ = program.train(state, program.permutations(data, epoch), data, epoch, 0, stop)
  return jax.device_get(state)


def own_state(net, arch, state, i):
  """Member i's state with every params-shaped tree cut to its own architecture."""
  one = jax.tree.map(lambda x: np.asarray(x)[i:i + 1], state)
  params_shaped = lambda t: isinstance(t, dict) and 'output' in t
  opt_state = jax.tree.map(lambda t: own_tensors.extract(net, arch, t) if params_shaped(t) else t, one.opt_state,
                           is_leaf=params_shaped)
  return one._replace(variables=own_tensors.extract(net, arch, one.variables), opt_state=opt_state)


def alone_run(member, arch, data, mesh, conv_impl):
  program = population.build_program(member, mesh, network=arch, input_shape=SHAPE, batch_size=16,
                                   steps_per_epoch=data.n_train // 16, conv_impl=conv_impl, member_chunk=1,
                                   eval_batch_size=16, constant_choices=False)
  return program, train(program, data)


def assert_within_rounding(got, want, reference):
  """Every tensor of `got` within twice `reference`'s rounding difference from `want` (plus 1e-6 of scale)."""
  leaves = zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), jax.tree.leaves(reference))
  for (path, g), w, r in leaves:
    g, w, r = (np.asarray(x, np.float64) for x in (g, w, r))
    assert g.shape == w.shape, jax.tree_util.keystr(path)
    scale = max(np.abs(w).max(initial=0.0), 1.0)
    bound = 2 * np.abs(r - w).max(initial=0.0) + 1e-5 * scale + 1e-6
    if "['bias']" in jax.tree_util.keystr(path) and "['conv_" in jax.tree_util.keystr(path):  # zero gradient
      bound += 2 * max(np.abs(w).max(initial=0.0), np.abs(r).max(initial=0.0))
    assert np.abs(g - w).max(initial=0.0) <= bound, (jax.tree_util.keystr(path), np.abs(g - w).max(), bound)


@pytest.fixture(scope='module')
def alone(mesh, host):
  """Each member trained alone in its own architecture on its own dataset: (im2col state, xla state)."""
  table, out = members(), []
  for i, row in enumerate(table.to_dict('records')):
    own = pipeline.device_pool({DATASETS[i]: host[DATASETS[i]]}, 16, mesh)
    out.append(tuple(alone_run(table.iloc[[i]], hparams.arch_of(row), own, mesh, impl)[1] for impl in ('im2col', 'xla')))
  return out


def train_bucket(table, host, mesh, member_chunk):
  """The members of `table` trained together in one padded program on the pool of both datasets."""
  archs = [hparams.arch_of(r) for r in table.to_dict('records')]
  net = supernet.build(archs, SHAPE)
  pool = pipeline.device_pool(host, 16, mesh)
  bucket = population.build_program(table, mesh, network=net, input_shape=SHAPE, batch_size=16,
                                   steps_per_epoch=pool.n_train // 16, conv_impl='im2col', member_chunk=member_chunk,
                                   eval_batch_size=16, constant_choices=False)
  return archs, net, pool, bucket, train(bucket, pool)


@pytest.mark.parametrize('member_chunk,optimizers', [(1, ('sgd', 'rmsprop', 'adam', 'sgd')),
                                                     (2, ('adam', 'rmsprop', 'adam', 'rmsprop'))])
def test_mixed_bucket_equals_alone_to_1e5_relative(mesh, host, member_chunk, optimizers):
  """Without batch norm every tensor (variables and optimizer state) of a member trained in the mixed bucket is
  within 1e-5 relative (L2 norm of the difference over the tensor's) of the member alone. One member at a time
  (member_chunk 1: conv layers at the member's own shapes) under all three optimizers (measured <= 7e-7);
  vmapped (padded convolutions) under Adam and RMSProp (measured <= 1e-6): there momentum SGD at these learning
  rates differs by up to 9e-5, as much as the member alone under im2col vs XLA convolutions. With batch norm
  (zero-gradient conv biases, above) test_member_in_mixed_bucket_equals_member_alone holds the bucket to that
  own-vs-own difference instead."""
  table = members(False, optimizers)
  archs, net, pool, bucket, mixed = train_bucket(table, host, mesh, member_chunk)
  for i, row in enumerate(table.to_dict('records')):
    own = pipeline.device_pool({DATASETS[i]: host[DATASETS[i]]}, 16, mesh)
    alone_state = alone_run(table.iloc[[i]], archs[i], own, mesh, 'im2col')[1]
    got, want = own_state(net, archs[i], mixed, i), alone_state
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
      g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
      assert g.shape == w.shape, jax.tree_util.keystr(path)
      assert np.linalg.norm(g - w) <= 1e-5 * np.linalg.norm(w) + 1e-9, (
          i, jax.tree_util.keystr(path), np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30))


@pytest.mark.parametrize('member_chunk', [1, 2])
def test_member_in_mixed_bucket_equals_member_alone(mesh, host, alone, member_chunk):
  archs, net, pool, bucket, mixed = train_bucket(members(), host, mesh, member_chunk)
  masks = jax.vmap(lambda hp: supernet.masks(net, hp))(bucket.hp)
  chex.assert_trees_all_equal(jax.tree.map(lambda v, m: v * np.asarray(m), mixed.variables, masks), mixed.variables)
  rows = bucket.own_rows(jax.device_put(mixed))
  for i, arch in enumerate(archs):
    mine = own_state(net, arch, mixed, i)
    assert_within_rounding(mine, *alone[i])
    positions, weights = rows[arch.name]  # the zoo row: the member's own vector in its own layout
    np.testing.assert_array_equal(weights, np.asarray(arch.layout(SHAPE).flatten(mine.variables)))
    assert positions.tolist() == [i]
    metrics = np.asarray(bucket.evaluate(jax.device_put(mixed), pool))[i]
    assert metrics[2].tolist() == [32, 16, host[DATASETS[i]].eval_segments[2].size]  # its own dataset's sets


@pytest.mark.parametrize('batch_norm', [True, False])
def test_own_shape_and_padded_forward_passes_equal_the_own_network(batch_norm):
  """supernet.apply with the conv layers at each member's own shape (lax.switch) and with padded convolutions
  both compute models.apply of the member's own network: logits and batch-norm statistics."""
  archs = [models.nws_arch(*a[:3], a[3], a[4], num_outputs=10, batch_norm=batch_norm) for a in ARCHS]
  net = supernet.build(archs, SHAPE)
  geometry = supernet.member_arrays(net, archs)
  images = jax.random.uniform(jax.random.PRNGKey(7), (16,) + SHAPE)
  for i, arch in enumerate(archs):
    hp = jax.tree.map(lambda x: x[i], geometry)
    assert {(l.kernel, l.features) for l in arch.conv} <= {(k, o) for s in net.conv_shapes for k, _, o in s}
    padded = supernet.init(net, hp, jax.random.PRNGKey(i), 2)
    own = own_tensors.extract(net, arch, jax.tree.map(lambda x: np.asarray(x)[None], padded))
    own = jax.tree.map(lambda x: x[0], own)
    want, want_stats = models.apply(arch, own, images, train=True, activation=1, conv_impl='xla')
    for own_shapes in (True, False):
      got, stats = jax.jit(lambda v, x, o=own_shapes: supernet.apply(net, hp, v, x, train=True, activation=1,
                                                                     conv_impl='xla', own_shapes=o))(padded, images)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
      if not batch_norm:
        assert stats == {} and want_stats == {}
        continue
      got_stats = own_tensors.extract(net, arch, jax.tree.map(lambda x: np.asarray(x)[None],
                                                           {'params': padded['params'], 'batch_stats': stats}))
      chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], got_stats['batch_stats']), want_stats,
                                  rtol=1e-5, atol=1e-6)


def test_initialization_equals_own_architecture_init():
  archs = [models.nws_arch(*a[:3], a[3], a[4], num_outputs=10) for a in ARCHS]
  net = supernet.build(archs, SHAPE)
  geometry = supernet.member_arrays(net, archs)
  for scheme in range(len(models.CNN_INITS)):
    for i, arch in enumerate(archs):
      key = jax.random.PRNGKey(i)
      padded = supernet.init(net, jax.tree.map(lambda x: x[i], geometry), key, scheme)
      own = own_tensors.extract(net, arch, jax.tree.map(lambda x: np.asarray(x)[None], padded))
      chex.assert_trees_all_equal(jax.tree.map(lambda x: x[0], own), models.init(arch, key, SHAPE, scheme))
      total = lambda t: sum(float(np.abs(np.asarray(x)).sum()) for x in jax.tree.leaves(t))
      assert total(padded) == pytest.approx(total(own), rel=1e-6)  # nothing outside the member's own values


def test_unmixable_architectures_are_refused():
  with pytest.raises(ValueError, match='smallcnnzoo cannot be padded'):
    supernet.build([models.smallcnnzoo_arch(), models.nws_arch()], (32, 32, 3))
  with pytest.raises(ValueError, match='differ in blocks, outputs or batch norm'):
    supernet.build([models.nws_arch(batch_norm=False), models.nws_arch()], (32, 32, 3))
