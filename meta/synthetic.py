"""A small synthetic zoo whose weights carry known signals, to test and demo meta-models in seconds.

No network is trained: each member's weights start from its init scheme (glorot_uniform / he_normal) and drift,
snapshot by snapshot, in ways that depend on its hyper-parameters: the activation shifts and rescales the conv
kernels (weakly the FC ones too), the optimizer rescales the FC kernels only, and the learning rate sets the
size of the random drift. Metrics follow the learning rate, the epoch and augmentation. So what is learnable,
and where, is known: activation mostly in the conv part, optimizer only in the FC part, nothing at epoch 0 but
the init. The files are written with popnet's ZooWriter, so they are a real zoo.

A planted signal with a known ceiling: the column `planted` (a / b) is written into the weights (every bias
shifted by PLANTED_SHIFT for b) only through a noisy copy that agrees with it for a fraction `planted` of the
members, so the best possible test accuracy on it is `planted` (0.8 by default) and a sound meta-model reaches
about that, never more.

    python -m meta.synthetic --out /tmp/zoo --members 64 --snapshots 4
"""
from __future__ import annotations

if __name__ == '__main__':  # the command line first: --help and bad flags answer before numpy and the zoo load
  from meta import cli
  cli.run('synthetic', lambda: cli.synthetic_args(__doc__), 'the part of a zoo written to {out} was removed')

import contextlib
import math
import os
import shutil

import numpy as np

from meta import cli
from popnet import arch as arch_lib
from popnet.zoo import ZooWriter

ACTIVATION_EFFECT = {'relu': (1.0, 1.0), 'elu': (2.0, 0.0), 'sigmoid': (1.0, -1.0), 'tanh': (0.4, 0.0)}  # scale, shift
OPTIMIZER_SCALE = {'adam': 1.0, 'rmsprop': 1.6, 'sgd': 0.6}
INITS = ('glorot_uniform', 'he_normal')
BATCH_SIZES = (32, 64)
MIXED_ARCHS = ((2, 1), (4, 2))
PLANTED_SHIFT = 1.0  # (width_conv, depth_fc) of the nws-family variants of a mixed zoo


def _hparams(rng: np.random.Generator, members: int, mixed: bool) -> list[tuple[dict, arch_lib.Arch]]:
  out = []
  for m in range(members):
    width_conv, depth_fc = MIXED_ARCHS[rng.integers(len(MIXED_ARCHS))] if mixed else (8, 2)
    hp = dict(member_id=m, dataset='digits', architecture='nws' if mixed else 'smallcnnzoo', filter_size=3,
              depth_conv=3, width_conv=width_conv, depth_fc=depth_fc, width_fc=16, batch_norm=bool(mixed),
              batch_size=int(rng.choice(BATCH_SIZES)), optimizer=str(rng.choice(list(OPTIMIZER_SCALE))),
              learning_rate=float(10 ** rng.uniform(-4, -2)), lr_decay=1.0, momentum=0.9, beta1=0.9, beta2=0.999,
              rms_decay=0.9, eps=1e-7, weight_decay=0.0, dropout=0.0,
              activation=str(rng.choice(list(ACTIVATION_EFFECT))), init=str(rng.choice(INITS)),
              augment=bool(rng.integers(2)), seed=int(rng.integers(2**31 - 1)), planted=str(rng.choice(['a', 'b'])))
    arch = (arch_lib.nws_arch(3, 3, width_conv, depth_fc, 16, True, 10) if mixed else arch_lib.smallcnnzoo_arch())
    hp['arch'] = arch.name
    out.append((hp, arch))
  return out


def _snapshots(layout, hp, rng, epochs_frac, seen: str):
  """[snapshots, values]: init, then hyper-parameter-dependent drift growing with the training fraction t."""
  scale_a, shift_a = ACTIVATION_EFFECT[hp['activation']]
  scale_o = OPTIMIZER_SCALE[hp['optimizer']]
  sigma = 0.2 * (math.log10(hp['learning_rate']) + 5) / 3
  base, scale, shift, noise_std = [], [], [], []
  for e in layout.entries:
    if e.name == 'kernel':
      fan_in = math.prod(e.shape[:-1])
      fan_out = e.shape[-1] * math.prod(e.shape[:-2])
      if hp['init'] == 'glorot_uniform':
        lim = math.sqrt(6 / (fan_in + fan_out))
        w0, std = rng.uniform(-lim, lim, e.size), lim / math.sqrt(3)
      else:
        std = math.sqrt(2 / fan_in)
        w0 = np.clip(rng.normal(0, 1, e.size), -2, 2) * std
      conv = e.layer.startswith('conv_')
      base.append(w0)
      scale.append(np.full(e.size, scale_a - 1 if conv else scale_o - 1))
      shift.append(np.full(e.size, shift_a * std if conv else 0.3 * shift_a * std))
      noise_std.append(np.full(e.size, sigma * std))
    else:
      one = e.name in ('bn_gamma', 'bn_var')
      planted = PLANTED_SHIFT if e.name == 'bias' and seen == 'b' else 0.0
      base.append(np.full(e.size, (1.0 if one else 0.0) + planted))
      scale.append(np.full(e.size, 0.2 * (scale_a - 1) if one else 0.0))
      shift.append(np.full(e.size, 0.0 if one else 0.05 * shift_a))
      noise_std.append(np.full(e.size, 0.05 * sigma))
  base, scale, shift, noise_std = map(np.concatenate, (base, scale, shift, noise_std))
  out = []
  drift = np.zeros_like(base)
  for k, t in enumerate(epochs_frac):
    if k:
      drift += rng.normal(0, 1, base.size) * noise_std * math.sqrt(t - epochs_frac[k - 1])
    out.append(base * (1 + t * scale) + t * shift + drift)
  return np.asarray(out, np.float32)


