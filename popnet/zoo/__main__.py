"""`python -m popnet.zoo verify DIR` checks a zoo in full; `export` / `import` are popnet.interop's commands.

verify prints one line and exits 0 when every file, the row mapping and every row's checksum hold, 1 when the
zoo is damaged (the line names the file and row), 2 on a usage error."""
from __future__ import annotations

import argparse
import sys

INTEROP_COMMANDS = ('export', 'import')


def verify(path: str) -> int:
  from popnet.zoo.reader import Zoo
  from popnet.zoo.schema import ZooError
  try:
    zoo = Zoo.open(path)
    result = zoo.verify()
  except ZooError as e:
    print(f'failed: {e}')
    return 1
  if result['checksummed'] == 0 and result['rows']:
    print(f'ok: {zoo.path}: {result["rows"]} rows, files and row mapping intact; checksums absent (written before '
          f'checksums existed, or imported), so the weights themselves were not checked')
  else:
    print(f'ok: {zoo.path}: {result["rows"]} rows, every file, the row mapping and all {result["checksummed"]} '
          f'checksums intact')
  return 0


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] in INTEROP_COMMANDS:
    from popnet.interop.cli import main as interop_main
    return interop_main(argv, prog='python -m popnet.zoo')
  parser = argparse.ArgumentParser(prog='python -m popnet.zoo', description=__doc__.split('\n')[0],
                                   epilog='example: python -m popnet.zoo verify runs/default')
  sub = parser.add_subparsers(dest='command', required=True,
                              metavar='{verify,' + ','.join(INTEROP_COMMANDS) + '}')
  check = sub.add_parser('verify', help='check every file, the row mapping and every checksum of a zoo',
                         epilog='example: python -m popnet.zoo verify runs/default')
  check.add_argument('zoo', help='a popnet zoo, or the workdir holding zoo/')
  args = parser.parse_args(argv)
  return verify(args.zoo)


if __name__ == '__main__':
  sys.exit(main())
