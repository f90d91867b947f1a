"""The runner the two weight-space benchmarks share (issue 29: benchmarks/inr_classification.py,
benchmarks/accuracy_prediction.py): every entry (a meta-model and its options) fitted once per seed with
`meta.train.run` (meta's member splits, fit loop, metrics, bootstrap intervals and progress lines), summarized as
mean +- sd over the seeds (meta.metrics.summarize), written as result.json and README.md.

Nothing here fits or scores anything itself; it calls meta and tabulates what meta reports, with the wall time of
every fit and, from each fit's measured seconds per training step, an estimate of the wall time at another size.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time

SMOKE_NOTE = ('SMOKE CHECK of the script on a tiny zoo, not a result: the numbers below say only that every model '
              'runs end to end.')


def add_flags(p, estimate: str) -> None:
  """The flags both benchmarks take (meta.Options fields, the seeds, the README's label and estimate size)."""
  p.add_argument('--models', default=None, help='comma-separated subset of the entries (default: all)')
  p.add_argument('--seeds', type=int, default=3, help='seeds 0 .. N-1 (default 3)')
  p.add_argument('--epochs', type=int, default=50)
  p.add_argument('--batch_size', type=int, default=64)
  p.add_argument('--min_steps', type=int, default=2000)
  p.add_argument('--nfn_channels', default='16,16,5')
  p.add_argument('--nfn_head', type=int, default=1000)
  p.add_argument('--hidden', default='256,128')
  p.add_argument('--smoke', action='store_true', help='label the README as a smoke check on a tiny zoo')
  p.add_argument('--estimate', default=estimate, help='train rows, evaluated rows, seeds of the full run whose '
                                                      'wall time the README estimates')


def check_flags(p, a, entries: tuple) -> None:
  """a.entries from --models, the comma lists as int tuples; a bad value: one line naming the flag, exit 2."""
  from meta.cli import MODEL_RANGES
  from popnet import usage
  a.entries = pick(entries, a.models, p)
  usage.check_input_dir(p, '--zoo', a.zoo)
  usage.check_ranges(p, a, MODEL_RANGES)
  usage.check_out(p, a.out)
  if a.seeds < 1:
    p.error(f'--seeds: at least 1, got {a.seeds}')
  for name in ('nfn_channels', 'hidden', 'estimate'):
    try:
      setattr(a, name, tuple(int(v) for v in getattr(a, name).split(',')))
    except ValueError:
      p.error(f'--{name}: comma-separated integers, got {getattr(a, name)!r}')
  if len(a.estimate) != 3:
    p.error(f'--estimate: three integers (train rows, evaluated rows, seeds), got {a.estimate}')


def options(a, **kw):
  """meta's Options from the shared flags (and the benchmark's own fields, kw)."""
  from meta import methods
  return methods.Options(epochs=a.epochs, batch_size=a.batch_size, min_steps=a.min_steps,
                         nfn_channels=a.nfn_channels, nfn_head=a.nfn_head, hidden=a.hidden, **kw)


def command(name: str, argv) -> str:
  return ' '.join([f'python -m benchmarks.{name}'] + list(argv if argv is not None else sys.argv[1:]))


@dataclasses.dataclass(frozen=True)
class Entry:
  """One row of a benchmark table: `label` (the row's name, also its --models name), meta's `model` and the
  Options fields that differ from the benchmark's (e.g. weight_augment)."""
  label: str
  model: str
  options: tuple[tuple[str, object], ...] = ()
  flags: str = ''  # the meta.train flags that give this entry


def pick(entries: tuple[Entry, ...], spec: str | None, parser) -> list[Entry]:
  """The entries named in a comma-separated --models (all when None); an unknown name: one line, exit 2."""
  by_label = {e.label: e for e in entries}
  if spec is None:
    return list(entries)
  names = [s.strip() for s in spec.split(',') if s.strip()]
  bad = [n for n in names if n not in by_label]
  if bad or not names:
    parser.error(f'--models: {",".join(bad) or "(empty)"} not among {",".join(by_label)}')
  return [by_label[n] for n in names]


def run_entries(zoo, target: str, entries: list[Entry], opts, seeds: list[int], load, out: str,
                log=None) -> list[dict]:
  """Each entry on each seed: load(seed) -> MetaData (cached by the caller as it likes), meta.train.run without
  analyses; a fit already finished under `out` on this zoo, target and options is reused (benchmarks.
  finished_fits: an interrupted benchmark resumes). Returns one summary per entry (summarize_entry)."""
  from benchmarks.finished_fits import FinishedFits
  from meta import progress, train
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  fits = FinishedFits(out, zoo, target)
  cell_options = {(e.label, seed): dataclasses.replace(opts, seed=seed, **dict(e.options))
                  for e in entries for seed in seeds}
  recorded = fits.recorded([(label, seed, o) for (label, seed), o in cell_options.items()])
  cells = progress.Cells([e.label for e in entries for _ in seeds])
  rows = []
  for e in entries:
    reports = []
    for seed in seeds:
      cell_opts = cell_options[e.label, seed]
      r = recorded.get((e.label, seed))
      if r is None:
        t0 = time.perf_counter()
        r = train.run(zoo, target, e.model, cell_opts, analyses=(), data=load(seed), seed=seed)
        r['wall_seconds'] = time.perf_counter() - t0
        fits.put(e.label, seed, cell_opts, r)
        done = 'fitted'
      else:
        done = f'reused from {fits.file(e.label, seed)}'
      reports.append(r)
      log(f'{cells.finished(e.label, r["wall_seconds"])}: {e.label} seed {seed}: '
          f'{_score_text(r["test"])} (fit {progress.duration(r["fit_seconds"])}; {done})')
    rows.append(summarize_entry(e, reports))
  return rows


def _score_text(test: dict) -> str:
  if 'accuracy' in test:
    return f'test accuracy {test["accuracy"]:.4f}'
  return f'test tau {test["kendall_tau"]:.4f}, R2 {test["r2"]:.4f}'


def summarize_entry(e: Entry, reports: list[dict]) -> dict:
  """Mean +- sd over seeds of the test scores, the fits' seconds and steps, the first seed's 95% interval."""
  from meta import metrics
  first = reports[0]
  names = ('accuracy',) if 'accuracy' in first['test'] else ('kendall_tau', 'r2')
  return {'label': e.label, 'model': e.model, 'flags': e.flags, 'options': dict(e.options),
          'seeds': [r['data']['seed'] for r in reports],
          'test': {n: metrics.summarize([r['test'][n] for r in reports]) for n in names},
          'val': {n: metrics.summarize([(r['val'] or {}).get(n) for r in reports]) for n in names},
          'ci95_first_seed': first['test']['ci95'], 'test_networks': first['test']['networks'],
          'train_rows': first['data']['train_rows'], 'val_rows': first['data']['val_rows'],
          'fit_seconds': metrics.summarize([r['fit_seconds'] for r in reports]),
          'wall_seconds': metrics.summarize([r['wall_seconds'] for r in reports]),
          'steps': first['model_info'].get('steps'), 'params': first['model_info'].get('params'),
          'best_epoch': [r['best_epoch'] for r in reports]}


def estimate_seconds(row: dict, opts, n_train: int, n_eval: int, seeds: int) -> float:
  """Wall seconds of this entry at n_train training and n_eval evaluated rows, for `seeds` seeds: the measured
  seconds per training step x the steps meta.fit would take there (fit.epoch_plan), plus the rest of the measured
  wall time (features, evaluation) scaled by the rows. Gradient boosting (no steps) scales with the rows."""
  from meta import fit, methods
  fit_s, wall_s = row['fit_seconds']['mean'], row['wall_seconds']['mean']
  small_rows = row['train_rows'] + row['val_rows'] + row['test_networks']
  if row['steps']:
    _, per_epoch = fit.epoch_plan(n_train, methods.fit_config(opts))
    fitted = fit_s / row['steps'] * per_epoch * opts.epochs
  else:
    fitted = fit_s * n_train / max(row['train_rows'], 1)
  return seeds * (fitted + max(wall_s - fit_s, 0.0) * (n_train + n_eval) / max(small_rows, 1))


def zoo_facts(zoo, target: str, smoke: bool) -> dict:
  """What the README says of the zoo itself (from its manifest and metadata): complete and sealed, members,
  snapshot epochs, where and at what recorded cost it was built (the manifest's `processes`), and the distribution
  of a numeric `target` over the last snapshot's rows. A zoo whose build has not finished is refused (ZooError)
  unless `smoke`: a table on part of a zoo is not a result."""
  from popnet.zoo import ZooError
  m = zoo.manifest
  if not m.get('complete') and not smoke:
    raise ZooError(f'{zoo.path}: its build has not finished (manifest "complete": false); rerun its popnet.train '
                   f'command to finish it, or pass --smoke for a check that is not a result')
  processes = m.get('processes', [])
  facts = {'complete': bool(m.get('complete')), 'sealed': bool(zoo.sealed), 'members': m.get('members'),
           'snapshot_epochs': m.get('snapshot_epochs'), 'backend': m.get('backend'),
           'machine': {k: m.get('machine', {}).get(k) for k in ('cpu', 'cores')}, 'build_processes': len(processes),
           'build_seconds': round(sum(p.get('timings', {}).get('total', 0.0) for p in processes), 1),
           'build_from': processes[0].get('started') if processes else None,
           'build_to': processes[-1].get('updated') if processes else None}
  meta = zoo.metadata
  last = meta[meta['epoch'] == meta['epoch'].max()]
  facts['last_epoch'], facts['last_rows'] = int(meta['epoch'].max()), int(len(last))
  facts['last_status'] = {str(k): int(v) for k, v in last['status'].value_counts().items()}
  values = last[target] if target in last else None
  if values is not None and values.dtype.kind in 'fiu':
    q = values.dropna().quantile([0.0, 0.1, 0.5, 0.9, 1.0])
    facts['last_target'] = dict(zip(('min', 'p10', 'median', 'p90', 'max'), (round(float(v), 4) for v in q)))
  return facts


def zoo_lines(f: dict, target: str) -> list[str]:
  """The README's paragraph on the zoo (zoo_facts)."""
  spread = f.get('last_target')
  values = (f'; {target} of the last snapshot: min {spread["min"]}, p10 {spread["p10"]}, median '
            f'{spread["median"]}, p90 {spread["p90"]}, max {spread["max"]}' if spread else '')
  cost = (f'its build, as its manifest records it: {f["build_processes"]} training process(es) from '
          f'{f["build_from"]} to {f["build_to"]}, {f["build_seconds"]:.0f} s in them in all, on '
          f'{f["machine"]["cpu"]} ({f["machine"]["cores"]} cores, backend {f["backend"]})')
  return ['', f'The zoo: {f["members"]} networks, snapshots at epochs {f["snapshot_epochs"]}, '
          f'{"complete" if f["complete"] else "NOT complete"}, {"sealed" if f["sealed"] else "not sealed"}; last '
          f'snapshot (epoch {f["last_epoch"]}): {f["last_rows"]} rows, status {f["last_status"]}{values}; {cost}.']


def machine() -> dict:
  load = os.getloadavg()
  return {'cpus': os.cpu_count(), 'load_average_at_end': [round(x, 2) for x in load],
          'platform': platform.platform(), 'python': platform.python_version()}


def finish(a, result: dict, opts, readme) -> int:
  """The estimate for --estimate's size (at the default epochs and min_steps, the full run's), result.json and
  README.md (readme(result)) under --out, the README printed."""
  from meta import methods
  full = dataclasses.replace(opts, epochs=methods.Options.epochs, min_steps=methods.Options.min_steps)
  result['estimate'] = estimate_lines(result['rows'], full, *a.estimate, 'the full benchmark')
  write(a.out, result, readme(result))
  print(readme(result))
  return 0


def write(out: str, result: dict, readme: str) -> None:
  from meta import train
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'result.json'), 'w') as f:
    json.dump(train.jsonable(result), f, indent=1)
  with open(os.path.join(out, 'README.md'), 'w') as f:
    f.write(readme)


