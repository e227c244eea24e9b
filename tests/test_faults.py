"""Fault injection: a training process killed at three points of one run
(between dispatches, while writing an evaluation's metrics line, during a
checkpoint save) and resumed each time ends bitwise equal to a run never
stopped; SIGTERM checkpoints, exits with EXIT_PREEMPTED and the rerun
resumes from that step.

The points are reached deterministically through `rdvae.runtime.faults`
(RDVAE_FAULT=<point>@<step>[:<signal>]). The run is configs/mnist.py:smoke
for 10 steps: dispatches of 2, checkpoints every 2 (the latest 2 kept), a
validation evaluation at step 6, the final one at 10 (tests/reference_run.py,
whose undisturbed run, `whole_smoke_run`, tests/test_train.py's SIGKILL test
compares with too).
"""

import os

import pytest

import reference_run
from rdvae.runtime import preemption
from rdvae.files import metric_files
from rdvae.files import run_files


@pytest.mark.xdist_group(reference_run.GROUP)
@pytest.mark.slow
def test_killed_three_times_resumes_bitwise(tmp_path, whole_smoke_run):
  workdir = str(tmp_path / 'run')
  # 1. Between dispatches: step 4 trained, neither logged nor checkpointed.
  out = reference_run.run(workdir, 'dispatch@4')
  assert out.returncode == -9, out.stderr
  assert reference_run.checkpoint_dirs(workdir) == ['2']
  # 2. During the evaluation at step 6: half of its metrics line written.
  out = reference_run.run(workdir, 'metrics@6')
  assert out.returncode == -9, out.stderr
  with open(os.path.join(workdir, metric_files.METRICS_FILE)) as f:
    assert not f.read().endswith('\n')  # the torn line
  assert reference_run.checkpoint_dirs(workdir) == ['2', '4']
  # 3. During the save of step 8: complete files in orbax's temporary
  # directory, not renamed.
  out = reference_run.run(workdir, 'checkpoint@8')
  assert out.returncode == -9, out.stderr
  names = reference_run.checkpoint_dirs(workdir)
  assert names[:2] == ['4', '6'] and len(names) == 3
  assert names[2].startswith('8.orbax-checkpoint-tmp'), names
  assert not os.path.exists(os.path.join(workdir, run_files.RESULTS_FILE))
  # 4. Undisturbed to the end.
  out = reference_run.run(workdir)
  assert out.returncode == 0, out.stderr
  assert 'trained steps 6..10' in out.stdout
  assert reference_run.checkpoint_dirs(workdir) == ['8', '10']
  reference_run.assert_same_run(workdir, whole_smoke_run)


@pytest.mark.xdist_group(reference_run.GROUP)
@pytest.mark.slow
def test_sigterm_checkpoints_exits_and_resumes(tmp_path, whole_smoke_run):
  workdir = str(tmp_path / 'run')
  # SIGTERM mid-run (step 3 is being trained when it arrives: the fault fires
  # after the dispatch of steps 3-4 returns): finish, checkpoint 4, exit 75.
  out = reference_run.run(workdir, 'dispatch@4:SIGTERM')
  assert out.returncode == preemption.EXIT_PREEMPTED, out.stderr
  assert 'received SIGTERM' in out.stdout
  assert 'Preempted: stopped by SIGTERM at step 4' in out.stderr
  assert 'Traceback' not in out.stderr
  assert reference_run.checkpoint_dirs(workdir) == ['2', '4']
  assert [r['step'] for r in metric_files.read_metrics(workdir)] == [2, 4]
  out = reference_run.run(workdir)
  assert out.returncode == 0, out.stderr
  assert 'trained steps 4..10' in out.stdout
  reference_run.assert_same_run(workdir, whole_smoke_run)


def test_signal_watch_records_and_restores(tmp_path):
  """In process: the flag is set, the previous handler comes back."""
  import signal  # pylint: disable=g-import-not-at-top
  before = signal.getsignal(signal.SIGTERM)
  with preemption.SignalWatch() as watch:
    assert watch.received is None
    signal.raise_signal(signal.SIGTERM)
    assert watch.received == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) is before
  error = preemption.Preempted(signal.SIGINT, 8, str(tmp_path))
  assert 'stopped by SIGINT at step 8' in str(error)
