"""What a run tells its user: the wall-time split, the progress bar, and the closing summary."""
from __future__ import annotations

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


class Progress:
  """A tqdm bar over model-samples (quiet when disabled). Its one rate and its ETA are averages over the whole
  run (smoothing=0), so they do not swing with compilation or evaluation pauses."""

  def __init__(self, total: int, enabled: bool, log=print):
    from tqdm.auto import tqdm
    self.samples = 0  # model-samples trained in this process (restored ones excluded)
    self.enabled, self.log = enabled, log
    self.bar = tqdm(total=total, unit='model-sample', unit_scale=True, dynamic_ncols=True, disable=not enabled,
                    smoothing=0, desc='train', file=sys.stderr)

  def message(self, text: str) -> None:
    """A line above the bar (or through `log` when the bar is off)."""
    if self.enabled:
      self.bar.write(text, file=sys.stderr)
    else:
      self.log(text)

  def restored(self, samples: int) -> None:
    """Samples a resumed program does not train again."""
    self.bar.total = max(0, self.bar.total - samples)
    self.bar.refresh()

  def trained(self, samples: int, **postfix) -> None:
    self.samples += samples
    self.bar.set_postfix(postfix, refresh=False)
    self.bar.update(samples)

  def close(self) -> None:
    self.bar.close()


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
