"""`python -m popnet.launch ray --shards N --config NAME --workdir DIR [flags] [popnet.train flags]`: trains the N
shards of a run (popnet/shards.py) as Ray tasks and merges them into one zoo.

Each task runs `python -m popnet.train --shard k/N --config ... --workdir ...` (plus any popnet.train flags given
here) in a subprocess, a fresh JAX each attempt, with `--cpus_per_shard` CPUs and `--gpus_per_shard` GPUs
reserved (Ray sets CUDA_VISIBLE_DEVICES for it). A shard that fails (killed, crashed, its machine lost) is
retried by Ray up to `--max_retries` times and resumes from its own checkpoints; a shard that popnet.train
refuses (exit 2: bad input) is not retried. Ray runs a local instance by default (`--num_cpus`, a temporary
directory under /tmp), or joins a cluster with `--address` (popnet must be importable on its nodes and the
workdir on a filesystem they share). When every shard is done, `python -m popnet.zoo merge` writes `--out`.
Each shard's output goes to <workdir>/logs/<shard>.log, one `--- attempt` header per attempt.
Install: pip install 'popnet[ray]'.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

LOGS_DIR = 'logs'
ATTEMPT = '--- attempt'


class ShardFailed(RuntimeError):
  """popnet.train of one shard died or failed: Ray retries it."""


class ShardRefused(RuntimeError):
  """popnet.train refused its input (exit 2): retrying cannot help."""


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2
    print(f'error: {message} (python -m popnet.launch ray --help)', file=sys.stderr)
    sys.exit(2)


def parser() -> argparse.ArgumentParser:
  p = _Parser(prog='python -m popnet.launch', description=__doc__.split('\n')[0], allow_abbrev=False,
              epilog='example: python -m popnet.launch ray --shards 4 --config smoke --workdir runs/sharded')
  sub = p.add_subparsers(dest='engine', required=True, metavar='{ray}', parser_class=_Parser)
  ray = sub.add_parser('ray', help='the shards as Ray tasks, retried on failure, then merged', allow_abbrev=False,
                       epilog='example: python -m popnet.launch ray --shards 4 --config smoke --workdir runs/sharded '
                              '--config.epochs=3   (flags it does not know go to popnet.train)')
  ray.add_argument('--shards', type=int, required=True, help='N: the run is split into shards 0/N .. N-1/N')
  ray.add_argument('--config', default='default', help='popnet.train --config (a name or a config file)')
  ray.add_argument('--workdir', required=True, help='popnet.train --workdir; the shards go to <workdir>/shards/')
  ray.add_argument('--address', default='', help="a Ray cluster's address (ray.init(address=...)); default: a "
                                                 'local instance')
  ray.add_argument('--num_cpus', type=int, default=0, help="the local instance's CPUs (default: this machine's)")
  ray.add_argument('--cpus_per_shard', type=float, default=1, help='CPUs Ray reserves for each shard (default 1)')
  ray.add_argument('--gpus_per_shard', type=float, default=0, help='GPUs Ray reserves for each shard (default 0)')
  ray.add_argument('--max_retries', type=int, default=3, help='attempts after the first, per shard (default 3)')
  ray.add_argument('--out', default='', help='the merged zoo (default <workdir>/merged)')
  return p


def check(args) -> None:
  for name, ok, allowed in (('shards', args.shards >= 1, 'an integer >= 1'),
                            ('num_cpus', args.num_cpus >= 0, 'an integer >= 0 (0: this machine\'s)'),
                            ('cpus_per_shard', args.cpus_per_shard > 0, 'a number > 0'),
                            ('gpus_per_shard', args.gpus_per_shard >= 0, 'a number >= 0'),
                            ('max_retries', args.max_retries >= 0, 'an integer >= 0')):
    if not ok:
      print(f'error: --{name}: got {getattr(args, name)}; allowed: {allowed}', file=sys.stderr)
      sys.exit(2)


def shard_command(k: int, args, train_flags: list[str]) -> list[str]:
  config = os.path.abspath(args.config) if os.path.exists(args.config) else args.config
  return [sys.executable, '-m', 'popnet.train', '--noprogress', '--shard', f'{k}/{args.shards}', '--config', config,
          '--workdir', os.path.abspath(args.workdir), *train_flags]


def run_shard(command: list[str], log_path: str) -> str:
  """One attempt at one shard (a Ray task): popnet.train in a subprocess, its output appended to log_path."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, 'ab') as log:
    log.write(f'{ATTEMPT} on {platform.node()}, pid {os.getpid()}, {time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}:'
              f' {" ".join(command)}\n'.encode())
    log.flush()
    code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
  if code == 2:
    raise ShardRefused(f'refused (exit 2): {_last_line(log_path)}')
  if code != 0:
    raise ShardFailed(f'exited {code} (see {log_path})')
  return platform.node()


