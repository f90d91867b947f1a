"""A heterogeneous population (the nws_main space) trained as padded buckets vs one program per cohort.

    python -m benchmarks.mixed [--members 256] [--images 2000] [--epochs 2] [--input 32] [--out DIR]

Samples `--members` members of configs/nws_main.py (243 architectures x 5 datasets x 4 batch sizes, every other
hyper-parameter random) and trains them for `--epochs` epochs on synthetic 32x32x3 data (`--images` training
images per dataset, 5 datasets: the stock datasets are not prepared on the benchmark machine, and speed does
not depend on the pixels), twice, in one process, each from a cold program cache:

- buckets: popnet's plan (popnet/buckets.py, config defaults), every bucket one padded program on the pool
  of all datasets;
- cohorts: one program per (architecture, batch size), what popnet compiled before padded buckets (one per
  (architecture, dataset, batch size) before datasets were data: the same count or more).

Both run the train loop of popnet/train.py (init, permutations, each epoch in one call, evaluation and the zoo
rows at the end), wall time including compilation. On CPU both shard the members over one XLA host device per
usable core, as `python -m popnet.train` does (popnet/cli.py; `--host_devices`). Runs unchanged on CPU, GPU or
TPU; writes results/mixed_<backend>_m<members>.json with the command.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

if __package__ in (None, ''):  # run as a file (python path/to/benchmarks/mixed.py): import from the clone
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402
from benchmarks import timing  # noqa: E402  (no JAX: main() chooses the host devices before JAX starts)
from popnet import cli  # noqa: E402

DATASETS = ('mnist', 'cifar10', 'svhn_cropped', 'stl10', 'fashion_mnist')


def _parse(argv):
  p = usage.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--members', type=int, default=256)
  p.add_argument('--images', type=int, default=2000, help='training images per dataset')
  p.add_argument('--eval_images', type=int, default=500, help='test images per dataset')
  p.add_argument('--epochs', type=int, default=2)
  p.add_argument('--input', type=int, default=32, help='input height and width (3 channels)')
  p.add_argument('--max_programs', type=int, default=32)
  p.add_argument('--modes', default='buckets,cohorts')
  p.add_argument('--host_devices', type=int, default=-1,
                 help="CPU: XLA host devices the members are sharded over (-1: one per usable core, up to 8, "
                      "popnet.train's default; 0: leave XLA_FLAGS alone)")
  p.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results'))
  args = p.parse_args(argv)
  usage.check_ranges(p, args, (*((name, dict(low=1)) for name in ('members', 'images', 'eval_images', 'epochs',
                                                                    'input', 'max_programs')),
                               ('host_devices', dict(low=-1))))
  usage.check_out(p, args.out)
  return args


def synthetic_pool(args, mesh):
  """pipeline.DeviceData of the five datasets' synthetic images."""
  from popnet import pipeline
  shape = (args.input, args.input, 3)
  rng = np.random.default_rng(0)
  host = {}
  for name in DATASETS:
    n = args.images + args.eval_images
    labels = rng.integers(0, 10, n).astype(np.int32)
    base = rng.integers(0, 255, (10,) + shape)
    images = np.clip(base[labels] * 0.6 + rng.integers(0, 100, (n,) + shape), 0, 255).astype(np.uint8)
    segments = [np.arange(min(500, args.images)), np.arange(args.images, n)[:0], np.arange(args.images, n)]
    host[name] = pipeline.HostDataset(images, labels, np.arange(args.images), segments, 10)
  return pipeline.device_pool(host, 250, mesh)


