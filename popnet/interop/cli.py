"""`python -m popnet.interop export|import ...` (also `python -m popnet.zoo ...` and the `popnet-interop` script).

README "Interchange: Small CNN Zoo and NWS" describes both directions.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable

from popnet.interop.common import DEFAULT_BLOCK_BYTES
from popnet.interop.nws import import_nws
from popnet.interop.smallcnnzoo import import_smallcnnzoo
from popnet.interop.smallcnnzoo_export import DEFAULT_SPLIT_SEED, export_smallcnnzoo
from popnet.zoo import Zoo, ZooError


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m popnet.interop', description='Interchange with the Small CNN Zoo and NWS weight datasets.',
      epilog='example: python -m popnet.zoo export --format smallcnnzoo --zoo runs/default --out export/ '
      '--final_step_as 86   (flags also accept the kebab-case spelling, e.g. --final-step-as)')
  sub = p.add_subparsers(dest='command', required=True)
  e = sub.add_parser('export', help='popnet zoo -> Small CNN Zoo files (weights.npy, metrics.csv.gz, layout.csv, '
                     'the NFN split file)')
  e.add_argument('--format', choices=['smallcnnzoo'], required=True)
  e.add_argument('--zoo', required=True, help='a popnet zoo (or the workdir holding zoo/)')
  e.add_argument('--out', required=True)
  e.add_argument('--arch', default=None, help='the architecture to export (required if the zoo has several)')
  e.add_argument('--only_ok', '--only-ok', action='store_true', help="only rows with status == 'ok'")
  e.add_argument('--final_step_as', '--final-step-as', type=int, default=None, metavar='N',
                 help="write the final snapshot's step (and checkpoint name) as N instead of its epoch; loaders "
                 "written for the release (NFN's ZooDataset) keep step == 86 rows")
  e.add_argument('--split_seed', '--split-seed', type=int, default=DEFAULT_SPLIT_SEED,
                 help='seed of the split file (a permutation of rows, grouped by member)')
  e.add_argument('--overwrite', action='store_true')
  e.add_argument('--block_mb', '--block-mb', type=int, default=DEFAULT_BLOCK_BYTES >> 20,
                 help='weights converted per step')
  i = sub.add_parser('import', help='Small CNN Zoo or NWS files -> popnet zoo')
  i.add_argument('--format', choices=['smallcnnzoo', 'nws'], required=True)
  i.add_argument('--src', required=True, help='smallcnnzoo: the directory of the three files; nws: a network '
                 'directory, a directory of them, or one holding the index CSVs')
  i.add_argument('--out', required=True, help='the popnet zoo to write')
  i.add_argument('--index', action='append', default=None, help='nws: index CSV(s) with a path column (repeatable)')
  i.add_argument('--block_mb', '--block-mb', type=int, default=DEFAULT_BLOCK_BYTES >> 20,
                 help='weights converted per step')
  i.add_argument('--overwrite', action='store_true', help='replace another zoo in --out (a rerun of the same import '
                 'resumes it without this)')
  return p


def main(argv: Iterable[str] | None = None) -> int:
  a = parser().parse_args(None if argv is None else list(argv))
  block = max(1, a.block_mb) << 20
  try:
    if a.command == 'export':
      r = export_smallcnnzoo(a.zoo, a.out, a.arch, a.only_ok, block, a.overwrite, a.final_step_as, a.split_seed)
      print(f'wrote {r["rows"]} rows ({r["members"]} members) of {r["architecture"]}, {r["values"]} values each, '
            f'{r["varnames"]} varnames, split file {r["split_file"]}, to {r["out"]}')
    else:
      if a.format == 'smallcnnzoo':
        import_smallcnnzoo(a.src, a.out, block, a.overwrite)
      else:
        import_nws(a.src, a.out, a.index, block, log=lambda s: print(s, file=sys.stderr), overwrite=a.overwrite)
      print(Zoo.open(a.out))
  except ZooError as err:  # bad or damaged input, an unsafe name, a target holding something else: one line
    print(f'error: {err}', file=sys.stderr)
    return 2
  return 0
