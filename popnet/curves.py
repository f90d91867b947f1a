"""Per-member learning curves: one row per member and epoch, written beside the zoo.

    <workdir>/curves/cohort_<i>.csv   member_id, epoch, minibatch_loss, train/val/test loss and accuracy, diverged

`minibatch_loss` is the mean training loss of the minibatches of the epoch that ended at `epoch` (what the
optimizer saw: dropout and augmentation on); the other metrics are evaluation-mode numbers on the run's fixed
evaluation subsets, taken every `config.eval_every` epochs and at every snapshot. Each program's file is
rewritten atomically after every epoch, so a resumed run rewrites the same rows with the same values.

    python -m popnet.curves plot runs/default --out curves.png     # learning curves and final distribution
    popnet.curves.read('runs/default')                             # the whole table (pandas)
"""
from __future__ import annotations

import argparse
import glob
import os
import sys

import numpy as np
import pandas as pd

from popnet import files
from popnet.zoo.schema import EVAL_SEGMENTS
from popnet import usage

DIRECTORY = 'curves'
METRICS = ('minibatch_loss',) + tuple(f'{s}_{m}' for s in EVAL_SEGMENTS for m in ('loss', 'accuracy'))
COLUMNS = ('member_id', 'epoch') + METRICS + ('diverged',)


class ProgramCurves:
  """The curves of one program's members, kept in memory and saved after every epoch."""

  def __init__(self, directory: str, index: int, member_ids):
    os.makedirs(directory, exist_ok=True)
    self.path = os.path.join(directory, f'cohort_{index:04d}.csv')
    self.member_ids = np.asarray(member_ids)
    self.rows: dict[tuple[int, int], dict] = {}
    if os.path.exists(self.path):
      for row in pd.read_csv(self.path).to_dict('records'):
        self.rows[(int(row['member_id']), int(row['epoch']))] = row

  def has(self, epoch: int, column: str) -> bool:
    return all(pd.notna(self.rows.get((int(m), epoch), {}).get(column, np.nan)) for m in self.member_ids)

  def record(self, epoch: int, diverged, **columns) -> None:
    """Per-member arrays (one value per member of the program) for `epoch`."""
    for i, m in enumerate(self.member_ids):
      row = self.rows.setdefault((int(m), epoch), {'member_id': int(m), 'epoch': epoch})
      row.update({name: float(values[i]) for name, values in columns.items()}, diverged=bool(diverged[i]))

  def record_evaluation(self, epoch: int, metrics, diverged) -> None:
    """metrics: [members, (loss sum, correct, count), EVAL_SEGMENTS] from popnet.member.evaluate."""
    count = np.maximum(metrics[:, 2], 1)
    columns = {}
    for s, segment in enumerate(EVAL_SEGMENTS):
      columns[f'{segment}_loss'] = metrics[:, 0, s] / count[:, s]
      columns[f'{segment}_accuracy'] = metrics[:, 1, s] / count[:, s]
    self.record(epoch, diverged, **columns)

  def save(self) -> None:
    table = pd.DataFrame([self.rows[k] for k in sorted(self.rows)], columns=list(COLUMNS))
    files.atomic_write_text(self.path, table.to_csv(index=False))


def read(workdir: str) -> pd.DataFrame:
  """Every member's curves of a run (all programs and processes), sorted by member and epoch."""
  paths = sorted(glob.glob(os.path.join(workdir, DIRECTORY, '**', 'cohort_*.csv'), recursive=True))
  if not paths:
    raise FileNotFoundError(f'{os.path.join(workdir, DIRECTORY)}: no curves (is {workdir!r} a popnet workdir?)')
  table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
  return table.sort_values(['member_id', 'epoch'], kind='stable').reset_index(drop=True)


def plot(workdir: str, out: str, metric: str = 'val_accuracy') -> str:
  """Three panels: `metric` and the minibatch loss against epoch (the median over members, and the band
  holding the middle 80% of them: 10th to 90th percentile), and the distribution of the final `metric`."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.lines
  import matplotlib.patches
  import matplotlib.pyplot as plt

  table = read(workdir)
  fig, (metric_ax, loss_ax, hist_ax) = plt.subplots(1, 3, figsize=(14, 4.4))
  loss_ax.sharex(metric_ax)
  for ax, column, color in ((metric_ax, metric, 'C0'), (loss_ax, 'minibatch_loss', 'C1')):
    _median_and_band(ax, table, column, color)
  key = [matplotlib.patches.Patch(color='gray', alpha=0.3, lw=0, label='band: the middle 80% of members (10th to '
                                  '90th percentile)'),
         matplotlib.lines.Line2D([], [], color='gray', marker='o', ms=3, label='line: the median over members')]
  fig.legend(handles=key, loc='lower center', ncol=2, fontsize=9, frameon=False)
  final = table.dropna(subset=[metric]).groupby('member_id').last()
  hist_ax.hist(final[metric], bins=30, color='C0')
  hist_ax.set_xlabel(f'final {label(metric)}')
  hist_ax.set_ylabel('members')
  hist_ax.set_title(f'final epoch: median {final[metric].median():.3f}', fontsize=10)
  fig.suptitle(f'{os.path.basename(os.path.normpath(os.path.abspath(workdir)))}: {len(final)} members')
  fig.tight_layout(rect=(0, 0.07, 1, 1))
  fig.savefig(out, dpi=120)
  plt.close(fig)
  return out


def label(column: str) -> str:
  """'val_accuracy' -> 'validation accuracy', 'minibatch_loss' -> 'training loss (minibatches)'."""
  if column == 'minibatch_loss':
    return 'training loss (minibatches)'
  segment, metric = column.split('_', 1)
  return f'{"validation" if segment == "val" else segment} {metric}'


def _median_and_band(ax, table: pd.DataFrame, column: str, color: str) -> None:
  """The median over members per epoch, and the band from their 10th to their 90th percentile."""
  from matplotlib.ticker import MaxNLocator
  q = table.dropna(subset=[column]).groupby('epoch')[column].quantile([0.1, 0.5, 0.9]).unstack()
  ax.fill_between(q.index, q[0.1], q[0.9], color=color, alpha=0.25, lw=0)
  ax.plot(q.index, q[0.5], color=color, marker='o', ms=3)
  ax.set_xlabel('epoch')
  ax.set_ylabel(label(column))
  ax.set_title(label(column), fontsize=10)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def main(argv=None) -> int:
  parser = usage.ArgumentParser(prog='python -m popnet.curves', description='Per-member learning curves of a '
                                'popnet run.', epilog='example: python -m popnet.curves plot runs/default '
                                '--out curves.png',
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  commands = parser.add_subparsers(dest='command', required=True)
  p = commands.add_parser('plot', help='learning curves and the final-metric distribution as a PNG',
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                          epilog='example: python -m popnet.curves plot runs/default --out curves.png')
  p.add_argument('workdir', help='a training workdir (its curves/ folder)')
  p.add_argument('--out', default='curves.png', help='the PNG to write')
  p.add_argument('--metric', default='val_accuracy', choices=[m for m in METRICS if m != 'minibatch_loss'],
                 help='the metric drawn per member and in the final-metric histogram')
  args = parser.parse_args(argv)
  try:
    print(plot(args.workdir, args.out, args.metric))
  except FileNotFoundError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
