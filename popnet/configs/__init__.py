"""The experiment configs: `python -m popnet.train --config NAME` from any directory.

The configs themselves are the repository's top-level `configs/` (one file per experiment, each with
`get_config()` returning an ml_collections ConfigDict: popnet/config.py `base_config` with the experiment's
values); `pip install .` installs them as popnet/configs/experiments/. Shared pieces live in
popnet/configs/common.py. `--config` also takes a path to your own config file.
"""
from __future__ import annotations

import difflib
import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
INSTALLED = os.path.join(HERE, 'experiments')  # where `pip install .` puts the repository's configs/
CHECKOUT = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'configs')  # a source checkout's configs/
DIR = INSTALLED if os.path.isdir(INSTALLED) else CHECKOUT
NAMES = ('default', 'smoke', 'nws_fixed', 'nws_main', 'meta_offline', 'replication', 'inr_dws_fmnist', 'inr_nfn_fmnist',
         'inr_nfn_fmnist10k', 'inr_dws_mnist5k', 'inr_smoke', 'accuracy_zoo')


def path(name_or_path: str) -> str:
  """The file of an experiment config name (`smoke`, `configs/smoke.py`, `smoke.py`), or the path itself when
  it names an existing file. Raises ValueError naming the experiment configs otherwise."""
  if os.path.isfile(name_or_path.split(':')[0]):
    return name_or_path
  name = os.path.splitext(os.path.basename(name_or_path))[0]
  if name in NAMES:
    return os.path.join(DIR, f'{name}.py')
  close = difflib.get_close_matches(name, NAMES, n=1)
  hint = f"; did you mean '{close[0]}'?" if close else ''
  raise ValueError(f'--config: {name_or_path!r} is neither a file nor a packaged config {list(NAMES)}{hint}')


class ConfigFileError(ValueError):
  """A config file that gives no config: a syntax error, no get_config(), an exception while it runs, or a value
  that is not a ConfigDict. The message is one line naming the file (and the line, where there is one)."""


def load(name_or_path: str):
  """The ConfigDict that `get_config()` of an experiment config (by name) or of a config file returns (a
  `FILE:ARG` passes ARG to get_config, as ml_collections' config flags do). Raises ConfigFileError."""
  file, *args = path(name_or_path).split(':', 1)
  try:
    spec = importlib.util.spec_from_file_location(f'popnet_config_{os.path.splitext(os.path.basename(file))[0]}',
                                                  file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get_config = getattr(module, 'get_config', None)
    if not callable(get_config):
      raise ConfigFileError(f'{file}: defines no get_config(); a config file defines get_config() returning an '
                            f'ml_collections ConfigDict (e.g. {os.path.join(DIR, "smoke.py")})')
    config = get_config(*args)
  except SyntaxError as e:
    raise ConfigFileError(f'{e.filename or file}, line {e.lineno}: syntax error in the config file ({e.msg})') from None
  except ConfigFileError:
    raise
  except Exception as e:  # whatever the user's file raises, named with its line
    raise ConfigFileError(f'{file}, line {_line_in(e, file)}: the config file raised {type(e).__name__}: '
                          f'{str(e).splitlines()[0] if str(e) else "(no message)"}') from None
  import ml_collections
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigFileError(f'{file}: get_config() returned a {type(config).__name__}, not an ml_collections '
                          'ConfigDict (start from popnet.config.base_config())')
  return config


def _line_in(error: BaseException, file: str) -> int | str:
  """The line of `file` the error was raised from (its innermost frame in that file), or '?'."""
  line, tb, target = '?', error.__traceback__, os.path.realpath(file)
  while tb is not None:
    if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
      line = tb.tb_lineno
    tb = tb.tb_next
  return line


def get(name: str):
  """The ConfigDict of an experiment config."""
  if name not in NAMES:
    raise ValueError(f'config {name!r} is not one of {list(NAMES)}')
  return load(name)
