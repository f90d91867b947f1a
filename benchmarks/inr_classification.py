"""INR classification benchmark (issue 29): which image class a fitted INR shows, read from its weights alone.

On popnet's DWS-protocol Fashion-MNIST INR zoo (configs/inr_dws_fmnist.py: one DWS SIREN per image, 70,000 fits)
with the zoo's own `split` column (55k / 5k / 10k; the same split for every seed, as DWSNets', and no class
balancing), the fitted INRs (the last snapshot): DMC, StatNN, StatNN-GBT, the flat MLP with and without
--weight_augment, neurons, NFN-NP and NFN-HNP, each over --seeds seeds (the seed changes the meta-model's init and
batches, not the split); test accuracy mean +- sd, the wall time of every fit, and the published numbers beside
them (measured by their authors on the original DWS INR files, not on this zoo). Writes result.json and README.md
under --out.

    python -m benchmarks.inr_classification --zoo runs/inr_dws --out benchmarks/results/inr_classification
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

# Fashion-MNIST INR test accuracy (%) as published, measured on the DWS INR files (issue 29 quotes them)
PUBLISHED = (('DWSNets (Navon et al. 2023)', 67.06), ('NG-GNN (Kofinas et al. 2024)', 68.00),
             ('ScaleGMN-B (Kalogeropoulos et al. 2024)', 80.78))


def entries():
  from benchmarks.weight_space_tables import Entry
  return (Entry('dmc', 'dmc', flags='--model dmc'), Entry('statnn', 'statnn', flags='--model statnn'),
          Entry('statnn_gbt', 'statnn_gbt', flags='--model statnn_gbt'), Entry('mlp', 'mlp', flags='--model mlp'),
          Entry('mlp_augment', 'mlp', (('weight_augment', True),), '--model mlp --weight_augment'),
          Entry('neurons', 'neurons', flags='--model neurons'), Entry('nfn_np', 'nfn_np', flags='--model nfn_np'),
          Entry('nfn_hnp', 'nfn_hnp', flags='--model nfn_hnp'))


def parse(argv=None):
  from benchmarks import weight_space_tables as tables
  from popnet import usage
  p = usage.ArgumentParser(prog='python -m benchmarks.inr_classification', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--zoo', required=True, help='an INR zoo with label and split columns (popnet.train --config '
                                              'inr_dws_fmnist)')
  p.add_argument('--out', default='benchmarks/results/inr_classification')
  p.add_argument('--dmc_size', default='small', choices=('tiny', 'small', 'paper'))
  tables.add_flags(p, '55000,15000,3')
  a = p.parse_args(argv)
  tables.check_flags(p, a, entries())
  return a


def split_by_column(data, column: str = 'split'):
  """meta's MetaData with the zoo's own member split (a metadata column of 'train' / 'val' / 'test') instead of
  a random one; no class balancing (DWSNets' protocol)."""
  from meta import data as data_lib
  if column not in data.rows:
    raise data_lib.MetaDataError(f'the zoo has no {column!r} column (an INR zoo written by popnet has one)')
  member, split = data.rows['member_id'].to_numpy(), data.rows[column].astype(str).to_numpy()
  unknown = sorted(set(split) - set(data_lib.SPLITS))
  if unknown:
    raise data_lib.MetaDataError(f'column {column!r}: values {unknown}; allowed {list(data_lib.SPLITS)}')
  members = {s: np.unique(member[split == s]) for s in data_lib.SPLITS}
  return data_lib.resplit(dataclasses.replace(data, members=members), balanced=False)


def main(argv=None) -> int:
  a = parse(argv)
  from benchmarks import weight_space_tables as tables
  from benchmarks.finished_fits import FitsError
  from meta import data as data_lib
  from popnet.zoo import Zoo, ZooError
  t0 = time.perf_counter()
  opts = tables.options(a, dmc_size=a.dmc_size)
  try:
    zoo = Zoo.open(a.zoo)
    facts = tables.zoo_facts(zoo, 'label', a.smoke)
    data = split_by_column(data_lib.load(zoo, 'label', snapshots='last', kind='classification', balanced=False))
    rows = tables.run_entries(zoo, 'label', a.entries, opts, list(range(a.seeds)), lambda seed: data, a.out)
  except (data_lib.MetaDataError, ZooError, FitsError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  result = {'benchmark': 'inr_classification', 'zoo': zoo.path, 'smoke': a.smoke,
            'command': tables.command('inr_classification', argv), 'data': data.summary(), 'rows': rows,
            'options': vars(opts), 'published': dict(PUBLISHED), 'zoo_facts': facts, 'machine': tables.machine(),
            'seconds': time.perf_counter() - t0}
  return tables.finish(a, result, opts, readme)


def readme(r: dict) -> str:
  from benchmarks import weight_space_tables as tables
  d = r['data']
  intro = (f'Zoo `{r["zoo"]}`: {d["rows"]} fitted INRs (the last snapshot), the zoo\'s `split` column: train '
           f'{d["train_rows"]}, val {d["val_rows"]}, test {d["test_rows"]}; {len(d["target"]["classes"])} classes. '
           f'Test accuracy (%) mean ± sd over the seeds (the split is fixed; the seed changes the meta-model\'s '
           f'init and batches). Selection on val accuracy.')
  published = ('Published (not measured here; on the original DWS INR files, each model\'s authors\' numbers as '
               'issue 29 quotes them):', 'F-MNIST INR test accuracy %', [(n, f'{a:.2f}') for n, a in PUBLISHED])
  return tables.readme(r, 'INR classification: Fashion-MNIST INRs, test accuracy from the weights', intro,
                       [('accuracy', 'test accuracy %', 100)], published)


if __name__ == '__main__':
  sys.exit(main())