def _metrics(hp, t, rng):
  lr_quality = 1 - abs(math.log10(hp['learning_rate']) + 3) / 2  # best at 1e-3
  act_bonus = {'relu': 0.05, 'elu': 0.04, 'sigmoid': -0.05, 'tanh': 0.0}[hp['activation']]
  test = float(np.clip(0.1 + t * (0.55 + 0.25 * lr_quality + act_bonus) + rng.normal(0, 0.01), 0.01, 0.99))
  train = float(np.clip(test + t * (0.03 if hp['augment'] else 0.12) + rng.normal(0, 0.005), 0.01, 1.0))
  val = float(np.clip(test + rng.normal(0, 0.01), 0.01, 0.99))
  return dict(train_loss=-math.log(train), train_accuracy=train, val_loss=-math.log(val), val_accuracy=val,
              test_loss=-math.log(test), test_accuracy=test)


def make_zoo(path: str, members: int = 48, snapshots: int = 3, epochs: int = 10, mixed: bool = False,
             seed: int = 0, diverged: int = 1, planted: float = 0.8) -> str:
  """Writes the zoo to `path` and returns it. The last `diverged` members get status 'diverged' at their last
  snapshot (to exercise the status filter). The weights show `planted` truly for that fraction of the members."""
  if not 0.5 <= planted <= 1:
    raise ValueError(f'planted: the fraction of members whose weights show their `planted` class, in [0.5, 1]; '
                     f'got {planted}')
  if os.path.isdir(path) and os.listdir(path):
    raise FileExistsError(f'{path} exists and is not empty; give a new directory')
  rng = np.random.default_rng(seed)
  table = _hparams(rng, members, mixed)
  input_shape = (8, 8, 1)
  archs = {a.name: a for _, a in table}
  counts = {name: sum(1 for _, a in table if a.name == name) for name in archs}
  snapshot_epochs = [int(round(e)) for e in np.linspace(0, epochs, snapshots)]
  writer = ZooWriter(path, archs, input_shape, {n: c * snapshots for n, c in counts.items()},
                     manifest={'members': members, 'snapshot_epochs': snapshot_epochs, 'synthetic': True,
                               'seed': seed})
  rank = {name: 0 for name in archs}
  pending = {name: ([], [], []) for name in archs}  # one write per architecture: rows, weights, records
  frac = [e / epochs for e in snapshot_epochs]
  for hp, arch in table:
    member_rng = np.random.default_rng([seed, hp['member_id']])
    truthful = member_rng.random() < planted
    seen = hp['planted'] if truthful else {'a': 'b', 'b': 'a'}[hp['planted']]
    weights = _snapshots(writer.layouts[arch.name], hp, member_rng, frac, seen)
    rows = rank[arch.name] * snapshots + np.arange(snapshots)
    rank[arch.name] += 1
    for k, (epoch, t) in enumerate(zip(snapshot_epochs, frac)):
      bad = hp['member_id'] >= members - diverged and k == snapshots - 1
      rec = dict(hp, planted_shown=seen, snapshot=k, epoch=epoch, step=epoch * 10, status='diverged' if bad else 'ok',
                 diverged_epoch=epoch - 1 if bad else -1, weights_file=f'weights/{arch.name}.npy',
                 weights_row=int(rows[k]))
      rec.update(_metrics(hp, t, member_rng))
      pending[arch.name][2].append(rec)
    pending[arch.name][0].append(rows)
    pending[arch.name][1].append(weights)
  for name, (rows, weights, records) in pending.items():
    writer.write(name, np.concatenate(rows), np.concatenate(weights), records)
  writer.write_manifest(complete=True)
  return path


def main(argv=None):
  a = cli.synthetic_args(__doc__, argv)
  with removed_unless_written(a.out):
    make_zoo(a.out, a.members, a.snapshots, mixed=a.mixed, seed=a.seed, planted=a.planted)
  print(f'wrote {a.out}')


@contextlib.contextmanager
def removed_unless_written(out: str):
  """A zoo stopped (Ctrl-C, SIGTERM) or failing part-way is removed: the new or empty `out` (synthetic_args
  checked it), and the parents made for it, are left as they were."""
  top = os.path.abspath(out)
  while not os.path.exists(os.path.dirname(top)):
    top = os.path.dirname(top)
  existed = os.path.isdir(out)
  try:
    yield
  except BaseException:
    for name in os.listdir(out) if existed else ():
      path = os.path.join(out, name)
      shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    if not existed:
      shutil.rmtree(top, ignore_errors=True)
    raise

