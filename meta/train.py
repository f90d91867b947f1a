"""Train one meta-model for one target on a zoo; print the results table, write JSON and PNG plots.

    python -m meta.train --zoo runs/a --target activation --model dmc [--snapshots 10-19] [--epochs 30]
        [--part all|conv|fc] [--analyses where,parts,when] [--out DIR] [--seed 0]

Networks are split by member (train / val / test, fixed seed); the model is selected on val and every number
reported is on test networks it never saw. Writes <out>/result.json, confusion.png (classification) or
predictions.png (regression), where.png and when.png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from meta import analysis, data as data_lib, methods, metrics, models, plots, weights
from popnet.zoo import Zoo

ANALYSES = ('where', 'parts', 'when')


def add_data_args(p: argparse.ArgumentParser) -> None:
  p.add_argument('--zoo', required=True, help='a zoo directory or a training workdir holding zoo/')
  p.add_argument('--snapshots', default=None,
                 help='snapshot indices: all (default), last, first, 3, 0,2,5, 10-19 (inclusive), -1 = last')
  p.add_argument('--snapshot-epochs', default=None, help='select snapshots by epoch instead, same syntax')
  p.add_argument('--status', default='ok', help="rows of this status only (default ok); 'all' keeps every row")
  p.add_argument('--arch', default=None, help='comma-separated architecture ids to keep (default: all)')
  p.add_argument('--split', default='0.15,0.15',
                 help='val,test sizes as fractions of the members (or counts >= 1); train gets the rest')
  p.add_argument('--seed', type=int, default=0, help='seed of the member split, balancing and training')
  p.add_argument('--memory-budget-mb', type=float, default=weights.DEFAULT_MEMORY_BUDGET / 2**20,
                 help='selected weights up to this size are held in memory; beyond it batches are read from '
                      'the memory-mapped files')


def add_model_args(p: argparse.ArgumentParser) -> None:
  d = methods.Options()
  p.add_argument('--epochs', type=int, default=d.epochs, help='meta-model training epochs')
  p.add_argument('--batch-size', type=int, default=d.batch_size)
  p.add_argument('--lr', type=float, default=d.learning_rate, help='Adam learning rate')
  p.add_argument('--lr-decay', type=float, default=d.lr_decay, help='learning-rate factor per epoch')
  p.add_argument('--loss', choices=('l1', 'mse'), default=d.loss, help='regression loss')
  p.add_argument('--window', type=int, default=d.window, help='DMC window length (consecutive weights)')
  p.add_argument('--windows', type=int, default=d.windows, help='DMC evenly spaced windows per test network')
  p.add_argument('--val-windows', type=int, default=d.val_windows, help='DMC windows per validation network')
  p.add_argument('--dmc-size', default=d.dmc_size, choices=sorted(models.DMC_SIZES),
                 help='DMC size preset: tiny, small (default, ~0.4M parameters) or paper (10.4M)')
  p.add_argument('--hidden', default=','.join(map(str, d.hidden)), help='MLP hidden units, comma-separated')
  p.add_argument('--dropout', type=float, default=d.dropout, help='MLP dropout')
  p.add_argument('--gbt-max-iter', type=int, default=d.gbt_max_iter, help='boosting iterations of statnn_gbt')
  p.add_argument('--verbose', action='store_true', help='print every epoch')


def options(a: argparse.Namespace) -> methods.Options:
  return methods.Options(epochs=a.epochs, batch_size=a.batch_size, learning_rate=a.lr, lr_decay=a.lr_decay,
                         loss=a.loss, seed=a.seed, window=a.window, windows=a.windows, val_windows=a.val_windows,
                         dmc_size=a.dmc_size, hidden=tuple(int(h) for h in a.hidden.split(',') if h),
                         dropout=a.dropout, gbt_max_iter=a.gbt_max_iter, verbose=a.verbose)


def data_kwargs(a: argparse.Namespace) -> dict:
  fractions = [float(x) for x in a.split.split(',')]
  if len(fractions) != 2:
    raise SystemExit(f'--split: give val,test (two numbers), got {a.split!r}')
  return dict(snapshots=a.snapshots, epochs=a.snapshot_epochs, status=None if a.status == 'all' else a.status,
              fractions=(0.0, *fractions), seed=a.seed, archs=a.arch.split(',') if a.arch else None,
              memory_budget=int(a.memory_budget_mb * 2**20))


def jsonable(x):
  """JSON-safe: numpy to Python, nan/inf to None."""
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return jsonable(x.tolist())
  if isinstance(x, (np.floating, float)):
    return None if not math.isfinite(float(x)) else float(x)
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, np.bool_):
    return bool(x)
  return x


def run(zoo: Zoo | str, target: str, model: str, opts: methods.Options | None = None, *, kind: str | None = None,
        part: str = 'all', analyses=ANALYSES, when_snapshots=None, out: str | None = None,
        data: data_lib.MetaData | None = None, **data_kw) -> dict:
  """One target x one meta-model: fit, evaluate on test networks, run the analyses, write JSON + plots to `out`.

  when_snapshots: the snapshots the "when" analysis fits a model on (selection syntax; default all selected)."""
  t0 = time.perf_counter()
  opts = opts or methods.Options()
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  data = data or data_lib.load(zoo, target, kind=kind, **data_kw)
  result = methods.run(model, data, opts, part=part)
  test = result.metrics(data, 'test')
  report = {'zoo': zoo.path, 'target': data.target.to_json(), 'model': model, 'part': part,
            'options': {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
            'data': data.summary(), 'test': test, 'chance': data.target.chance,
            'val': result.metrics(data, 'val') if 'val' in result.output else None,
            'test_per_window': result.window_metrics(data, 'test'), 'best_epoch': result.best_epoch,
            'history': [{k: v for k, v in h.items() if k != 'val'} | ({'val_score': metrics.score(h['val'])}
                                                                      if 'val' in h else {}) for h in result.history],
            'model_info': result.info, 'fit_seconds': result.seconds}
  if data.target.is_classification:
    report['test']['per_class_accuracy'] = test['per_class_accuracy']
  report['when_by_epoch'] = analysis.by_epoch(result, data)
  if 'where' in analyses and result.window_output:
    report['where'] = analysis.where_positions(result, data)
  if 'parts' in analyses:
    report['parts'] = analysis.parts(model, data, opts, main=result)
  if 'when' in analyses:
    ks = data_lib.parse_selection(when_snapshots, data.rows['snapshot'].unique())
    report['when'] = analysis.when_snapshots(model, data, opts, part=part, snapshots=ks, seed=data_kw.get('seed', 0))
  report['seconds'] = time.perf_counter() - t0
  if out:
    os.makedirs(out, exist_ok=True)
    report['plots'] = _plots(report, result, data, out)
    with open(os.path.join(out, 'result.json'), 'w') as f:
      json.dump(jsonable(report), f, indent=1)
  return jsonable(report)


def _plots(report: dict, result: methods.Result, data: data_lib.MetaData, out: str) -> dict:
  name = f'{data.target.name} | {report["model"]}'
  paths = {}
  if data.target.is_classification:
    paths['confusion'] = plots.confusion(report['test'], os.path.join(out, 'confusion.png'), name + '\n' + (
        f'accuracy {report["test"]["accuracy"]:.3f} (chance {report["chance"]:.3f})'))
  else:
    label = f'log10 {data.target.name}' if data.target.log else data.target.name
    paths['predictions'] = plots.predictions(data.y[result.index['test']], result.output['test'], report['test'],
                                             os.path.join(out, 'predictions.png'), label)
  if report.get('where') or report.get('parts'):
    paths['where'] = plots.where(report.get('where'), report.get('parts'), os.path.join(out, 'where.png'), name)
  if report.get('when') or report['when_by_epoch']['epoch']:
    paths['when'] = plots.when(report.get('when'), report['when_by_epoch'], os.path.join(out, 'when.png'), name)
  return paths


def _fmt(x, digits=3) -> str:
  return 'n/a' if x is None or (isinstance(x, float) and not math.isfinite(x)) else f'{x:.{digits}f}'


def format_report(r: dict) -> str:
  """The human-readable results table of one run."""
  t, d, m = r['target'], r['data'], r['test']
  scale = ' (log10)' if t.get('log') else ''
  lines = [f'zoo {r["zoo"]}', f'target {t["name"]}{scale}: {t["kind"]}' +
           (f', {len(t["classes"])} classes' if t['classes'] else '') + f' | model {r["model"]} | part {r["part"]}',
           f'networks (rows / members): train {d["train_rows"]}/{d["train_members"]}  val {d["val_rows"]}/'
           f'{d["val_members"]}  test {d["test_rows"]}/{d["test_members"]}  | architectures {len(d["architectures"])}']
  lines += [f'note: {n}' for n in d['notes']]
  if r['model_info'].get('padded_rows'):
    where = 'whole vector' if r['part'] == 'all' else f'{r["part"]} part'
    lines.append(f'note: the window ({r["model_info"]["window"]} weights) is longer than the {where} of '
                 f'{r["model_info"]["padded_rows"]} selected rows; their windows are zero-padded')
  lines.append('')
  if t['kind'] == 'classification':
    lines.append(f'test accuracy per network   {_fmt(m["accuracy"])}   chance {_fmt(r["chance"])}')
    if r.get('test_per_window'):
      lines.append(f'test accuracy per window    {_fmt(r["test_per_window"]["accuracy"])}')
    lines.append('')
    width = max(8, *(len(c) for c in m['classes']))
    lines.append(f'{"class":<{width}}  accuracy  ' + ' '.join(f'{c[:7]:>7}' for c in m['classes']) +
                 '   <- predicted')
    for c, row in zip(m['classes'], m['confusion']):
      lines.append(f'{c:<{width}}  {_fmt(m["per_class_accuracy"][c]):>8}  ' + ' '.join(f'{v:>7}' for v in row))
  else:
    lines.append(f'test R2 {_fmt(m["r2"])}   Kendall tau {_fmt(m["kendall_tau"])}   MAE {_fmt(m["mae"], 4)}   '
                 f'RMSE {_fmt(m["rmse"], 4)}   (n = {m["n"]}{", log10 scale" if t.get("log") else ""})')
    if r.get('test_per_window'):
      w = r['test_per_window']
      lines.append(f'per window: R2 {_fmt(w["r2"])}   Kendall tau {_fmt(w["kendall_tau"])}')
  metric = 'accuracy' if t['kind'] == 'classification' else 'R2'
  if r.get('parts'):
    cells = [f'{k} {_fmt(v.get("score"))}' if 'score' in v else f'{k} skipped' for k, v in r['parts'].items()]
    lines += ['', f'where (part, test {metric}): ' + '  '.join(cells)]
  if r.get('where'):
    w = r['where']
    lines.append(f'where (window position, test {metric}): ' + ' '.join(
        f'{p:.2f}:{_fmt(s, 2)}' for p, s in zip(w['position'][::max(1, len(w['position']) // 8)],
                                                 w['score'][::max(1, len(w['position']) // 8)])))
  if r.get('when'):
    w = r['when']
    lines.append(f'when (train+test on one snapshot, test {metric} by epoch): ' +
                 '  '.join(f'{e:g}:{_fmt(s, 2)}' for e, s in zip(w['epoch'], w['score'])))
  if r.get('when_by_epoch', {}).get('epoch'):
    w = r['when_by_epoch']
    lines.append(f'when (this model, test {metric} by epoch): ' +
                 '  '.join(f'{e:g}:{_fmt(s, 2)}' for e, s in zip(w['epoch'], w['score'])))
  best = f'best epoch {r["best_epoch"]} (on val), ' if r['best_epoch'] >= 0 else ''
  lines.append(f'\n{best}fit {r["fit_seconds"]:.1f}s, total {r["seconds"]:.1f}s')
  if r.get('plots'):
    lines.append('wrote ' + ', '.join(r['plots'].values()))
  return '\n'.join(lines)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m meta.train', description=__doc__.split('\n')[0])
  add_data_args(p)
  p.add_argument('--target', required=True, help='a metadata column (hyper-parameter or metric) or '
                                                 'generalization_gap')
  p.add_argument('--model', choices=methods.METHODS, default='dmc')
  p.add_argument('--kind', choices=('classification', 'regression'), default=None,
                 help='override the automatic choice')
  p.add_argument('--part', choices=weights.PARTS, default='all', help='restrict inputs to the conv or FC part')
  p.add_argument('--analyses', default=','.join(ANALYSES), help=f'comma-separated subset of {ANALYSES}, or none')
  p.add_argument('--when-snapshots', default=None,
                 help='snapshots the "when" analysis trains a model on (default: every selected snapshot)')
  p.add_argument('--out', default=None, help='output directory (default runs/meta/<target>-<model>)')
  add_model_args(p)
  a = p.parse_args(argv)
  analyses = () if a.analyses == 'none' else tuple(x for x in a.analyses.split(',') if x)
  unknown = set(analyses) - set(ANALYSES)
  if unknown:
    p.error(f'--analyses: unknown {sorted(unknown)}; choose from {ANALYSES}')
  out = a.out or os.path.join('runs', 'meta', f'{a.target}-{a.model}')
  try:
    r = run(a.zoo, a.target, a.model, options(a), kind=a.kind, part=a.part, analyses=analyses,
            when_snapshots=a.when_snapshots, out=out, **data_kwargs(a))
  except data_lib.MetaDataError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(format_report(r))
  return 0


if __name__ == '__main__':
  sys.exit(main())
