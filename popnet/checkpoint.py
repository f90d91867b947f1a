"""Population checkpoints with orbax: one CheckpointManager per program, keyed by epoch, each step sealed with an
integrity record.

The state is saved from host memory with the population axis unpadded, so a run checkpointed on N devices
resumes on any number of devices (orbax restores arrays into whatever placement we then choose). orbax
writes each checkpoint into a temporary directory and renames it when complete, so a save interrupted at
any point leaves the previous checkpoint as the latest.

Once a save has finished, the size and sha256 of every file of the step are recorded in
<directory>/integrity/<step>.json (written atomically; orbax ignores directories whose name is not a step).
`restore_latest` trusts only a step whose files match its record: a damaged step (changed bytes, missing or
extra files, no record) is moved to <directory>/damaged/ with a warning naming it and why, and the next older
step is tried; with none intact, training starts from scratch (deterministic, so the zoo is the same).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp

from popnet import files, processes, resources
from popnet.files import atomic_write_text

INTEGRITY_DIR = 'integrity'
DAMAGED_DIR = 'damaged'


class CheckpointError(RuntimeError):
  """A checkpoint could not be saved or restored; the message names the directory."""


def _one_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f'{type(e).__name__}: {text[0] if text else ""}'.rstrip(': ')


def _warn(message: str) -> None:
  print(f'warning: {message}', file=sys.stderr, flush=True)


def step_files(step_dir: str) -> dict[str, list]:
  """{path relative to the step: [size, sha256]} of every file under `step_dir`."""
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      full = os.path.join(root, name)
      digest = hashlib.sha256()
      with open(full, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
          digest.update(chunk)
      out[os.path.relpath(full, step_dir)] = [os.path.getsize(full), digest.hexdigest()]
  return dict(sorted(out.items()))


def damage(recorded: dict[str, list], found: dict[str, list]) -> str | None:
  """Why `found` is not the step that was recorded (None when it is)."""
  missing = [f for f in recorded if f not in found]
  if missing:
    return (f'{len(missing)} of its {len(recorded)} files are missing ({missing[0]}' +
            (', ...)' if len(missing) > 1 else ')'))
  for name, (size, digest) in recorded.items():
    if found[name][0] != size:
      return f'{name} has {found[name][0]} bytes, {size} were written (truncated or extended)'
    if found[name][1] != digest:
      return f'{name} has changed since it was written (sha256 mismatch: flipped bytes)'
  extra = [f for f in found if f not in recorded]
  return f'{extra[0]} was not part of the saved step' if extra else None


class ProgramCheckpoints:
  """Checkpoints of one program's population state under `directory`. `log` receives one line per damaged step
  set aside (default: a warning on stderr)."""

  def __init__(self, directory: str, keep: int = 2, log: Callable[[str], Any] | None = None):
    self.directory = os.path.abspath(directory)
    self.log = log or _warn
    self._pending: list[int] = []
    try:
      os.makedirs(os.path.join(self.directory, INTEGRITY_DIR), exist_ok=True)
      files.remove_temp_files(os.path.join(self.directory, INTEGRITY_DIR))  # a killed run's interrupted record
      processes.meet(f'checkpoints_{os.path.basename(self.directory)}')  # orbax's first collective follows
      self.manager = ocp.CheckpointManager(
          self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True))
    except Exception as e:  # noqa: BLE001 - orbax raises many kinds; the caller gets one line with the path
      raise CheckpointError(f'{self.directory}: cannot open the checkpoint directory ({_one_line(e)})') from e

  # --- saving -------------------------------------------------------------------------------------------------
  def save(self, epoch: int, state: Any, members: int) -> None:
    """Starts saving `state` (first `members` rows of every leaf) in the background; `wait` seals it."""
    host = jax.tree.map(lambda x: np.asarray(x)[:members], jax.device_get(state))
    need, free = sum(x.nbytes for x in jax.tree.leaves(host)), resources.free_disk(self.directory)
    if need > free:  # refuse before orbax's writer threads fail half-way with pages of tracebacks
      raise CheckpointError(f'{self._step_dir(epoch)}: not enough free disk for the checkpoint (needs ~{need:,} '
                            f'bytes, {free:,} free); free space and rerun the same command to resume')
    try:
      self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(host),
                                                       meta=ocp.args.JsonSave({'epoch': epoch, 'members': members})))
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f'{self._step_dir(epoch)}: saving the checkpoint failed ({_one_line(e)})') from e
    self._pending.append(epoch)

  def wait(self) -> None:
    """Waits for background saves, then records the integrity of each finished step."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f'{self.directory}: saving the checkpoint of epoch(s) {self._pending} failed '
                            f'({_one_line(e)})') from e
    for step in self._pending:
      if os.path.isdir(self._step_dir(step)):
        record = {'step': step, 'files': step_files(self._step_dir(step))}
        try:
          atomic_write_text(self._record_file(step), json.dumps(record, indent=1))
        except OSError as e:
          raise CheckpointError(f'{self._record_file(step)}: cannot be written ({e.strerror or e})') from e
    self._pending = []
    self._drop_stale_records()

  def _drop_stale_records(self) -> None:
    """Records of steps orbax has deleted (max_to_keep)."""
    for name in os.listdir(os.path.join(self.directory, INTEGRITY_DIR)):
      step = name[:-len('.json')]
      if name.endswith('.json') and step.isdigit() and not os.path.isdir(self._step_dir(int(step))):
        os.remove(os.path.join(self.directory, INTEGRITY_DIR, name))

  # --- restoring ----------------------------------------------------------------------------------------------
  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def steps(self) -> list[int]:
    """Every step directory present (finished or not, intact or not), oldest first."""
    return sorted(int(n) for n in os.listdir(self.directory)
                  if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

  def verify(self, step: int) -> str | None:
    """None when step `step` matches its integrity record, else why not."""
    try:
      with open(self._record_file(step)) as f:
        recorded = json.load(f)['files']
    except FileNotFoundError:
      return 'it has no integrity record (its save never finished, or it was not written by popnet)'
    except (OSError, ValueError, KeyError, TypeError) as e:
      return f'its integrity record {self._record_file(step)} is unreadable ({_one_line(e)})'
    return damage(recorded, step_files(self._step_dir(step)))

  def restore(self, epoch: int, like: Any, members: int) -> Any:
    """The saved state as numpy arrays shaped like `like` (a state of the same program) without padding."""
    target = jax.tree.map(lambda x: np.zeros((members,) + tuple(x.shape[1:]), x.dtype), like)
    try:
      restored = self.manager.restore(epoch, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                                     meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001
      raise CheckpointError(f'{self._step_dir(epoch)}: cannot be restored ({_one_line(e)})') from e
    if restored['meta']['members'] != members:
      raise CheckpointError(f'{self._step_dir(epoch)}: holds {restored["meta"]["members"]} members, expected '
                            f'{members}')
    return restored['state']

  def restore_latest(self, like: Any, members: int) -> tuple[int, Any] | None:
    """(epoch, state) of the newest intact step, verified against its integrity record before orbax reads it;
    damaged steps are set aside with a warning. None when no step is intact (train from scratch)."""
    for step in reversed(self.steps()):
      problem = self.verify(step)
      if problem is None:
        try:
          return step, self.restore(step, like, members)
        except CheckpointError as e:
          problem = str(e)
      self._set_aside(step, problem)
    return None

  def _set_aside(self, step: int, problem: str) -> None:
    aside = os.path.join(self.directory, DAMAGED_DIR)
    os.makedirs(aside, exist_ok=True)
    target = os.path.join(aside, str(step))
    suffix = 0
    while os.path.exists(target):
      suffix += 1
      target = os.path.join(aside, f'{step}.{suffix}')
    os.replace(self._step_dir(step), target)
    if os.path.exists(self._record_file(step)):
      os.remove(self._record_file(step))
    self.manager.reload()
    self.log(f'checkpoint {self._step_dir(step)} is damaged: {problem}; moved to {target}, trying an older step')

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _record_file(self, step: int) -> str:
    return os.path.join(self.directory, INTEGRITY_DIR, f'{step}.json')

  def close(self) -> None:
    self.wait()
    self.manager.close()
