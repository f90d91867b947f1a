"""Baseline (b): the per-member loop as one process per usable core, what NWS did on a multi-core machine.

Each worker process is pinned to one core (os.sched_setaffinity before JAX starts), sees one XLA CPU device,
and runs the per-member loop (benchmarks/programs.py bench_loop) over its share of the members (member i goes
to worker i % n). The parent starts every worker's timed call at once (one line to each worker's stdin; each
waits on it, a barrier), each worker times its own loop, and the pool's throughput is the sum of the workers'
rates. That sum is the pool's best case: where one core is slower (another job on it), the faster worker's rate
still counts in full, as if it could take over the slower one's members; `best_wall` (the population's k steps
done when the last worker finishes, popnet's measure) is recorded next to it. With program='popnet' each
worker runs popnet's population program on its share instead (popnet as one process per core, without
jax.distributed: the members are independent). Protocol: JSON lines; the worker's replies are the stdout lines starting with `@@ `.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REPLY = '@@ '


class CoreLoops:
  """n pinned worker processes, each with the loop over its members, compiled and warm."""

  def __init__(self, arch: str, population: int, batch: int, cores: list[int], timeout: float = 600.0,
               program: str = 'loop'):
    self.cores = cores[:max(1, min(len(cores), population))]
    self.shares = [list(range(population))[i::len(self.cores)] for i in range(len(self.cores))]
    self.timeout, self.population = timeout, population
    self.best_wall = float('inf')
    self.procs = []
    env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='--xla_force_host_platform_device_count=1',
               PYTHONPATH=os.pathsep.join([ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]),
               PYTHONUNBUFFERED='1')
    try:
      for core, share in zip(self.cores, self.shares):
        log = tempfile.TemporaryFile('w+')
        proc = subprocess.Popen([sys.executable, '-m', 'benchmarks.core_loops', '--arch', arch, '--batch', str(batch),
                                 '--core', str(core), '--members', ','.join(map(str, share)), '--program', program],
                                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.procs.append((proc, log))
      self.compile_seconds = max(r['compile_seconds'] for r in self._replies())
    except BaseException:
      self.close()
      raise

  def _send(self, message: dict) -> None:
    for proc, _ in self.procs:
      proc.stdin.write(json.dumps(message) + '\n')
      proc.stdin.flush()

  def _replies(self) -> list[dict]:
    """One reply from every worker (waiting at most `timeout` seconds in all)."""
    deadline = time.monotonic() + self.timeout
    return [self._reply(proc, log, deadline) for proc, log in self.procs]

  def _reply(self, proc, log, deadline) -> dict:
    while True:
      ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
      line = proc.stdout.readline() if ready else None
      if line is None or line == '':
        log.seek(0)
        why = 'timed out' if line is None else f'exited with {proc.wait()}'
        raise RuntimeError(f'core-loop worker {why}: {log.read()[-2000:]}')
      if line.startswith(_REPLY):
        return json.loads(line[len(_REPLY):])

  def calibrate(self, seconds: float) -> int:
    """A common k for which each worker's call takes at least seconds / 4 when all run at once."""
    self._send({'calibrate': seconds})
    return min(r['k'] for r in self._replies())

  def run(self, k: int) -> float:
    """k steps of every member, the workers running at once. Returns the seconds in which the whole population
    would take k steps at the sum of the workers' rates: P / sum(members_i / seconds_i)."""
    self._send({'run': k})
    seconds = [r['seconds'] for r in self._replies()]
    self.best_wall = min(self.best_wall, max(seconds))  # when the last worker finished: the whole population's time
    return self.population / sum(len(s) / t for s, t in zip(self.shares, seconds))

  def close(self) -> None:
    for proc, log in self.procs:
      try:
        proc.stdin.close()
        proc.wait(timeout=10)
      except (OSError, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait()
      log.close()
    self.procs = []

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def _worker(args) -> None:
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {args.core})
  from benchmarks import programs, timing  # JAX starts here, pinned, with one host device

  members = [int(m) for m in args.members.split(',')]
  if args.program == 'popnet':  # popnet's own program on this core's share, one device
    from popnet import population
    mesh = population.make_mesh()
    data, _, _ = programs.synthetic(mesh, programs.SHAPES[args.arch])
    run, facts = programs.bench_popnet(args.arch, len(members), args.batch, mesh, data)
  else:
    images, labels = programs.synthetic_images(programs.SHAPES[args.arch])
    run, facts = programs.bench_loop(args.arch, members, args.batch, images, labels)

  def reply(**kw):
    print(_REPLY + json.dumps(kw), flush=True)

  reply(compile_seconds=facts['compile_seconds'])
  for line in sys.stdin:
    message = json.loads(line)
    if 'calibrate' in message:
      reply(k=timing.calibrate(run, message['calibrate']))
    elif 'run' in message:
      t = time.perf_counter()
      run(message['run'])
      reply(seconds=time.perf_counter() - t)


if __name__ == '__main__':
  from popnet import usage
  parser = usage.ArgumentParser(description='one pinned worker of benchmarks/core_loops.py CoreLoops')
  parser.add_argument('--arch', required=True)
  parser.add_argument('--batch', type=int, required=True)
  parser.add_argument('--core', type=int, required=True)
  parser.add_argument('--members', required=True, help='comma-separated member ids')
  parser.add_argument('--program', default='loop', choices=['loop', 'popnet'],
                      help="loop: the per-member loop; popnet: popnet's population program on this share")
  worker_args = parser.parse_args()
  usage.check_ranges(parser, worker_args, (('batch', dict(low=1)), ('core', dict(low=0))))
  usage.int_list(parser, 'members', worker_args.members, low=0)
  _worker(worker_args)
