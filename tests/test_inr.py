"""INR fits (popnet/siren.py, popnet/task.py InrFit, docs/inr.md): a SIREN fitted inside a population equals the same
SIREN fitted alone by the reference procedure written here in plain jax + optax; initial weights follow each
family's init distribution; early stopping freezes a member exactly at its threshold step."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from popnet import hparams, pipeline, population
from popnet import task as task_lib
from popnet.arch import resolve

SHAPE = (28, 28, 1)
LR = {'siren_dws': 5e-4, 'siren_nfn': 1e-4}


@pytest.fixture(scope='module')
def mesh():
  return population.make_mesh(jax.devices()[:1])


def smooth_images(n, seed=0):
  """Blurry blobs in uint8 (an INR fits them to high PSNR within tens of steps)."""
  rng = np.random.default_rng(seed)
  r, c = np.meshgrid(np.arange(28), np.arange(28), indexing='ij')
  out = np.zeros((n, 28, 28, 1), np.uint8)
  for i in range(n):
    cy, cx, s = rng.uniform(8, 20), rng.uniform(8, 20), rng.uniform(3, 7)
    out[i, :, :, 0] = np.round(255 * np.exp(-((r - cy) ** 2 + (c - cx) ** 2) / (2 * s * s)))
  return out


@pytest.fixture(scope='module')
def data(mesh):
  images = smooth_images(6)
  return images, pipeline.device_data(images, np.zeros(6, np.int32), np.arange(6), [np.arange(6)] * 3, 10, 6, mesh)


def inr_program(mesh, architecture, n, threshold=np.inf, steps=1000, steps_per_epoch=50, seed=0, member_chunk=1):
  members = hparams.sample_members({'architecture': architecture, 'optimizer': 'adam', 'batch_size': 784,
                                    'learning_rate': LR[architecture], 'eps': 1e-8}, n, seed)
  members['image'] = np.arange(n) % 6
  members['steps'], members['psnr_threshold'] = steps, threshold
  return population.build_program(members, mesh, network=resolve(architecture).network(SHAPE), input_shape=SHAPE,
                                  batch_size=784, steps_per_epoch=steps_per_epoch, member_chunk=member_chunk,
                                  task=task_lib.InrFit(steps_per_epoch))


# --- the reference procedure, written from the sources (docs/inr.md), not from popnet/siren.py ----------------------
def reference_coordinates(family):
  lin = np.linspace(-1, 1, 28)
  if family == 'dws':  # experiments/utils.py make_coordinates: np.meshgrid(x, y) ('xy'), stacked (x, y)
    x, y = np.meshgrid(lin, lin)
    return np.stack([x.flatten(), y.flatten()]).T.astype(np.float32)
  grid = np.stack(np.meshgrid(lin, lin, indexing='ij'), axis=-1)  # siren_utils.get_mgrid: torch.meshgrid ('ij')
  return grid.reshape(-1, 2).astype(np.float32)


def reference_targets(family, image):
  x = image.reshape(-1, 1).astype(np.float32) / 255.0  # row-major pixels, as both decoders reshape
  return x if family == 'dws' else 2 * x - 1  # NFN: Normalize(0.5, 0.5) -> [-1, 1]


def reference_forward(family, layers, coords):
  """layers: [(W [out, in], b)] as PyTorch holds them."""
  x = coords
  for w, b in layers[:-1]:
    x = jnp.sin(30.0 * (x @ w.T + b))
  w, b = layers[-1]
  return x @ w.T + b + (0.5 if family == 'dws' else 0.0)


def torch_layers(variables, names, i):
  """Member i's layers as PyTorch [out, in] weights and biases."""
  return [(variables['params'][n]['kernel'][i].T, variables['params'][n]['bias'][i]) for n in names]


