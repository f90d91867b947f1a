"""Progress a user can trust: the ETA comes from the rate of training calls alone (compilation and evaluation
pauses do not move it), plain lines off a terminal, one final line, durations in the unit that fits, and a
non-terminal run of the trainer that shows its compilations, evaluations and progress."""
import io
import re

import pytest

from popnet import buckets, progress


class FakeClock:
  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_eta_comes_from_training_calls_alone():
  clock = FakeClock()
  bar = progress.Progress(total=10_000, enabled=True, stream=io.StringIO(), tty=False, every=0.0, clock=clock)
  clock.now += 40.0                       # compiling: no training call, so nothing in the rate
  for _ in range(10):                     # 100 model-samples per 1 s call
    clock.now += 1.0
    bar.trained(100, 1.0, epoch=0)
  assert bar.rate.per_second() == pytest.approx(100.0)
  assert bar.rate.eta(bar.total - bar.samples) == pytest.approx(90.0)  # 9,000 left at 100/s
  clock.now += 300.0                      # a long evaluation: still no change
  assert bar.postfix['ETA'] == '1.5 min' and bar.postfix['rate'] == '100/s'
  # the whole-run average (1,000 samples over 350 s of wall time) would have said 52 min


def test_rate_is_over_a_recent_window():
  rate = progress.TrainingRate(window=10.0)
  for _ in range(20):
    rate.add(10, 1.0)                     # 10/s for 20 s
  for _ in range(20):
    rate.add(50, 1.0)                     # then 50/s: the last 10 s are all at the new rate
  assert rate.per_second() == pytest.approx(50.0)
  assert rate.eta(500) == pytest.approx(10.0)
  assert progress.TrainingRate().eta(5) is None  # before any call


def test_plain_lines_off_a_terminal_and_one_final_line():
  clock, stream = FakeClock(), io.StringIO()
  bar = progress.Progress(total=1_000, enabled=True, stream=stream, tty=False, every=30.0, clock=clock)
  for _ in range(10):
    clock.now += 10.0
    bar.trained(100, 10.0, epoch=1, loss='0.500')
  with bar.evaluating('epoch 1 of program 1/1'):
    clock.now += 7.0
  bar.close()
  lines = stream.getvalue().splitlines()
  plain = [line for line in lines if line.startswith('train: ') and '%' in line]
  assert len(plain) == 4  # the first call, then one at most every 30 s
  assert plain[0] == 'train: 100/1,000 model-samples (10%), epoch 1, loss 0.500, rate 10/s, ETA 1.5 min'
  assert '\r' not in stream.getvalue()
  assert lines.count('evaluated epoch 1 of program 1/1 in 7.0 s') == 1
  assert lines[-1] == 'train: 1,000 model-samples in 1.7 min of training calls (10 model-samples/s), 1.8 min wall'


def test_disabled_progress_prints_nothing_but_messages():
  stream, logged = io.StringIO(), []
  bar = progress.Progress(total=100, enabled=False, log=logged.append, stream=stream)
  bar.trained(100, 1.0)
  bar.message('program 1/1: done')
  bar.close()
  assert stream.getvalue() == '' and logged == ['program 1/1: done']


@pytest.mark.parametrize('seconds, text', [(0.04, '0.0 s'), (95.7, '1.6 min'), (42.0, '42.0 s'),
                                           (5400.0, '1.5 h')])
def test_duration_in_the_unit_that_fits(seconds, text):
  assert progress.duration(seconds) == text


def test_plan_estimate_is_never_zero_hours():
  report = {'buckets': [], 'programs': 1, 'members': 8, 'padded_compute_overhead': 1.0, 'estimated_seconds': 95.7}
  line = buckets.format_plan(report).splitlines()[-1]
  assert 'estimated 1.6 min (cost model)' in line, line


def test_non_terminal_run_shows_compilation_evaluation_progress(cli, tmp_path):
  proc = cli('--config', 'smoke', '--workdir', str(tmp_path / 'run'), '--progress')  # stderr is a pipe
  err = proc.stderr.splitlines()
  assert any(re.fullmatch(r'compiling program 1/1: train \.\.\.', line) for line in err), proc.stderr
  assert any(re.fullmatch(r'compiling program 1/1: train done in [\d.]+ (s|min)', line) for line in err)
  assert any(re.fullmatch(r'evaluated epoch 0 of program 1/1 in [\d.]+ s', line) for line in err)
  assert any(re.match(r'train: [\d,]+/[\d,]+ model-samples \(\d+%\), epoch 0, loss [\d.]+, rate [\d,]+/s, ETA ',
                      line) for line in err)
  finals = [line for line in err if re.match(r'train: [\d,]+ model-samples in .* of training calls', line)]
  assert len(finals) == 1 and '\r' not in proc.stderr
  assert 'members: 8' in proc.stdout and proc.stdout.count('throughput:') == 1
