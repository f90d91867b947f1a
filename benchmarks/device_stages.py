"""The stages of the device check (benchmarks/device_check.py): their commands, time shares, result readers,
and the summary they add up to (summary.json, summary.md)."""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from typing import Callable

from benchmarks import timing
from popnet import progress

TESTS = ['tests/test_accelerator_path.py', 'tests/test_population.py', 'tests/test_conv.py']
TWO_DEVICE_TESTS = ['tests/test_population.py::test_two_devices_equal_one']  # need two devices of the backend
NWS_SHORT = ['population={p}', 'epochs=1', 'snapshots=2', "hparams.dataset='cifar10'", 'hparams.batch_size=128',
             'max_train_examples={n}', 'eval_train_examples={e}', 'eval_val_examples={e}', 'eval_test_examples={e}']
TINY_RUN = ['population=2', 'epochs=1', 'snapshots=2', 'max_train_examples=256', 'eval_train_examples=64',
            'eval_val_examples=64', 'eval_test_examples=64', 'eval_batch_size=64']


@dataclasses.dataclass
class Stage:
  name: str
  argv: list[str]          # '{deadline}' is replaced by the seconds the stage may run, less a margin
  share: float             # of the global budget, reserved for it while earlier stages run
  collect: Callable[[str], object]
  env: dict = dataclasses.field(default_factory=dict)

  def command(self, timeout: float) -> list[str]:
    return [a.replace('{deadline}', f'{max(timeout - 20, timeout * 0.7):.0f}') for a in self.argv]


def gpu_count() -> int:
  if not shutil.which('nvidia-smi'):
    return 0
  try:
    out = subprocess.run(['nvidia-smi', '-L'], capture_output=True, text=True, timeout=20).stdout
  except (OSError, subprocess.TimeoutExpired):
    return 0
  return sum(line.startswith('GPU ') for line in out.splitlines())


def machine_facts(env: dict) -> dict:
  facts = {'host': platform.node(), 'cpu': progress.cpu_name(), 'cores': os.cpu_count(), 'python': sys.version.split()[0],
           'load_average': timing.load_average(), 'JAX_PLATFORMS': env.get('JAX_PLATFORMS'), 'gpus': gpu_count(),
           'XLA_PYTHON_CLIENT_MEM_FRACTION': env.get('XLA_PYTHON_CLIENT_MEM_FRACTION')}
  if facts['gpus']:
    facts['nvidia_smi'] = subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version',
                                          '--format=csv,noheader'], capture_output=True, text=True,
                                         timeout=20).stdout.strip()
  try:
    from importlib import metadata
    facts['packages'] = {p: metadata.version(p) for p in ('jax', 'jaxlib', 'flax', 'optax')
                         if _installed(metadata, p)}
  except ImportError:
    pass
  return facts


def _installed(metadata, name) -> bool:
  try:
    metadata.version(name)
    return True
  except metadata.PackageNotFoundError:
    return False


def _junit(out: str) -> dict:
  suite = ElementTree.parse(os.path.join(out, 'tests.xml')).getroot()
  suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
  failed = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter('testcase')
            if c.find('failure') is not None or c.find('error') is not None]
  return {k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors', 'skipped')} | {
      'seconds': float(suite.get('time', 0)), 'failed': failed}


def _jsonl(name: str):
  def read(out: str) -> list[dict]:
    with open(os.path.join(out, name)) as f:
      return [json.loads(line) for line in f if line.strip()]
  return read


def _result(name: str):
  def read(out: str) -> dict:
    with open(os.path.join(out, name, 'result.json')) as f:
      return json.load(f)
  return read


def _inr(out: str) -> dict:
  """The INR benchmark's rates (benchmarks/inr.py), the projected time to fit the 70,000 Fashion-MNIST INRs."""
  (name,) = [n for n in os.listdir(os.path.join(out, 'inr_fit_rate')) if n.endswith('.json')]
  with open(os.path.join(out, 'inr_fit_rate', name)) as f:
    r = json.load(f)
  return {'backend': r['machine']['backend'], 'dataset': r['dataset'], 'steps': r['steps'], 'group': r['group'],
          'targets': r['targets'], 'methods': {n: {k: m.get(k) for k in (
              'fits_per_s', 'fits', 'hours_for_70k', 'popnet_speedup', 'compile_seconds')} | {
              'curve_max_relative_difference': r['curve_agreement'].get(n, {}).get('max_relative_difference')}
              for n, m in r['methods'].items()}}