def train_bucket(bucket, data, mesh, args) -> dict:
  """popnet/train.py's loop for one program (a buckets.PlannedProgram): init, each epoch in one call, evaluation and zoo
  rows."""
  from popnet import population
  members = bucket.members.reset_index(drop=True)
  steps = max(data.size_of(d) // bucket.batch_size for d in members['dataset'])
  cohort = population.build_program(members, mesh, network=bucket.network, input_shape=(args.input, args.input, 3),
                                    batch_size=bucket.batch_size, steps_per_epoch=steps, eval_batch_size=250)
  state = cohort.init()
  for epoch in range(args.epochs):
    state, loss = cohort.train(state, cohort.permutations(data, epoch), data, epoch, 0, steps)
  metrics = np.asarray(cohort.evaluate(state, data))[:cohort.size]
  rows = cohort.own_rows(state)
  assert sum(len(p) for p, _ in rows.values()) == cohort.size and np.isfinite(metrics).all()
  return {'compile_seconds': cohort.population.compile_seconds, 'members': cohort.size,
          'test_accuracy': (metrics[:, 1, 2] / metrics[:, 2, 2]).tolist()}


def run_mode(mode: str, members, data, mesh, args) -> dict:
  import jax
  from popnet import buckets, population
  population._EXECUTABLES.clear()  # a cold program cache for each mode
  jax.clear_caches()
  cost = buckets.CostModel(max_programs=args.max_programs, own_shape_convs=population.one_member_at_a_time(0))
  plan = buckets.plan(members, (args.input, args.input, 3), args.epochs, data.size_of,
                      'buckets' if mode == 'buckets' else 'architecture', cost)
  t0 = time.perf_counter()
  results = []
  for b in plan:
    results.append(train_bucket(b, data, mesh, args))
    population._EXECUTABLES.clear()  # no later program reuses them; keeps a long per-cohort run's memory flat
  wall = time.perf_counter() - t0
  report = buckets.summary(plan, cost)
  compile_s = sum(r['compile_seconds'] for r in results)
  accuracy = [a for r in results for a in r['test_accuracy']]
  print(f'{mode}: {len(plan)} programs, {wall:.1f} s wall ({compile_s:.1f} s compiling), padded compute '
        f'{report["padded_compute_overhead"]:.2f}x, mean test accuracy {np.mean(accuracy):.3f}', flush=True)
  return {'programs': len(plan), 'wall_seconds': wall, 'compile_seconds': compile_s,
          'padded_compute_overhead': report['padded_compute_overhead'], 'mean_test_accuracy': float(np.mean(accuracy)),
          'plan': report['buckets']}


def main(argv=None) -> int:
  args = _parse(argv)
  cli.expose_host_cores(args.host_devices)
  import jax
  from popnet import configs, hparams, population
  config = configs.get('nws_main')
  members = hparams.sample_members(dict(config.hparams), config.population, config.seed).iloc[:args.members]
  mesh = population.make_mesh()
  data = synthetic_pool(args, mesh)
  print(f'{len(members)} nws_main members: {members["arch"].nunique()} architectures, '
        f'{members.groupby(["arch", "batch_size"]).ngroups} (architecture, batch size) cohorts, '
        f'{members.groupby(["arch", "dataset", "batch_size"]).ngroups} with the dataset; {jax.default_backend()}, '
        f'{mesh.devices.size} device(s)', flush=True)
  modes = {m: run_mode(m, members, data, mesh, args) for m in args.modes.split(',')}
  result = {'command': 'python -m benchmarks.mixed ' + ' '.join(sys.argv[1:] if argv is None else argv),
            'args': vars(args), 'backend': jax.default_backend(), 'devices': [str(d) for d in jax.devices()],
            'host': platform.node(), 'cpu_count': os.cpu_count(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'load_average_end': timing.load_average(), 'modes': modes}
  if {'buckets', 'cohorts'} <= set(modes):
    result['speedup'] = modes['cohorts']['wall_seconds'] / modes['buckets']['wall_seconds']
    print(f'buckets are {result["speedup"]:.2f}x faster than per-cohort programs (wall time incl. compilation)')
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, f'mixed_{jax.default_backend()}_m{args.members}.json'), 'w') as f:
    json.dump(result, f, indent=1)
  return 0


if __name__ == '__main__':
  sys.exit(main())
