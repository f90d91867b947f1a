"""Issue 14's replication: how much, where and when hyper-parameters can be read off the weights of the
replication zoo (configs/replication.py), with error bars, next to the paper's claims.

    python -m popnet.train --config replication --workdir runs/replication     # the zoo (rerun resumes)
    python -m benchmarks.replication --zoo runs/replication --out benchmarks/results/replication --preset cpu

Stages (`--stages`, default all). Every fitted model is one *cell*, written to <out>/cells/<name>.json as soon
as it is done, so an interrupted run resumes where it stopped and a later run (another preset, a GPU) adds only
what is missing:

  zoo     the final networks' test accuracy per hyper-parameter value, the zoo's build command and wall time
  table   every target x meta-model, test score per network on `splits` member splits (mean +- sd; one split:
          95% bootstrap interval over test networks)
  when    one model per snapshot, trained and tested on that snapshot alone
  where   the DMC's score per window position along the vector (from the table's first DMC split) and the DMC
          refitted on the conv part only and on the FC part only: with its 5,000-value windows, and with windows
          as long as the conv part's (`fc_equal`: window length held equal between the two parts)
  controls the table's models again on the same splits without the batch-norm running statistics
          (meta --inputs no_running_stats: every model, the DMC's windows over the remaining values) and StatNN
          given them (--statnn_running_stats): the report pairs each with its table cell, network by network
  nws     the DMC on NWS's value order within tensors (--dmc_order nws: each output unit's weights contiguous,
          as NWS's exporter writes them), on the DMC's table splits
  report  <out>/report.md, report.json and where.png / when.png from the cells that exist (missing ones listed)

Presets (`PRESETS`): `paper` is NWS's meta-classifier setting (the published DMC, 50 epochs over all training
snapshots, x0.95 per epoch, 5 splits of every model); `cpu` keeps every model trained (meta.fit's step floor)
at a cost a 2-core CPU affords: the `small` DMC on one split with bootstrap intervals, the other models on 5;
the DMC's per-epoch model selection reads 2 windows per validation snapshot (8 by default: on 2,000 networks x
10 snapshots, validating every epoch would cost about as much as training the DMC).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

import numpy as np

from benchmarks import replication_report
from meta import data as data_lib, methods, train as meta_train
from popnet.files import atomic_write_text
from popnet.zoo import Zoo
from popnet import usage

HPARAM_TARGETS = ('dataset', 'optimizer', 'activation', 'init', 'batch_size', 'augment', 'learning_rate')
TARGETS = HPARAM_TARGETS + ('test_accuracy',)
MODELS = ('dmc', 'statnn', 'statnn_gbt', 'neurons')
STAGES = ('zoo', 'table', 'when', 'where', 'controls', 'nws', 'report')  # cheap stages first
CONTROLS = {'no_running_stats': dict(inputs='no_running_stats'),   # control name -> methods.Options overrides
            'running_stats': dict(statnn_running_stats=True)}       # the reverse control: StatNN only
STATNN = ('statnn', 'statnn_gbt')


@dataclasses.dataclass(frozen=True)
class Preset:
  snapshots: str                 # the rows of the table and "where" (meta.data selection syntax)
  splits: int                    # member splits of every model but the DMC
  dmc_splits: int                # ... of the DMC
  dmc: dict                      # methods.Options overrides of the DMC
  others: dict                   # ... of the other models
  where_targets: tuple[str, ...]
  when_targets: tuple[str, ...]
  when_models: tuple[str, ...]
  when_snapshots: str
  control_targets: tuple[str, ...] = ('dataset', 'augment', 'activation')
  control_models: tuple[str, ...] = MODELS
  nws_targets: tuple[str, ...] = ('dataset', 'optimizer', 'activation', 'init')


PRESETS = {
    'paper': Preset('10-19', 5, 5, dict(dmc_size='paper', epochs=50, min_steps=0), dict(epochs=50),
                    HPARAM_TARGETS, HPARAM_TARGETS, MODELS, 'all', HPARAM_TARGETS, MODELS, HPARAM_TARGETS),
    'cpu': Preset('10-19', 5, 1, dict(dmc_size='small', epochs=20, min_steps=3000, val_windows=2), dict(epochs=50),
                  ('dataset', 'optimizer', 'activation', 'init'), ('dataset', 'optimizer', 'activation', 'init',
                                                                    'learning_rate'),
                  ('statnn_gbt', 'neurons'), '0,1,2,3,5,7,10,13,16,19'),
    'test': Preset('1-2', 2, 1, dict(dmc_size='tiny', epochs=3, min_steps=0, window=256, windows=8, val_windows=2),
                   dict(epochs=3, min_steps=0, hidden=(32,), gbt_max_iter=10), ('activation',), ('activation',),
                   ('statnn_gbt',), '1,2', ('dataset', 'augment', 'activation'), MODELS, ('activation',)),
}


def options(preset: Preset, model: str, seed: int, **overrides) -> methods.Options:
  return dataclasses.replace(methods.Options(), seed=seed, **{**(preset.dmc if model == 'dmc' else preset.others),
                                                              **overrides})


def splits(preset: Preset, model: str) -> int:
  """Member splits of `model`'s cells: the same seeds 0, 1, ... for every model, so cells pair split by split."""
  return preset.dmc_splits if model == 'dmc' else preset.splits


