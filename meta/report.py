"""Every target x every meta-model on one zoo: a markdown table, a JSON table and a plot (report.png).

Rows are targets, columns meta-models. A classification cell is the test accuracy per network, with the chance
level in brackets (splits are class-balanced, so chance = 1/C); a regression cell is R^2 / Kendall tau (learning
rate on a log10 scale). With --splits K every cell is the mean +- sd over K member splits; with one split, the
95% bootstrap interval over test networks; the table gives n (test networks per split). Targets that do not vary
in the selected rows are skipped with a note; a model that cannot run on the zoo gets n/a and a note.

The default models are the two cheap ones, cheapest first (statnn_gbt, statnn: seconds per cell); mlp and neurons
(about a minute per cell on the default zoo) and the DMC (about an hour) run when asked for, e.g. --models
statnn_gbt,statnn,neurons,dmc. Every finished cell prints 'cell i/N, ETA ...: target model score (seconds)'; a
long fit prints a progress line every 30 s when the output is not a terminal.

    python -m meta.report --zoo runs/a --out reports/a --targets activation,optimizer --splits 5
"""
from __future__ import annotations

if __name__ == '__main__':  # the command line first: --help and bad flags answer before JAX loads
  from meta import cli
  cli.run('report', lambda: cli.report_args(__doc__)[0],
          '{out} holds no report.md or report.json of this run (they are written last)')

import dataclasses
import json
import math
import os
import sys
import time

from meta import cli, data as data_lib, methods, plots, progress, train
from meta.options import ARCH_TARGETS, DEFAULT_MODELS, DEFAULT_TARGETS  # noqa: F401  (re-exported)
from popnet.files import atomic_write_text
from popnet.zoo import Zoo, ZooError

REPORT_FILES = ('report.md', 'report.json', 'report.png')

SELECTION = ('snapshots', 'epochs', 'status', 'archs')


def cell_text(entry: dict) -> str:
  """'0.846 +- 0.020 (0.250)' (sd over splits) or '0.846 [0.80, 0.89] (0.250)' (95% interval of one split) for
  classification, 'R² 0.91 +- 0.02 / τ 0.80' for regression, 'n/a' on failure."""
  if 'error' in entry:
    return 'n/a'
  s = entry['score']
  if s['splits'] > 1:
    value = f'{s["mean"]:.3f} ± {s["sd"]:.3f}'
  else:
    lo, hi = entry['ci95']
    value = f'{s["mean"]:.3f} [{_f(lo)}, {_f(hi)}]'
  if 'accuracy' in entry['test']:
    return f'{value} ({entry["chance"]:.3f})'
  return f'R² {value} / τ {_f(entry["test"]["kendall_tau"])}'


def _f(x) -> str:
  return 'nan' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.2f}'


def _cell(reports: list[dict], seconds: float) -> dict:
  """One (target, model) cell from its runs on each member split."""
  r = reports[0]
  entry = {'test': r['test'], 'chance': r['chance'], 'val': r['val'], 'test_per_window': r['test_per_window'],
           'best_epoch': r['best_epoch'], 'seconds': seconds, 'ci95': r['test']['ci95'],
           'networks': [x['test']['networks'] for x in reports]}
  return entry | train.split_summary(reports)


