"""`experiments.sweep --workers=N` (rdvae/sweeps/workers.py): the share of
the cores, the split of a population among runners, runners that die with
their parent, and a sweep of tiny toy points run by two runners, stopped by
SIGTERM to the parent and run again: one line per point, every point equal
to its run by one runner in this process."""

import collections
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from rdvae.files import atomic_files
from rdvae.files import sweep_files
from rdvae.runtime import faults
from rdvae.sweeps import claims
from rdvae.sweeps import runner
from rdvae.sweeps import workers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_point_lines_pass_other_lines_do_not():
  names = ['seed=0', 'family=---,beta=0.1']
  assert workers.is_point_line('[sweep] seed=0: done: rate 1', names)
  assert workers.is_point_line(
      '[sweep] family=---,beta=0.1: FAILED after 2.0 s: E: x', names)
  assert not workers.is_point_line('[sweep] seed=1: done: rate 1', names)
  assert not workers.is_point_line('[sweep] 2 points in DIR', names)
  assert not workers.is_point_line(
      '[sweep] population of 2 points: done in 3.0 s', names)
  assert not workers.is_point_line('seed=0: done', names)


def test_each_runner_gets_its_share_of_the_cores():
  assert workers.cores_per_worker(2, cores=2) == 1
  assert workers.cores_per_worker(3, cores=2) == 1
  assert workers.cores_per_worker(2, cores=8) == 4
  env = workers.worker_environment(1, 2, cores=2, base={'HOME': '/h'})
  assert env['HOME'] == '/h'
  for name in workers.THREAD_VARIABLES:
    assert env[name] == '1', name
  assert env[workers.ENV] == f'{os.getpid()},1,2'


def test_this_worker_reads_its_environment(monkeypatch):
  monkeypatch.delenv(workers.ENV, raising=False)
  assert workers.this_worker() is None
  monkeypatch.setenv(workers.ENV, '123,1,4')
  assert workers.this_worker() == workers.Worker(123, 1, 4)
  monkeypatch.setenv(workers.ENV, '123')
  with pytest.raises(ValueError, match=r"RDVAE_SWEEP_WORKER='123'"):
    workers.this_worker()


def test_default_count_is_one_per_core_on_the_cpu(monkeypatch):
  monkeypatch.setattr(workers, 'available_cores', lambda: 6)
  monkeypatch.setattr(workers, '_accelerator_plugin_installed', lambda: True)
  monkeypatch.delenv('JAX_PLATFORMS', raising=False)
  assert workers.default_count('cpu') == 6
  assert workers.default_count('cuda') == 1
  assert workers.default_count(None) == 1  # a plugin is installed
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  assert workers.default_count(None) == 6
  monkeypatch.delenv('JAX_PLATFORMS')
  monkeypatch.setattr(workers, '_accelerator_plugin_installed', lambda: False)
  assert workers.default_count(None) == 6


@pytest.mark.parametrize('group, runners, limit', [
    (60, 1, 60), (60, 2, 8), (4, 2, 2), (3, 2, 2), (1, 4, 1), (9, 3, 3)])
def test_claim_limit_splits_a_population(group, runners, limit):
  assert runner.claim_limit(group, runners) == limit


def test_claim_limit_refuses_no_runners():
  with pytest.raises(ValueError, match=r'runners=0; expected a count >= 1'):
    runner.claim_limit(4, 0)


_MIDDLE = '''
import subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', {child!r}],
                         stdout=subprocess.PIPE, text=True)
print(child.pid, child.stdout.readline().strip(), flush=True)
time.sleep(60)
'''
_CHILD = '''
import os, time
from rdvae.sweeps import workers
workers.die_with_parent(os.getppid())
print('watching', flush=True)
time.sleep(60)
'''


def _gone(pid: int) -> bool:
  """Whether `pid` has ended (a zombie counts: it runs no more)."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
  except FileNotFoundError:
    return True


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_runner_dies_with_its_parent():
  """A process that called die_with_parent ends when its parent is
  SIGKILLed (no orphan left training)."""
  middle = subprocess.Popen(
      [sys.executable, '-c', _MIDDLE.format(child=_CHILD)], cwd=REPO,
      env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
      text=True)
  pid, state = middle.stdout.readline().split()
  assert state == 'watching'
  assert not _gone(int(pid))
  middle.kill()
  middle.wait()
  deadline = time.time() + 10
  while not _gone(int(pid)) and time.time() < deadline:
    time.sleep(0.05)
  assert _gone(int(pid))


# ------------------------------------------------- two runners, one sweep

_SWEEP = '''
from configs import toy


def get_config():
  config = toy.get_config('smoke')
  config.train.num_steps = 4000
  config.train.steps_per_dispatch = 10
  config.train.log_every = 100
  return config


def get_sweep():
  return [{'train.seed': s} for s in range(3)]
'''
NAMES = ['seed=0', 'seed=1', 'seed=2']


def _owners(workdir: str) -> set[int]:
  """The pids that hold a point of `workdir` now."""
  owners = set()
  for name in NAMES:
    owner = claims.live_owner(os.path.join(workdir, name))
    if owner:
      owners.add(int(owner['pid']))
  return owners


def _state(pid: int) -> str:
  """The process's state letter in /proc ('T': stopped by a signal)."""
  with open(f'/proc/{pid}/stat') as f:
    return f.read().rsplit(')', 1)[1].split()[0]


