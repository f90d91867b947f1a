"""The DMC `paper` preset is NWS's published network: layer list, shapes and parameter count recomputed here,
independently of meta.models, from the rules of github.com/gabrieleilertsen/nws model.py (cnn1D_small, cnn1D)."""
import jax
import jax.numpy as jnp
import pytest

from meta import models


def nws_cnn1d_small(length):
  """model.py:cnn1D_small, transcribed: [(kind, in, out, length after)]."""
  layers, n = [], length

  def conv(cin, cout):
    layers.append(('conv', cin, cout, n))

  def pool():
    nonlocal n
    n //= 2  # max_pooling1d(pool_size=2, strides=2, padding='VALID')
    layers.append(('pool', None, None, n))

  conv(1, 8); pool(); conv(8, 16); pool(); conv(16, 32); conv(32, 64); pool(); conv(64, 128); conv(128, 256)
  for _ in [5, 6, 7, 8, 9, 10]:
    if n > 50:
      pool()
    conv(256, 256)
  pool()
  return layers, n * 256


def nws_cnn1d(length):
  """model.py:cnn1D, transcribed."""
  layers, n = [], length
  widths = [(1, 8), (8, 16), (16, 32), (32, 64), (64, 128), (128, 128), (128, 128), (128, 128), (128, 128)]
  for cin, cout in widths:
    layers.append(('conv', cin, cout, n))
    n //= 2
    layers.append(('pool', None, None, n))
  for pair in [((128, 128), (128, 256)), ((256, 256), (256, 256)), ((256, 256), (256, 256))]:
    for cin, cout in pair:
      layers.append(('conv', cin, cout, n))
    n //= 2
    layers.append(('pool', None, None, n))
  return layers, n * 256


def nws_count(layers, flat, classes):
  """model.count_all_vars: every global variable (W, b, and BatchNormLayer beta, gamma, moving mean, var)."""
  total = sum(5 * cin * cout + cout + 4 * cout for kind, cin, cout, _ in layers if kind == 'conv')
  fan_in = flat
  for units in (1024, 1024, 1024, 1024, 64):
    total += fan_in * units + units + 4 * units
    fan_in = units
  return total + 64 * classes + classes  # fc_final: no batch norm


@pytest.mark.parametrize('length,classes,reference', [(5000, 4, nws_cnn1d_small), (20000, 5, nws_cnn1d_small),
                                                      (50000, 3, nws_cnn1d)])
def test_paper_preset_is_the_nws_network(length, classes, reference):
  layers, flat = reference(length)
  expected = tuple('pool' if kind == 'pool' else cout for kind, _, cout, _ in layers)
  assert models.DMC_SIZES['paper'].layers(length) == expected
  module = models.dmc(classes, 'paper')
  counts = models.variable_counts(module, length)
  assert counts['params'] + counts['batch_stats'] == nws_count(layers, flat, classes)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), jnp.zeros((1, length))))['params']
  assert shapes['Dense_0']['kernel'].shape == (flat, 1024)
  assert [shapes[f'Dense_{i}']['kernel'].shape[1] for i in range(6)] == [1024, 1024, 1024, 1024, 64, classes]
  convs = [(s['kernel'].shape) for k, s in sorted(shapes.items(), key=lambda kv: int(kv[0].split('_')[1]))
           if k.startswith('Conv_')]
  assert convs == [(5, cin, cout) for kind, cin, cout, _ in layers if kind == 'conv']
  # 6 Dense + every conv carries a batch norm except the output layer
  assert sum(k.startswith('BatchNorm_') for k in shapes) == len(convs) + 5


def test_paper_5000_numbers_quoted_in_docs():
  layers, flat = nws_cnn1d_small(5000)
  assert flat == 19 * 256  # 5000 -> 2500 -> 1250 -> 625 -> 312 -> 156 -> 78 -> 39 (no pool at <= 50) -> 19
  assert models.num_params(models.dmc(4, 'paper'), 5000) == pytest.approx(10.4e6, rel=0.01)


def test_presets_run_and_unknown_size_fails():
  x = jnp.zeros((2, 300))
  for size in ('tiny', 'small'):
    m = models.dmc(3, size)
    v = jax.eval_shape(m.init, jax.random.key(0), x)
    assert jax.eval_shape(lambda v, x: m.apply(v, x, mutable=['batch_stats'])[0], v, x).shape == (2, 3)
    with pytest.raises(ValueError, match=r"mutable=\['batch_stats'\]"):
      jax.eval_shape(m.apply, v, x)
    assert jax.eval_shape(models.dmc(3, size, 'running').apply, v, x).shape == (2, 3)
  assert models.num_params(models.dmc(4, 'small'), 5000) < 1e6
  with pytest.raises(ValueError, match='size'):
    models.dmc(4, 'huge')


def test_training_counts_follow_nws_and_small_zoos_get_min_steps():
  from meta import fit, methods
  d = methods.Options()
  assert (d.epochs, d.batch_size, d.learning_rate, d.lr_decay, d.windows) == (50, 64, 1e-3, 0.95, 64)
  nws = fit.FitConfig(epochs=50, batch_size=64, min_steps=d.min_steps)
  assert fit.epoch_plan(27000, nws) == (1, 422)  # 3,000 nets x 10 snapshots x 0.9: NWS's own epoch, untouched
  for n in (1, 63, 240, 2000):
    repeats, steps = fit.epoch_plan(n, nws)
    assert steps * 50 >= d.min_steps and steps == -(-n * repeats // 64)  # every snapshot `repeats` times


def test_evaluation_uses_batch_statistics_like_nws_and_running_averages_on_request():
  import dataclasses

  import numpy as np

  from meta import fit
  spec = dataclasses.replace(models.DMC_SIZES['tiny'], dropout=0.0)  # train mode without dropout = the same net
  x = jax.random.normal(jax.random.key(0), (16, 256)) * jnp.linspace(0.01, 3.0, 16)[:, None]  # scales differ
  variables = models.DMC(3, spec).init(jax.random.key(1), x)
  variables = {**variables, 'batch_stats': jax.tree.map(lambda v: v + 0.5, variables['batch_stats'])}
  as_training, _ = models.DMC(3, spec).apply(variables, x, train=True, mutable=['batch_stats'])
  batch = fit.predict(models.DMC(3, spec, 'batch'), variables, np.asarray(x), True, batch=16)
  running = fit.predict(models.DMC(3, spec, 'running'), variables, np.asarray(x), True, batch=16)
  np.testing.assert_allclose(batch, jax.nn.softmax(as_training), rtol=1e-5, atol=1e-6)
  assert np.abs(batch - running).max() > 1e-3
  # with batch statistics a window's output depends on its batch, so batches must be whole and mixed
  halves = fit.predict(models.DMC(3, spec, 'batch'), variables, np.asarray(x), True, batch=8)
  assert np.abs(halves - batch).max() > 1e-4
  with pytest.raises(ValueError, match=r"eval_norm must be one of \['batch', 'running'\]"):
    models.dmc(3, 'tiny', eval_norm='moving')


def test_mixed_batches_cover_every_window_in_whole_random_batches():
  import numpy as np

  from meta import windows
  order = windows.mixed_batches(1000, 64, seed=3)
  assert len(order) % 64 == 0 and set(order.tolist()) == set(range(1000))
  assert np.array_equal(order, windows.mixed_batches(1000, 64, seed=3))
  networks = order[:64] // 64  # 64 windows per network in row order: a batch spans many networks
  assert len(set(networks.tolist())) > 8
  assert len(windows.mixed_batches(0, 64, seed=0)) == 0
