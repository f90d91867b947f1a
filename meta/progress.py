"""What meta-model work tells its user while it runs: a tqdm bar on a terminal, plain lines when stderr is a file
or a pipe (a log, a batch job), and durations and ETAs as text.

    bar = progress.Bar(total=2000, label='dmc all')   # a bar, or a line at most every 30 s off a terminal
    progress.duration(125.0) == '2 min 05 s'
"""
from __future__ import annotations

import sys
import time

PLAIN_EVERY = 30.0  # seconds between two plain progress lines


def duration(seconds: float) -> str:
  """'8.4 s', '2 min 05 s', '1 h 03 min'."""
  if seconds < 60:
    return f'{seconds:.1f} s'
  minutes, s = divmod(int(round(seconds)), 60)
  if minutes < 60:
    return f'{minutes} min {s:02d} s'
  return f'{minutes // 60} h {minutes % 60:02d} min'


def eta(done: int, total: int, elapsed: float) -> float | None:
  """Seconds left at the average rate so far, or None before anything is done."""
  return elapsed / done * (total - done) if done else None


class Bar:
  """A tqdm bar on a terminal; elsewhere a plain line ('dmc all epoch 3/50: 120/2000 steps (6%), 0:41 elapsed,
  ETA ...') at most every `every` seconds, so a log shows that long work is moving. Same calls either way:
  update, set_description, set_postfix, close."""

  def __init__(self, total: int, label: str, unit: str = 'steps', every: float | None = None, stream=None,
               tty: bool | None = None):
    self.stream = stream or sys.stderr
    self.tty = self.stream.isatty() if tty is None else tty
    self.total, self.label, self.unit = int(total), label, unit
    self.every = PLAIN_EVERY if every is None else every
    self.done, self.postfix = 0, ''
    self.start = self.last_line = time.perf_counter()
    self.bar = None
    if self.tty:
      import tqdm
      self.bar = tqdm.tqdm(total=total, desc=label, file=self.stream, leave=False, dynamic_ncols=True)

  def set_description(self, label: str) -> None:
    self.label = label
    if self.bar is not None:
      self.bar.set_description(label)

  def set_postfix(self, **values) -> None:
    self.postfix = ', '.join(f'{k} {v}' for k, v in values.items())
    if self.bar is not None:
      self.bar.set_postfix(values)

  def update(self, n: int = 1) -> None:
    self.done += n
    if self.bar is not None:
      self.bar.update(n)
      return
    now = time.perf_counter()
    if now - self.last_line >= self.every and self.done < self.total:
      self.last_line = now
      print(self.line(now - self.start), file=self.stream, flush=True)

  def line(self, elapsed: float) -> str:
    """The plain progress line after `elapsed` seconds."""
    left = eta(self.done, self.total, elapsed)
    return (f'{self.label}: {self.done}/{self.total} {self.unit} ({100 * self.done / max(self.total, 1):.0f}%), '
            f'{duration(elapsed)} elapsed, ETA {duration(left) if left is not None else "?"}'
            + (f' ({self.postfix})' if self.postfix else ''))

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


class Cells:
  """Counts a table's cells as they finish ('cell 3/35') and estimates the time left from the mean time of each
  kind of cell so far (a meta-model's cells cost alike, different models do not); kinds not timed yet count at
  the mean of every cell so far, and the estimate is then marked '~'."""

  def __init__(self, kinds: list[str]):
    self.left = list(kinds)  # the kind of every cell still to come, in order
    self.total, self.done = len(kinds), 0
    self.seconds: dict[str, list[float]] = {}

  def drop(self, kinds: list[str]) -> None:
    """Cells that will not run after all (a target skipped when its data is loaded)."""
    for kind in kinds:
      self.left.remove(kind)
    self.total -= len(kinds)

  def finished(self, kind: str, seconds: float) -> str:
    """Records one cell; returns 'cell i/N, ETA ...' ('cell N/N' alone at the end)."""
    self.left.remove(kind)
    self.done += 1
    self.seconds.setdefault(kind, []).append(seconds)
    text = f'cell {self.done}/{self.total}'
    if not self.left:
      return text
    return f'{text}, ETA {self.eta()}'

  def eta(self) -> str:
    mean = {k: sum(v) / len(v) for k, v in self.seconds.items()}
    overall = sum(map(sum, self.seconds.values())) / max(self.done, 1)
    guessed = any(k not in mean for k in self.left)
    return ('~' if guessed else '') + duration(sum(mean.get(k, overall) for k in self.left))
