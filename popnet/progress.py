"""What a run tells its user: the wall-time split, the progress bar, and the closing summary."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
import platform
import sys
import time
from typing import Any

import numpy as np


@dataclasses.dataclass
class Timings:
  """Wall-time split of a run (seconds)."""
  data: float = 0.0
  compile: float = 0.0
  train: float = 0.0
  evaluate: float = 0.0
  write: float = 0.0
  total: float = 0.0

  def __post_init__(self):
    self._start = time.perf_counter()

  def add(self, category: str, seconds: float) -> None:
    setattr(self, category, getattr(self, category) + seconds)

  @contextlib.contextmanager
  def measure(self, category: str):
    t0 = time.perf_counter()
    try:
      yield
    finally:
      self.add(category, time.perf_counter() - t0)

  def finish(self) -> None:
    self.total = time.perf_counter() - self._start

  def so_far(self) -> dict[str, float]:
    """The split as of now, `total` being the wall time since this process started (rounded to 0.01 s)."""
    split = dict(dataclasses.asdict(self), total=time.perf_counter() - self._start)
    return {k: round(v, 2) for k, v in split.items()}


def process_record(started: str, timings: Timings, samples: int) -> dict[str, Any]:
  """What one training process has done so far, for the manifest's `processes` (one entry per process that
  trained; a resumed build has several): when it started and last reported (UTC), where, its model-samples and
  its wall-time split."""
  return {'started': started, 'updated': utc_now(), 'host': platform.node(), 'cpu': cpu_name(),
          'model_samples': int(samples), 'timings': timings.so_far()}


def build_totals(processes: list[dict[str, Any]]) -> dict[str, Any]:
  """The whole build over every process that trained it: the count, first start and last report, summed
  model-samples and summed wall-time split (time between processes, when nothing ran, is not counted)."""
  keys = [k for p in processes for k in p['timings']]
  return {'processes': len(processes),
          'first_started': min((p['started'] for p in processes), default=None),
          'last_updated': max((p['updated'] for p in processes), default=None),
          'model_samples': sum(p['model_samples'] for p in processes),
          'timings': {k: round(sum(p['timings'].get(k, 0.0) for p in processes), 2) for k in dict.fromkeys(keys)}}


def utc_now() -> str:
  return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


PLAIN_EVERY = 30.0    # seconds between two plain progress lines (stderr not a terminal)
RATE_WINDOW = 60.0    # seconds of training calls the rate (and so the ETA) is measured over


def duration(seconds: float) -> str:
  """'8.4 s', '4.5 min', '2.3 h': the unit that fits."""
  if seconds < 60:
    return f'{seconds:.1f} s'
  if seconds < 3600:
    return f'{seconds / 60:.1f} min'
  return f'{seconds / 3600:.1f} h'


class TrainingRate:
  """Model-samples per second of training calls alone, over the last `window` seconds of them: compilation,
  evaluation and writing are not in the calls' seconds, so neither the rate nor the ETA swings with them."""

  def __init__(self, window: float = RATE_WINDOW):
    self.window = window
    self.calls: collections.deque[tuple[int, float]] = collections.deque()  # (samples, seconds) per call

  def add(self, samples: int, seconds: float) -> None:
    self.calls.append((samples, seconds))
    while len(self.calls) > 1 and sum(s for _, s in self.calls) - self.calls[0][1] >= self.window:
      self.calls.popleft()

  def per_second(self) -> float | None:
    seconds = sum(s for _, s in self.calls)
    return sum(n for n, _ in self.calls) / seconds if seconds > 0 else None

  def eta(self, remaining: int) -> float | None:
    """Seconds of training left for `remaining` model-samples at the recent rate (None before any call)."""
    rate = self.per_second()
    return remaining / rate if rate else None


