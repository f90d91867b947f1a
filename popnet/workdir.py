"""A training workdir: its recorded config (a rerun of the same config resumes, another is refused)."""
from __future__ import annotations

import json
import os
import shutil

from popnet import zoo as zoo_lib

RUNTIME_ONLY_FIELDS = ('seconds_per_call', 'steps_per_call', 'checkpoint_every')  # may change between a run and its resume


class WorkdirError(RuntimeError):
  """The workdir holds a run of a different config."""


def prepare_workdir(config, workdir: str, overwrite: bool) -> bool:
  """Creates the workdir, or checks that it holds a run of this same config. Returns True when resuming."""
  record = os.path.join(workdir, 'run_config.json')
  current = {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k not in RUNTIME_ONLY_FIELDS}
  if os.path.exists(record) and overwrite:
    for name in ('zoo', 'checkpoints'):
      shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
    for name in ('run_config.json', 'members.csv'):
      if os.path.exists(os.path.join(workdir, name)):
        os.remove(os.path.join(workdir, name))
  if os.path.exists(record):
    with open(record) as f:
      previous = json.load(f)
    if previous != current:
      fields = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
      raise WorkdirError(f'{workdir} holds a run of a different config (fields that differ: {fields}); use another '
                         f'--workdir, or pass --overwrite to delete that run')
    return True
  if os.path.isdir(os.path.join(workdir, 'zoo')) and not overwrite:
    raise WorkdirError(f'{workdir}/zoo exists but {record} does not; refusing to mix runs (pass --overwrite)')
  os.makedirs(workdir, exist_ok=True)
  zoo_lib.atomic_write_text(record, json.dumps(current, indent=1, sort_keys=True))
  return False