def _last_line(path: str) -> str:
  with open(path, 'rb') as f:
    lines = f.read().decode(errors='replace').strip().splitlines()
  return lines[-1] if lines else ''


def attempts(log_path: str) -> int:
  with open(log_path, 'rb') as f:
    return sum(line.startswith(ATTEMPT.encode()) for line in f)


def import_ray():
  try:
    import ray
  except ImportError:
    print("error: the Ray launcher needs ray: pip install 'popnet[ray]'", file=sys.stderr)
    sys.exit(2)
  return ray


def check_train_flags(args, train_flags: list[str]) -> None:
  """The config and popnet.train flags, checked once here (popnet.train --print_config) before any task starts."""
  command = shard_command(0, args, train_flags) + ['--print_config']
  proc = subprocess.run(command, capture_output=True, text=True)
  if proc.returncode != 0:
    print(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f'error: {command} failed',
          file=sys.stderr)
    sys.exit(2)


def launch_ray(args, train_flags: list[str]) -> int:
  ray = import_ray()
  check_train_flags(args, train_flags)
  temp = None
  if args.address:
    ray.init(address=args.address)
  else:
    temp = tempfile.mkdtemp(prefix='popnet-ray-')
    ray.init(num_cpus=args.num_cpus or os.cpu_count(), _temp_dir=temp, include_dashboard=False)
  try:
    failed = _run_tasks(ray, args, train_flags)
  finally:
    ray.shutdown()
    if temp:
      shutil.rmtree(temp, ignore_errors=True)
  if failed:
    print(f'error: shards {failed} of {args.workdir} failed; rerun this command to train them (shards already done '
          f'are skipped; the others resume)', file=sys.stderr)
    return 1
  from popnet.zoo.__main__ import merge
  return merge(args.workdir, args.out or os.path.join(args.workdir, 'merged'))


def _run_tasks(ray, args, train_flags: list[str]) -> list[int]:
  """Submits every shard, reports each as it ends; returns the shards that failed."""
  task = ray.remote(num_cpus=args.cpus_per_shard, num_gpus=args.gpus_per_shard, max_retries=args.max_retries,
                    retry_exceptions=[ShardFailed])(run_shard)
  from popnet.zoo.schema import shard_name
  logs = {k: os.path.join(os.path.abspath(args.workdir), LOGS_DIR, f'{shard_name(k, args.shards)}.log')
          for k in range(args.shards)}
  refs = {task.remote(shard_command(k, args, train_flags), logs[k]): k for k in range(args.shards)}
  pending, failed = list(refs), []
  print(f'popnet.launch: {args.shards} shards of {args.workdir} as Ray tasks ({args.cpus_per_shard:g} CPU, '
        f'{args.gpus_per_shard:g} GPU each; up to {args.max_retries} retries); logs in {os.path.dirname(logs[0])}',
        flush=True)
  while pending:
    done, pending = ray.wait(pending, num_returns=1)
    k = refs[done[0]]
    try:
      host = ray.get(done[0])
      print(f'shard {k}/{args.shards}: done on {host} ({attempts(logs[k])} attempt(s))', flush=True)
    except Exception as e:  # a RayTaskError wrapping ShardFailed / ShardRefused, or Ray's own failure
      failed.append(k)
      cause = getattr(e, 'cause', None) or e
      print(f'shard {k}/{args.shards}: failed ({attempts(logs[k]) if os.path.exists(logs[k]) else 0} attempt(s)): '
            f'{str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__}', flush=True)
  return sorted(failed)


def main(argv=None) -> int:
  args, train_flags = parser().parse_known_args(sys.argv[1:] if argv is None else argv)
  check(args)
  return launch_ray(args, train_flags)


if __name__ == '__main__':  # through the module, so Ray's workers find run_shard and ShardFailed by name
  from popnet.launch import main as launch_main
  sys.exit(launch_main())
