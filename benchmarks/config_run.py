"""One training run of a config file through popnet.train.train, on its prepared datasets or on synthetic data
of the same shapes, with its wall time, throughput and peak memory. Part of the device check
(benchmarks/device_check.py).

Synthetic data never downloads anything: each dataset the members use is written as a prepared dataset in a
private data dir (a dataset_info.json and popnet.data's decoded-array cache, random images with a class-dependent
pattern at the dataset's native shape), so the run goes through the same loading, resizing, cohorts, zoo writing
and evaluation as a real one.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import sys
import tempfile
import time

if __package__ in (None, ''):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402


def parse_args(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.config_run', description=__doc__,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                           epilog='example: python -m benchmarks.config_run --config nws_fixed '
                                  '--set population=512 --set epochs=1 --data synthetic --out /tmp/nws')
  p.add_argument('--config', required=True,
                 help='a packaged config name (default, nws_fixed, ...) or a config file with get_config()')
  p.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                 help='override a config field (Python literal; dotted names reach config.hparams)')
  p.add_argument('--data', default='auto', choices=['auto', 'real', 'synthetic'],
                 help='auto: the prepared datasets when every one is prepared, else synthetic')
  p.add_argument('--synthetic_train', type=int, default=60000, help='synthetic training images per dataset')
  p.add_argument('--synthetic_test', type=int, default=10000, help='synthetic test images per dataset')
  p.add_argument('--out', required=True, help='folder for result.json (and the workdir with --keep_workdir)')
  p.add_argument('--keep_workdir', action='store_true',
                 help='keep the run\'s workdir (zoo, checkpoints) and synthetic data in --out (default: a temporary '
                      'folder, deleted after the run; a device run ships --out back)')
  args = p.parse_args(argv)
  usage.check_ranges(p, args, (('synthetic_train', dict(low=1)), ('synthetic_test', dict(low=1))))
  return args


def load_config(path: str, overrides: list[str]):
  """The config file with the --set overrides, validated; a bad file, field or value is a one-line ValueError
  (popnet.configs.ConfigFileError, popnet.config.ConfigError or usage.UsageError)."""
  from popnet import config as config_lib, configs
  config = configs.load(path)
  for item in overrides:
    name, sep, text = item.partition('=')
    if not sep:
      raise usage.UsageError(f'--set takes FIELD=VALUE, got {item!r}')
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
    *parents, leaf = name.split('.')
    node = config
    try:
      for part in parents:
        node = node[part]
      if leaf not in node:
        raise KeyError(leaf)
      node[leaf] = value
    except (KeyError, TypeError, AttributeError) as e:
      raise usage.UsageError(f'--set {item}: {"no such config field" if isinstance(e, KeyError) else e}; '
                             'python -m popnet.train --print_config lists the fields') from None
  config_lib.validate(config)
  return config


def write_synthetic(names, root: str, n_train: int, n_test: int, seed: int = 0) -> None:
  """Each dataset in `names` as a prepared dataset in `root`: random images with a class-dependent pattern."""
  import numpy as np
  from popnet import data as data_lib
  rng = np.random.default_rng(seed)
  for name in names:
    spec = data_lib.DATASETS[name]
    os.makedirs(data_lib.dataset_dir(name, root), exist_ok=True)
    with open(os.path.join(data_lib.dataset_dir(name, root), 'dataset_info.json'), 'w') as f:
      json.dump({'name': name, 'synthetic': True, 'written_by': 'benchmarks/config_run.py'}, f)
    base = rng.integers(0, 255, (spec.num_classes,) + spec.shape)
    arrays = {}
    for split, n in (('train', n_train), ('test', n_test)):
      labels = rng.integers(0, spec.num_classes, n).astype(np.int32)
      noise = rng.integers(0, 80, (n,) + spec.shape, dtype=np.uint8)
      arrays[f'{split}_x'] = np.clip(base[labels] * 0.7 + noise, 0, 255).astype(np.uint8)
      arrays[f'{split}_y'] = labels
    data_lib._write_cache(data_lib._cache_dir(spec, root), arrays)  # the arrays popnet.data.load reads back


def main(argv=None) -> int:
  args = parse_args(argv)
  try:  # every bad input: one line, exit 2, before anything is written
    config = load_config(args.config, args.set)
    usage.check_output_dir('--out', args.out)
  except ValueError as e:
    usage.fail(e)
  os.makedirs(args.out, exist_ok=True)
  if args.keep_workdir:
    return run(args, args.out, config)
  with tempfile.TemporaryDirectory(prefix='config_run_') as scratch:
    return run(args, scratch, config)


def run(args, scratch: str, config) -> int:
  """Trains `config` in `scratch` (workdir, synthetic data) and writes --out/result.json."""
  started = time.perf_counter()
  import jax
  from popnet import data as data_lib, hparams, train
  names = sorted(hparams.sample_members(dict(config.hparams), config.population, config.seed)['dataset'].unique())
  prepared = all(data_lib.is_prepared(n, config.data_dir or None) for n in names)
  if args.data == 'real' and not prepared:
    raise SystemExit(f'--data real: not every dataset of {names} is prepared; use --data synthetic or auto')
  use_real = prepared and args.data != 'synthetic'
  if not use_real:
    config.data_dir = os.path.join(scratch, 'synthetic_tfds')
    write_synthetic(names, config.data_dir, args.synthetic_train, args.synthetic_test)
  result = {'config': args.config, 'overrides': args.set, 'data': 'real' if use_real else 'synthetic',
            'datasets': names, 'backend': jax.default_backend(), 'devices': jax.device_count(),
            'device_kind': jax.devices()[0].device_kind}
  print(f"config_run: {args.config} {' '.join(args.set)} on {result['data']} data {names}", flush=True)
  summary = train.train(config, os.path.join(scratch, 'workdir'), progress=False, overwrite=True)
  stats = jax.local_devices()[0].memory_stats() or {}
  result.update(summary=summary, device_peak_bytes=stats.get('peak_bytes_in_use'),
                process_max_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                process_wall_seconds=time.perf_counter() - started)
  with open(os.path.join(args.out, 'result.json'), 'w') as f:
    json.dump(result, f, indent=1, default=str)
  return 0


if __name__ == '__main__':
  sys.exit(main())
