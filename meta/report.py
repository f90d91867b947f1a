"""Every target x every meta-model on one zoo: one markdown and one JSON table, shaped like the paper's main table.

    python -m meta.report --zoo runs/a --out reports/a [--targets activation,optimizer,...]
        [--models dmc,statnn,statnn_gbt,mlp] [--snapshots ...] [--epochs ...]

Rows are targets, columns meta-models. A classification cell is the test accuracy per network with the chance
level in brackets (splits are class-balanced, so chance = 1/C); a regression cell is R^2 / Kendall tau on the test
networks (learning rate on a log10 scale). Targets that do not vary in the selected rows are skipped with a note;
a model that cannot run on the zoo (the whole-vector MLP on a mixed-architecture zoo) gets n/a and a note.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from meta import data as data_lib, methods, train
from popnet.zoo import Zoo

ARCH_TARGETS = ('architecture', 'filter_size', 'depth_conv', 'width_conv', 'depth_fc', 'width_fc', 'batch_norm')
DEFAULT_TARGETS = ('dataset', 'optimizer', 'activation', 'init', 'batch_size', 'augment', 'learning_rate',
                   *ARCH_TARGETS, 'test_accuracy', 'generalization_gap')


def cell_text(entry: dict) -> str:
  """'0.846 (0.250)' for classification, 'R2 0.91 / tau 0.80' for regression, 'n/a' on failure."""
  if 'error' in entry:
    return 'n/a'
  t = entry['test']
  if 'accuracy' in t:
    return f'{t["accuracy"]:.3f} ({entry["chance"]:.3f})'

  def f(x):
    return 'nan' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.2f}'

  return f'R² {f(t["r2"])} / τ {f(t["kendall_tau"])}'


def build(zoo: Zoo | str, targets=DEFAULT_TARGETS, models=methods.METHODS, opts: methods.Options | None = None,
          log=print, **data_kw) -> dict:
  """Runs every (target, model); returns {'rows': [...], 'skipped': {target: why}, 'notes': [...], ...}."""
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  opts = opts or methods.Options()
  rows, skipped, notes = [], {}, []
  for target in targets:
    try:
      data = data_lib.load(zoo, target, **data_kw)
    except data_lib.MetaDataError as e:
      skipped[target] = str(e)
      log(f'skip {target}: {e}')
      continue
    row = {'target': data.target.name, 'kind': data.target.kind, 'chance': data.target.chance,
           'classes': list(data.target.classes), 'log': data.target.log, 'test_rows': int(len(data.splits['test'])),
           'test_members': int(len(data.members['test'])), 'cells': {}}
    for model in models:
      t0 = time.perf_counter()
      try:
        r = train.run(zoo, target, model, opts, analyses=(), data=data)
        entry = {'test': r['test'], 'chance': r['chance'], 'val': r['val'], 'test_per_window': r['test_per_window'],
                 'best_epoch': r['best_epoch'], 'seconds': time.perf_counter() - t0}
      except data_lib.MetaDataError as e:
        entry = {'error': str(e)}
        notes.append(f'{data.target.name} / {model}: {e}')
      row['cells'][model] = entry
      log(f'{data.target.name:<20} {model:<11} {cell_text(entry):<24} ({time.perf_counter() - t0:.1f}s)')
    rows.append(row)
  return {'zoo': zoo.path, 'models': list(models), 'rows': rows, 'skipped': skipped, 'notes': notes,
          'options': {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
          'selection': {k: v for k, v in data_kw.items() if k in ('snapshots', 'epochs', 'status', 'archs')}}


def markdown(table: dict) -> str:
  models = table['models']
  lines = [f'# Meta-model report: {table["zoo"]}', '',
           'Test networks never seen in training (split by member). Classification: accuracy per network '
           '(chance in brackets; classes balanced). Regression: R² / Kendall τ (learning rate on log10 scale).', '',
           '| target | kind | ' + ' | '.join(models) + ' |', '|---|---|' + '---|' * len(models)]
  for row in table['rows']:
    kind = f'{len(row["classes"])} classes' if row['kind'] == 'classification' else (
        'regression (log10)' if row['log'] else 'regression')
    lines.append(f'| {row["target"]} | {kind} | ' + ' | '.join(cell_text(row['cells'][m]) for m in models) + ' |')
  if table['skipped']:
    lines += ['', 'Skipped targets:', *[f'- {t}: {why}' for t, why in table['skipped'].items()]]
  if table['notes']:
    lines += ['', 'Notes:', *[f'- {n}' for n in table['notes']]]
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m meta.report', description=__doc__.split('\n')[0])
  train.add_data_args(p)
  p.add_argument('--targets', default=','.join(DEFAULT_TARGETS), help='comma-separated target columns')
  p.add_argument('--models', default=','.join(methods.METHODS), help='comma-separated meta-models')
  p.add_argument('--out', required=True, help='output directory for report.md and report.json')
  train.add_model_args(p)
  a = p.parse_args(argv)
  models = [m for m in a.models.split(',') if m]
  bad = [m for m in models if m not in methods.METHODS]
  if bad:
    p.error(f'--models: unknown {bad}; choose from {methods.METHODS}')
  kw = train.data_kwargs(a)
  table = build(a.zoo, [t for t in a.targets.split(',') if t], models, train.options(a), **kw)
  os.makedirs(a.out, exist_ok=True)
  text = markdown(table)
  with open(os.path.join(a.out, 'report.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(a.out, 'report.json'), 'w') as f:
    json.dump(train.jsonable(table), f, indent=1)
  print('\n' + text)
  print(f'wrote {os.path.join(a.out, "report.md")} and report.json')
  return 0


if __name__ == '__main__':
  sys.exit(main())
