"""TensorBoard event files of a run (config.tensorboard = True): population summaries, not one curve per member.

    <workdir>/tensorboard/program_<i>/events.out.tfevents.*     one TensorBoard run per program

At every evaluation of a program (every config.eval_every epochs and at snapshots), step = the epoch: for each
per-member curve column (popnet/curves.py: train/val/test loss and accuracy, the epoch's minibatch loss; an INR
fit's mse and psnr) the p10, p50, p90 and mean over the members that have not diverged (`<column>/p50`, ...),
the fraction diverged (`population/diverged_fraction`) and the recent training rate
(`population/model_samples_per_second`, popnet/progress.py TrainingRate). Written with tensorboardX (no
TensorFlow), the optional extra `pip install 'popnet[tensorboard]'`, imported only when the flag is on.

    tensorboard --logdir runs/default/tensorboard
"""
from __future__ import annotations

import os

import numpy as np

from popnet import config as config_lib

DIRECTORY = 'tensorboard'
QUANTILES = {'p10': 0.1, 'p50': 0.5, 'p90': 0.9}
NOT_SUMMARIZED = ('member_id', 'epoch', 'diverged')


def require_writer() -> None:
  """Raises ConfigError (one line, naming the extra) when tensorboardX is not installed."""
  try:
    import tensorboardX  # noqa: F401
  except ImportError:
    raise config_lib.ConfigError("config.tensorboard: True needs tensorboardX, which is not installed: "
                                 "pip install 'popnet[tensorboard]' (or set config.tensorboard=False)") from None


def population_scalars(rows: list[dict], samples_per_second: float | None) -> dict[str, float]:
  """The summaries of one evaluation: {tag: value} from the members' curve rows of that epoch."""
  diverged = np.array([bool(r.get('diverged', False)) for r in rows])
  scalars = {'population/diverged_fraction': float(diverged.mean()) if len(rows) else 0.0}
  if samples_per_second:
    scalars['population/model_samples_per_second'] = float(samples_per_second)
  columns = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in NOT_SUMMARIZED]
  for column in columns:
    values = np.array([r.get(column, np.nan) for r in rows], np.float64)[~diverged]
    values = values[np.isfinite(values)]
    if not len(values):
      continue
    scalars.update({f'{column}/{name}': float(np.quantile(values, q)) for name, q in QUANTILES.items()})
    scalars[f'{column}/mean'] = float(values.mean())
  return scalars


class Summaries:
  """One tensorboardX writer per program, under <workdir>/tensorboard/ (a process's part in multi-process runs)."""

  def __init__(self, directory: str):
    require_writer()
    self.directory, self.writers = directory, {}

  def evaluation(self, program: int, epoch: int, rows: list[dict], samples_per_second: float | None) -> None:
    """Writes the population summaries of `program` (0-based) at `epoch` and flushes them to disk."""
    writer = self._writer(program)
    for tag, value in population_scalars(rows, samples_per_second).items():
      writer.add_scalar(tag, value, global_step=epoch)
    writer.flush()

  def _writer(self, program: int):
    if program not in self.writers:
      from tensorboardX import SummaryWriter
      self.writers[program] = SummaryWriter(os.path.join(self.directory, f'program_{program + 1}'))
    return self.writers[program]

  def close(self) -> None:
    for writer in self.writers.values():
      writer.close()
    self.writers.clear()
