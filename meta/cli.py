"""The command-line flags shared by meta.train and meta.report, in popnet.train's style (`--snake_case`).

The earlier `--kebab-case` spellings still work as hidden aliases. Every --help shows a description, each
flag's default and an example.
"""
from __future__ import annotations

import argparse

from meta import methods, models, weights


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Defaults after every flag's help; the description and the examples kept as written."""


def parser(prog: str, doc: str, example: str) -> argparse.ArgumentParser:
  """An ArgumentParser whose help is the module docstring (its prose paragraphs), with defaults and an example."""
  prose = [par for par in doc.strip().split('\n\n') if not par.startswith('    ')]
  return argparse.ArgumentParser(prog=prog, description='\n\n'.join(prose), formatter_class=HelpFormatter,
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
  flag(p, 'memory_budget_mb', type=float, default=weights.DEFAULT_MEMORY_BUDGET / 2**20,
       help='selected weights up to this size are held in memory; beyond it batches are read from the '
            'memory-mapped files')


def add_model_args(p: argparse.ArgumentParser) -> None:
  d = methods.Options()
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
  flag(p, 'dmc_size', default=d.dmc_size, choices=sorted(models.DMC_SIZES),
       help="DMC preset: paper (NWS's published network, 10.4M parameters on 5,000 weights), small (0.27M, "
            "quick on a CPU), tiny (tests)")
  flag(p, 'dmc_eval_norm', default=d.dmc_eval_norm, choices=models.EVAL_NORMS,
       help="the DMC's batch norm at evaluation: batch (statistics of batches mixed across test networks, as "
            "NWS evaluates) or running (running averages)")
  flag(p, 'hidden', default=','.join(map(str, d.hidden)), help='MLP hidden units, comma-separated')
  flag(p, 'dropout', type=float, default=d.dropout, help='MLP dropout (the DMC uses 0.5, as NWS)')
  flag(p, 'gbt_max_iter', type=int, default=d.gbt_max_iter, help='boosting iterations of statnn_gbt')
  flag(p, 'verbose', action='store_true', help='print every epoch')


def options(a: argparse.Namespace) -> methods.Options:
  return methods.Options(epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.lr, lr_decay=a.lr_decay,
                         min_steps=a.min_steps, loss=a.loss, seed=a.seed, window=a.window, windows=a.windows,
                         val_windows=a.val_windows, dmc_size=a.dmc_size, dmc_eval_norm=a.dmc_eval_norm,
                         hidden=tuple(int(h) for h in a.hidden.split(',') if h), dropout=a.dropout,
                         gbt_max_iter=a.gbt_max_iter, verbose=a.verbose)


def data_kwargs(p: argparse.ArgumentParser, a: argparse.Namespace) -> dict:
  fractions = [float(x) for x in a.split.split(',')]
  if len(fractions) != 2:
    p.error(f'--split: give val,test (two numbers), got {a.split!r}')
  if a.splits < 1:
    p.error(f'--splits: at least 1, got {a.splits}')
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
