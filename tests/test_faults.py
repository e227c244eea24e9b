"""Fault injection: a training process killed at three points of one run
(between dispatches, while writing an evaluation's metrics line, during a
checkpoint save) and resumed each time ends bitwise equal to a run never
stopped; SIGTERM checkpoints, exits with EXIT_PREEMPTED and the rerun
resumes from that step.

The points are reached deterministically through `rdvae.faults`
(RDVAE_FAULT=<point>@<step>[:<signal>]). The run is configs/mnist.py:smoke
for 10 steps: dispatches of 2, checkpoints every 2 (the latest 2 kept), a
validation evaluation at step 6, the final one at 10.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from rdvae import checkpointing
from rdvae import faults
from rdvae import preemption
from rdvae import writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = 'train_images_per_second'  # wall-clock: differs between runs


def _main(workdir, fault=None):
  env = dict(os.environ)
  env.pop(faults.ENV, None)
  if fault:
    env[faults.ENV] = fault
  return subprocess.run(
      [sys.executable, '-m', 'experiments.main',
       '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
       '--jax_platforms=cpu', '--config.train.num_steps=10',
       '--config.train.eval_every=6'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
      check=False)


# The tests that use this fixture share one pytest-xdist worker (their
# xdist_group), so it is built once rather than once per worker.
@pytest.fixture(scope='module')
def whole(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('whole') / 'run')
  out = _main(workdir)
  assert out.returncode == 0, out.stderr
  return workdir


def _checkpoint_dirs(workdir, subdir=checkpointing.LATEST_DIR):
  names = os.listdir(os.path.join(workdir, subdir))
  return sorted(names, key=lambda n: (int(n.split('.')[0]), n))


def _assert_same_run(workdir, whole):
  assert writers.read_metrics(workdir) == writers.read_metrics(whole)
  results = [writers.read_json(os.path.join(w, writers.RESULTS_FILE))
             for w in (workdir, whole)]
  assert all(r.pop(TIMING) > 0 for r in results)
  # What this process compiled (or read from the cache) is not a result.
  assert all(r.pop('compile')['programs'] >= 0 for r in results)
  assert results[0] == results[1]
  for subdir in (checkpointing.LATEST_DIR, checkpointing.BEST_DIR):
    managers = [checkpointing.create_manager(w, subdir=subdir)
                for w in (workdir, whole)]
    assert managers[0].all_steps() == managers[1].all_steps()
    trees = [checkpointing.restore(m) for m in managers]
    leaves = [jax.tree.leaves(t) for t in trees]
    assert len(leaves[0]) == len(leaves[1]) > 10  # params, Adam moments, ...
    for a, b in zip(*leaves):
      np.testing.assert_array_equal(a, b)


@pytest.mark.xdist_group('faults_whole')
@pytest.mark.slow
def test_killed_three_times_resumes_bitwise(tmp_path, whole):
  workdir = str(tmp_path / 'run')
  # 1. Between dispatches: step 4 trained, neither logged nor checkpointed.
  out = _main(workdir, 'dispatch@4')
  assert out.returncode == -9, out.stderr
  assert _checkpoint_dirs(workdir) == ['2']
  # 2. During the evaluation at step 6: half of its metrics line written.
  out = _main(workdir, 'metrics@6')
  assert out.returncode == -9, out.stderr
  with open(os.path.join(workdir, writers.METRICS_FILE)) as f:
    assert not f.read().endswith('\n')  # the torn line
  assert _checkpoint_dirs(workdir) == ['2', '4']
  # 3. During the save of step 8: complete files in orbax's temporary
  # directory, not renamed.
  out = _main(workdir, 'checkpoint@8')
  assert out.returncode == -9, out.stderr
  names = _checkpoint_dirs(workdir)
  assert names[:2] == ['4', '6'] and len(names) == 3
  assert names[2].startswith('8.orbax-checkpoint-tmp'), names
  assert not os.path.exists(os.path.join(workdir, writers.RESULTS_FILE))
  # 4. Undisturbed to the end.
  out = _main(workdir)
  assert out.returncode == 0, out.stderr
  assert 'trained steps 6..10' in out.stdout
  assert _checkpoint_dirs(workdir) == ['8', '10']
  _assert_same_run(workdir, whole)


@pytest.mark.xdist_group('faults_whole')
@pytest.mark.slow
def test_sigterm_checkpoints_exits_and_resumes(tmp_path, whole):
  workdir = str(tmp_path / 'run')
  # SIGTERM mid-run (step 3 is being trained when it arrives: the fault fires
  # after the dispatch of steps 3-4 returns): finish, checkpoint 4, exit 75.
  out = _main(workdir, 'dispatch@4:SIGTERM')
  assert out.returncode == preemption.EXIT_PREEMPTED, out.stderr
  assert 'received SIGTERM' in out.stdout
  assert 'Preempted: stopped by SIGTERM at step 4' in out.stderr
  assert 'Traceback' not in out.stderr
  assert _checkpoint_dirs(workdir) == ['2', '4']
  assert [r['step'] for r in writers.read_metrics(workdir)] == [2, 4]
  out = _main(workdir)
  assert out.returncode == 0, out.stderr
  assert 'trained steps 4..10' in out.stdout
  _assert_same_run(workdir, whole)


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
