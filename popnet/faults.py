"""Fault injection for the resume tests: POPNET_KILL_AT=name:n SIGKILLs this process the n-th time the training
loop reaches the point `name` (train_call, checkpoint_save, zoo_write). A no-op unless the variable is set."""
from __future__ import annotations

import os
import signal

_COUNTS: dict[str, int] = {}


def kill_point(name: str) -> None:
  spec = os.environ.get('POPNET_KILL_AT', '')
  if not spec.startswith(name + ':'):
    return
  _COUNTS[name] = _COUNTS.get(name, 0) + 1
  if _COUNTS[name] == int(spec.split(':')[1]):
    os.kill(os.getpid(), signal.SIGKILL)
