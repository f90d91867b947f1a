"""INR fits per second: popnet's population program against the ways INR zoos are fitted without it.

Every method fits DWS SIRENs (popnet/siren.py, DWSNets nn/inr.py) to the same images, fit i from the same initial
weights (DWS's init, drawn once per fit by popnet/siren.py), Adam (lr 5e-4, betas 0.9 / 0.999, eps 1e-8), the MSE
over every pixel of the image per step, exactly --steps steps (no early stopping):
  popnet      popnet's population program (the one `python -m popnet.train --config inr_dws_fmnist` runs) on
              --group images at a time
  torch_loop  one INR at a time in PyTorch, as DWSNets and Implicit-Zoo fit theirs (benchmarks/inr_torch.py)
  torch_vmap  --group SIRENs at once under torch.func.vmap, torch.optim.Adam over the stacked tensors
  jax_loop    one INR at a time, a jitted Adam step called from Python for every step
  jax_scan    one INR at a time, its whole fit one jitted lax.scan (not asked for: the dispatch-free JAX loop)
Each method is time-boxed: in each round it fits whole groups of images from image 0 on until --seconds have
passed (at least one group), and its rate is fits / seconds of fitting (compilation and a warm-up fit are timed
apart, before the first round). Rounds alternate the methods (a, b, c, a, b, c: the same drift for every side of a
ratio); a method's rate is its best round. Every method's loss curve (the mean pre-update MSE of each --every
steps) is compared with popnet's on the fits both did, so the rates are of the same work. Runs unchanged on a GPU
(torch on cuda when available, JAX on its default backend). benchmarks/ is not installed with popnet: run it
from a clone, `python -m benchmarks.inr` in its root.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time

if __package__ in (None, ''):  # run as a file: import from the clone
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from popnet import usage  # noqa: E402
from benchmarks import timing  # noqa: E402
from benchmarks.throughput import _Formatter  # noqa: E402  (defaults shown, text kept as written)
from popnet import cli  # noqa: E402

METHODS = ('popnet', 'torch_loop', 'torch_vmap', 'jax_loop', 'jax_scan')
DATASETS = ('auto', 'fashion_mnist', 'digits', 'synthetic')
FULL_ZOO = 70000  # the Fashion-MNIST INR zoo: train + test
TARGETS = {'torch_loop': 20.0, 'torch_vmap': 3.0}  # issue 28: popnet >= 20x the PyTorch loop, >= 3x torch.func vmap
EXAMPLE = """example:
  python -m benchmarks.inr --dataset fashion_mnist --group 64 --seconds 45 --rounds 2 --torch_threads 1 --out DIR
  python -m benchmarks.inr --dataset synthetic --steps 10 --every 1 --seconds 0 --fits 3 --group 3   # a minute
