"""The command lines of meta.train, meta.report and meta.synthetic, in popnet.train's style (`--snake_case`).

The earlier `--kebab-case` spellings still work as hidden aliases. Every --help shows a description, each
flag's default and an example. Nothing here imports JAX, numpy or a zoo (the choices and defaults come from
meta/options.py), so meta.train, meta.report and meta.synthetic parse their flags first: --help and a bad flag
answer before JAX loads.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from typing import Callable

from meta.options import (ANALYSES, AUGMENTED, DEFAULT_MEMORY_BUDGET, DEFAULT_MODELS, DEFAULT_TARGETS,
                          DMC_SIZE_NAMES, EVAL_NORMS, INPUTS, METHODS, ORDERS, PARTS, Options)
from popnet import stopping, usage

TRAIN_EXAMPLE = 'python -m meta.train --zoo runs/a --target activation --model dmc --snapshots 10-19 --splits 5'
SYNTHETIC_EXAMPLE = ('python -m meta.synthetic --out /tmp/zoo --members 64 --snapshots 4 && '
                     'python -m meta.train --zoo /tmp/zoo --target activation --model statnn_gbt')
REPORT_EXAMPLE = 'python -m meta.report --zoo runs/a --out reports/a --targets activation,optimizer --splits 5'


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """The description and the examples kept as written; '(default: ...)' after a flag's help, once: not when the
  help already says its default, nor for a required flag, a switch or a default of None (nothing to say)."""

  def _get_help_string(self, action):
    text = action.help or ''
    default = action.default
    if action.required or default is None or default is False or default == argparse.SUPPRESS or '(default' in text:
      return text
    return f'{text} (default: %(default)s)'


def parser(prog: str, doc: str, example: str) -> argparse.ArgumentParser:
  """An ArgumentParser whose help is the module docstring (its prose paragraphs), with defaults and an example."""
  prose = [par for par in doc.strip().split('\n\n') if not par.startswith('    ')]
  return usage.ArgumentParser(prog=prog, description='\n\n'.join(prose), formatter_class=HelpFormatter,
                               epilog=f'example:\n  {example}')


def flag(p: argparse.ArgumentParser, name: str, **kw) -> None:
  """--name (snake_case), plus the kebab-case spelling as a hidden alias."""
  p.add_argument(f'--{name}', **kw)
  if '_' in name:
    alias = {k: v for k, v in kw.items() if k in ('type', 'choices', 'action')}
    p.add_argument(f'--{name.replace("_", "-")}', dest=name, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                   **alias)


def add_data_args(p: argparse.ArgumentParser) -> None:
  flag(p, 'zoo', required=True, help='a zoo directory or a training workdir holding zoo/')
  flag(p, 'snapshots', default='all', help='snapshot indices: all, last, first, 3, 0,2,5, 10-19 (inclusive), -1 '
                                           '(= last); asking for one the zoo lacks is an error')
  flag(p, 'snapshot_epochs', default=None, help='select snapshots by epoch instead, same syntax (a range keeps '
                                                'the epochs inside it)')
  flag(p, 'status', default='ok', help="rows of this status only; 'all' keeps every row")
  flag(p, 'arch', default=None, help='comma-separated architecture ids to keep (default: all)')
  flag(p, 'split', default='0.15,0.15', help='val,test sizes as fractions of the members (or counts >= 1); train '
                                             'gets the rest')
  flag(p, 'splits', type=int, default=1, help='member splits (seeds seed, seed+1, ...): every score is then '
                                              'reported as mean +- sd over them, each split with its n')
  flag(p, 'seed', type=int, default=0, help='seed of the (first) member split, balancing and training')
  flag(p, 'memory_budget_mb', type=float, default=DEFAULT_MEMORY_BUDGET / 2**20,
       help='selected weights up to this size are held in memory; beyond it batches are read from the '
            'memory-mapped files')


def add_model_args(p: argparse.ArgumentParser) -> None:
  d = Options()
  flag(p, 'epochs', type=int, default=d.epochs, help="meta-model epochs (one pass over every training snapshot; "
                                                      "NWS's meta_classifier.py trains 50)")
  flag(p, 'min_steps', type=int, default=d.min_steps, help='at least this many optimizer steps: on a small zoo '
                                                           'each epoch draws every snapshot several times')
  flag(p, 'batch_size', type=int, default=d.batch_size, help='meta-model batch size')
  flag(p, 'lr', type=float, default=d.learning_rate, help='Adam learning rate')
  flag(p, 'lr_decay', type=float, default=d.lr_decay, help='learning-rate factor per epoch')
  flag(p, 'loss', choices=('l1', 'mse'), default=d.loss, help='regression loss')
  flag(p, 'window', type=int, default=d.window, help='DMC window length (consecutive weights); clipped to the '
                                                     'shortest selected vector, with a note')
  flag(p, 'windows', type=int, default=d.windows, help='DMC evenly spaced windows per test network')
  flag(p, 'val_windows', type=int, default=d.val_windows, help='DMC windows per validation network')
  flag(p, 'dmc_size', default=d.dmc_size, choices=sorted(DMC_SIZE_NAMES),
       help="DMC preset: paper (NWS's published network, 10.4M parameters on 5,000 weights), small (0.27M, "
            "quick on a CPU), tiny (tests)")
  flag(p, 'dmc_eval_norm', default=d.dmc_eval_norm, choices=EVAL_NORMS,
       help="the DMC's batch norm at evaluation: batch (statistics of batches mixed across test networks, as "
            "NWS evaluates) or running (running averages)")
  flag(p, 'dmc_order', default=d.dmc_order, choices=ORDERS,
       help="the value order within tensors the DMC's windows run over: popnet's (kernels HWIO / (in, out)) or "
            "nws (each output unit's weights contiguous, as NWS's exporter writes them)")
  flag(p, 'inputs', default=d.inputs, choices=INPUTS,
       help='a control for every model: all values, no_running_stats (without the batch-norm running mean and '
            'variance), no_batchnorm (without any batch-norm tensor); found from the layout')
  flag(p, 'statnn_running_stats', action='store_true',
       help='statnn / statnn_gbt: summarize the batch-norm running statistics too (the reverse control)')
  flag(p, 'hidden', default=','.join(map(str, d.hidden)), help='MLP hidden units, comma-separated')
  flag(p, 'dropout', type=float, default=d.dropout, help='MLP dropout (the DMC uses 0.5, as NWS)')
  flag(p, 'gbt_max_iter', type=int, default=d.gbt_max_iter, help='boosting iterations of statnn_gbt')
  flag(p, 'nfn_channels', default=','.join(map(str, d.nfn_channels)),
       help="nfn_np / nfn_hnp: channels of the equivariant layers, comma-separated (NFN's predict_gen: 16,16,5)")
  flag(p, 'nfn_head', type=int, default=d.nfn_head, help="nfn_np / nfn_hnp: hidden units of the invariant head")
  flag(p, 'weight_augment', action='store_true',
       help='mlp, dmc: train on a random hidden-unit permutation of each network at every draw (the same '
            'function; the DMC cuts its window from the permuted vector)')
  flag(p, 'verbose', action='store_true', help='print every epoch')


def options(a: argparse.Namespace) -> Options:
  return Options(epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.lr, lr_decay=a.lr_decay,
                         min_steps=a.min_steps, loss=a.loss, seed=a.seed, window=a.window, windows=a.windows,
                         val_windows=a.val_windows, dmc_size=a.dmc_size, dmc_eval_norm=a.dmc_eval_norm,
                         dmc_order=a.dmc_order, inputs=a.inputs, statnn_running_stats=a.statnn_running_stats,
                         hidden=tuple(int(h) for h in a.hidden.split(',') if h), dropout=a.dropout,
                         gbt_max_iter=a.gbt_max_iter, nfn_channels=a.nfn_channels,
                         nfn_head=a.nfn_head, weight_augment=a.weight_augment, verbose=a.verbose)


# every numeric model flag: (flag, keywords of usage.check_number); checked before any zoo is read or model fit
MODEL_RANGES = (('epochs', dict(low=1)), ('min_steps', dict(low=0)), ('batch_size', dict(low=1)),
                ('lr', dict(low=0, low_open=True)), ('lr_decay', dict(low=0, high=1, low_open=True)),
                ('window', dict(low=1)), ('windows', dict(low=1)), ('val_windows', dict(low=1)),
                ('dropout', dict(low=0, high=1, high_open=True)), ('gbt_max_iter', dict(low=1)),
                ('nfn_head', dict(low=1)), ('seed', dict(low=0)), ('splits', dict(low=1)),
                ('memory_budget_mb', dict(low=0)))


def check_model_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
  """The model flags argparse cannot check alone (a bad one: one line, exit 2); --nfn_channels becomes a tuple."""
  usage.check_ranges(p, a, MODEL_RANGES)
  usage.int_list(p, 'hidden', a.hidden)
  a.nfn_channels = tuple(usage.int_list(p, 'nfn_channels', a.nfn_channels))
  if a.statnn_running_stats and a.inputs != 'all':
    p.error(f'--statnn_running_stats: StatNN given the running statistics contradicts --inputs {a.inputs}; '
            f'use --inputs all')


def data_kwargs(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict:
  try:
    fractions = [float(x) for x in a.split.split(',')]
    for x in fractions:
      usage.check_number('--split', x, low=0)
  except (ValueError, usage.UsageError):
    fractions = []
  if len(fractions) != 2:
    p.error(f'--split: give val,test (two finite numbers >= 0: fractions, or counts >= 1), got {a.split!r}')
  return dict(snapshots=a.snapshots, epochs=a.snapshot_epochs, status=None if a.status == 'all' else a.status,
              fractions=(0.0, *fractions), seed=a.seed, archs=a.arch.split(',') if a.arch else None,
              memory_budget=int(a.memory_budget_mb * 2**20))


def csv_choice(p: argparse.ArgumentParser, name: str, value: str, allowed) -> list[str]:
  """A comma-separated subset of `allowed`, or a one-line error naming the flag and the allowed values."""
  items = [x for x in value.split(',') if x and x != 'none']
  bad = [x for x in items if x not in allowed]
  if bad:
    p.error(f'--{name}: unknown {bad}; choose from {", ".join(allowed)}')
  return items


def train_args(doc: str, argv=None) -> tuple[argparse.Namespace, dict]:
  """meta.train's flags, checked (a bad one: one line, exit 2): the namespace (`analyses` as a tuple) and the
  data selection keywords (data_kwargs)."""
  p = parser('python -m meta.train', doc, TRAIN_EXAMPLE)
  add_data_args(p)
  flag(p, 'target', required=True, help='a metadata column (hyper-parameter or metric) or generalization_gap')
  flag(p, 'model', choices=METHODS, default='dmc', help='the meta-model')
  flag(p, 'kind', choices=('classification', 'regression'), default=None,
       help='override the automatic choice (hyper-parameters from popnet.hparams.PARAMS: str/bool/int are '
            'classes, floats are regressed)')
  flag(p, 'part', choices=PARTS, default='all', help='restrict inputs to the conv or FC part')
  flag(p, 'analyses', default=','.join(ANALYSES), help=f'comma-separated subset of {", ".join(ANALYSES)}, or none')
  flag(p, 'when_snapshots', default=None,
       help='snapshots the "when" analysis trains a model on (default: every selected snapshot)')
  flag(p, 'out', default=None, help='output directory (default: runs/meta/<target>-<model>)')
  add_model_args(p)
  a = p.parse_args(argv)
  a.analyses = tuple(csv_choice(p, 'analyses', a.analyses, ANALYSES))
  check_model_args(p, a)
  if a.weight_augment and a.model not in AUGMENTED:
    p.error(f'--weight_augment: only --model {" or ".join(AUGMENTED)} reads it (the others read permutation-'
            f'invariant features or are equivariant); got {a.model}')
  a.out = a.out or os.path.join('runs', 'meta', f'{a.target}-{a.model}')
  kw = data_kwargs(p, a)
  usage.check_out(p, a.out)
  return a, kw


def report_args(doc: str, argv=None) -> tuple[argparse.Namespace, dict]:
  """meta.report's flags, checked (a bad one: one line, exit 2): the namespace (`models` as a list) and the data
  selection keywords (data_kwargs)."""
  p = parser('python -m meta.report', doc, REPORT_EXAMPLE)
  add_data_args(p)
  flag(p, 'targets', default=','.join(DEFAULT_TARGETS), help='comma-separated target columns')
  flag(p, 'models', default=','.join(DEFAULT_MODELS), help='comma-separated meta-models, run in this order '
       f'(any of {", ".join(METHODS)})')
  flag(p, 'out', required=True, help='output directory for report.md, report.json and report.png')
  add_model_args(p)
  a = p.parse_args(argv)
  a.models = csv_choice(p, 'models', a.models, METHODS)
  check_model_args(p, a)
  kw = data_kwargs(p, a)
  usage.check_out(p, a.out)
  return a, kw


def synthetic_args(doc: str, argv=None) -> argparse.Namespace:
  """meta.synthetic's flags (a bad one: one line, exit 2)."""
  p = parser('python -m meta.synthetic', doc, SYNTHETIC_EXAMPLE)
  flag(p, 'out', required=True, help='a new (or empty) directory for the zoo')
  flag(p, 'members', type=int, default=64, help='networks in the zoo')
  flag(p, 'snapshots', type=int, default=4, help='snapshots per network, evenly spaced over 10 epochs')
  flag(p, 'mixed', action='store_true', help='two nws-family architectures instead of smallcnnzoo')
  flag(p, 'planted', type=float, default=0.8, help='fraction of members whose weights show their `planted` '
                                                   'class: the best reachable accuracy on that target')
  flag(p, 'seed', type=int, default=0, help='seed of every drawn value')
  a = p.parse_args(argv)
  usage.check_ranges(p, a, (('members', dict(low=1)), ('snapshots', dict(low=1)),
                            ('planted', dict(low=0.5, high=1)), ('seed', dict(low=0))))
  usage.check_out(p, a.out)
  if os.path.isdir(a.out) and os.listdir(a.out):
    p.error(f'--out {a.out}: exists and is not empty; give a new (or empty) directory')
  return a