def conv_length(zoo: Zoo) -> int:
  """The shortest conv part of the zoo's architectures: the conv-only DMC's window, and the FC-only refit's
  window when the window length is held equal."""
  from meta.weights import part_bounds
  return min(part_bounds(zoo.layout(a), 'conv')[1] for a in zoo.architectures)


class Cells:
  """The cache: one JSON per fitted model under <out>/cells/."""

  def __init__(self, out: str):
    self.dir = os.path.join(out, 'cells')
    os.makedirs(self.dir, exist_ok=True)

  def path(self, name: str) -> str:
    return os.path.join(self.dir, name.replace('/', '__') + '.json')

  def get(self, name: str) -> dict | None:
    try:
      with open(self.path(name)) as f:
        return json.load(f)
    except FileNotFoundError:
      return None

  def put(self, name: str, value: dict) -> None:
    atomic_write_text(self.path(name), json.dumps(meta_train.jsonable(value)))

  def all(self) -> dict[str, dict]:
    out = {}
    for f in sorted(os.listdir(self.dir)):
      if f.endswith('.json'):
        with open(os.path.join(self.dir, f)) as fh:
          out[f[:-5].replace('__', '/')] = json.load(fh)
    return out


def _slim(report: dict) -> dict:
  """A cell: the meta.train report without its per-epoch history (kept: scores, CIs, where, notes, seconds)."""
  return {k: v for k, v in report.items() if k not in ('history', 'plots')}


class LastStore:
  """The weights of the last selection loaded, handed to the next load of the same rows (data_lib.load(store=)),
  so consecutive cells on one selection read the zoo once; one store at a time bounds memory."""

  def __init__(self):
    self.key, self.store = None, None

  def load(self, zoo: Zoo, target: str, snapshots, seed: int) -> data_lib.MetaData:
    if self.key == (zoo.path, snapshots):
      try:
        return data_lib.load(zoo, target, snapshots=snapshots, seed=seed, store=self.store)
      except data_lib.MetaDataError:  # other rows (e.g. a target dropping non-finite values): read them afresh
        pass
    data = data_lib.load(zoo, target, snapshots=snapshots, seed=seed)
    self.key, self.store = (zoo.path, snapshots), data.store
    return data


STORE = LastStore()


def fit_cell(cells: Cells, name: str, zoo: Zoo, target: str, model: str, opts: methods.Options, log, *,
             analyses=(), part: str = 'all', snapshots=None, seed: int = 0) -> dict:
  """The cell `name`, fitted now unless cached."""
  cached = cells.get(name)
  if cached is not None:
    return cached
  log(f'{name}: fitting')
  t0 = time.perf_counter()
  try:
    data = STORE.load(zoo, target, snapshots, seed)
    report = _slim(meta_train.run(zoo, target, model, opts, part=part, analyses=analyses, data=data, seed=seed))
  except data_lib.MetaDataError as e:
    report = {'error': str(e)}
  report['cell_seconds'] = time.perf_counter() - t0
  cells.put(name, report)
  log(f'{name}: {replication_report.cell_score_text(report)} ({report["cell_seconds"]:.0f} s)')
  return report


# --- stages ---------------------------------------------------------------------------------------------------
def stage_zoo(zoo: Zoo, cells: Cells, preset: Preset, log, targets, models) -> None:
  cells.put('zoo', replication_report.zoo_summary(zoo))


def stage_table(zoo: Zoo, cells: Cells, preset: Preset, log, targets, models) -> None:
  for target in targets:
    for model in models:
      for i in range(splits(preset, model)):
        fit_cell(cells, f'table/{target}/{model}/split{i}', zoo, target, model, options(preset, model, i), log,
                 analyses=('where',) if model == 'dmc' and i == 0 else (), snapshots=preset.snapshots, seed=i)