(nothing is written without --out)"""


def parse_args(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.inr', description=__doc__, epilog=EXAMPLE,
                           formatter_class=_Formatter)
  p.add_argument('--dataset', default='auto', help=f'images to fit, one of {", ".join(DATASETS)} (auto: '
                 'fashion_mnist if prepared, else synthetic 28x28 blobs; nothing downloads)')
  p.add_argument('--methods', default=','.join(METHODS), help='comma-separated methods (popnet first: the '
                 'reference of the curve check and of the speed-ups)')
  p.add_argument('--steps', type=int, default=1000, help='Adam steps of every fit (DWS protocol: 1,000)')
  p.add_argument('--every', type=int, default=100, help="steps per point of the loss curves (popnet's program "
                 'epoch); divides --steps')
  p.add_argument('--seconds', type=float, default=45.0,
                 help='time box per method and round (0: exactly --fits fits per method and round)')
  p.add_argument('--rounds', type=int, default=2, help='alternating rounds (a method\'s rate: its best round)')
  p.add_argument('--fits', type=int, default=FULL_ZOO, help='most fits per method and round')
  p.add_argument('--group', type=int, default=256, help='images fitted together by popnet and torch_vmap')
  p.add_argument('--member_chunk', type=int, default=0, help="popnet's members vmapped together (0: automatic)")
  p.add_argument('--host_devices', type=int, default=-1, help='CPU: XLA host devices (-1: one per usable core, up '
                 'to 8, as popnet.train; 0: leave XLA_FLAGS)')
  p.add_argument('--torch_threads', type=int, default=0, help="torch's intra-op threads (0: torch's default, one "
                 'per core; on a loaded CPU 1 can be much faster)')
  p.add_argument('--seed', type=int, default=0, help='initial weights: fit i from PRNGKey(seed) folded with i')
  p.add_argument('--out', default=None, help='write inr_fit_rate_<backend>.{json,md} here (none: print only)')
  args = p.parse_args(argv)
  args.method_list = [m for m in args.methods.split(',') if m]
  bad = [m for m in args.method_list if m not in METHODS]
  if bad or not args.method_list or len(set(args.method_list)) < len(args.method_list):
    p.error(f'--methods must be distinct names from {", ".join(METHODS)}, got {args.methods!r}')
  if any(m.startswith('torch') for m in args.method_list) and importlib.util.find_spec('torch') is None:
    p.error('--methods torch_loop and torch_vmap need PyTorch (pip install .[torch]); without it use --methods '
            'popnet,jax_loop,jax_scan')
  if args.dataset not in DATASETS:
    p.error(f'--dataset must be one of {", ".join(DATASETS)}, got {args.dataset!r}')
  usage.check_ranges(p, args, (*((name, dict(low=1)) for name in ('steps', 'every', 'rounds', 'fits', 'group')),
                               ('torch_threads', dict(low=0)), ('member_chunk', dict(low=0)),
                               ('host_devices', dict(low=-1)), ('seed', dict(low=0)), ('seconds', dict(low=0))))
  if args.out:
    usage.check_out(p, args.out)
  if args.steps % args.every:
    p.error(f'--every must divide --steps, got --every {args.every} --steps {args.steps}')
  args.group = min(args.group, args.fits)
  return args


# --- the work: images, targets, initial weights -----------------------------------------------------------------
@dataclasses.dataclass
class Work:
  """A group of fits: uint8 images [n, H, W, C], their DWS targets [n, H * W, C] and initial weights
  {layer: {'kernel' [n, in, out], 'bias' [n, out]}}."""
  images: object
  targets: object
  weights: dict


def smooth_blobs(n: int, shape, seed: int = 0):
  """Gaussian blobs in uint8 (what --dataset synthetic fits; the rate does not depend on the pixels)."""
  import numpy as np
  rng = np.random.default_rng(seed)
  r, c = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing='ij')
  cy, cx = rng.uniform(0.3, 0.7, (2, n, 1, 1)) * np.array(shape[:2]).reshape(2, 1, 1, 1)
  s = rng.uniform(0.1, 0.25, (n, 1, 1)) * shape[0]
  return np.round(255 * np.exp(-((r - cy) ** 2 + (c - cx) ** 2) / (2 * s * s)))[..., None].astype(np.uint8)


def load_images(name: str, n: int):
  """(the first n images of train + test, the dataset's name as measured)."""
  import numpy as np
  from popnet import data as data_lib
  if name == 'auto':
    name = 'fashion_mnist' if data_lib.is_prepared('fashion_mnist', data_lib.catalog.resolve(None)) else 'synthetic'
  if name == 'synthetic':
    return smooth_blobs(n, (28, 28)), name
  raw = data_lib.load(name)
  return np.concatenate([raw.train_x, raw.test_x])[:n], name


class Works:
  """Work for fits [start, stop): targets and initial weights made on demand (outside the timed fits), cached."""

  def __init__(self, arch, images, seed: int):
    import jax
    from popnet import siren
    self.arch, self.images, self.cache = arch, images, {}
    key = jax.random.PRNGKey(seed)
    self.init = jax.jit(jax.vmap(lambda i: siren.init(arch, jax.random.fold_in(key, i))['params']))

  def get(self, start: int, stop: int) -> Work:
    import jax
    import numpy as np
    from popnet import siren
    if (start, stop) not in self.cache:
      images = self.images[start:stop]
      weights = jax.tree.map(np.asarray, self.init(np.arange(start, stop)))
      self.cache[(start, stop)] = Work(images, np.asarray(siren.targets(self.arch, images)), weights)
    return self.cache[(start, stop)]


# --- timing -----------------------------------------------------------------------------------------------------
def time_box(fitter, works: Works, args) -> dict:
  """Whole groups from fit 0 on until args.seconds of fitting have passed (or args.fits are done)."""
  import numpy as np
  group = fitter.group
  limit = args.fits - args.fits % group
  done, seconds, curves, compiled = 0, 0.0, [], fitter.compile_seconds
  load = timing.load_average()
  while done < limit and (done == 0 or args.seconds == 0 or seconds < args.seconds):
    work = works.get(done, done + group)
    t = time.perf_counter()
    curves.append(reduce_curves(fitter.fit(work, args.steps), args.steps, args.every))
    seconds += time.perf_counter() - t
    done += group
  seconds -= fitter.compile_seconds - compiled  # a compilation here is not fitting (none is expected)
  return {'fits': done, 'seconds': seconds, 'fits_per_s': done / seconds, 'load_average_before': load,
          'compiled_during_round_s': fitter.compile_seconds - compiled, 'curves': np.concatenate(curves)}


def reduce_curves(curves, steps: int, every: int):
  """Per-step losses [n, steps] -> the means of every `every` steps [n, steps // every]; popnet's curves are
  already those means."""
  n = len(curves)
  return curves if curves.shape[1] == steps // every else curves.reshape(n, steps // every, every).mean(axis=2)


def warm(fitter, works: Works, args) -> dict:
  """Compiles (timed by the fitter) and runs one group once: a whole fit for one-INR methods, one curve interval
  (every program and shape compiled) for the batched ones."""
  steps = args.every if fitter.group > 1 else args.steps
  t = time.perf_counter()
  fitter.fit(works.get(0, fitter.group), steps)
  return {'compile_seconds': fitter.compile_seconds, 'warm_seconds': time.perf_counter() - t, 'warm_steps': steps}


def make_fitters(args, arch, input_shape, mesh) -> list:
  from benchmarks import inr_jax
  from popnet import siren
  config = inr_jax.dws_config(input_shape)
  coords = siren.coordinates(arch, *input_shape[:2])
  names = arch.layer_names
  lr = config.hparams.learning_rate
  fitters = []
  for name in args.method_list:
    if name == 'popnet':
      fitters.append(inr_jax.Popnet(arch, input_shape, args.group, args.every, mesh, args.member_chunk))
    elif name == 'jax_loop':
      fitters.append(inr_jax.JaxLoop(arch, coords, config))
    elif name == 'jax_scan':
      fitters.append(inr_jax.JaxScan(arch, coords, config))
    else:
      from benchmarks import inr_torch
      fitters.append(inr_torch.TorchLoop(coords, lr, names) if name == 'torch_loop' else
                     inr_torch.TorchVmap(coords, lr, names, args.group))
  return fitters


def curve_agreement(measured: dict[str, list[dict]], reference: str) -> dict:
  """Per method, the largest relative difference of its loss curves from the reference method's, over the fits
  both did in their first round (the same images from the same initial weights)."""
  import numpy as np
  ref = measured[reference][0]['curves']
  out = {}
  for name, rounds in measured.items():
    curves = rounds[0]['curves']
    n = min(len(curves), len(ref))
    out[name] = {'fits_compared': n,
                 'max_relative_difference': float(np.max(np.abs(curves[:n] - ref[:n]) / np.abs(ref[:n])))}
  return out


def summarize(measured: dict, warmed: dict, reference: str) -> dict:
  methods = {}
  for name, rounds in measured.items():
    best = max(rounds, key=lambda r: r['fits_per_s'])
    methods[name] = {**warmed[name], 'fits_per_s': best['fits_per_s'], 'fits': best['fits'],
                     'seconds': best['seconds'], 'hours_for_70k': FULL_ZOO / best['fits_per_s'] / 3600,
                     'rounds': [{k: v for k, v in r.items() if k != 'curves'} for r in rounds]}
  if reference in methods:
    for name, m in methods.items():
      m['popnet_speedup'] = methods[reference]['fits_per_s'] / m['fits_per_s']
  return methods


def targets(methods: dict) -> dict:
  return {name: {'target': factor, 'measured': methods[name]['popnet_speedup'],
                 'met': methods[name]['popnet_speedup'] >= factor}
          for name, factor in TARGETS.items() if name in methods and 'popnet_speedup' in methods[name]}


def markdown(result: dict) -> str:
  m, lines = result['machine'], []
  lines += [f"# INR fits per second ({m['backend']})", '',
            f"Machine: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable); JAX {m['jax']} on "
            f"{m['device_count']} x {m['devices'][0]}; torch {m['torch']['torch']} on {m['torch']['torch_device']} "
            f"({m['torch']['torch_threads']} threads). {result['date']}. Load average at start {m['load_average_start']}, "
            f"at end {m['load_average_end']}.", '', f"Command: `{result['command']}`", '',
            f"DWS SIRENs fitted to {result['dataset']} images ({'x'.join(map(str, result['input_shape']))}) in order "
            f"(fit i: image i of train + test, the same initial weights for every method), {result['steps']} Adam "
            f"steps per fit; popnet and torch_vmap on groups of {result['group']}; best of {result['rounds']} "
            f"alternating rounds of ~{result['seconds']:g} s each (at least one group).", '',
            '| method | fits/s | fits timed | seconds | popnet / method | hours for 70k | compile s | curve max rel. diff '
            '| load (1 min) per round |', '|---|---:|---:|---:|---:|---:|---:|---:|---|']
  for name, r in result['methods'].items():
    agree = result['curve_agreement'].get(name, {})
    lines.append(f"| {name} | {r['fits_per_s']:,.2f} | {r['fits']:,} | {r['seconds']:.1f} "
                 f"| {r.get('popnet_speedup', float('nan')):.2f}x | {r['hours_for_70k']:,.2f} "
                 f"| {r['compile_seconds']:.1f} | {agree.get('max_relative_difference', float('nan')):.1e} "
                 f"| {', '.join(str((x['load_average_before'] or ['-'])[0]) for x in r['rounds'])} |")
  for name, t in result['targets'].items():
    lines.append(f"\nTarget popnet >= {t['target']:g}x {name}: measured {t['measured']:.2f}x, "
                 f"{'met' if t['met'] else 'NOT met'}.")
  return '\n'.join(lines) + '\n'


def machine_record(torch_threads: int) -> dict:
  info = timing.machine()
  if any(os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')):
    info['thread_env'] = {k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')}
  try:
    from benchmarks import inr_torch
    inr_torch.set_threads(torch_threads)
    info['torch'] = inr_torch.facts()
  except ImportError:
    info['torch'] = {'torch': None, 'torch_device': None, 'torch_threads': None}
  info['load_average_start'] = timing.load_average()
  return info


def result_record(args, argv, info, dataset, images, fitters, measured, warmed) -> dict:
  reference = args.method_list[0]
  methods = summarize({k: v for k, v in measured.items() if v}, warmed, reference)
  return {'machine': info, 'command': ' '.join(['python -m benchmarks.inr'] + (sys.argv[1:] if argv is None
                                                                               else list(argv))),
          'dataset': dataset, 'images': len(images), 'input_shape': list(images.shape[1:]), 'steps': args.steps,
          'every': args.every, 'seconds': args.seconds, 'rounds': max(len(v) for v in measured.values()),
          'group': args.group, 'member_chunk': args.member_chunk,
          'popnet_member_chunk_used': next((f.program.spec.member_chunk for f in fitters if f.name == 'popnet'), None),
          'reference': reference, 'methods': methods,
          'curve_agreement': curve_agreement({k: v for k, v in measured.items() if v}, reference)
          if measured.get(reference) else {},
          'targets': targets(methods), 'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
          'curves_first_fits': {name: rounds[0]['curves'][:4].tolist() for name, rounds in measured.items() if rounds}}


def write(result: dict, out: str | None) -> None:
  if out:
    os.makedirs(out, exist_ok=True)
    name = os.path.join(out, f"inr_fit_rate_{result['machine']['backend']}")
    with open(name + '.json', 'w') as f:
      json.dump(result, f, indent=1)
    with open(name + '.md', 'w') as f:
      f.write(markdown(result))


def main(argv=None) -> dict:
  args = parse_args(argv)
  cli.expose_host_cores(args.host_devices)
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')  # an accelerator's memory is shared with torch
  from popnet import population
  from popnet.arch import resolve
  info = machine_record(args.torch_threads)
  images, dataset = load_images(args.dataset, args.fits)
  arch = resolve('siren_dws')
  works = Works(arch, images, args.seed)
  fitters = make_fitters(args, arch, images.shape[1:], population.make_mesh())
  print(f"device: {info['backend']} x{info['device_count']} ({info['cpu']}); torch on {info['torch']['torch_device']}; "
        f"{dataset} {images.shape[1:]}; load average {info['load_average_start']}", flush=True)
  warmed = {}
  for f in fitters:
    warmed[f.name] = warm(f, works, args)
    print(f"{f.name:10s} warm-up: {warmed[f.name]}", flush=True)
  measured = {f.name: [] for f in fitters}
  for r in range(args.rounds):
    for f in fitters:
      measured[f.name].append(time_box(f, works, args))
      m = measured[f.name][-1]
      print(f"round {r}: {f.name:10s} {m['fits']:6d} fits in {m['seconds']:7.2f} s = {m['fits_per_s']:8.2f} fits/s"
            f"  (load {m['load_average_before']})", flush=True)
      info['load_average_end'] = timing.load_average()
      result = result_record(args, argv, info, dataset, images, fitters, measured, warmed)
      write(result, args.out)  # after every method: a run stopped later keeps what it measured
  print(markdown(result))
  return result


if __name__ == '__main__':
  main()
