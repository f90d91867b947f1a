"""The trainer's command line: packaged configs by name from any directory, overrides of any hyper-parameter,
one-line errors (exit 2, no traceback) naming the closest valid field, --print_config, and impossible work
refused before anything is written."""
import os
import signal
import subprocess
import sys
import time
import warnings

import jax
import pytest

from popnet import config as config_lib
from popnet import configs
from tests.signals import WITH_DEFAULT_SIGINT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def popnet_train(*args, cwd, env=None, timeout=120):
  full_env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1', **(env or {}))
  return subprocess.run([sys.executable, '-m', 'popnet.train', '--noprogress', *args], cwd=cwd, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def test_print_config_by_name_from_another_directory_with_overrides(tmp_path):
  proc = popnet_train('--config', 'smoke', '--print_config', '--config.hparams.weight_decay=choice(0, 1e-4)',
                      '--config.epochs=3', '--config.hparams.momentum', '0.95', cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  assert "  epochs: 3" in lines
  assert any(l.split()[:2] == ['weight_decay', 'choice(0,'] for l in lines)  # the smoke config does not set it
  assert any(l.split()[:2] == ['momentum', '0.95'] for l in lines)
  assert any(l.startswith('  activation ') and "one of ['relu', 'elu', 'sigmoid', 'tanh']" in l for l in lines)
  assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.parametrize('args,message', [
    (['--config.populaton=8'], "--config.populaton: unknown config field (did you mean 'population'?)"),
    (['--config.hparams.lr=0.1'], "--config.hparams.lr: unknown hyper-parameter (did you mean 'learning_rate'?)"),
    (['--config.augmentation.rotation=3'], "--config.augmentation.rotation: unknown augmentation field (did you "
                                           "mean 'rotate'?)"),
    (['--config', 'smok'], "--config: 'smok' is neither a file nor a packaged config"),
    (['--config', 'smoke', '--config.hparams.activation=swish'],
     "config.hparams.activation: 'swish' is not allowed; choose from ['relu', 'elu', 'sigmoid', 'tanh']"),
    (['--config', 'smoke', '--print_config', '--config.hparams.learning_rate=loguniform(1e-2, 1e-4)'],
     'config.hparams.learning_rate: loguniform(0.01, 0.0001) needs lo <= hi'),
    (['--config', 'smoke', '--print_config', '--config.hparams.dropout=uniform(0.2, 1.5)'],
     'config.hparams.dropout'),
    (['--config', 'smoke', '--print_config', '--config.population=0'],
     'config.population: got 0; allowed: a positive integer'),
])
def test_config_mistakes_are_one_line_errors(tmp_path, args, message):
  proc = popnet_train(*args, '--workdir', str(tmp_path / 'w'), cwd=str(tmp_path))
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().startswith('error: ') and message in proc.stderr, proc.stderr
  assert 'Traceback' not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
  assert not (tmp_path / 'w').exists()


def test_packaged_config_names_resolve():
  assert configs.path('smoke') == configs.path('smoke.py') == os.path.join(ROOT, 'configs', 'smoke.py')
  assert configs.path('popnet/configs/smoke.py') == configs.path('smoke')  # the configs' earlier place, by name
  with pytest.raises(ValueError, match="did you mean 'nws_main'"):
    configs.path('nws_mian')
  for name in configs.NAMES:
    config_lib.validate(configs.get(name))


@pytest.mark.parametrize('field,value,message', [
    ('population', 10**7, r'config.population: 10,000,000 members .* need ~.* GiB'),
    ('hparams.batch_size', 10**5, r'config.hparams.batch_size: 100000 is larger than the training split of digits'),
])
def test_impossible_work_is_refused_in_seconds_before_writing(cli, tmp_path, field, value, message):
  import re
  t0 = time.perf_counter()
  proc = cli('--config', 'smoke', '--workdir', str(tmp_path / 'w'), f'--config.{field}={value}', check=False)
  assert proc.returncode == 2 and re.search(message, proc.stderr), proc.stderr[-2000:]
  assert time.perf_counter() - t0 < 60
  assert not (tmp_path / 'w').exists()


@pytest.mark.parametrize('signum,code,stopped', [(signal.SIGINT, 130, 'interrupted'),  # Ctrl-C
                                                (signal.SIGTERM, 143, 'terminated')])  # SLURM preemption, kill
def test_ctrl_c_or_sigterm_is_one_line_saying_how_to_resume_and_the_rerun_says_where_it_resumes(
    cli, digits_dir, compilation_cache, tmp_path, signum, code, stopped):
  workdir = str(tmp_path / 'w')
  env = dict(os.environ, TFDS_DATA_DIR=digits_dir, JAX_COMPILATION_CACHE_DIR=compilation_cache,
             XLA_FLAGS='--xla_force_host_platform_device_count=2', PYTHONUNBUFFERED='1')
  args = ('--config', 'smoke', '--config.epochs=40', '--config.snapshots=3', '--workdir', workdir)
  jax.devices()  # JAX's backend is up in this process: a fork here would warn (os.fork() and JAX)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    proc = subprocess.Popen([sys.executable, '-c', WITH_DEFAULT_SIGINT, '-m', 'popnet.train', '--noprogress', *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert not [w for w in caught if 'fork' in str(w.message)], [str(w.message) for w in caught]
  for line in proc.stdout:  # interrupt once training is under way (epoch 1's checkpoint may or may not exist)
    if 'starting at epoch 0' in line:
      break
  time.sleep(3)
  proc.send_signal(signum)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == code, err[-2000:]
  expected = f'{stopped}; rerun the same command to resume {workdir} from its last checkpoint'
  assert err.strip().splitlines()[-1] == expected
  assert 'Traceback' not in err
  # the checkpoints sealed before the stop (a save the signal cut short is unsealed, and a resume sets it aside)
  sealed = os.path.join(workdir, 'checkpoints', 'cohort_0000', 'integrity')
  steps = [f[:-len('.json')] for f in os.listdir(sealed)] if os.path.isdir(sealed) else []
  again = cli(*args, env={'POPNET_KILL_AT': 'train_call:1'}, check=False)
  expected = f'resumed from its epoch-{max(map(int, steps))} checkpoint' if steps else 'starting at epoch 0'
  assert expected in again.stdout, again.stdout


@pytest.mark.parametrize('requested, before, after', [
    (-1, '', '--xla_force_host_platform_device_count=N'),  # N: usable cores, up to 8
    (3, '--xla_dump_to=x', '--xla_dump_to=x --xla_force_host_platform_device_count=3'),
    (0, '--xla_dump_to=x', '--xla_dump_to=x'),
    (4, '--xla_force_host_platform_device_count=2', '--xla_force_host_platform_device_count=2'),  # the user's
])
def test_host_devices_follow_the_usable_cores_and_never_override_the_users_flags(monkeypatch, requested, before,
                                                                                   after):
  from popnet import cli as cli_lib
  monkeypatch.setenv('XLA_FLAGS', before)
  cli_lib.expose_host_cores(requested)
  assert os.environ['XLA_FLAGS'] == after.replace('N', str(min(len(cli_lib.usable_cores()), 8)))
