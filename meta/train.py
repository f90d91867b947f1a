"""Train one meta-model for one target on a zoo; print the results table, write JSON and PNG plots.

Networks are split by member (train / val / test); the model is selected on val and every number reported is on
test networks it never saw, with their count n and a 95% bootstrap interval over them; with --splits K, also the
mean +- sd over K member splits. Writes <out>/result.json, confusion.png (classification) or predictions.png
(regression), where.png and when.png (error bars: 95% intervals).

    python -m meta.train --zoo runs/a --target activation --model dmc --snapshots 10-19 --splits 5
"""
from __future__ import annotations

if __name__ == '__main__':  # the command line first: --help and bad flags answer before JAX loads
  from meta import cli
  cli.run('train', lambda: cli.train_args(__doc__)[0], '{out} holds no result.json of this run (it is written last)')

import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

from meta import analysis, cli, data as data_lib, methods, metrics, plots
from meta.options import ANALYSES
from popnet.files import atomic_write_text
from popnet.zoo import Zoo, ZooError

RESULT_FILE = 'result.json'


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
        data: data_lib.MetaData | None = None, result_file: bool = True, **data_kw) -> dict:
  """One target x one meta-model: fit, evaluate on test networks, run the analyses, write plots and then (unless
  not result_file: run_splits writes it once every split is done) result.json to `out`.

  when_snapshots: the snapshots the "when" analysis fits a model on (selection syntax; default all selected)."""
  t0 = time.perf_counter()
  opts = opts or methods.Options()
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  data = data or data_lib.load(zoo, target, kind=kind, **data_kw)
  print(f'{target}: {len(data.rows)} snapshots of {data.rows["member_id"].nunique()} networks selected; fitting '
        f'{model} on {len(data.splits["train"])} training snapshots', file=sys.stderr, flush=True)
  result = methods.run(model, data, opts, part=part)
  test = result.metrics(data, 'test')
  report = {'zoo': zoo.path, 'target': data.target.to_json(), 'model': model, 'part': part,
            'options': {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(opts).items()},
            'data': data.summary(), 'test': test, 'chance': data.target.chance,
            'val': result.metrics(data, 'val') if 'val' in result.output else None,
            'test_per_window': result.window_metrics(data, 'test'), 'best_epoch': result.best_epoch,
            'history': [{k: v for k, v in h.items() if k != 'val'} | ({'val_score': metrics.score(h['val'])}
                                                                      if 'val' in h else {}) for h in result.history],
            'model_info': result.info, 'fit_seconds': result.seconds, 'test_predictions': test_predictions(result, data),
            'notes': list(data.notes) + list(result.info.get('notes', []))}
  if data.target.is_classification:
    report['test']['per_class_accuracy'] = test['per_class_accuracy']
  report['when_by_epoch'] = analysis.by_epoch(result, data)
  if 'where' in analyses and result.window_output:
    report['where'] = analysis.where_positions(result, methods.with_inputs(data, model, opts))
  if 'parts' in analyses:
    report['parts'] = analysis.parts(model, data, opts, main=result)
  if 'when' in analyses:
    ks = data_lib.parse_selection(when_snapshots, data.rows['snapshot'].unique())
    report['when'] = analysis.when_snapshots(model, data, opts, part=part, snapshots=ks, seed=data_kw.get('seed', 0))
  report['seconds'] = time.perf_counter() - t0
  report['data']['seed'] = int(data_kw.get('seed', 0))
  if out:
    os.makedirs(out, exist_ok=True)
    _remove_result(out)  # never an earlier run's result.json beside this run's plots
    report['plots'] = _plots(report, result, data, out)
    if result_file:
      write_result(out, report)
  return jsonable(report)


def write_result(out: str, report: dict) -> None:
  """<out>/result.json, written atomically and last: a run stopped before it leaves no result.json of its own."""
  atomic_write_text(os.path.join(out, RESULT_FILE), json.dumps(jsonable(report), indent=1))


def _remove_result(out: str) -> None:
  if os.path.exists(os.path.join(out, RESULT_FILE)):
    os.remove(os.path.join(out, RESULT_FILE))


def test_predictions(result: methods.Result, data: data_lib.MetaData) -> dict:
  """Per test row: member id, snapshot, true value and prediction (class index, or value on the target's scale),
  so two models fitted on the same split can be compared network by network (paired differences)."""
  rows = result.index['test']
  out = result.output['test']
  return {'member_id': data.rows['member_id'].to_numpy()[rows], 'snapshot': data.rows['snapshot'].to_numpy()[rows],
          'y': data.y[rows], 'prediction': out.argmax(-1) if data.target.is_classification else out}


