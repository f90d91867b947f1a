"""The weight-space benchmarks' finished fits, kept on disk so that an interrupted benchmark resumes where it
stopped and a table can be built in several runs (--models subsets): one JSON file per (entry, seed) under
<out>/fits/, written atomically when the fit ends, holding meta.train.run's report with what it was fitted on.

A fit is reused only when it was made on the same zoo (the sha256 of the zoo's metadata, which holds every row's
weights checksum, so a rebuilt zoo is another zoo), the same target and the same options; a file under <out>/fits
that says otherwise stops the benchmark before anything is fitted (FitsError: one line naming the file), so a
table never mixes zoos or options. Remove the file, or use another --out, to fit it again.
"""
from __future__ import annotations

import hashlib
import json
import os

from popnet.files import atomic_write_text

DIR = 'fits'


class FitsError(Exception):
  """A finished fit under --out made on another zoo, target or options, or a file that is not one."""


def zoo_identity(zoo) -> str:
  """The sha256 of the zoo's metadata as CSV: every row's hyper-parameters, metrics and weights checksum."""
  return hashlib.sha256(zoo.metadata.to_csv(index=False).encode()).hexdigest()


class FinishedFits:
  """The fits under `out`/fits/ for one zoo and target: recorded() before fitting, put() per new fit."""

  def __init__(self, out: str, zoo, target: str):
    self.dir = os.path.join(out, DIR)
    self.stamp = {'zoo': zoo_identity(zoo), 'zoo_path': zoo.path, 'target': target}

  def file(self, label: str, seed: int) -> str:
    return os.path.join(self.dir, f'{label}-seed{seed}.json')

  def recorded(self, cells) -> dict:
    """cells: (label, seed, options) of this run -> {(label, seed): report} of those already fitted; FitsError
    for the first recorded one that was fitted on something else."""
    reports = {(label, seed): self._get(label, seed, opts) for label, seed, opts in cells}
    return {cell: r for cell, r in reports.items() if r is not None}

  def _get(self, label: str, seed: int, opts) -> dict | None:
    path = self.file(label, seed)
    if not os.path.exists(path):
      return None
    try:
      with open(path) as f:
        record = json.load(f)
      recorded = {k: record[k] for k in ('zoo', 'target', 'options')}
      report = record['report']
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise FitsError(f'{path}: not a finished fit of this benchmark ({e}); remove it to fit the cell again')
    expected = self._stamp_of(opts)
    for key in ('zoo', 'target', 'options'):
      if recorded[key] != expected[key]:
        what = {'zoo': 'another zoo (its metadata differs)', 'target': f'target {recorded["target"]!r}',
                'options': 'other options'}[key]
        raise FitsError(f'{path}: fitted on {what}; remove it (or use another --out) to fit the cell again')
    return report

  def put(self, label: str, seed: int, opts, report: dict) -> None:
    from meta import train
    os.makedirs(self.dir, exist_ok=True)
    record = dict(self._stamp_of(opts), label=label, seed=seed, report=report)
    atomic_write_text(self.file(label, seed), json.dumps(train.jsonable(record), indent=1))

  def _stamp_of(self, opts) -> dict:
    from meta import train
    options = json.loads(json.dumps(train.jsonable(vars(opts))))
    return dict(self.stamp, options=options)