def mean_sd(s: dict, scale: float = 1.0, digits: int = 4) -> str:
  if not s['splits']:
    return 'n/a'
  sd = '' if not math.isfinite(s['sd']) else f' ± {s["sd"] * scale:.{digits}f}'
  return f'{s["mean"] * scale:.{digits}f}{sd}'


def table(rows: list[dict], columns: list[tuple[str, str, float]]) -> list[str]:
  """Markdown rows: model, flags, each (metric, header, scale) as mean ± sd, fit and wall seconds per fit."""
  head = ['model', 'meta.train flags'] + [h for _, h, _ in columns] + ['seeds', 'test n', 'fit s (mean)',
                                                                       'wall s (mean)', 'steps']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
  for r in rows:
    cells = [r['label'], f'`{r["flags"]}`'] + [mean_sd(r['test'][m], scale, 2 if scale == 100 else 4)
                                               for m, _, scale in columns]
    cells += [str(len(r['seeds'])), str(r['test_networks']), f'{r["fit_seconds"]["mean"]:.1f}',
              f'{r["wall_seconds"]["mean"]:.1f}', str(r['steps'] or '-')]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return lines


def readme(r: dict, title: str, intro: str, columns: list, published: tuple) -> str:
  """The README: title, the smoke label when r['smoke'], intro, the command, the table of `columns`, the
  published numbers (caption, column header, [(model, value text)]) and the footer."""
  caption, header, values = published
  lines = [f'# {title}', ''] + ([f'**{SMOKE_NOTE}**', ''] if r['smoke'] else [])
  lines += [intro, '', f'Command: `{r["command"]}`', ''] + table(r['rows'], columns)
  lines += ['', caption, '', f'| model | {header} |', '| --- | --- |'] + [f'| {n} | {v} |' for n, v in values]
  return '\n'.join(lines + footer(r)) + '\n'


