"""The one way a command line refuses its input: one line on stderr, exit code 2, before anything is written.

Every entry point (popnet.train, popnet.zoo / popnet.interop, popnet.curves, meta.*, benchmarks.*) uses it:
`ArgumentParser` (argparse whose usage errors are one line naming the flag), `fail`, the numeric checks of
`check_number` (every numeric flag of a parser at once: `check_ranges`; a comma-separated list: `int_list`),
`check_input_dir` (a --zoo that is not there) and `check_output_dir` (an output that cannot be written, refused
before any work). Nothing here imports more than the standard library.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

EXIT_USAGE = 2


class UsageError(ValueError):
  """A bad flag value or an unusable output: its message is the one line the command prints."""


def fail(message) -> None:
  """Prints `error: message` (one line) on stderr and exits 2."""
  text = ' '.join(str(message).split('\n')).strip()
  print(f'error: {text}', file=sys.stderr)
  sys.exit(EXIT_USAGE)


class ArgumentParser(argparse.ArgumentParser):
  """argparse with one-line usage errors (`error: PROG: MESSAGE; PROG --help lists the flags`), exit 2."""

  def error(self, message):
    fail(f'{self.prog}: {message}; {self.prog} --help lists the flags')


def check_number(flag: str, value, *, low=None, high=None, low_open=False, high_open=False, integer=False) -> None:
  """UsageError unless `value` is a finite number in the range (low/high None: unbounded; *_open: excluded)."""
  def bound(x, is_open, side):
    return f'{"> " if side == "low" else "< "}{x}' if is_open else f'{">= " if side == "low" else "<= "}{x}'
  allowed = ' and '.join([bound(low, low_open, 'low')] * (low is not None) + [bound(high, high_open, 'high')] *
                         (high is not None)) or 'any'
  kind = 'an integer' if integer else 'a finite number'
  ok = isinstance(value, (int, float)) and math.isfinite(value)
  ok = ok and (low is None or (value > low if low_open else value >= low))
  ok = ok and (high is None or (value < high if high_open else value <= high))
  if not ok:
    raise UsageError(f'{flag}: got {value!r}; allowed: {kind} {allowed}')


def check_output_dir(flag: str, path: str) -> None:
  """UsageError unless `path` is (or can become) a writable directory; creates nothing."""
  from popnet import files  # stdlib only
  reason = files.unwritable(path)
  if reason:
    raise UsageError(f'{flag} {path}: {reason}')



def check_ranges(p: argparse.ArgumentParser, a: argparse.Namespace, ranges) -> None:
  """Each (flag, keywords of check_number) of `ranges` that `a` has, checked: a value outside it is one line,
  exit 2 (p.error)."""
  for name, allowed in ranges:
    if hasattr(a, name):
      value = getattr(a, name)
      try:
        check_number(f'--{name}', value, integer=isinstance(value, int), **allowed)
      except UsageError as e:
        p.error(str(e))


def int_list(p: argparse.ArgumentParser, name: str, text: str, low: int = 1) -> list[int]:
  """--name's comma-separated integers, each >= low (at least one), or one line, exit 2 (p.error)."""
  try:
    values = [int(x) for x in text.split(',') if x.strip()]
  except ValueError:
    values = []
  if not values or min(values) < low:
    p.error(f'--{name}: comma-separated integers >= {low}, got {text!r}')
  return values


def check_input_dir(p: argparse.ArgumentParser, flag: str, path: str) -> None:
  """One line, exit 2 (p.error), unless `path` is an existing directory (a zoo, a workdir)."""
  if not os.path.isdir(path):
    p.error(f'{flag} {path}: {"is not a directory" if os.path.exists(path) else "no such directory"}')


def check_out(p: argparse.ArgumentParser, path: str, flag: str = '--out') -> None:
  """An output that cannot be written is refused now (one line, exit 2: p.error), not after the work."""
  try:
    check_output_dir(flag, path)
  except UsageError as e:
    p.error(str(e))
