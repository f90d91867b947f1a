"""Every command line's --help: exits 0, lists the tool's own flags (not absl's or orbax's) with each default said
once, and an example, and answers fast because it imports no JAX."""
import os
import re
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CLIS = [  # (command, flags it must list)
    (['popnet.train'], ['--config NAME|FILE', '--workdir', '--[no]print_config', "(default: 'runs/default')",
                        '--config.hparams.NAME=SPEC']),
    (['popnet.data'], ['prepare', 'list']),
    (['popnet.data', 'prepare'], ['--data_dir', '--source']),
    (['popnet.data', 'register'], ['--arrays', '--image_folder', '--data_dir']),
    (['popnet.data', 'list'], ['--data_dir']),
    (['popnet.curves'], ['plot']),
    (['popnet.curves', 'plot'], ['--out', '--metric', '(default: curves.png)']),
    (['popnet.zoo'], ['verify']),
    (['popnet.zoo', 'verify'], ['zoo']),
    (['popnet.zoo', 'export'], ['python -m popnet.zoo export', '--format', '--zoo', '--out']),
    (['popnet.zoo', 'import'], ['python -m popnet.zoo import', '--format', '--src', '--out']),
    (['popnet.interop'], ['export', 'import']),
    (['popnet.interop', 'export'], ['--format', '--zoo', '--out', '--split_seed', '(default: 0)']),
    (['popnet.interop', 'import'], ['--format', '--src', '--out', '--index', '(default: 256)']),
    (['meta.train'], ['--zoo', '--target', '--model', '(default: dmc)']),
    (['meta.report'], ['--zoo', '--targets', '--out']),
    (['meta.synthetic'], ['--out', '--members', '(default: 64)']),
]
NOT_OURS = ('--logtostderr', '--flagfile', '--jax_', '--xla_', 'absl.', 'orbax', 'Try --helpfull')


@pytest.mark.parametrize('command,own_flags', CLIS, ids=lambda c: ' '.join(c) if isinstance(c, list) else '')
def test_help_lists_own_flags_and_an_example_without_importing_jax(tmp_path, command, own_flags):
  t0 = time.perf_counter()
  proc = subprocess.run([sys.executable, '-X', 'importtime', '-m', *command, '--help'], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)
  seconds = time.perf_counter() - t0
  assert proc.returncode == 0, proc.stderr[-2000:]
  missing = [flag for flag in own_flags if flag not in proc.stdout]
  assert not missing and 'example' in proc.stdout, (missing, proc.stdout)
  assert not [x for x in NOT_OURS if x in proc.stdout], proc.stdout
  assert not re.search(r'\(default[^()]*\)\s*\(default', ' '.join(proc.stdout.split())), proc.stdout  # said once
  imported = {line.split('|')[-1].strip() for line in proc.stderr.splitlines() if line.startswith('import time:')}
  assert not {m for m in imported if m.split('.')[0] in ('jax', 'jaxlib', 'flax', 'optax', 'orbax')}
  assert seconds < 10, seconds  # ~0.5 s idle; JAX alone takes longer than the whole help
