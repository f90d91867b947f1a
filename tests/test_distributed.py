"""Multi-controller runs: two processes on localhost (jax.distributed) write one zoo equal to a single-process run."""
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd

from popnet.zoo import Zoo
from tests.conftest import ROOT


def free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def why(stderr: str) -> str:
  """A failed process's reason: its log lines (absl / glog: 'E1203 ...', 'F1203 ...', 'error: ...') and the last
  lines of its stderr, without the stack frames of a native abort."""
  lines = stderr.splitlines()
  reasons = [l for l in lines if l[:1] in 'EFW' and l[1:5].isdigit() or l.startswith(('error', 'Error'))]
  tail = [l for l in lines if not l.lstrip().startswith(('@', 'File "'))][-30:]
  return '\n'.join(reasons[-20:] + ['--- last lines:'] + tail)[-6000:]


def test_two_processes_write_one_zoo_equal_to_single_process(cli, digits_dir, compilation_cache, tmp_path):
  single = str(tmp_path / 'single')
  cli('--config', 'smoke', '--workdir', single, devices=2)
  multi = str(tmp_path / 'multi')
  port = free_port()
  env = dict(os.environ, TFDS_DATA_DIR=digits_dir, JAX_COMPILATION_CACHE_DIR=compilation_cache,
             XLA_FLAGS='--xla_force_host_platform_device_count=1')
  logs = [tmp_path / f'process_{i}.log' for i in range(2)]  # files, not pipes: neither process blocks on output
  procs = []
  for i, log in enumerate(logs):
    with open(log, 'w') as f:
      procs.append(subprocess.Popen([sys.executable, '-m', 'popnet.train', '--noprogress', '--config', 'smoke',
                                     '--workdir', multi, f'--coordinator_address=localhost:{port}',
                                     '--num_processes=2', f'--process_id={i}'], cwd=ROOT, env=env, stdout=f,
                                    stderr=subprocess.STDOUT))
  codes = [p.wait(timeout=600) for p in procs]
  assert codes == [0, 0], '\n'.join(f'process {i} exited {rc}:\n{why(log.read_text())}'
                                      for i, (rc, log) in enumerate(zip(codes, logs)) if rc != 0)
  assert sorted(os.listdir(os.path.join(multi, 'zoo'))) == ['evaluation', 'part-00000-of-00002', 'part-00001-of-00002']
  a, b = Zoo.open(multi), Zoo.open(single)
  from popnet.zoo.__main__ import main as zoo_main
  assert zoo_main(['verify', multi]) == 0 and a.sealed  # every part sealed, the shared evaluation subsets too
  assert a.manifest['complete'] and len(a) == len(b) == 24
  key = ['member_id', 'snapshot']
  ma, mb = a.metadata.sort_values(key).reset_index(drop=True), b.metadata.sort_values(key).reset_index(drop=True)
  assert set(ma['weights_file'].str.split('/').str[0]) == {'part-00000-of-00002', 'part-00001-of-00002'}
  same = [c for c in mb.columns if c not in ('weights_file', 'weights_row')]
  pd.testing.assert_frame_equal(ma[same], mb[same], rtol=1e-5)
  np.testing.assert_allclose(a.vectors(ma), b.vectors(mb), rtol=1e-5, atol=1e-6)
