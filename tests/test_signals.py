"""SIGTERM and SIGINT outside the training loop, through the command line:
during a run's final evaluation and between the points of a sweep, the
program prints one line saying what was kept and how to resume, exits with
status 75 (`preemption.EXIT_PREEMPTED`) without a traceback, leaves no
results.json, and the same command run again finishes. (A signal inside the
training loop: tests/test_faults.py.)
"""

import csv
import os
import signal
import subprocess
import sys

import pytest

from rdvae.files import run_files
from rdvae.runtime import preemption

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)


def _signal_after(command: list[str], prefix: str, signum: int):
  """Starts `command`, sends `signum` when it prints a line starting with
  `prefix`; (exit status, stdout, stderr)."""
  process = subprocess.Popen(command, cwd=REPO, env=ENV, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  seen = []
  for line in process.stdout:
    seen.append(line)
    if line.startswith(prefix):
      process.send_signal(signum)
      break
  stdout, stderr = process.communicate(timeout=300)
  return process.returncode, ''.join(seen) + stdout, stderr


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT],
                         ids=['SIGTERM', 'SIGINT'])
def test_signal_during_final_evaluation(signum, tmp_path):
  workdir = str(tmp_path / 'run')
  # The final evaluation (200 validation and 200 test images) starts right
  # after the 'trained steps' line.
  command = [sys.executable, '-m', 'experiments.main',
             '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
             '--jax_platforms=cpu', '--config.train.num_steps=2',
             '--config.eval.max_examples=200']
  status, stdout, stderr = _signal_after(command, 'trained steps', signum)
  assert status == preemption.EXIT_PREEMPTED, (stdout, stderr)
  lines = stderr.strip().splitlines()
  assert len(lines) == 1, stderr
  name = signal.Signals(signum).name
  assert lines[0].startswith(f'stopped by {name}; '), lines[0]
  assert 'run the same command again to resume' in lines[0]
  assert not os.path.exists(os.path.join(workdir, run_files.RESULTS_FILE))
  again = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=300, check=False)
  assert again.returncode == 0, again.stderr
  assert 'trained steps' not in again.stdout  # resumed at the end
  assert run_files.read_results(workdir)['step'] == 2


SWEEP = '''
from configs import toy


def get_config():
  return toy.get_config('smoke')


def get_sweep():
  return [{'train.seed': 0}, {'train.seed': 1}]
'''


def test_signal_between_sweep_points(tmp_path):
  sweep = tmp_path / 'sweep.py'
  sweep.write_text(SWEEP)
  workdir = str(tmp_path / 'sweep')
  command = [sys.executable, '-m', 'experiments.sweep', f'--sweep={sweep}',
             f'--workdir={workdir}', '--jax_platforms=cpu',
             '--population=off', '--config.train.num_steps=40',
             '--workers=1']
  status, stdout, stderr = _signal_after(command, '[sweep] seed=0: done',
                                         signal.SIGTERM)
  assert status == preemption.EXIT_PREEMPTED, (stdout, stderr)
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in stderr, stderr
  assert lines[0].startswith(('stopped by SIGTERM; ',
                              '[sweep] stopped by SIGTERM at step')), lines[0]
  assert 'run the same command again to resume' in lines[0]
  assert os.path.exists(os.path.join(workdir, 'seed=0',
                                     run_files.RESULTS_FILE))
  assert not os.path.exists(os.path.join(workdir, 'seed=1',
                                         run_files.FAILURE_FILE))
  again = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True,
                         text=True, timeout=300, check=False)
  assert again.returncode == 0, again.stderr
  assert 'seed=0: done' not in again.stdout  # not trained again
  with open(os.path.join(workdir, 'summary.csv')) as f:
    assert [r['status'] for r in csv.DictReader(f)] == ['done', 'done']