def inr_arguments(quick: bool) -> list[str]:
  """benchmarks.inr's arguments: tiny on CPU (quick), else the DWS protocol's 1,000 steps on groups of 8,192 (the
  accelerator's population), ~5 s per method (popnet first: its rate is kept if the stage is stopped); the PyTorch methods where torch is installed."""
  if quick:
    return ['--dataset', 'synthetic', '--steps', '4', '--every', '2', '--fits', '2', '--group', '2', '--seconds', '0',
            '--rounds', '1', '--methods', 'popnet,jax_loop']
  methods = 'popnet,torch_loop,torch_vmap,jax_loop,jax_scan' if importlib.util.find_spec('torch') else \
      'popnet,jax_loop,jax_scan'
  return ['--seconds', '5', '--rounds', '1', '--group', '8192', '--methods', methods]


def stages(quick: bool, out: str) -> list[Stage]:
  py = sys.executable
  test_env = {} if quick else {'JAX_PLATFORMS': ''}  # tests/conftest.py defaults to cpu; '' = the accelerator
  tests = (['tests/test_conv.py::test_conv_auto_picks_per_layer'] if quick else
           TESTS + sum((['--deselect', t] for t in TWO_DEVICE_TESTS if gpu_count() == 1), []))
  sweep = [py, '-m', 'benchmarks.sweep', '--deadline_s', '{deadline}']
  if quick:
    small = ['--populations', '2', '--conv_impls', 'im2col', '--loop_populations', '2', '--seconds', '0.05',
             '--rounds', '1']
    nws = small
    nws_short = [s.format(p=2, n=256, e=64) for s in NWS_SHORT] + ['eval_batch_size=64']
    data = ['--synthetic_train', '600', '--synthetic_test', '100']
    default = TINY_RUN
  else:
    small = ['--populations', '128,512,2048,8192', '--conv_impls', 'xla,im2col', '--member_chunks', '512,2048',
             '--loop_populations', '128,512']
    nws = ['--populations', '64,256,1024', '--conv_impls', 'xla,im2col', '--member_chunks', '64,256',
           '--loop_populations', '64,256']
    nws_short = [s.format(p=512, n=8192, e=1000) for s in NWS_SHORT]
    data = ['--synthetic_train', '20000', '--synthetic_test', '2000']
    default = []
  run = [py, '-m', 'benchmarks.config_run']
  return [s for s in [
      Stage('tests', [py, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *tests,
                      f"--junitxml={os.path.join(out, 'tests.xml')}"], 0.21, _junit, test_env),
      Stage('sweep_smallcnnzoo', sweep + ['--arch', 'smallcnnzoo', *small, '--out',
                                          os.path.join(out, 'sweep_smallcnnzoo.jsonl')], 0.22,
            _jsonl('sweep_smallcnnzoo.jsonl')),
      Stage('sweep_nws_fixed', sweep + ['--arch', 'nws_fixed', *nws, '--out', os.path.join(out, 'sweep_nws_fixed.jsonl')],
            0.17, _jsonl('sweep_nws_fixed.jsonl')),
      Stage('default_run', run + ['--config', 'default', '--data', 'auto', '--out',
                                  os.path.join(out, 'default_run')]
            + sum((['--set', s] for s in default), []) + (data if quick else []), 0.16, _result('default_run')),
      Stage('nws_fixed_run', run + ['--config', 'nws_fixed', '--data', 'synthetic', '--out',
                                    os.path.join(out, 'nws_fixed_run')] + sum((['--set', s] for s in nws_short), [])
            + data, 0.12, _result('nws_fixed_run')),
      Stage('inr_fit_rate', [py, '-m', 'benchmarks.inr', *inr_arguments(quick), '--out',
                             os.path.join(out, 'inr_fit_rate')], 0.12, _inr,
            {'XLA_PYTHON_CLIENT_PREALLOCATE': 'false'}),  # JAX and torch share the accelerator's memory
  ] if not (quick and s.name == 'sweep_nws_fixed')]  # quick: nws_fixed_run compiles the nws_fixed network once