class Progress:
  """Training progress over model-samples: a tqdm bar on a terminal, plain lines at most every `every` seconds
  when stderr is a file or a pipe, nothing when disabled (messages then go through `log`). The rate and ETA are
  those of training calls alone (TrainingRate); compilations and evaluations are lines of their own; one final
  line when it closes."""

  def __init__(self, total: int, enabled: bool, log=print, stream=None, tty: bool | None = None,
               every: float = PLAIN_EVERY, clock=time.perf_counter):
    self.samples = 0  # model-samples trained in this process (restored ones excluded)
    self.total, self.enabled, self.log = total, enabled, log
    self.stream = stream or sys.stderr
    self.tty = enabled and (self.stream.isatty() if tty is None else tty)
    self.every, self.clock = every, clock
    self.rate, self.postfix = TrainingRate(), {}
    self.train_seconds, self.last_line, self.started = 0.0, None, clock()
    self.bar = None
    if self.tty:
      from tqdm.auto import tqdm
      self.bar = tqdm(total=total, unit='model-sample', unit_scale=True, dynamic_ncols=True, leave=False,
                      desc='train', file=self.stream,
                      bar_format='{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]')  # no whole-run ETA

  def message(self, text: str) -> None:
    """A line above the bar, on stderr when progress is on, or through `log` when it is off."""
    if self.bar is not None:
      self.bar.write(text, file=self.stream)
    elif self.enabled:
      print(text, file=self.stream, flush=True)
    else:
      self.log(text)

  def restored(self, samples: int) -> None:
    """Samples a resumed program does not train again."""
    self.total = max(0, self.total - samples)
    if self.bar is not None:
      self.bar.total = self.total
      self.bar.refresh()

  def trained(self, samples: int, seconds: float, **postfix) -> None:
    """One training call: its model-samples and its seconds (less any compilation)."""
    self.samples += samples
    self.train_seconds += seconds
    self.rate.add(samples, seconds)
    self.postfix = dict(postfix, **self._rate_fields())
    if self.bar is not None:
      self.bar.set_postfix(self.postfix, refresh=False)
      self.bar.update(samples)
    elif self.enabled and (self.last_line is None or self.clock() - self.last_line >= self.every):
      self.last_line = self.clock()
      print(self.line(), file=self.stream, flush=True)

  def _rate_fields(self) -> dict[str, str]:
    rate, left = self.rate.per_second(), self.rate.eta(self.total - self.samples)
    return {'rate': f'{rate:,.0f}/s' if rate else '?', 'ETA': duration(left) if left is not None else '?'}

  def line(self) -> str:
    """The plain progress line: 'train: 12,800/51,200 model-samples (25%), epoch 1, loss 1.234, rate 3,456/s,
    ETA 14.0 s' (rate and ETA of training calls alone)."""
    return (f'train: {self.samples:,}/{self.total:,} model-samples ({100 * self.samples / max(self.total, 1):.0f}%)'
            + ''.join(f', {k} {v}' for k, v in self.postfix.items()))

  def compiling(self, program: str, function: str, seconds: float | None) -> None:
    """Before (seconds None) and after compiling one of a program's functions (population.Population.on_compile)."""
    if seconds is None:
      self.message(f'compiling {program}: {function} ...')
    else:
      self.message(f'compiling {program}: {function} done in {duration(seconds)}')

  @contextlib.contextmanager
  def evaluating(self, what: str, seconds=None):
    """Shows an evaluation while it runs (the bar's state on a terminal) and then a line with its time:
    seconds() if given (e.g. less compilation), else the wall time of the block."""
    if self.bar is not None:
      self.bar.set_description(f'evaluate {what}')
      self.bar.refresh()
    t0 = self.clock()
    yield
    if self.bar is not None:
      self.bar.set_description('train')
    self.message(f'evaluated {what} in {duration(seconds() if seconds else self.clock() - t0)}')

  def close(self) -> None:
    """Removes the bar and prints the one final line (when progress is on and anything was trained)."""
    if self.bar is not None:
      self.bar.close()
    if self.enabled and self.samples:
      rate = self.samples / self.train_seconds if self.train_seconds > 0 else 0.0
      print(f'train: {self.samples:,} model-samples in {duration(self.train_seconds)} of training calls '
            f'({rate:,.0f} model-samples/s), {duration(self.clock() - self.started)} wall', file=self.stream,
            flush=True)


