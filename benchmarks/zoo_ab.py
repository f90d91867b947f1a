"""Byte-level A/B of whole zoos: a small run of every packaged config through the real CLI, hashed file by file,
so a refactor of the engine can be shown to change no bit of what a run writes.

    python -m benchmarks.zoo_ab run --out DIR [--only RUN ...]   # trains RUNS into DIR/<run>, writes DIR/hashes.json
    python -m benchmarks.zoo_ab compare A.json B.json           # identical / DIFFERENT per run and file; exit 1 if any differ

Each run is `python -m popnet.train --config NAME` in a subprocess (this checkout's popnet, CPU, 2 host devices,
no compilation cache, a fixed `steps_per_call` so the per-call loss sums never depend on timing), shrunk to one to
three minutes on the shared 2-core VM (benchmarks/results/interface_ab/README.md). Together they cover the
engine's paths: plain architectures one member at a time (member_chunk 1, the CPU default) and in vmapped chunks
(member_chunk 4, the accelerator path), padded buckets of several NWS architectures both ways, batch norm,
dropout, augmentation, several batch sizes (programs) and several datasets in one pool.

What is hashed (sha256): the bytes of every file a run writes under its workdir, but
- checkpoints/ and .lock are left out: orbax names its files at random and stamps its metadata with times; a
  checkpoint holds the state the zoo's weights and metrics already come from (and its pytree may change shape in
  a refactor without changing a result);
- zoo/manifest.json is hashed as canonical JSON without VOLATILE_MANIFEST_KEYS: the keys that differed between
  two runs of the same code (start and update times, wall-time splits, rates; found by diffing two runs) and
  those that describe the machine rather than the code (host, machine, versions).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from popnet import usage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIPPED = ('.lock', 'checkpoints')  # top-level entries of a workdir that are not hashed (module docstring)
VOLATILE_MANIFEST_KEYS = (
    ('versions',), ('host',), ('machine',), ('processes',), ('timings',),
    ('summary', 'wall_seconds'), ('summary', 'model_samples_per_second'),
    ('summary', 'model_samples_per_second_per_model'), ('summary', 'timings'),
    ('summary', 'build', 'first_started'), ('summary', 'build', 'last_updated'), ('summary', 'build', 'timings'),
)
SMALL = {'epochs': 2, 'snapshots': 3, 'max_train_examples': 512, 'eval_train_examples': 200,
         'eval_val_examples': 200, 'eval_test_examples': 200, 'steps_per_call': 4}
PREPARED_DATASETS = 'choice(fashion_mnist, digits, mnist5k)'  # the NWS configs' stock datasets are not prepared here
# 8 random NWS architectures in one program (one batch size), on less data than SMALL: with SMALL's, vmapped padded
# convolutions at 32x32x3 took 484 s on the loaded 2-core VM (train 196 s, evaluate 167 s; own shapes: 31 s, 23 s)
NWS_MAIN_BUCKET = {'population': 8, 'hparams.dataset': PREPARED_DATASETS, 'hparams.batch_size': 64,
                   'max_train_examples': 128, 'eval_train_examples': 50, 'eval_val_examples': 50,
                   'eval_test_examples': 50}


@dataclasses.dataclass(frozen=True)
class Run:
  name: str                 # the folder under --out and the key in hashes.json
  config: str               # a packaged config (popnet.configs.NAMES)
  overrides: dict           # --config.<field>=<value> on top of SMALL (hparams.<name> for hyper-parameters)
  covers: str               # which engine path it exercises


RUNS = (
    Run('smoke', 'smoke', {'population': 8, 'member_chunk': 1}, 'smallcnnzoo at 8x8 on digits, one at a time'),
    Run('default', 'default', {'population': 8, 'member_chunk': 1},
        'smallcnnzoo on fashion_mnist, dropout and augmentation choices, one member at a time'),
    Run('default_chunk4', 'default', {'population': 8, 'member_chunk': 4},
        'the same members vmapped 4 at a time (the accelerator path)'),
    Run('meta_offline', 'meta_offline', {'population': 8, 'member_chunk': 1},
        'three datasets in one pool, NWS training space, several batch sizes (programs)'),
    Run('nws_fixed', 'nws_fixed', {'population': 8, 'member_chunk': 1, 'hparams.dataset': PREPARED_DATASETS},
        'nws_fixed at 32x32x3 (datasets resized and converted), batch norm, dropout 0.5, several programs'),
    Run('nws_main', 'nws_main', {**NWS_MAIN_BUCKET, 'member_chunk': 1},
        'one padded bucket of 8 NWS architectures, conv layers at each member\'s own shape'),
    Run('nws_main_chunk4', 'nws_main', {**NWS_MAIN_BUCKET, 'member_chunk': 4},
        'the same bucket vmapped 4 at a time: padded (masked) convolutions'),
    Run('replication', 'replication', {'population': 8, 'member_chunk': 1},
        'the smallest NWS-main network with batch norm on fashion_mnist and mnist5k'),
)


# --- running ---------------------------------------------------------------------------------------------------
def command(run: Run, workdir: str) -> list[str]:
  fields = {**SMALL, **run.overrides}
  return ([sys.executable, '-m', 'popnet.train', '--config', run.config, '--workdir', workdir, '--noprogress',
           '--compilation_cache=', '--host_devices=2']
          + [f'--config.{field}={value}' for field, value in fields.items()])


def environment() -> dict:
  """This checkout's popnet on the CPU, whatever the caller's environment says."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  env.pop('XLA_FLAGS', None)
  return env


