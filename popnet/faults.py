"""Fault injection for the resume tests: POPNET_KILL_AT=name:n SIGKILLs this process the n-th time the training
loop reaches the point `name` (train_call, checkpoint_save, zoo_write). With POPNET_KILL_ONCE=<file> too, only
the first process to get there dies (it creates <file>, holding its command line, just before): the tests of
retrying launchers kill one attempt of one shard. A no-op unless POPNET_KILL_AT is set."""
from __future__ import annotations

import os
import signal
import sys

_COUNTS: dict[str, int] = {}


def kill_point(name: str) -> None:
  spec = os.environ.get('POPNET_KILL_AT', '')
  if not spec.startswith(name + ':'):
    return
  _COUNTS[name] = _COUNTS.get(name, 0) + 1
  if _COUNTS[name] == int(spec.split(':')[1]) and _first_to_die():
    os.kill(os.getpid(), signal.SIGKILL)


def _first_to_die() -> bool:
  marker = os.environ.get('POPNET_KILL_ONCE')
  if not marker:
    return True
  try:
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
  except FileExistsError:
    return False
  os.write(fd, ' '.join(sys.argv).encode())
  os.close(fd)
  return True