def run_splits(zoo: Zoo | str, target: str, model: str, opts: methods.Options | None = None, *, splits: int = 1,
               seed: int = 0, out: str | None = None, analyses=ANALYSES, log=None, kind: str | None = None,
               part: str = 'all', when_snapshots=None, **kw) -> dict:
  """`run` on `splits` member splits (seeds seed .. seed + splits - 1): the report of the first split (analyses
  and plots run on it only) plus report['splits']: mean +- sd over the splits of every score, with each n."""
  opts = dataclasses.replace(opts or methods.Options(), seed=seed)
  zoo = Zoo.open(zoo) if isinstance(zoo, str) else zoo
  run_kw = dict(part=part, when_snapshots=when_snapshots)
  log = log or (lambda message: print(message, file=sys.stderr, flush=True))
  reports, store = [], None
  for i in range(splits):
    if splits > 1:
      log(f'split {i + 1}/{splits} (seed {seed + i})')
    data = data_lib.load(zoo, target, seed=seed + i, store=store, kind=kind, **kw)
    store = data.store
    reports.append(run(zoo, target, model, dataclasses.replace(opts, seed=seed + i), seed=seed + i, data=data,
                       out=out if i == 0 else None, analyses=analyses if i == 0 else (), result_file=False,
                       **run_kw))
  first = reports[0]
  first['splits'] = split_summary(reports)
  if out:
    write_result(out, first)
  return first


def split_summary(reports: list[dict]) -> dict:
  """Mean +- sd over member splits of the per-network score and of NWS's window score, with n per split."""
  out = {'seeds': [r['data']['seed'] for r in reports], 'test_networks': [r['test']['networks'] for r in reports],
         'score': metrics.summarize([metrics.score(r['test']) for r in reports])}
  if all(r.get('test_per_window') for r in reports):
    out['window_score'] = metrics.summarize([metrics.score(r['test_per_window']) for r in reports])
  return out


def _plots(report: dict, result: methods.Result, data: data_lib.MetaData, out: str) -> dict:
  name = f'{data.target.name} | {report["model"]}'
  paths = {}
  if data.target.is_classification:
    t = report['test']
    paths['confusion'] = plots.confusion(t, os.path.join(out, 'confusion.png'), name + '\n' + (
        f'accuracy {t["accuracy"]:.3f} 95% {_ci(t)}, n={t["networks"]} (chance {report["chance"]:.3f})'))
  else:
    label = f'log10 {data.target.name}' if data.target.log else data.target.name
    paths['predictions'] = plots.predictions(data.y[result.index['test']], result.output['test'], report['test'],
                                             os.path.join(out, 'predictions.png'), label)
  if report.get('where') or report.get('parts'):  # a skipped "where" is drawn as a message, not one dot
    paths['where'] = plots.where(report.get('where'), report.get('parts'), os.path.join(out, 'where.png'), name)
  if report.get('when') or report['when_by_epoch']['epoch']:
    paths['when'] = plots.when(report.get('when'), report['when_by_epoch'], os.path.join(out, 'when.png'), name)
  return paths


def _fmt(x, digits=3) -> str:
  return 'n/a' if x is None or (isinstance(x, float) and not math.isfinite(x)) else f'{x:.{digits}f}'


def _ci(m: dict, digits=3) -> str:
  lo, hi = m.get('ci95') or (None, None)
  return f'[{_fmt(lo, digits)}, {_fmt(hi, digits)}]'


def _spread(s: dict) -> str:
  return f'{_fmt(s["mean"])} +- {_fmt(s["sd"])} over {s["splits"]} splits'


