"""`python -m popnet.interop export|import ...` (also `python -m popnet.zoo ...` and the `popnet-interop` script).

README "Interchange: Small CNN Zoo and NWS" describes both directions. The parser imports nothing but the
defaults (popnet/interop/defaults.py); the readers and writers load inside the commands, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable

from popnet.interop.defaults import DEFAULT_BLOCK_BYTES, DEFAULT_SHARD_BYTES, DEFAULT_SPLIT_SEED
from popnet import usage

PROG = 'python -m popnet.interop'
KEBAB = '(flags also accept the kebab-case spelling, e.g. --block-mb)'
EXPORT_EXAMPLE = 'export --format smallcnnzoo --zoo runs/default --out export/ --final_step_as 86'
INR_EXPORT_EXAMPLE = 'export --format dws --zoo runs/inr_dws --out export/dws'
HF_EXAMPLE = 'export --format hf --zoo runs/default --out hf/ --license cc-by-4.0'
IMPORT_EXAMPLES = ('import --format smallcnnzoo --src smallcnnzoo/cifar10 --out zoos/cifar10',
                   'import --format nws --src nws/ --out zoos/nws --index nws_main_train.csv',
                   'import --format dws --src export/dws --out zoos/inr_dws')
INR_FORMATS = ('dws', 'nfn')  # popnet/interop/inr_export.py, inr_import.py (docs/inr.md); need torch


def _examples(prog: str, *commands: str) -> str:
  return 'example:\n' + '\n'.join(f'  {prog} {c}' for c in commands) + f'\n{KEBAB}'


def _block_mb(p: argparse.ArgumentParser) -> None:
  p.add_argument('--block_mb', '--block-mb', type=int, default=DEFAULT_BLOCK_BYTES >> 20, metavar='MB',
                 help='weights converted per step, in MiB (default: %(default)s)')


def parser(prog: str = PROG) -> argparse.ArgumentParser:
  p = usage.ArgumentParser(prog=prog, description='Interchange with the Small CNN Zoo, NWS and INR (DWS, NFN) '
                           'weight datasets; publishing as a Hugging Face dataset.',
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=_examples(prog, EXPORT_EXAMPLE, INR_EXPORT_EXAMPLE, HF_EXAMPLE, *IMPORT_EXAMPLES))
  sub = p.add_subparsers(dest='command', required=True)
  e = sub.add_parser('export', help='popnet zoo -> Small CNN Zoo files (weights.npy, metrics.csv.gz, layout.csv, '
                     'the NFN split file), an INR zoo -> the DWS or NFN tree of .pth files, or a Hugging Face '
                     'dataset (Parquet + card)',
                     description='A popnet zoo as Small CNN Zoo files: weights.npy, metrics.csv.gz, layout.csv and '
                     'the NFN split file; an INR zoo as the DWS tree (<p>_inrs/{train,test}/model_<i>.pth, '
                     '<p>_splits.json, <p>_statistics.pth) or the NFN tree (siren_<d>_wts/randinit_smaller_<label>s/'
                     'net<idx>.pth and the _aug<k> folders), docs/inr.md; dws and nfn need torch; or a Hugging Face '
                     'dataset directory (Parquet shards and a README.md dataset card), docs/pytorch.md.',
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     epilog=_examples(prog, EXPORT_EXAMPLE, INR_EXPORT_EXAMPLE, HF_EXAMPLE))
  e.add_argument('--format', choices=['smallcnnzoo', *INR_FORMATS, 'hf'], required=True,
                 help='the format to write')
  e.add_argument('--zoo', required=True, help='a popnet zoo (or the workdir holding zoo/)')
  e.add_argument('--out', required=True, help='the directory to write the files to')
  e.add_argument('--arch', default=None, help='the architecture to export (smallcnnzoo: required if the zoo has '
                 'several; hf: default every one, a config each)')
  e.add_argument('--only_ok', '--only-ok', action='store_true', help="only rows with status == 'ok'")
  e.add_argument('--final_step_as', '--final-step-as', type=int, default=None, metavar='N',
                 help="write the final snapshot's step (and checkpoint name) as N instead of its epoch; loaders "
                 "written for the release (NFN's ZooDataset) keep step == 86 rows")
  e.add_argument('--split_seed', '--split-seed', type=int, default=DEFAULT_SPLIT_SEED, metavar='SEED',
                 help='seed of the split file (a permutation of rows, grouped by member); hf: of the split by '
                 'member of a zoo without a split column (default: %(default)s)')
  e.add_argument('--license', default='unknown', help='hf: the dataset card\'s license id (default: %(default)s)')
  e.add_argument('--shard_mb', '--shard-mb', type=int, default=DEFAULT_SHARD_BYTES >> 20, metavar='MB',
                 help='hf: weights per Parquet shard, in MiB (default: %(default)s)')
  e.add_argument('--overwrite', action='store_true', help='replace the files of an earlier export in --out')
  e.add_argument('--data_dir', '--data-dir', default=None, help='dws: the data dir holding the zoo\'s dataset (its '
                 'train split size numbers the files)')
  _block_mb(e)
  i = sub.add_parser('import', help='Small CNN Zoo, NWS, DWS or NFN files -> popnet zoo',
                     description='Small CNN Zoo, NWS, DWS or NFN (INR) files as a popnet zoo.',
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_examples(prog, *IMPORT_EXAMPLES))
  i.add_argument('--format', choices=['smallcnnzoo', 'nws', *INR_FORMATS], required=True, help='the format of --src')
  i.add_argument('--src', required=True, help='smallcnnzoo: the directory of the three files; nws: a network '
                 'directory, a directory of them, or one holding the index CSVs; dws: the directory holding '
                 '<p>_splits.json; nfn: siren_<d>_wts or the directory holding it')
  i.add_argument('--out', required=True, help='the popnet zoo to write')
  i.add_argument('--index', action='append', default=None, help='nws: index CSV(s) with a path column (repeatable)')
  _block_mb(i)
  i.add_argument('--overwrite', action='store_true', help='replace another zoo in --out (a rerun of the same import '
                 'resumes it without this)')
  return p


def _need_torch(fmt: str) -> None:
  import importlib.util
  if importlib.util.find_spec('torch') is None:
    from popnet.interop.common import InteropError
    raise InteropError(f'--format {fmt}: reads and writes PyTorch .pth files and needs torch: pip install .[torch]')


def _export(a: argparse.Namespace, block: int) -> None:
  if a.format in INR_FORMATS:
    _need_torch(a.format)
    from popnet.interop.inr_export import export_inr
    r = export_inr(a.zoo, a.out, a.format, a.overwrite, a.data_dir)
    gaps = (f'; NFN\'s SirenDataset needs every index 0..n-1, {r["gaps"]} are missing' if r['gaps'] else '')
    print(f'wrote {r["rows"]} INRs ({r["skipped"]} not ok, left out) as the {a.format.upper()} tree '
          f'{", ".join(r["roots"] + r["index_files"])} to {r["out"]}{gaps}')
    return
  if a.format == 'hf':
    return _export_hf(a, block)
  from popnet.interop.smallcnnzoo_export import export_smallcnnzoo
  r = export_smallcnnzoo(a.zoo, a.out, a.arch, a.only_ok, block, a.overwrite, a.final_step_as, a.split_seed)
  print(f'wrote {r["rows"]} rows ({r["members"]} members) of {r["architecture"]}, {r["values"]} values each, '
        f'{r["varnames"]} varnames, split file {r["split_file"]}, to {r["out"]}')


def _export_hf(a: argparse.Namespace, block: int) -> None:
  from popnet.interop.common import InteropError
  from popnet.interop.hf import export_hf
  if a.final_step_as is not None:
    raise InteropError('--final_step_as: only for --format smallcnnzoo (an hf export keeps each row\'s epoch)')
  r = export_hf(a.zoo, a.out, a.arch, a.only_ok, a.overwrite, a.split_seed, a.license, max(1, a.shard_mb) << 20,
                block)
  sizes = '; '.join(f'{c}: ' + ', '.join(f'{s} {n["num_examples"]}' for s, n in splits.items())
                    for c, splits in r['splits'].items())
  print(f'wrote {r["rows"]} rows as a Hugging Face dataset ({sizes}; splits {r["split_rule"]}) to {r["out"]}')


def _import(a: argparse.Namespace, block: int) -> None:
  from popnet.zoo import Zoo
  if a.format in INR_FORMATS:
    _need_torch(a.format)
    from popnet.interop.inr_import import import_inr
    import_inr(a.src, a.out, a.format, block, a.overwrite, log=lambda s: print(s, file=sys.stderr))
  elif a.format == 'smallcnnzoo':
    from popnet.interop.smallcnnzoo import import_smallcnnzoo
    import_smallcnnzoo(a.src, a.out, block, a.overwrite)
  else:
    from popnet.interop.nws import import_nws
    import_nws(a.src, a.out, a.index, block, log=lambda s: print(s, file=sys.stderr), overwrite=a.overwrite)
  print(Zoo.open(a.out))


def main(argv: Iterable[str] | None = None, prog: str = PROG) -> int:
  a = parser(prog).parse_args(None if argv is None else list(argv))
  block = max(1, a.block_mb) << 20
  from popnet.zoo import ZooError
  try:
    (_export if a.command == 'export' else _import)(a, block)
  except ZooError as err:  # bad or damaged input, an unsafe name, a target holding something else: one line
    print(f'error: {err}', file=sys.stderr)
    return 2
  return 0
