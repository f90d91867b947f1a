"""The metadata rows of one snapshot of a program, built the one way the trainer writes them."""
from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pandas as pd

from popnet import arch as arch_lib
from popnet import hparams
from popnet.zoo.schema import EVAL_SEGMENTS, weights_file

_NWS_FIXED = {k: v.default for k, v in inspect.signature(arch_lib.nws_arch).parameters.items()
              if k in hparams.NWS_ARCH_PARAMS}


def architecture_columns(member: dict[str, Any]) -> dict[str, Any]:
  """The member's row with NWS-family columns (filter_size, depth_conv, ...) that describe its network: its
  own values for `nws`, the preset's for `nws_fixed`, none for networks outside the family (smallcnnzoo)."""
  architecture = member.get('architecture', 'nws')
  out = {k: v for k, v in member.items() if architecture == 'nws' or k not in hparams.NWS_ARCH_PARAMS}
  if architecture == 'nws_fixed':
    out.update(_NWS_FIXED)
  return out


def snapshot_records(members: pd.DataFrame, snapshot: int, epoch: int, metrics: np.ndarray, diverged: np.ndarray,
                     diverged_step: np.ndarray, steps_per_epoch, rows: np.ndarray) -> list[dict[str, Any]]:
  """One metadata record per member of `members` (the program's member table, in row order).

  metrics: [n, 3 (loss_sum, correct, count), 3 segments (EVAL_SEGMENTS)] as popnet.member.evaluate sums them;
  diverged / diverged_step: the per-member divergence flag and the step it happened at; steps_per_epoch: one
  number, or one per member (members on datasets of different sizes); rows: the members' weights rows
  (popnet.zoo.snapshot_row) in the weights file of each member's `arch`. Keys: the member's columns, then
  snapshot, epoch, step (epoch * steps_per_epoch), status, diverged_epoch, weights_file, weights_row and
  <segment>_loss / <segment>_accuracy per segment (means over the segment's examples)."""
  steps = np.broadcast_to(np.asarray(steps_per_epoch, np.int64), (len(members),))
  out = []
  for i, member in enumerate(members.to_dict('records')):
    loss_sum, correct, count = metrics[i]
    record = architecture_columns(member)
    record.update(snapshot=snapshot, epoch=epoch, step=epoch * int(steps[i]),
                  status='diverged' if diverged[i] else 'ok',
                  diverged_epoch=int(diverged_step[i] // steps[i]) if diverged[i] else -1,
                  weights_file=weights_file(member['arch']), weights_row=int(rows[i]))
    for s, segment in enumerate(EVAL_SEGMENTS):
      n = max(count[s], 1)
      record[f'{segment}_loss'] = float(loss_sum[s] / n)
      record[f'{segment}_accuracy'] = float(correct[s] / n)
    out.append(record)
  return out
