"""Accuracy-prediction benchmark (issue 29): a CNN's test accuracy predicted from its weights, NFN's protocol.

On a popnet CNN zoo of one architecture (>= 2,000 networks that really train: `--config accuracy_zoo`), the
final checkpoints (the last snapshot), split by network as NFN's predict_gen does: 50% test, the rest 80 / 20
train / val (fractions 0.4 / 0.1 / 0.5, a new member split per seed), model selection by validation Kendall tau
(Options.select = 'kendall_tau'); Kendall tau and R^2 on test for StatNN, StatNN-GBT, neurons and NFN-HNP, mean +-
sd over --seeds seeds, the wall time of every fit, and the published taus beside them (Small CNN Zoo CIFAR10-GS,
measured by NFN's authors on that zoo, not on this one). Writes result.json and README.md under --out.

    python -m benchmarks.accuracy_prediction --zoo runs/accuracy_zoo --out benchmarks/results/accuracy_prediction
"""
from __future__ import annotations

import argparse
import sys
import time

FRACTIONS = (0.4, 0.1, 0.5)  # train / val / test: NFN's 50% test, the rest 80 / 20
# Kendall tau on Small CNN Zoo CIFAR10-GS as published (Zhou et al. 2023, Table 1; issue 29 quotes them)
PUBLISHED = (('StatNN (Unterthiner et al. 2020)', 0.915), ('NFN-HNP (Zhou et al. 2023)', 0.934))


def entries():
  from benchmarks.weight_space_tables import Entry
  return (Entry('statnn', 'statnn', flags='--model statnn'), Entry('statnn_gbt', 'statnn_gbt',
                                                                  flags='--model statnn_gbt'),
          Entry('neurons', 'neurons', flags='--model neurons'), Entry('nfn_hnp', 'nfn_hnp', flags='--model nfn_hnp'))


def parse(argv=None):
  from benchmarks import weight_space_tables as tables
  from popnet import usage
  p = usage.ArgumentParser(prog='python -m benchmarks.accuracy_prediction', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--zoo', required=True, help='a CNN zoo of one architecture with a test_accuracy column')
  p.add_argument('--out', default='benchmarks/results/accuracy_prediction')
  p.add_argument('--target', default='test_accuracy')
  p.add_argument('--loss', default='l1', choices=('l1', 'mse'))
  tables.add_flags(p, '800,1200,3')
  a = p.parse_args(argv)
  tables.check_flags(p, a, entries())
  return a


def main(argv=None) -> int:
  a = parse(argv)
  from benchmarks import weight_space_tables as tables
  from benchmarks.finished_fits import FitsError
  from meta import data as data_lib
  from popnet.zoo import Zoo, ZooError
  t0 = time.perf_counter()
  opts = tables.options(a, loss=a.loss, select='kendall_tau')
  cache = {}

  def load(seed):  # a new member split per seed, all on the first load's weight store
    if seed not in cache:
      store = next(iter(cache.values())).store if cache else None
      cache[seed] = data_lib.load(zoo, a.target, snapshots='last', kind='regression', fractions=FRACTIONS,
                                  seed=seed, store=store)
    return cache[seed]

  try:
    zoo = Zoo.open(a.zoo)
    facts = tables.zoo_facts(zoo, a.target, a.smoke)
    rows = tables.run_entries(zoo, a.target, a.entries, opts, list(range(a.seeds)), load, a.out)
  except (data_lib.MetaDataError, ZooError, FitsError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  result = {'benchmark': 'accuracy_prediction', 'zoo': zoo.path, 'smoke': a.smoke,
            'command': tables.command('accuracy_prediction', argv), 'target': a.target, 'fractions': FRACTIONS,
            'data': load(0).summary(), 'rows': rows, 'options': vars(opts), 'published_tau': dict(PUBLISHED),
            'zoo_facts': facts, 'machine': tables.machine(),
            'seconds': time.perf_counter() - t0}
  return tables.finish(a, result, opts, readme)


def readme(r: dict) -> str:
  from benchmarks import weight_space_tables as tables
  d = r['data']
  intro = (f'Zoo `{r["zoo"]}`: {d["rows"]} final checkpoints of {d["architectures"]}; target `{r["target"]}`; '
           f'per seed a new split by network: train {d["train_members"]}, val {d["val_members"]}, test '
           f'{d["test_members"]} networks (seed 0). Selection by validation Kendall tau. Mean ± sd over the seeds.')
  published = ('Published (not measured here; Small CNN Zoo CIFAR10-GS, its authors\' numbers as issue 29 quotes '
               'them):', 'Kendall τ', [(n, f'{t:.3f}') for n, t in PUBLISHED])
  return tables.readme(r, 'Accuracy prediction: a CNN\'s test accuracy from its final weights (NFN\'s protocol)',
                       intro, [('kendall_tau', 'test Kendall τ', 1.0), ('r2', 'test R²', 1.0)], published)


if __name__ == '__main__':
  sys.exit(main())