def build(zoo: Zoo | str, targets=DEFAULT_TARGETS, models=DEFAULT_MODELS, opts: methods.Options | None = None,
          log=print, splits: int = 1, seed: int = 0, **data_kw) -> dict:
  """Runs every (target, model) on `splits` member splits, target by target, logging 'cell i/N' and an ETA after
  each; returns {'rows': [...], 'skipped': {target: why}, 'notes': [...], ...}."""
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  opts = opts or methods.Options()
  selected, skipped = varying_targets(zoo, targets, data_kw, log)
  cells = progress.Cells([m for _ in selected for m in models])
  log(f'{len(selected)} targets x {len(models)} models = {cells.total} cells'
      + (f' ({len(skipped)} targets skipped)' if skipped else ''))
  rows, notes, store = [], [], None
  for target, target_rows in selected.items():
    try:
      datas = _load_splits(zoo, target, splits, seed, store if store and store.holds(target_rows) else None, data_kw)
    except data_lib.MetaDataError as e:  # e.g. a test split too small for this target's classes
      skipped[target] = str(e)
      log(f'skip {target}: {e}')
      cells.drop(list(models))
      continue
    data, store = datas[0], datas[0].store
    row = {'target': data.target.name, 'kind': data.target.kind, 'chance': data.target.chance,
           'classes': list(data.target.classes), 'log': data.target.log, 'test_rows': int(len(data.splits['test'])),
           'test_members': data_lib.count_test_networks(data)[0], 'cells': {}}
    notes += [f'{data.target.name}: {n}' for n in data.notes if n.startswith('WARNING')]
    for model in models:
      t0 = time.perf_counter()
      row['cells'][model] = entry = _run_cell(zoo, target, model, opts, datas, seed, notes)
      seconds = time.perf_counter() - t0
      log(f'{cells.finished(model, seconds)}: {data.target.name:<20} {model:<11} {cell_text(entry):<32} '
          f'({progress.duration(seconds)})')
    rows.append(row)
  return {'zoo': zoo.path, 'models': list(models), 'rows': rows, 'skipped': skipped, 'notes': notes,
          'splits': splits, 'seed': seed,
          'options': {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
          'selection': {k: v for k, v in data_kw.items() if k in SELECTION}}


def varying_targets(zoo: Zoo, targets, data_kw: dict, log=print) -> tuple[dict, dict]:
  """({target: its selected rows} of the targets that vary in the selection, {target: why} of the others), from
  the metadata alone, so the report knows its cells before it reads any weights."""
  selection = {k: v for k, v in data_kw.items() if k in SELECTION}
  selected, skipped = {}, {}
  for target in targets:
    try:
      selected[target] = data_lib.target_rows(zoo, target, **selection)[0]
    except data_lib.MetaDataError as e:  # the zoo's column list, if the message has one, is left out
      skipped[target] = str(e).split('; have [')[0]
      log(f'skip {target}: {skipped[target]}')
  return selected, skipped


def _load_splits(zoo: Zoo, target: str, splits: int, seed: int, store, data_kw: dict) -> list:
  """The target's data on each member split (seeds seed, seed+1, ...), all on one weight store."""
  datas = [data_lib.load(zoo, target, seed=seed, store=store, **data_kw)]
  return datas + [data_lib.load(zoo, target, seed=seed + i, store=datas[0].store, **data_kw)
                  for i in range(1, splits)]


def _run_cell(zoo: Zoo, target: str, model: str, opts: methods.Options, datas: list, seed: int,
              notes: list) -> dict:
  """One (target, model) cell over every member split, or {'error': why} (noted) when the model cannot run."""
  t0 = time.perf_counter()
  try:
    reports = [train.run(zoo, target, model, dataclasses.replace(opts, seed=seed + i), analyses=(), data=d,
                         seed=seed + i) for i, d in enumerate(datas)]
    return _cell(reports, time.perf_counter() - t0)
  except data_lib.MetaDataError as e:
    notes.append(f'{datas[0].target.name} / {model}: {e}')
    return {'error': str(e)}


def markdown(table: dict) -> str:
  models = table['models']
  spread = (f'mean ± sd over {table["splits"]} member splits (seeds from {table["seed"]})' if table['splits'] > 1
            else 'one member split; [95% bootstrap interval over test networks]')
  lines = [f'# Meta-model report: {table["zoo"]}', '',
           'Test networks never seen in training (split by member). Classification: accuracy per network '
           '(chance in brackets; classes balanced). Regression: R² / Kendall τ (learning rate on log10 scale). '
           f'Each cell: {spread}; n = test networks per split.', '',
           '| target | kind | n | ' + ' | '.join(models) + ' |', '|---|---|---|' + '---|' * len(models)]
  for row in table['rows']:
    kind = f'{len(row["classes"])} classes' if row['kind'] == 'classification' else (
        'regression (log10)' if row['log'] else 'regression')
    lines.append(f'| {row["target"]} | {kind} | {row["test_members"]} | ' +
                 ' | '.join(cell_text(row['cells'][m]) for m in models) + ' |')
  if table['skipped']:
    lines += ['', 'Skipped targets:', *[f'- {t}: {why}' for t, why in table['skipped'].items()]]
  if table['notes']:
    lines += ['', 'Notes:', *[f'- {n}' for n in table['notes']]]
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  a, kw = cli.report_args(__doc__, argv)
  with cli.locked_out(a.out):
    try:
      table = build(a.zoo, [t for t in a.targets.split(',') if t], a.models, cli.options(a), splits=a.splits,
                    seed=kw.pop('seed'), **kw)
    except (data_lib.MetaDataError, ZooError) as e:  # a bad selection or a damaged zoo: one line, exit 2
      print(f'error: {e}', file=sys.stderr)
      return 2
    write(a.out, table)
  return 0


def write(out: str, table: dict) -> None:
  """report.png, report.json and report.md in `out`, each written atomically, an earlier run's removed first: a
  run stopped on the way leaves no report.md or report.json of its own, nor another run's beside its figure."""
  text = markdown(table)
  for name in REPORT_FILES:
    if os.path.exists(os.path.join(out, name)):
      os.remove(os.path.join(out, name))
  if table['rows']:
    plots.report(table, os.path.join(out, 'report.png'))
  atomic_write_text(os.path.join(out, 'report.json'), json.dumps(train.jsonable(table), indent=1))
  atomic_write_text(os.path.join(out, 'report.md'), text)
  print('\n' + text)
  print(f'wrote {os.path.join(out, "report.md")}, report.json and report.png')