def format_report(r: dict) -> str:
  """The human-readable results table of one run."""
  t, d, m = r['target'], r['data'], r['test']
  scale = ' (log10)' if t.get('log') else ''
  lines = [f'zoo {r["zoo"]}', f'target {t["name"]}{scale}: {t["kind"]}' +
           (f', {len(t["classes"])} classes' if t['classes'] else '') + f' | model {r["model"]} | part {r["part"]}',
           f'networks (rows / members): train {d["train_rows"]}/{d["train_members"]}  val {d["val_rows"]}/'
           f'{d["val_members"]}  test {d["test_rows"]}/{d["test_members"]}  | architectures {len(d["architectures"])}']
  info = r['model_info']
  if info.get('steps'):
    lines.append(f'trained {info["steps"]} steps ({r["options"]["epochs"]} epochs, every training example '
                 f'{info.get("repeats", 1)}x per epoch)' + (f', window {info["window"]}' if 'window' in info else ''))
  lines += [f'note: {n}' for n in r.get('notes', d['notes'])]
  lines.append('')
  n = f'n = {m["networks"]} test networks'
  if t['kind'] == 'classification':
    how = '   (mean probability of the windows)' if r.get('test_per_window') else ''
    lines.append(f'test accuracy per network   {_fmt(m["accuracy"])}  95% {_ci(m)}  {n}   chance '
                 f'{_fmt(r["chance"])}{how}')
    if r.get('test_per_window'):
      w = r['test_per_window']
      lines.append(f'NWS score (fraction of {w["windows_per_network"]} windows correct) {_fmt(w["accuracy"])}  '
                   f'95% {_ci(w)}')
    lines.append('')
    width = max(8, *(len(c) for c in m['classes']))
    lines.append(f'{"class":<{width}}  accuracy  ' + ' '.join(f'{c[:7]:>7}' for c in m['classes']) +
                 '   <- predicted')
    for c, row in zip(m['classes'], m['confusion']):
      lines.append(f'{c:<{width}}  {_fmt(m["per_class_accuracy"][c]):>8}  ' + ' '.join(f'{v:>7}' for v in row))
  else:
    lines.append(f'test R2 {_fmt(m["r2"])}  95% {_ci(m)}   Kendall tau {_fmt(m["kendall_tau"])}   MAE '
                 f'{_fmt(m["mae"], 4)}   RMSE {_fmt(m["rmse"], 4)}   ({n}, {m["n"]} rows'
                 f'{", log10 scale" if t.get("log") else ""})')
    if r.get('test_per_window'):
      w = r['test_per_window']
      lines.append(f'per window: R2 {_fmt(w["r2"])}  95% {_ci(w)}   Kendall tau {_fmt(w["kendall_tau"])}')
  if r.get('splits') and r['splits']['score']['splits'] > 1:
    sp = r['splits']
    lines.append(f'over member splits (seeds {sp["seeds"]}, test networks {sp["test_networks"]}): '
                 f'{_spread(sp["score"])}' + (f'; NWS score {_spread(sp["window_score"])}'
                                              if 'window_score' in sp else ''))
  lines += _analysis_lines(r, 'accuracy' if t['kind'] == 'classification' else 'R2')
  best = f'best epoch {r["best_epoch"]} (on val), ' if r['best_epoch'] >= 0 else ''
  lines.append(f'\n{best}fit {r["fit_seconds"]:.1f}s, total {r["seconds"]:.1f}s')
  if r.get('plots'):
    lines.append('wrote ' + ', '.join(r['plots'].values()))
  return '\n'.join(lines)


def _analysis_lines(r: dict, metric: str) -> list[str]:
  lines = []
  if r.get('parts'):
    cells = [f'{k} {_fmt(v["score"])} {_ci(v, 2)} (n={v["networks"]})' if 'score' in v else f'{k} skipped'
             for k, v in r['parts'].items()]
    lines += ['', f'where (part, test {metric}): ' + '  '.join(cells)]
  w = r.get('where')
  if w and 'skipped' in w:
    lines.append(f'where (window position): not measured: {w["skipped"]}')
  elif w:
    step = max(1, len(w['position']) // 8)
    lines.append(f'where (window position, test {metric}, n={w["networks"]}): ' + ' '.join(
        f'{p:.2f}:{_fmt(s, 2)}' for p, s in zip(w['position'][::step], w['score'][::step])))
  for key, what in (('when', 'train+test on one snapshot'), ('when_by_epoch', 'this model')):
    w = r.get(key) or {}
    if w.get('epoch'):
      lines.append(f'when ({what}, test {metric} by epoch [95%], n): ' + '  '.join(
          f'{e:g}:{_fmt(s, 2)} {_ci({"ci95": c}, 2)} {k}' for e, s, c, k in zip(w['epoch'], w['score'], w['ci95'],
                                                                              w['networks'])))
  return lines


def main(argv=None) -> int:
  a, data_kw = cli.train_args(__doc__, argv)
  with cli.locked_out(a.out):
    try:
      r = run_splits(a.zoo, a.target, a.model, cli.options(a), splits=a.splits, kind=a.kind, part=a.part,
                     analyses=a.analyses, when_snapshots=a.when_snapshots, out=a.out, **data_kw)
    except (data_lib.MetaDataError, ZooError) as e:  # a bad selection or a damaged zoo: one line, exit 2
      print(f'error: {e}', file=sys.stderr)
      return 2
  print(format_report(r))
  return 0

