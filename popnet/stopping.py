"""Ctrl-C and SIGTERM (what SLURM preemption and `kill` send) stopping a command line with one line on stderr and
exit 128 + the signal (130, 143), never a KeyboardInterrupt traceback: popnet.train (popnet/cli.py) and the meta
command lines (meta/cli.py) run their work through `run`. Nothing here imports more than the standard library,
so the handlers are in place before the first heavy import.

    stopping.install()
    stopping.run(work, lambda signum: f'{stopping.STOPPED[signum]}; rerun the same command')
"""
from __future__ import annotations

import gc
import os
import signal
import sys
from typing import Callable

STOPPED = {signal.SIGINT: 'interrupted', signal.SIGTERM: 'terminated'}  # Ctrl-C; SLURM preemption, `kill`
CHECKPOINT_CODE = os.path.join('popnet', 'checkpoint.py')
IMPORT_CODE = '<frozen importlib._bootstrap'  # the import system's frames (and _bootstrap_external's)
RETRY_S = 0.05  # seconds between tries to raise a stop that has not stopped the work yet
_PENDING: list[int] = []  # the signal received, waiting for a place where raising it is not ignored


class Stopped(KeyboardInterrupt):
  """Ctrl-C or SIGTERM, raised wherever the work is, so that both stop it the same way (context managers and
  `finally` blocks on the way out run: locks are released, temp files removed)."""

  def __init__(self, signum: int):
    super().__init__(signum)
    self.signum = signum


def run(work: Callable[[], object], line: Callable[[int], str]) -> object:
  """work(), or, once Ctrl-C or SIGTERM stops it, `line(signum)` on stderr and exit 128 + signum."""
  try:
    return work()
  except KeyboardInterrupt as e:
    _exit(e.signum if isinstance(e, Stopped) else signal.SIGINT, line)
  except Exception:
    if not _PENDING:
      raise
    _exit(_PENDING[0], line)  # raised inside an extension module's import, the stop comes back as ImportError
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)  # the work is over: no Stopped after it (a finished work exits 0)


def _exit(signum: int, line: Callable[[int], str]) -> None:
  print(line(signum), file=sys.stderr)
  sys.exit(128 + signum)


def _in_ignored_context(frame) -> bool:
  """Whether `frame` runs inside a garbage-collector callback or a __del__, where Python prints and ignores an
  exception (JAX has such a callback: a Ctrl-C or SIGTERM raised there would be lost and the run go on), inside
  an import (raised in an extension module's import, the stop comes back as ImportError, which a library's
  `except ImportError:` fallback swallows: the run went on), or inside orbax or popnet/checkpoint.py (saving and
  sealing a checkpoint: raised there, orbax logs a traceback and the epoch's checkpoint is left unsealed, so a
  resume sets it aside; deferred, the checkpoint is sealed and the run stops right after)."""
  callbacks = {getattr(c, '__code__', None) for c in gc.callbacks}
  while frame is not None:
    code = frame.f_code
    if code in callbacks or code.co_name == '__del__' or f'{os.sep}orbax{os.sep}' in code.co_filename \
        or code.co_filename.startswith(IMPORT_CODE) or code.co_filename.endswith(CHECKPOINT_CODE):
      return True
    frame = frame.f_back
  return False


def _stop(signum, frame) -> None:
  """Raises Stopped for SIGINT or SIGTERM, and comes back every RETRY_S (SIGALRM) until the work is over: a
  Stopped can be lost even outside the contexts above, in C code that clears the errors it meets (numpy's
  Generator.choice did, 2 runs of 30: the zoo was written and the command exited 0), so it is raised again.
  Inside a context that would swallow it, or while an exception is being handled (a Stopped on its way out
  through `finally` blocks and context managers, or an `except` clause), it waits for the next time."""
  if signum != signal.SIGALRM:
    _PENDING[:] = [signum]
  if not _PENDING:
    return
  signal.setitimer(signal.ITIMER_REAL, RETRY_S)
  if _in_ignored_context(frame) or sys.exc_info()[1] is not None:
    return
  raise Stopped(_PENDING[0])


def install() -> None:
  """Ctrl-C (unless the shell ignores it, as for a background job) and SIGTERM stop the work through _stop."""
  signal.signal(signal.SIGTERM, _stop)
  if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _stop)
  signal.signal(signal.SIGALRM, _stop)  # last: a caught SIGALRM (/proc/<pid>/status) says all three are in place
