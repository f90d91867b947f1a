"""meta.data and meta.features: selection, targets, by-member splits, class balancing, streaming from the memmap."""
import numpy as np
import pytest

from meta import data, features, methods, synthetic, weights
from popnet.zoo import Zoo


@pytest.fixture(scope='module')
def zoo(tmp_path_factory):
  return Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('meta_zoo')), members=60, snapshots=3, seed=3))


@pytest.fixture(scope='module')
def mixed(tmp_path_factory):
  return Zoo.open(synthetic.make_zoo(str(tmp_path_factory.mktemp('meta_mixed')), members=64, snapshots=2, seed=4,
                                     mixed=True))


def test_split_members_sizes_disjoint_seeded():
  ids = np.arange(100) + 1000
  s = data.split_members(ids, (0, 0.2, 0.1), seed=7)
  assert [len(s[k]) for k in data.SPLITS] == [70, 20, 10]
  assert sorted(np.concatenate(list(s.values())).tolist()) == ids.tolist()
  for a in data.SPLITS:
    for b in data.SPLITS:
      if a != b:
        assert not set(s[a]) & set(s[b])
  again = data.split_members(ids, (0, 0.2, 0.1), seed=7)
  assert all(np.array_equal(s[k], again[k]) for k in data.SPLITS)
  assert not np.array_equal(s['test'], data.split_members(ids, (0, 0.2, 0.1), seed=8)['test'])
  counts = data.split_members(ids, (0, 15, 5), seed=0)  # counts >= 1 are member counts
  assert [len(counts[k]) for k in data.SPLITS] == [80, 15, 5]
  strata = np.repeat([0, 1, 2, 3], 25)  # stratified: every split holds each stratum in proportion
  st = data.split_members(ids, (0, 0.2, 0.2), seed=1, strata=strata)
  for k, n in (('val', 5), ('test', 5), ('train', 15)):
    assert np.bincount(strata[st[k] - 1000], minlength=4).tolist() == [n] * 4
  with pytest.raises(data.MetaDataError):
    data.split_members(np.arange(4), (0, 0.5, 0.5))


@pytest.mark.parametrize('target', ['activation', 'test_accuracy'])
def test_load_splits_by_member(zoo, target):
  d = data.load(zoo, target, fractions=(0, 0.2, 0.2), seed=1)
  member = d.rows['member_id'].to_numpy()
  sides = {s: set(member[d.splits[s]].tolist()) for s in data.SPLITS}
  assert not sides['train'] & sides['val'] and not sides['train'] & sides['test'] and not sides['val'] & sides['test']
  for s in data.SPLITS:  # rows only come from the split's own members
    assert sides[s] <= set(d.members[s].tolist())
  n = len(np.unique(member))
  assert len(d.members['val']) == round(0.2 * n) and len(d.members['test']) == round(0.2 * n)
  assert len(d.members['train']) == n - 2 * round(0.2 * n)
  assert (d.rows['status'] == 'ok').all()  # diverged rows are out by default


def test_balance_gives_chance_one_over_c(zoo):
  d = data.load(zoo, 'activation')
  assert d.target.kind == 'classification' and d.target.classes == ('elu', 'relu', 'sigmoid', 'tanh')
  assert d.target.chance == pytest.approx(0.25)
  for s in data.SPLITS:
    counts = np.bincount(d.y[d.splits[s]], minlength=4)
    assert len(set(counts.tolist())) == 1 and counts[0] > 0, (s, counts)
  # predicting one class always scores exactly chance on the balanced test split
  probs = np.eye(4)[np.zeros(len(d.splits['test']), int)]
  m = methods.metrics.classification_metrics(d.y[d.splits['test']], probs, d.target.classes)
  assert m['accuracy'] == pytest.approx(m['chance']) == pytest.approx(0.25)
  unbalanced = data.load(zoo, 'activation', balanced=False)
  assert len(unbalanced.splits['train']) >= len(d.splits['train'])


def test_targets_kinds_and_scales(zoo):
  meta = zoo.metadata
  lr = data.make_target(meta, 'learning_rate')
  assert lr.kind == 'regression' and lr.log and lr.chance is None
  np.testing.assert_allclose(data.encode(lr, meta['learning_rate']), np.log10(meta['learning_rate']), rtol=1e-6)
  gap = data.target_values(meta, 'generalization_gap')
  np.testing.assert_allclose(gap, meta['train_accuracy'] - meta['test_accuracy'])
  assert data.make_target(meta, 'gap').kind == 'regression'
  bs = data.make_target(meta, 'batch_size')
  assert bs.kind == 'classification' and bs.classes == ('32', '64')
  assert data.make_target(meta, 'augment').classes == ('False', 'True')
  assert data.make_target(meta, 'test_accuracy').kind == 'regression'
  assert data.make_target(meta, 'test_accuracy', kind='regression').log is False
  with pytest.raises(data.MetaDataError, match='not a metadata column'):
    data.make_target(meta, 'nonsense')
  with pytest.raises(data.MetaDataError, match=r"'activaton' is not a metadata column \(did you mean 'activation'\?\)"):
    data.make_target(meta, 'activaton')
  with pytest.raises(data.MetaDataError, match='does not vary'):
    data.load(zoo, 'dataset')