def reference_fit(family, layers, image, lr, steps):
  """Adam(lr) on the MSE of the whole image, `steps` steps; returns (layers, pre-update PSNR of every step)."""
  coords, target = jnp.asarray(reference_coordinates(family)), jnp.asarray(reference_targets(family, image))
  peak = 1.0 if family == 'dws' else 2.0
  tx = optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)

  def mse(layers):
    return jnp.mean((reference_forward(family, layers, coords) - target) ** 2)

  @jax.jit
  def step(carry, _):
    layers, opt = carry
    loss, grads = jax.value_and_grad(mse)(layers)
    updates, opt = tx.update(grads, opt)
    return (optax.apply_updates(layers, updates), opt), 10 * jnp.log10(peak ** 2 / loss)

  (layers, _), psnr = jax.lax.scan(step, (layers, tx.init(layers)), None, length=steps)
  return layers, np.asarray(psnr)


def relative_error(a_layers, b_layers):
  a = np.concatenate([np.ravel(x) for layer in a_layers for x in layer])
  b = np.concatenate([np.ravel(x) for layer in b_layers for x in layer])
  return np.abs(a - b).max() / np.abs(b).max()


# --- (a) a member fitted in a population equals the reference fit ---------------------------------------------------
@pytest.mark.parametrize('architecture', ['siren_dws', 'siren_nfn'])
def test_member_in_population_equals_reference_fit(mesh, data, architecture):
  images, pool = data
  arch = resolve(architecture)
  program = inr_program(mesh, architecture, 4)
  state = program.init()
  initial = jax.tree.map(np.asarray, state.variables)
  state, _ = program.train(state, program.permutations(pool, 0), pool, 0, 0, 50)
  for i in range(4):
    expected, _ = reference_fit(arch.family, torch_layers(initial, arch.layer_names, i), images[i % 6],
                                LR[architecture], 50)
    got = torch_layers(jax.tree.map(np.asarray, state.variables), arch.layer_names, i)
    assert relative_error(got, expected) <= 1e-5
    moved = relative_error(got, torch_layers(initial, arch.layer_names, i))
    assert moved > 1e-3  # the fit did move the weights (the comparison is not of two unchanged inits)


def test_fitted_member_evaluates_to_the_reference_psnr(mesh, data):
  images, pool = data
  program = inr_program(mesh, 'siren_dws', 2)
  state = program.init()
  initial = jax.tree.map(np.asarray, state.variables)
  state, _ = program.train(state, program.permutations(pool, 0), pool, 0, 0, 50)
  _, psnr = reference_fit('dws', torch_layers(initial, resolve('siren_dws').layer_names, 0), images[0], 5e-4, 51)
  metrics = np.asarray(program.evaluate(state, pool))
  assert metrics[0, 1] == pytest.approx(psnr[50], abs=1e-3)  # psnr[50]: before the 51st step = after 50
  assert metrics[0, 0] == pytest.approx(10 ** (-metrics[0, 1] / 10), rel=1e-4)


# --- (b) initial weights follow each family's init distribution -----------------------------------------------------
BOUNDS = {  # (weight bound, bias bound or 0 for zeros) per layer, from the sources (docs/inr.md)
    'siren_dws': [(math.sqrt(6 / 2) / 30, 0), (math.sqrt(6 / 32) / 30, 0), (1 / math.sqrt(32), 1 / math.sqrt(32))],
    'siren_nfn': [(1 / 2, 1 / math.sqrt(2)), (math.sqrt(6 / 32) / 30, 1 / math.sqrt(32)),
                  (math.sqrt(6 / 32) / 30, 1 / math.sqrt(32))],
}


@pytest.mark.parametrize('architecture', ['siren_dws', 'siren_nfn'])
def test_initial_weights_follow_the_family_distribution(mesh, architecture):
  arch = resolve(architecture)
  variables = jax.tree.map(np.asarray, inr_program(mesh, architecture, 64, seed=1).init().variables)
  for name, (w_bound, b_bound) in zip(arch.layer_names, BOUNDS[architecture]):
    for tensor, bound in (('kernel', w_bound), ('bias', b_bound)):
      values = variables['params'][name][tensor].ravel()
      if bound == 0:
        assert np.all(values == 0), f'{name}.{tensor} should be zeros'
        continue
      assert np.abs(values).max() <= bound
      p = stats.kstest(values, stats.uniform(loc=-bound, scale=2 * bound).cdf).pvalue
      assert p > 1e-3, f'{name}.{tensor}: KS p = {p:.2g} against U(+-{bound:.5f})'
  # members are independently initialized: no two share a first-layer kernel
  first = variables['params'][arch.layer_names[0]]['kernel'].reshape(64, -1)
  assert len(np.unique(first, axis=0)) == 64


