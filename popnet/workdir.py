"""A training workdir: one run per directory, held by one process at a time.

    <workdir>/.lock             the OS lock (fcntl.flock) of the process running there; holds its pid, host, start
    <workdir>/run_config.json   the config of the run (minus RUNTIME_ONLY_FIELDS): a rerun must match it
    <workdir>/members.csv       the sampled member table
    <workdir>/zoo/              the zoo (popnet.zoo)
    <workdir>/checkpoints/      per-program checkpoints (popnet.checkpoint)

    with WorkdirLock(workdir):
      resuming = prepare_workdir(config, workdir, overwrite)
      ...
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import platform
import shutil
import time

from popnet import files
from popnet.zoo.schema import SHARDS_DIR, atomic_write_text, part_name

# config fields that may change between a run and its resume
RUNTIME_ONLY_FIELDS = ('seconds_per_call', 'steps_per_call', 'checkpoint_every', 'tensorboard')
RUN_CONFIG_FILE = 'run_config.json'
MEMBERS_FILE = 'members.csv'
RUN_DIRS = ('zoo', 'checkpoints')
_HELD: dict[str, 'WorkdirLock'] = {}  # lock files held by this process


class WorkdirError(RuntimeError):
  """The workdir cannot be used: another process holds it, it holds a run of a different config, or it is not a
  writable directory."""


def check_directory(workdir: str) -> None:
  """A one-line WorkdirError unless `workdir` is (or can become) a writable directory."""
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirError(f'{workdir}: is a file, not a directory; give --workdir a directory')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f'{workdir}: cannot be created ({e.strerror or e})') from e
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise WorkdirError(f'{workdir}: is not writable by this user')


def check_writable(workdir: str) -> None:
  """A one-line WorkdirError naming --workdir unless it is (or can become) a writable directory; creates nothing."""
  reason = files.unwritable(workdir)
  if reason:
    raise WorkdirError(f'--workdir {workdir}: {reason}')


def check_usable(config, workdir: str, zoo_dir: str, lock_part: tuple[int, int], overwrite: bool) -> None:
  """Before anything is planned or printed: the workdir can be written (check_writable), and a run there to
  resume is one of this config (check_record) whose zoo holds (popnet.zoo.writer.check_resumable, under the lock,
  held for the check only), so an unusable workdir, another config's run or a damaged or unreadable zoo is one
  line (WorkdirError, ZooError) and nothing is written."""
  from popnet.zoo.writer import check_resumable
  check_writable(workdir)
  if not os.path.isdir(workdir):
    return
  check_not_sharded(workdir)
  if overwrite:
    return
  check_record(config, workdir)
  if os.path.isdir(zoo_dir):
    with WorkdirLock(workdir, *lock_part):
      check_resumable(zoo_dir)


class WorkdirLock:
  """An exclusive, non-blocking OS lock on a workdir, released when the process ends (even by SIGKILL).

  A multi-process run passes its process_index / process_count: each process then locks its own part."""

  def __init__(self, workdir: str, process_index: int = 0, process_count: int = 1):
    self.workdir = workdir
    name = '.lock' if process_count == 1 else f'.lock-{part_name(process_index, process_count)}'
    self.path = os.path.join(workdir, name)
    self.fd = -1

  def acquire(self) -> 'WorkdirLock':
    check_directory(self.workdir)
    try:
      self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f'{self.path}: cannot be created ({e.strerror or e})') from e
    try:
      fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = self._holder()
      os.close(self.fd)
      self.fd = -1
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise WorkdirError(f'{self.path}: cannot be locked ({e.strerror or e})') from e
      raise WorkdirError(f'{self.workdir} is in use by {holder}; wait for that run to finish or stop it '
                         f'(one run per workdir)') from None
    record = {'pid': os.getpid(), 'host': platform.node(),
              'started': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}
    os.ftruncate(self.fd, 0)
    os.pwrite(self.fd, json.dumps(record).encode(), 0)
    _HELD[os.path.abspath(self.path)] = self
    return self

  def _holder(self) -> str:
    """The holder as it recorded itself (it writes right after locking: give it a moment)."""
    for _ in range(20):
      try:
        with open(self.path) as f:
          record = json.load(f)
        return f'pid {record["pid"]} on {record["host"]} (since {record["started"]})'
      except (OSError, ValueError, KeyError):
        time.sleep(0.01)
    return 'another process (it has not recorded its pid yet)'

  def release(self) -> None:
    if self.fd >= 0:
      _HELD.pop(os.path.abspath(self.path), None)
      fcntl.flock(self.fd, fcntl.LOCK_UN)
      os.close(self.fd)
      self.fd = -1

  def __enter__(self) -> 'WorkdirLock':
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()


def lock_holder(workdir: str) -> str | None:
  """Who holds the (single-process) WorkdirLock of `workdir` now, as it recorded itself, or None when no process
  does. Probes with a shared lock taken and released at once (a run starting in that instant is refused once)."""
  lock = WorkdirLock(workdir)
  try:
    fd = os.open(lock.path, os.O_RDONLY)
  except OSError:
    return None
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
  except OSError:
    return lock._holder()
  else:
    fcntl.flock(fd, fcntl.LOCK_UN)
    return None
  finally:
    os.close(fd)


def holds_lock(workdir: str) -> bool:
  """Whether this process holds a WorkdirLock on `workdir` (any part)."""
  root = os.path.abspath(workdir)
  return any(os.path.dirname(path) == root for path in _HELD)


def prepare_workdir(config, workdir: str, overwrite: bool) -> bool:
  """Creates the workdir, or checks that it holds a run of this same config. Returns True when resuming.

  overwrite deletes a previous run (zoo, checkpoints, run record); the caller must hold the WorkdirLock."""
  check_directory(workdir)
  if not holds_lock(workdir):
    raise RuntimeError(f'prepare_workdir({workdir!r}) needs the WorkdirLock of that workdir held (with WorkdirLock)')
  # a killed run's interrupted writes of the run record, member table and curves (the zoo's: ZooWriter)
  files.remove_temp_files(workdir, os.path.join(workdir, 'curves'))
  check_not_sharded(workdir)
  try:
    if overwrite:
      for name in RUN_DIRS:
        shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
      for name in (RUN_CONFIG_FILE, MEMBERS_FILE):
        if os.path.exists(os.path.join(workdir, name)):
          os.remove(os.path.join(workdir, name))
    if check_record(config, workdir):
      return True
    atomic_write_text(os.path.join(workdir, RUN_CONFIG_FILE), json.dumps(config_record(config), indent=1,
                                                                          sort_keys=True))
  except OSError as e:
    raise WorkdirError(f'{e.filename or workdir}: cannot be written ({e.strerror or e})') from e
  return False


def check_not_sharded(workdir: str) -> None:
  if os.path.isdir(os.path.join(workdir, SHARDS_DIR)):
    raise WorkdirError(f'{workdir} holds shards ({os.path.join(workdir, SHARDS_DIR)}); train them with --shard k/n, '
                       f'or this unsharded run into another --workdir')


def check_record(config, workdir: str) -> bool:
  """Whether `workdir` holds a run of this config to resume (False: none yet); WorkdirError when it holds a run
  of another config, or a zoo without its run record. Reads only."""
  record = os.path.join(workdir, RUN_CONFIG_FILE)
  if os.path.exists(record):
    return _same_run(record, config_record(config), workdir)
  if os.path.isdir(os.path.join(workdir, 'zoo')):
    raise WorkdirError(f'{workdir}/zoo exists but {record} does not; refusing to mix runs (pass --overwrite)')
  return False


def config_record(config) -> dict:
  """What run_config.json records of a config: every field but RUNTIME_ONLY_FIELDS."""
  return {k: v for k, v in json.loads(config.to_json_best_effort()).items() if k not in RUNTIME_ONLY_FIELDS}


def read_record(record: str) -> dict:
  try:
    with open(record) as f:
      return json.load(f)
  except ValueError as e:
    raise WorkdirError(f'{record}: corrupted JSON ({e}); pass --overwrite to delete that run') from e


def differing_fields(previous: dict, current: dict) -> list[str]:
  return sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))


def _same_run(record: str, current: dict, workdir: str) -> bool:
  previous = read_record(record)
  if previous != current:
    fields = differing_fields(previous, current)
    raise WorkdirError(f'{workdir} holds a run of a different config (fields that differ: {fields}); use another '
                       f'--workdir, or pass --overwrite to delete that run')
  return True