@functools.lru_cache(maxsize=None)
def _cpuinfo(field: str) -> str | None:
  """The first value of `field` in /proc/cpuinfo (read once per field per process), or None where there is none."""
  try:
    with open('/proc/cpuinfo') as f:
      return next((line.split(':', 1)[1].strip() for line in f if line.split(':', 1)[0].strip() == field), None)
  except OSError:
    return None


def cpu_name() -> str:
  """The host CPU's model name (XLA compiles for it, so zoos built on different CPUs may differ in the last bits)."""
  return _cpuinfo('model name') or platform.processor()


def cpu_vector_flags() -> list[str]:
  """The host CPU's vector instruction sets (avx*, amx*, fma, sse4*): what XLA's CPU code generation selects on, and
  what a virtual machine's generic model name does not tell."""
  return sorted(f for f in (_cpuinfo('flags') or '').split() if f.startswith(('avx', 'amx', 'fma', 'sse4')))


def machine(devices) -> dict[str, Any]:
  """What a zoo's numbers depend on besides the code and versions: host CPU (name and vector flags), cores, OS, the
  devices' kind and XLA_FLAGS."""
  return {'cpu': cpu_name(), 'cpu_vector_flags': cpu_vector_flags(), 'cores': os.cpu_count(),
          'platform': platform.platform(), 'device_kind': sorted({d.device_kind for d in devices}),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def versions() -> dict[str, str]:
  import flax
  import jax
  import optax
  import popnet
  return {'popnet': popnet.__version__, 'jax': jax.__version__, 'jaxlib': getattr(jax.lib, '__version__', ''),
          'flax': flax.__version__, 'optax': optax.__version__, 'numpy': np.__version__,
          'python': platform.python_version()}


def summarize(metadata, snapshot_epochs: list[int], timings: Timings, samples: int, members: int,
              quality) -> dict[str, Any]:
  """The run's summary; quality(final snapshot's metadata) -> the task's quality fields (popnet/task.py)."""
  timings.finish()
  final = metadata[metadata['epoch'] == snapshot_epochs[-1]]
  train_s = max(timings.train, 1e-9)
  return {
      'members': members,
      'diverged': int((final['status'] == 'diverged').sum()),
      **quality(final),
      'wall_seconds': round(timings.total, 2),
      'model_samples_per_second': round(samples / train_s, 1),
      'model_samples_per_second_per_model': round(samples / train_s / members, 1),
      'timings': {k: round(v, 2) for k, v in dataclasses.asdict(timings).items()},
  }


def _quality_line(s: dict[str, Any]) -> str:
  """The task's quality line: test accuracy of classifiers, PSNR of INR fits (popnet/task.py quality)."""
  if 'psnr_quantiles' in s:
    return ('final PSNR in dB (non-diverged): ' + ', '.join(f'{k} {v:.2f}' for k, v in s['psnr_quantiles'].items())
            + f"   reached the threshold: {s['reached_threshold']:.1%}")
  return ('final test accuracy (non-diverged): ' + ', '.join(f'{k} {v:.3f}' for k, v in
                                                               s['test_accuracy_quantiles'].items())
          + f"   mean {s['test_accuracy_mean']:.3f}")


def format_summary(s: dict[str, Any]) -> str:
  return '\n'.join([
      f"members: {s['members']}   diverged: {s['diverged']}",
      _quality_line(s),
      f"wall time: {s['wall_seconds']:.1f} s  ("
      + ', '.join(f'{k} {v:.1f}' for k, v in s['timings'].items() if k != 'total') + ')',
      f"throughput: {s['model_samples_per_second']:,.0f} model-samples/s in training "
      f"({s['model_samples_per_second_per_model']:,.0f} per model)",
  ] + _build_lines(s.get('build')))


def _build_lines(build: dict[str, Any] | None) -> list[str]:
  """The whole build's line, when it took more than one process (a resumed run)."""
  if not build or build['processes'] < 2:
    return []
  t = build['timings']
  return [f"whole build over {build['processes']} processes ({build['first_started']} to {build['last_updated']}): "
          f"{t.get('total', 0.0):.1f} s (" + ', '.join(f'{k} {v:.1f}' for k, v in t.items() if k != 'total')
          + f"), {build['model_samples']:,} model-samples"]