# --- (d) early stopping freezes a member exactly at its threshold step ----------------------------------------------
def test_early_stopping_freezes_a_member_at_its_threshold_step(mesh, data):
  images, pool = data
  arch = resolve('siren_dws')
  program = inr_program(mesh, 'siren_dws', 1)
  initial = jax.tree.map(np.asarray, program.init().variables)
  _, psnr = reference_fit('dws', torch_layers(initial, arch.layer_names, 0), images[0], 5e-4, 60)
  k = next(k for k in range(10, 60) if psnr[k] > psnr[:k].max() + 0.05)
  threshold = (psnr[:k].max() + psnr[k]) / 2  # the first step whose pre-update PSNR reaches it is k
  program = inr_program(mesh, 'siren_dws', 2, threshold=threshold)  # member 1: same seed stream, other image
  state = program.init()
  perm = program.permutations(pool, 0)
  state, _ = program.train(state, perm, pool, 0, 0, k - 3)  # stopping is found across call boundaries
  state, loss_sum = program.train(state, perm, pool, 0, k - 3, 50)
  assert int(state.stop_step[0]) == k
  frozen = jax.tree.map(np.asarray, state.variables)
  expected, _ = reference_fit('dws', torch_layers(initial, arch.layer_names, 0), images[0], 5e-4, k)
  assert relative_error(torch_layers(frozen, arch.layer_names, 0), expected) <= 1e-5  # k updates, not k + 1
  state, _ = program.train(state, perm, pool, 1, 0, 50)  # a stopped member no longer changes
  after = jax.tree.map(np.asarray, state.variables)
  np.testing.assert_array_equal(after['params']['seq.0']['kernel'][0], frozen['params']['seq.0']['kernel'][0])
  assert int(state.stop_step[0]) == k


def test_step_budget_ends_a_members_fit(mesh, data):
  _, pool = data
  program = inr_program(mesh, 'siren_dws', 1, steps=7)
  state = program.init()
  state, _ = program.train(state, program.permutations(pool, 0), pool, 0, 0, 7)
  at_budget = jax.tree.map(np.asarray, state.variables)
  state, _ = program.train(state, program.permutations(pool, 0), pool, 0, 7, 20)
  chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)), at_budget, state.variables)
  assert all(jax.tree.leaves(chex_equal)) and int(state.stop_step[0]) == -1


def test_the_data_line_counts_fits_and_images_by_the_members_own_split():
  """popnet.train's `data:` line for an INR run: fits per split (and images where views repeat them), not the
  classification pipeline's training / evaluation subsets, which an INR fit never reads."""
  import types
  import pandas as pd
  from popnet import task as task_lib
  members = pd.DataFrame({'image': [0, 0, 0, 1, 1, 1, 2, 3], 'split': ['train'] * 6 + ['val', 'test']})
  data = types.SimpleNamespace(names=['fashion_mnist'])
  line = task_lib.InrFit(steps_per_epoch_=1).describe_data(data, members)
  assert line == 'fashion_mnist: fits of 6 train (2 images), 1 val, 1 test'


def test_the_cost_model_counts_an_inr_members_pixels_per_step_not_its_datasets_images():
  """An INR member's epoch is steps_per_epoch full-image steps (a SIREN's example is one coordinate): the plan's
  estimate must not depend on the dataset's size (NFN's 5,000 steps were estimated as 630 before)."""
  from popnet import planning
  from popnet.configs import load
  inr, classification = load('inr_nfn_fmnist'), load('smoke')
  assert planning.epoch_examples(inr, lambda d: 54000)('fashion_mnist') == 500 * 28 * 28
  assert planning.epoch_examples(inr, lambda d: 10)('fashion_mnist') == 500 * 28 * 28
  assert planning.epoch_examples(classification, lambda d: 1347)('digits') == 1347