def git_commit() -> dict:
  def git(*args):
    return subprocess.run(['git', *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
  return {'commit': git('rev-parse', 'HEAD'), 'dirty': bool(git('status', '--porcelain', '--untracked-files=no'))}


def train(run: Run, out: str) -> dict:
  """Trains `run` into out/<name> (its log in out/<name>.log) and returns its record for hashes.json."""
  workdir = os.path.join(out, run.name)
  cmd = command(run, workdir)
  print(f'{run.name}: {" ".join(cmd[1:])}', flush=True)
  t0 = time.perf_counter()
  with open(f'{workdir}.log', 'w') as log:
    proc = subprocess.run(cmd, cwd=ROOT, env=environment(), stdout=log, stderr=subprocess.STDOUT)
  wall = time.perf_counter() - t0
  if proc.returncode != 0:
    raise SystemExit(f'{run.name}: popnet.train exited {proc.returncode}; see {workdir}.log')
  print(f'{run.name}: {wall:.0f} s', flush=True)
  portable = ['python'] + [arg.replace(workdir, f'OUT/{run.name}') for arg in cmd[1:]]  # equal across --out
  return {'config': run.config, 'covers': run.covers, 'command': portable,
          'wall_seconds': round(wall, 1), **git_commit(), 'files': workdir_digests(workdir)}


# --- hashing ---------------------------------------------------------------------------------------------------
def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def canonical_json(value) -> bytes:
  return json.dumps(value, sort_keys=True, separators=(',', ':')).encode()


def without_volatile_keys(manifest: dict) -> dict:
  out = json.loads(json.dumps(manifest))
  for path in VOLATILE_MANIFEST_KEYS:
    node = out
    for key in path[:-1]:
      node = node.get(key, {})
    node.pop(path[-1], None)
  return out


def file_digest(path: str, relative: str) -> str:
  if relative == 'zoo/manifest.json':
    with open(path) as f:
      return sha256(canonical_json(without_volatile_keys(json.load(f))))
  with open(path, 'rb') as f:
    return sha256(f.read())


def workdir_digests(workdir: str) -> dict[str, str]:
  """{path relative to the workdir: digest} of every file the run wrote, but SKIPPED."""
  digests = {}
  for folder, dirs, files in os.walk(workdir):
    relative_folder = os.path.relpath(folder, workdir)
    if relative_folder == '.':
      dirs[:] = [d for d in dirs if d not in SKIPPED]
    for name in files:
      relative = os.path.normpath(os.path.join(relative_folder, name))
      if relative not in SKIPPED:
        digests[relative] = file_digest(os.path.join(folder, name), relative)
  return dict(sorted(digests.items()))


# --- comparing -------------------------------------------------------------------------------------------------
def comparison(a: dict, b: dict) -> list[tuple[str, str, str]]:
  """(run, file, 'identical' | 'DIFFERENT' | 'DIFFERENT (only in A)' | ...) for every run and file of either side;
  a run's command counts as a file '(command)'."""
  rows = []
  for run in sorted(set(a['runs']) | set(b['runs'])):
    if run not in a['runs'] or run not in b['runs']:
      rows.append((run, '(run)', f'DIFFERENT (only in {"A" if run in a["runs"] else "B"})'))
      continue
    ra, rb = a['runs'][run], b['runs'][run]
    rows.append((run, '(command)', 'identical' if ra['command'] == rb['command'] else 'DIFFERENT'))
    for name in sorted(set(ra['files']) | set(rb['files'])):
      if name not in ra['files'] or name not in rb['files']:
        rows.append((run, name, f'DIFFERENT (only in {"A" if name in ra["files"] else "B"})'))
      else:
        rows.append((run, name, 'identical' if ra['files'][name] == rb['files'][name] else 'DIFFERENT'))
  return rows


def compare(path_a: str, path_b: str) -> int:
  a, b = (load_hashes(p) for p in (path_a, path_b))
  rows = comparison(a, b)
  for run, name, verdict in rows:
    print(f'{run:<16} {name:<44} {verdict}')
  different = sum(verdict != 'identical' for _, _, verdict in rows)
  print(f'A: {path_a} ({commits(a)})\nB: {path_b} ({commits(b)})')
  print(f'{len(rows) - different} identical, {different} different')
  return 1 if different else 0


def commits(hashes: dict) -> str:
  return ', '.join(sorted({r['commit'][:7] + ('+dirty' if r['dirty'] else '') for r in hashes['runs'].values()}))


def bad_input(message: str):
  """One line on stderr, exit 2 (the project's rule for bad input)."""
  print(message, file=sys.stderr)
  raise SystemExit(2)


def load_hashes(path: str) -> dict:
  try:
    with open(path) as f:
      hashes = json.load(f)
  except (OSError, ValueError) as e:
    bad_input(f'{path}: cannot read it as JSON: {e}')
  if not isinstance(hashes, dict) or not isinstance(hashes.get('runs'), dict):
    bad_input(f'{path}: not a hashes.json of `python -m benchmarks.zoo_ab run` (no "runs" object)')
  return hashes


# --- the command line ------------------------------------------------------------------------------------------
def run_all(out: str, only: list[str]) -> None:
  """Trains the selected RUNS into fresh folders under `out` and merges their records into out/hashes.json."""
  selected = [r for r in RUNS if not only or r.name in only]
  taken = [r.name for r in selected if os.path.exists(os.path.join(out, r.name))]
  if taken:
    bad_input(f'--out: {out} already holds runs {taken}; use a fresh --out or delete them')
  os.makedirs(out, exist_ok=True)
  hashes_path = os.path.join(out, 'hashes.json')
  hashes = load_hashes(hashes_path) if os.path.exists(hashes_path) else {'runs': {}}
  for run in selected:
    hashes['runs'][run.name] = train(run, out)
    with open(hashes_path, 'w') as f:
      json.dump(hashes, f, indent=1, sort_keys=True)
  print(f'hashes: {hashes_path}')


def parse_args(argv=None):
  p = usage.ArgumentParser(prog='python -m benchmarks.zoo_ab', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest='action', required=True)
  run = sub.add_parser('run', help='train every run and write DIR/hashes.json')
  run.add_argument('--out', required=True, help='a folder for the runs\' workdirs, logs and hashes.json')
  run.add_argument('--only', nargs='+', default=[], choices=[r.name for r in RUNS], metavar='RUN',
                   help=f'only these runs (of {", ".join(r.name for r in RUNS)})')
  cmp = sub.add_parser('compare', help='compare two hashes.json files; exit 1 if anything differs')
  cmp.add_argument('a')
  cmp.add_argument('b')
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  if args.action == 'compare':
    return compare(args.a, args.b)
  run_all(args.out, args.only)
  return 0


if __name__ == '__main__':
  sys.exit(main())
