"""`python -m popnet.zoo verify DIR` checks a zoo in full; `sign DIR` seals one its user has checked; `merge WORKDIR
--out ZOO` writes the shards of a sharded workdir as one zoo and `status WORKDIR` shows them; `render ZOO --out
fig.png` draws an INR zoo's originals and reconstructions (popnet/zoo/render.py); `export` / `import` are
popnet.interop's commands.

verify prints one line per damaged file or row and exits 1 when the zoo is damaged; it prints one line and exits
0 when the seal, every file it covers, the row mapping and every row's checksum hold (the line ends with the
zoo's digest, the one value to publish with a zoo); 3 when the zoo was written before seals existed (it opens,
but edits to its metadata, layouts and manifest cannot be detected until it is sealed); 2 on a usage error. merge exits 2 with one line when a shard is missing, duplicated, incomplete, damaged or of
another config or code; status exits 0 when every shard is done, 1 when not."""
from __future__ import annotations

import argparse
import sys

from popnet.zoo.reader import Zoo
from popnet.zoo.schema import ZooError
from popnet.zoo.seal import SIGN_COMMAND, DamagedZoo, zoo_digest
from popnet import usage

INTEROP_COMMANDS = ('export', 'import')
EXIT_DAMAGED, EXIT_UNSEALED = 1, 3


def verify(path: str, expect: str | None = None) -> int:
  try:
    zoo = Zoo.open(path)
    result = zoo.verify()
  except DamagedZoo as e:
    for problem in e.problems:
      print(f'damaged: {problem}')
    return EXIT_DAMAGED
  except ZooError as e:
    print(f'damaged: {e}')
    return EXIT_DAMAGED
  if not zoo.sealed:
    print(f'unsealed: {zoo.path}: written by popnet before zoos were sealed; its {result["rows"]} rows match their '
          f'{result["checksummed"]} checksums, but edits to its metadata, layouts and manifest cannot be detected; '
          f'once you have checked it, seal it: {SIGN_COMMAND} {zoo.path}')
    return EXIT_UNSEALED
  digests = _digests(zoo)
  if expect is not None and expect.removeprefix('sha256:') not in digests:
    print(f'damaged: {zoo.path}: its digest is {", ".join(digests)}, not the expected {expect}')
    return EXIT_DAMAGED
  print(f'ok: {zoo.path}: sealed; {result["rows"]} rows, the seal, metadata, layouts, evaluation subsets, row '
        f'mapping and all {result["checksummed"]} checksums intact; digest sha256:{",".join(digests)}')
  return 0


def _digests(zoo: Zoo) -> list[str]:
  import os
  if not os.path.exists(os.path.join(zoo.path, 'manifest.json')) and 'shards' in zoo.manifest:
    return [s['digest'] for s in zoo.manifest['shards']]  # a sharded workdir: one digest per shard
  if 'parts' not in zoo.manifest:
    return [zoo_digest(zoo.manifest)]
  return [zoo_digest(Zoo.open(os.path.join(zoo.path, part)).manifest) for part in zoo.manifest['parts']]


def sign(path: str) -> int:
  from popnet.zoo.signing import sign as sign_zoo
  try:
    result = sign_zoo(path)
  except DamagedZoo as e:
    print(f'refused: {e.problems[0]}' + (f' (and {len(e.problems) - 1} more)' if len(e.problems) > 1 else ''))
    return EXIT_DAMAGED
  except (ZooError, OSError) as e:
    print(f'refused: {e}')
    return EXIT_DAMAGED
  added = (f'; {result["checksums_added"]} rows had no checksum and got one over their weights as they are now'
           if result['checksums_added'] else '')
  print(f'sealed: {path}: {result["rows"]} rows{added}; digest sha256:{",".join(result["digests"])}')
  return 0


def merge(workdir: str, out: str) -> int:
  from popnet.zoo.merge import merge as merge_shards
  try:
    result = merge_shards(workdir, out)
  except (ZooError, OSError) as e:
    print(f'refused: {e}', file=sys.stderr)
    return 2
  did = 'already merged, nothing done' if result['already'] else 'merged'
  print(f'{did}: {out}: {result["rows"]} rows of every shard of {workdir}; digest sha256:{result["digest"]}')
  return 0


def status(workdir: str) -> int:
  from popnet.zoo.sharded import states
  try:
    shards = states(workdir)
  except (ZooError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  for s in shards:
    rows = f'{s["rows"]} of {s["expected"]} rows' if s['expected'] is not None else ''
    print(f'shard {s["shard"]:>9}  {s["state"]:<8} {rows:<22} {s["detail"]}'.rstrip())
  done = sum(s['state'] == 'done' for s in shards)
  print(f'{done} of {len(shards)} shards done' + (f'; merge them: python -m popnet.zoo merge {workdir} --out ZOO'
                                                  if done == len(shards) else ''))
  return 0 if done == len(shards) else 1


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] in INTEROP_COMMANDS:
    from popnet.interop.cli import main as interop_main
    return interop_main(argv, prog='python -m popnet.zoo')
  if argv and argv[0] == 'render':
    from popnet.zoo.render import main as render_main
    return render_main(argv[1:])
  parser = usage.ArgumentParser(prog='python -m popnet.zoo', description=__doc__.split('\n')[0],
                                epilog='example: python -m popnet.zoo verify runs/default')
  sub = parser.add_subparsers(dest='command', required=True,
                              metavar='{verify,sign,merge,status,render,' + ','.join(INTEROP_COMMANDS) + '}')
  check = sub.add_parser('verify', help='check the seal, every file, the row mapping and every checksum of a zoo',
                         epilog='example: python -m popnet.zoo verify runs/default')
  check.add_argument('zoo', help='a popnet zoo, or the workdir holding zoo/')
  check.add_argument('--expect', help='the digest the zoo must have (sha256:..., as its producer published it)')
  seal = sub.add_parser('sign', help='seal a zoo you have checked (written before seals existed, or edited by you)')
  seal.add_argument('zoo', help='a popnet zoo, or the workdir holding zoo/')
  join = sub.add_parser('merge', help='write the shards of a sharded workdir (--shard k/n) as one sealed zoo',
                        epilog='example: python -m popnet.zoo merge runs/sharded --out runs/sharded/merged')
  join.add_argument('workdir', help='the workdir the shards were trained into (it holds shards/)')
  join.add_argument('--out', required=True, help='the merged zoo: a directory that does not exist yet')
  state = sub.add_parser('status', help="each shard of a sharded workdir: done, running (the lock's holder), "
                         'stopped or missing', epilog='example: python -m popnet.zoo status runs/sharded')
  state.add_argument('workdir', help='the workdir the shards are trained into')
  args = parser.parse_args(argv)
  if args.command == 'merge':
    return merge(args.workdir, args.out)
  if args.command == 'status':
    return status(args.workdir)
  if args.command == 'sign':
    return sign(args.zoo)
  return verify(args.zoo, args.expect)


if __name__ == '__main__':
  sys.exit(main())