def stage_where(zoo: Zoo, cells: Cells, preset: Preset, log, targets, models) -> None:
  if 'dmc' not in models:
    return
  for target in [t for t in preset.where_targets if t in targets]:
    for part in ('conv', 'fc'):
      fit_cell(cells, f'where/{target}/dmc/{part}', zoo, target, 'dmc', options(preset, 'dmc', 0), log,
               part=part, snapshots=preset.snapshots)
    fit_cell(cells, f'where/{target}/dmc/fc_equal', zoo, target, 'dmc',
             options(preset, 'dmc', 0, window=conv_length(zoo)), log, part='fc', snapshots=preset.snapshots)


def stage_controls(zoo: Zoo, cells: Cells, preset: Preset, log, targets, models) -> None:
  for target in [t for t in preset.control_targets if t in targets]:
    for model in [m for m in preset.control_models if m in models]:
      for control, overrides in CONTROLS.items():
        if control == 'running_stats' and model not in STATNN:
          continue
        for i in range(splits(preset, model)):
          fit_cell(cells, f'control/{target}/{model}/{control}/split{i}', zoo, target, model,
                   options(preset, model, i, **overrides), log, snapshots=preset.snapshots, seed=i)


def stage_nws(zoo: Zoo, cells: Cells, preset: Preset, log, targets, models) -> None:
  if 'dmc' not in models:
    return
  for target in [t for t in preset.nws_targets if t in targets]:
    for i in range(splits(preset, 'dmc')):
      fit_cell(cells, f'table/{target}/dmc_nws/split{i}', zoo, target, 'dmc',
               options(preset, 'dmc', i, dmc_order='nws'), log, snapshots=preset.snapshots, seed=i)


def stage_when(zoo: Zoo, cells: Cells, preset: Preset, log, targets, models) -> None:
  available = sorted(zoo.metadata['snapshot'].unique().tolist())
  for k in data_lib.parse_selection(preset.when_snapshots, available):
    for target in [t for t in preset.when_targets if t in targets]:
      for model in [m for m in preset.when_models if m in models]:
        fit_cell(cells, f'when/{target}/{model}/snapshot{k:02d}', zoo, target, model, options(preset, model, 0),
                 log, snapshots=str(k))


def _csv(parser, name: str, value: str, allowed) -> list[str]:
  items = [x for x in value.split(',') if x]
  bad = [x for x in items if allowed is not None and x not in allowed]
  if bad or not items:
    parser.error(f'--{name}: unknown {bad or value!r}; allowed: {", ".join(allowed or ["any target column"])}')
  return items


def main(argv=None) -> int:
  p = usage.ArgumentParser(prog='python -m benchmarks.replication', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--zoo', required=True, help='the replication zoo (a zoo directory or its training workdir)')
  p.add_argument('--out', required=True, help='results folder (cells/ in it is the resumable cache)')
  p.add_argument('--preset', default='cpu', choices=sorted(PRESETS))
  p.add_argument('--stages', default=','.join(STAGES), help=f'comma-separated, of {STAGES}')
  p.add_argument('--targets', default=','.join(TARGETS), help='comma-separated targets')
  p.add_argument('--models', default=','.join(MODELS), help=f'comma-separated, of {methods.METHODS}')
  a = p.parse_args(argv)
  usage.check_input_dir(p, '--zoo', a.zoo)
  usage.check_out(p, a.out)
  stages, targets, models = (_csv(p, name, getattr(a, name), allowed) for name, allowed in
                             (('stages', STAGES), ('targets', None), ('models', methods.METHODS)))
  zoo, cells, preset = Zoo.open(a.zoo), Cells(a.out), PRESETS[a.preset]
  log = lambda m: print(f'[{time.strftime("%H:%M:%S")}] {m}', file=sys.stderr, flush=True)
  run = {'zoo': stage_zoo, 'table': stage_table, 'where': stage_where, 'when': stage_when,
         'controls': stage_controls, 'nws': stage_nws}
  for stage in stages:
    if stage in run:
      log(f'stage {stage}')
      t0 = time.perf_counter()
      run[stage](zoo, cells, preset, log, targets, models)
      log(f'stage {stage} done ({time.perf_counter() - t0:.0f} s)')
  if 'report' in stages:
    command = 'python -m benchmarks.replication ' + ' '.join(argv if argv is not None else sys.argv[1:])
    machine = f'{platform.node()} ({os.cpu_count()} CPUs, {platform.machine()})'
    path = replication_report.write(cells.all(), a.out, preset=a.preset, command=command, machine=machine,
                                    preset_text=repr(preset), targets=targets, models=models,
                                    where_targets=preset.where_targets, preset_obj=preset)
    log(f'wrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