def test_selection(zoo):
  meta = zoo.metadata
  assert data.parse_selection('all', [0, 1, 2]) is None
  assert data.parse_selection('last', [0, 1, 2]) == [2]
  assert data.parse_selection('-1', [0, 5, 10]) == [10]
  assert data.parse_selection('0,2', [0, 1, 2]) == [0, 2]
  assert data.parse_selection('1-2', [0, 1, 2]) == [1, 2]
  assert data.parse_selection('5..10', [0, 5, 10], contiguous=False) == [5, 10]
  with pytest.raises(data.MetaDataError):
    data.parse_selection('x', [0])
  last = data.select_rows(meta, snapshots='last')
  assert set(last['snapshot']) == {2} and (last['status'] == 'ok').all()
  assert len(data.select_rows(meta, snapshots='last', status=None)) == meta['member_id'].nunique()
  assert set(data.select_rows(meta, epochs='5-10')['epoch']) == {5, 10}
  with pytest.raises(data.MetaDataError, match=r"asks for \[7\].*has snapshots 0-2"):
    data.select_rows(meta, snapshots='7')
  with pytest.raises(data.MetaDataError, match=r"'2-4' asks for \[3, 4\], which the zoo does not have"):
    data.select_rows(meta, snapshots='2-4')  # never silently a subset
  with pytest.raises(data.MetaDataError, match='snapshot_epochs'):
    data.select_rows(meta, epochs='7')


def test_streaming_matches_memory(zoo):
  d_mem = data.load(zoo, 'activation')
  d_stream = data.load(zoo, 'activation', memory_budget=0)
  assert not d_mem.store.streaming and d_stream.store.streaming
  # streamed batches read the zoo's own memmap (Zoo.weights), never a copy of the file
  assert all(s.array is zoo.weights(a) for a, s in d_stream.store.sources.items())
  idx = d_mem.splits['test'][:5]
  np.testing.assert_array_equal(d_mem.store.vectors(idx), d_stream.store.vectors(idx))
  np.testing.assert_array_equal(d_mem.store.vectors(idx), zoo.vectors(d_mem.rows.iloc[idx]))
  starts = np.array([0, 100, 4900, 4960, 7])
  w_mem = d_mem.store.windows(idx, starts, 64)
  np.testing.assert_array_equal(w_mem, d_stream.store.windows(idx, starts, 64))
  full = zoo.vectors(d_mem.rows.iloc[idx])
  np.testing.assert_array_equal(w_mem[1], full[1, 100:164])
  np.testing.assert_array_equal(w_mem[3, :10], full[3, 4960:4970])  # past the end: zeros
  assert not w_mem[3, 10:].any()
  # a window cut at a part's end is zero-padded there too
  cut = d_mem.store.windows(idx[:1], np.array([4790]), 32, np.array([4800]))
  np.testing.assert_array_equal(cut[0, :10], full[0, 4790:4800])
  assert not cut[0, 10:].any()


def test_part_bounds(zoo, mixed):
  layout = zoo.layout('smallcnnzoo')
  assert weights.part_bounds(layout, 'conv') == (0, layout.entry('output/kernel').start)
  assert weights.part_bounds(layout, 'fc') == (layout.entry('output/kernel').start, layout.size)
  for arch in mixed.architectures:
    lay = mixed.layout(arch)
    lo, hi = weights.part_bounds(lay, 'fc')
    assert lay.entry('dense_0/kernel').start == lo and hi == lay.size
    assert all(e.layer.startswith('conv_') for e in lay.entries if e.end <= lo)


def test_statnn_features(zoo, mixed):
  np.testing.assert_allclose(features.tensor_stats(np.array([[1.0, 2, 3, 4, 5]]))[0],
                             [3, np.sqrt(2), 1, 2, 3, 4, 5], rtol=1e-6)
  d = data.load(zoo, 'activation')
  x, names = features.statnn_features(d.store, d.splits['test'])
  assert x.shape == (len(d.splits['test']), 8 * 7) and len(names) == 56  # 4 layers x (kernel, bias) x 7
  v = d.store.vectors(d.splits['test'][:1])[0]
  e = zoo.layout('smallcnnzoo').entry('conv_1/kernel')
  np.testing.assert_allclose(x[0, names.index('conv_1/kernel:std')], v[e.start:e.end].std(), rtol=1e-5)
  conv, conv_names = features.statnn_features(d.store, d.splits['test'], part='conv')
  assert all(n.startswith('conv_') for n in conv_names) and conv.shape[1] == 6 * 7
  dm = data.load(mixed, 'activation')
  assert len(dm.store.layouts) == 2
  xm, mnames = features.statnn_features(dm.store, dm.splits['train'])
  assert xm.shape == (len(dm.splits['train']), len(mnames)) and np.isfinite(xm).all()
  with pytest.raises(data.MetaDataError, match='one architecture'):
    features.statnn_features(dm.store, dm.splits['train'], mode='tensor')


def test_whole_vector_mlp_needs_one_architecture(mixed):
  d = data.load(mixed, 'activation')
  with pytest.raises(data.MetaDataError, match='one architecture'):
    methods.run('mlp', d, methods.Options(epochs=1))
