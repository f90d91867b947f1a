"""Timing rules shared by the benchmarks (no JAX import here, so CLIs can set XLA_FLAGS first).

Steps are counted in calls of k steps; k is calibrated so one call takes a fraction of the target seconds.
Several programs compared in one run are timed in alternation (a, b, c, a, b, c, ...), best of ROUNDS calls
each, so every side of a ratio sees the same drift of a shared or throttled machine.
"""
from __future__ import annotations

import os
import platform
import time

from popnet import progress
from popnet.cli import usable_cores  # noqa: F401  (re-exported: the benchmarks pin processes to cores)

ROUNDS = 7  # best of 7 alternating calls per side: the development VM's speed drifts by 10-30% between minutes


def calibrate(fn, seconds: float, max_k: int = 1 << 14) -> int:
  """The number of steps k for which one call fn(k) takes at least seconds / 4 (fn is warm after this)."""
  k = 1
  while True:
    t = time.perf_counter()
    fn(k)
    if time.perf_counter() - t >= seconds / 4 or k >= max_k:
      return k
    k *= 2


def interleaved_best(runs, rounds: int = ROUNDS) -> list[float]:
  """Best wall time of each (fn, k) in `runs`, timed in alternation. fn(k) may return its own measured
  seconds (e.g. a pool of processes reporting their concurrent times); otherwise the call's wall time counts."""
  best = [float('inf')] * len(runs)
  for _ in range(rounds):
    for i, (fn, k) in enumerate(runs):
      t = time.perf_counter()
      own = fn(k)
      best[i] = min(best[i], own if isinstance(own, float) else time.perf_counter() - t)
  return best


def load_average() -> list[float] | None:
  """1, 5 and 15 minute load averages of the machine (other processes competing for the cores)."""
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def machine() -> dict:
  """The backend, devices and host this process measures on (imports JAX): popnet.progress.machine's record, plus
  the device list, usable cores and versions."""
  import jax
  devices = jax.local_devices()
  return dict(progress.machine(devices), backend=jax.default_backend(), devices=[d.device_kind for d in devices],
              device_count=len(devices), usable_cores=len(usable_cores()), jax=jax.__version__,
              python=platform.python_version())
