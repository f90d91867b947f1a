"""One fitted DMC, its validation networks scored with each way of normalizing batch norm at evaluation.

    python -m benchmarks.dmc_eval_norm --zoo runs/replication --target activation --steps 800

The DMC trains with batch statistics (NWS's meta_classifier.py). At evaluation the statistics can come from:
  running     the running averages kept during training (momentum 0.9)
  precise     running averages recomputed as the average over `--precise_batches` training batches (population
              variance = mean batch variance + variance of batch means)
  per_network one network's evenly spaced windows as the batch (NWS's valid_avg evaluation)
  mixed       batches mixed across networks like training batches (meta/windows.py mixed_batches: the default)
Prints the accuracy of each on the validation split (classification targets): per window, and per snapshot
(a zoo row: the probabilities of its evenly spaced windows averaged).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

from meta import data as data_lib, fit, methods, metrics, models
from popnet import usage


def fit_dmc(data: data_lib.MetaData, steps: int, width: int, size: str, seed: int):
  """A DMC fitted on the training split for about `steps` steps (no model selection)."""
  store, train = data.store, data.splits['train']
  lo, hi = store.bounds('all')
  module = models.dmc(data.target.num_outputs, size)

  def batch(rng, idx):
    rows = train[idx]
    starts = methods.random_starts(rng, lo[rows], hi[rows], width)
    return store.windows(rows, starts, width, hi[rows]), data.y[train][idx]

  config = fit.FitConfig(epochs=5, min_steps=steps, seed=seed, label='dmc')
  return module, batch, fit.fit(module, (width,), len(train), batch, None, metrics.selection_key, True, config)


def batch_statistics(module: models.DMC, variables, x: np.ndarray) -> dict:
  """The batch-norm statistics (mean, var per layer) of one batch, recovered from the running-average update."""
  _, new = module.apply(variables, jnp.asarray(x), train=False, mutable=['batch_stats'])
  old = variables['batch_stats']
  return jax.tree.map(lambda n, o: (np.asarray(n) - 0.9 * np.asarray(o)) / 0.1, dict(new['batch_stats']), dict(old))


def precise_statistics(module: models.DMC, variables, batch, n_train: int, batches: int, seed: int) -> dict:
  """Population statistics from `batches` random training batches of 64 windows."""
  rng = np.random.default_rng(seed)
  stats = [batch_statistics(module, variables, batch(rng, rng.integers(0, n_train, 64))[0]) for _ in range(batches)]
  out = {}
  for layer in stats[0]:
    means = np.stack([s[layer]['mean'] for s in stats])
    out[layer] = {'mean': means.mean(0), 'var': np.stack([s[layer]['var'] for s in stats]).mean(0) + means.var(0)}
  return out


def accuracies(windows: np.ndarray, y: np.ndarray) -> tuple[float, float]:
  """(per-window, per-snapshot) accuracy of [snapshots, windows, classes] probabilities."""
  return float((windows.argmax(-1) == y[:, None]).mean()), float((windows.mean(1).argmax(-1) == y).mean())


def main(argv=None) -> int:
  p = usage.ArgumentParser(prog='python -m benchmarks.dmc_eval_norm', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--zoo', required=True)
  p.add_argument('--target', default='activation', help='a classification target')
  p.add_argument('--snapshots', default='10-19')
  p.add_argument('--steps', type=int, default=800)
  p.add_argument('--window', type=int, default=5000)
  p.add_argument('--windows', type=int, default=64, help='evenly spaced windows per validation network')
  p.add_argument('--size', default='small', choices=sorted(models.DMC_SIZES))
  p.add_argument('--precise_batches', type=int, default=100)
  p.add_argument('--seed', type=int, default=0)
  a = p.parse_args(argv)
  usage.check_input_dir(p, '--zoo', a.zoo)
  usage.check_ranges(p, a, (*((name, dict(low=1)) for name in ('steps', 'window', 'windows', 'precise_batches')),
                            ('seed', dict(low=0))))
  data = data_lib.load(a.zoo, a.target, snapshots=a.snapshots, seed=a.seed)
  if not data.target.is_classification:
    p.error(f'--target: {a.target!r} is a regression target; use a classification target')
  lo, hi = data.store.bounds('all')
  width = min(a.window, int((hi - lo).min()))
  module, batch, fitted = fit_dmc(data, a.steps, width, a.size, a.seed)
  val, n = data.splits['val'], a.windows
  starts = methods.evenly_spaced_starts(lo[val], hi[val], width, n)
  x = data.store.windows(np.repeat(val, n), starts.reshape(-1), width, np.repeat(hi[val], n))
  y, shape = data.y[val], (len(val), n, data.target.num_outputs)
  running = models.dmc(data.target.num_outputs, a.size, 'running')
  precise = {**fitted.variables, 'batch_stats': precise_statistics(
      module, fitted.variables, batch, len(data.splits['train']), a.precise_batches, a.seed)}
  order = methods.mixed_batches(len(x), 64, a.seed)
  mixed = np.zeros((len(x), data.target.num_outputs), np.float32)
  mixed[order] = fit.predict(module, fitted.variables, x[order], True, batch=64)
  results = {
      'running': fit.predict(running, fitted.variables, x, True, batch=64),
      'precise': fit.predict(running, precise, x, True, batch=64),
      'per_network': fit.predict(module, fitted.variables, x, True, batch=n),
      'mixed': mixed}
  print(f'{a.target}: DMC {a.size}, {fitted.steps} steps; {len(val)} validation snapshots x {n} windows; '
        f'chance {data.target.chance:.3f}')
  for name, out in results.items():
    window, snapshot = accuracies(out.reshape(shape), y)
    print(f'  {name:<12} per window {window:.3f}   per snapshot {snapshot:.3f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
