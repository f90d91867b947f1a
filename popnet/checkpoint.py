"""Population checkpoints with orbax: one CheckpointManager per cohort, keyed by epoch.

The state is saved from host memory with the population axis unpadded, so a run checkpointed on N devices
resumes on any number of devices (orbax restores arrays into whatever placement we then choose). orbax
writes each checkpoint into a temporary directory and renames it when complete, so a save interrupted at
any point leaves the previous checkpoint as the latest.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class CohortCheckpoints:
  """Checkpoints of one cohort's population state under `directory`."""

  def __init__(self, directory: str, keep: int = 2):
    os.makedirs(directory, exist_ok=True)
    self.manager = ocp.CheckpointManager(
        os.path.abspath(directory),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True))

  def save(self, epoch: int, state: Any, members: int) -> None:
    """Starts saving `state` (first `members` rows of every leaf) in the background."""
    host = jax.tree.map(lambda x: np.asarray(x)[:members], jax.device_get(state))
    self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(host),
                                                     meta=ocp.args.JsonSave({'epoch': epoch, 'members': members})))

  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def restore(self, epoch: int, like: Any, members: int) -> Any:
    """The saved state as numpy arrays shaped like `like` (a state of the same cohort) without padding."""
    target = jax.tree.map(lambda x: np.zeros((members,) + tuple(x.shape[1:]), x.dtype), like)
    restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                   meta=ocp.args.JsonRestore()))
    if restored['meta']['members'] != members:
      raise RuntimeError(f'checkpoint {epoch} holds {restored["meta"]["members"]} members, expected {members}')
    return restored['state']

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
