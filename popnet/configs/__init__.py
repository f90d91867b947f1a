"""Experiment configs shipped with popnet: `python -m popnet.train --config NAME` from any directory.

Each module has `get_config()` returning an ml_collections ConfigDict (popnet/config.py `base_config` with the
experiment's values); shared pieces live in popnet/configs/common.py. `--config` also takes a path to your
own config file.
"""
from __future__ import annotations

import difflib
import importlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ('default', 'smoke', 'nws_fixed', 'nws_main', 'meta_offline', 'replication')


def path(name_or_path: str) -> str:
  """The file of a packaged config name (`smoke`, `configs/smoke.py`, `smoke.py`), or the path itself when
  it names an existing file. Raises ValueError naming the packaged configs otherwise."""
  if os.path.isfile(name_or_path.split(':')[0]):
    return name_or_path
  name = os.path.splitext(os.path.basename(name_or_path))[0]
  if name in NAMES:
    return os.path.join(HERE, f'{name}.py')
  close = difflib.get_close_matches(name, NAMES, n=1)
  hint = f"; did you mean '{close[0]}'?" if close else ''
  raise ValueError(f'--config: {name_or_path!r} is neither a file nor a packaged config {list(NAMES)}{hint}')


def get(name: str):
  """The ConfigDict of a packaged config."""
  if name not in NAMES:
    raise ValueError(f'config {name!r} is not one of {list(NAMES)}')
  return importlib.import_module(f'popnet.configs.{name}').get_config()