def _pending(pid: int, signum: int) -> bool:
  """Whether `signum` waits to be delivered to process `pid`."""
  with open(f'/proc/{pid}/status') as f:
    fields = dict(line.split(':', 1) for line in f if ':' in line)
  mask = int(fields['SigPnd'], 16) | int(fields['ShdPnd'], 16)
  return bool(mask >> (signum - 1) & 1)


def _wait(condition, parent, seconds=120):
  deadline = time.time() + seconds
  while not condition():
    assert parent.poll() is None and time.time() < deadline, (
        parent.communicate())
    time.sleep(0.05)


def _results(directory: str) -> dict:
  """results.json without what depends on how the point was computed:
  its compile record and its population's size (every member is bitwise
  its run alone, tests/test_sweep.py)."""
  results = atomic_files.read_json(os.path.join(directory, 'results.json'))
  assert results.pop('compile')
  results.pop('population_size', None)
  return results


@pytest.mark.slow  # 32 s on a quiet 2-core machine: 6 processes start
@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc')
def test_two_runners_stopped_and_rerun_equal_one_runner(tmp_path):
  """SIGTERM to the parent of two runners while both train a point: both
  stop (exit 75, one line, every runner gone, no point failed, every point
  left to do); the same command run again finishes the sweep. Every point's
  line shows once over both runs, the output holds nothing else, and every
  results.json equals the same point's trained by one runner in this
  process (population 'auto': the runners split the 3 toy points as
  populations of 2 and 1).

  The signal lands inside training on any machine: each runner stops itself
  (SIGSTOP, `runtime.faults`) after the dispatch that ends at step 100, the
  parent is signalled once both are stopped, and they are let go on
  (SIGCONT) once the parent has passed the signal to both."""
  path = tmp_path / 'sweep.py'
  path.write_text(_SWEEP)
  workdir = str(tmp_path / 'workers')
  command = [sys.executable, '-m', 'experiments.sweep', f'--sweep={path}',
             f'--workdir={workdir}', '--jax_platforms=cpu', '--workers=2',
             '--poll_seconds=0.2']
  env = dict(os.environ, PYTHONPATH=REPO)
  parent = subprocess.Popen(
      command, cwd=REPO, text=True, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      env=dict(env, **{faults.ENV: 'dispatch@100:SIGSTOP'}))
  _wait(lambda: len(_owners(workdir)) == 2
        and all(_state(pid) == 'T' for pid in _owners(workdir)), parent)
  owners = _owners(workdir)
  assert parent.pid not in owners
  parent.send_signal(signal.SIGTERM)
  _wait(lambda: all(_pending(pid, signal.SIGTERM) for pid in owners), parent)
  for pid in owners:
    os.kill(pid, signal.SIGCONT)
  stdout, stderr = parent.communicate(timeout=120)
  assert parent.returncode == 75, (stdout, stderr)
  line, = stderr.strip().splitlines()
  assert line.startswith('stopped by SIGTERM; ') and line.endswith(
      'run the same command again to resume'), line
  assert all(_gone(pid) for pid in owners)
  statuses = [r['status'] for r in sweep_files.read_summary(workdir)]
  assert statuses == ['pending'] * 3, statuses

  again = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300, check=False)
  assert again.returncode == 0, again.stderr
  lines = (stdout + again.stdout).splitlines()
  assert all(l.startswith('[sweep] ') for l in lines), lines
  done = collections.Counter(
      m.group(1) for m in (re.match(r'\[sweep\] (\S+): done', l)
                           for l in lines) if m)
  assert done == {name: 1 for name in NAMES}, lines
  assert lines[-1].startswith('[sweep] 3 done, 0 failed, 0 damaged, '
                              '0 running, 0 pending'), lines[-1]
  assert [r['name'] for r in sweep_files.read_summary(workdir)] == NAMES

  alone = str(tmp_path / 'alone')
  rows = runner.run(str(path), alone)
  assert [r['status'] for r in rows] == ['done'] * 3
  for name in NAMES:
    assert (_results(os.path.join(workdir, name)) ==
            _results(os.path.join(alone, name))), name