def run(module: str, parse: Callable[[], argparse.Namespace], note: str) -> None:
  """`python -m meta.<module>`: its flags checked by parse(), then main() of meta/<module>.py, whose imports
  (numpy, JAX) come after the Ctrl-C and SIGTERM handlers (popnet/stopping.py): a stop at any moment is one line
  (with `note`, formatted with --out, once the flags are read), exit 130 or 143, --out's lock released and no
  temp file of an interrupted write left in it."""
  stopping.install()
  where: dict[str, str] = {}

  def work():
    where['out'] = parse().out
    return importlib.import_module(f'meta.{module}').main()

  def line(signum: int) -> str:
    said = f'; {note.format(out=where["out"])}' if where else ''
    return f'{stopping.STOPPED[signum]}{said}; rerun the same command'
  sys.exit(stopping.run(work, line))


@contextlib.contextmanager
def locked_out(out: str):
  """The OS lock on --out (popnet.workdir's, released when the process ends), for the whole run: a second run on
  the same --out is refused with one line, exit 2, instead of mixing its results with this one's. Removes the
  temp files of an earlier run's interrupted writes there; a run that writes nothing (a damaged zoo, a bad
  target) leaves no directory it created."""
  from popnet import files, workdir
  existing = os.path.abspath(out)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  lock = workdir.WorkdirLock(out)
  try:
    lock.acquire()
  except workdir.WorkdirError as e:
    usage.fail(f'--out {e}')
  try:
    files.remove_temp_files(out)
    yield
  finally:
    lock.release()
    _remove_if_unused(out, existing)


def _remove_if_unused(out: str, existing: str) -> None:
  """Removes `out` and the parents created for it, up to `existing`, when it holds nothing but its lock."""
  path = os.path.abspath(out)
  if path == existing or os.listdir(path) != ['.lock']:
    return
  os.remove(os.path.join(path, '.lock'))
  while path != existing and not os.listdir(path):
    os.rmdir(path)
    path = os.path.dirname(path)