def footer(r: dict) -> list[str]:
  """The README's closing lines: the wall time, the machine and its load, the estimate."""
  m = r['machine']
  zoo = zoo_lines(r['zoo_facts'], r.get('target', 'label')) if 'zoo_facts' in r else []
  return zoo + ['', f'Wall {r["seconds"]:.0f} s on {m["cpus"]} CPUs ({m["platform"]}), load average at the end '
          f'{m["load_average_at_end"]} (the CPU is shared: times are upper bounds).', ''] + r['estimate']


def estimate_lines(rows: list[dict], opts, n_train: int, n_eval: int, seeds: int, what: str) -> list[str]:
  from meta import progress
  total, lines = 0.0, []
  for r in rows:
    s = estimate_seconds(r, opts, n_train, n_eval, seeds)
    total += s
    lines.append(f'- {r["label"]}: {progress.duration(s)}')
  return [f'Estimated wall time of {what} ({n_train:,} training rows, {n_eval:,} evaluated, {seeds} seeds, '
          f'{opts.epochs} epochs, min_steps {opts.min_steps}, batch {opts.batch_size}) on this machine at the load '
          f'above, from the seconds per training step measured here (an estimate, not a run; the measured seconds '
          f'include each fit\'s one-time compilation, so a short fit overstates the cost of a step): '
          f'{progress.duration(total)} in all.', ''] + lines
