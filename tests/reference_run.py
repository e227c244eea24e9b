"""The undisturbed smoke run that the kill, signal and fault tests compare
their resumed runs with, and how they compare.

`python -m experiments.main --config=configs/mnist.py:smoke` for 10 steps:
dispatches of 2, checkpoints every 2 (the latest 2 kept), a validation
evaluation at step 6, the final one at 10. tests/conftest.py builds the
whole run once (`whole_smoke_run`); the tests that read it share a
pytest-xdist group, so one worker builds it.
"""

import os
import subprocess
import sys

import jax
import numpy as np

from rdvae.files import checkpointing
from rdvae.runtime import faults
from rdvae.files import atomic_files
from rdvae.files import metric_files
from rdvae.files import run_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = 'smoke_whole_run'  # the xdist_group of the tests that read it
TIMING = 'train_images_per_second'  # wall-clock: differs between runs
EVAL_SECONDS = 'eval_seconds'  # the final evaluation's wall-clock parts


def command(workdir: str) -> list[str]:
  """The smoke run's command line, writing into `workdir`."""
  return [sys.executable, '-m', 'experiments.main',
          '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
          '--jax_platforms=cpu', '--config.train.num_steps=10',
          '--config.train.eval_every=6']


def environment(fault: str | None = None) -> dict[str, str]:
  """The environment, with the fault point `fault` (rdvae.faults) or none."""
  env = dict(os.environ)
  env.pop(faults.ENV, None)
  if fault:
    env[faults.ENV] = fault
  return env


def run(workdir: str, fault: str | None = None):
  """Runs the smoke run to its end or to `fault`; the CompletedProcess."""
  return subprocess.run(command(workdir), cwd=REPO, env=environment(fault),
                        capture_output=True, text=True, timeout=600,
                        check=False)


def checkpoint_dirs(workdir: str,
                    subdir: str = checkpointing.LATEST_DIR) -> list[str]:
  names = os.listdir(os.path.join(workdir, subdir))
  return sorted(names, key=lambda n: (int(n.split('.')[0]), n))


def assert_same_run(workdir: str, whole: str) -> None:
  """`workdir` ended bitwise as `whole`: metrics, results (but timing and
  compilation) and every kept checkpoint, latest and best."""
  assert metric_files.read_metrics(workdir) == metric_files.read_metrics(whole)
  results = [atomic_files.read_json(os.path.join(w, run_files.RESULTS_FILE))
             for w in (workdir, whole)]
  assert all(r.pop(TIMING) > 0 for r in results)
  assert all(r.pop(EVAL_SECONDS)['total'] > 0 for r in results)
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
