"""Training across processes (rdvae/runtime/distributed.py, experiments/main.py).

Two local CPU processes on loopback, launched as experiments/main.py
documents (`--multihost`, JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID, `--cpu_devices=2` each), train configs/mnist.py:smoke against
one process with 4 emulated devices and the same global batch. Then the
two-process run's step-2 checkpoint is resumed by one process, which
finishes the run.

Tolerance: both layouts see the same global batch, keys and 4 devices; the
only difference is the cross-device all-reduce (gloo between processes
against XLA:CPU's in-process one), which may add the devices' partial sums in
another order. That is float32 rounding: the largest relative difference
measured over every logged metric was 3.1e-7 (train/rate at step 4). rtol
1e-5 leaves a margin of 30 and is far below any real defect (a wrong slice
of the batch, a doubled gradient or another process's keys change the losses
by 1e-3 or more). Parameters are compared to 1e-5 absolute, as in
tests/test_parallel.py: Adam divides each gradient element by its running
RMS, so an element near zero can turn its float32 rounding into a visible
share of a step of size <= 3e-4 (measured: 3.0e-6 after 4 steps).
"""

import os
import re
import subprocess

import jax
import numpy as np
import pytest

import multiprocess_runs
from rdvae.files import checkpointing
from rdvae.runtime import distributed
from rdvae.files import atomic_files
from rdvae.files import metric_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTOL = 1e-5
PARAM_ATOL = 1e-5
# Timing and what each process compiled: not results of the model.
UNCOMPARED = ('train_images_per_second', 'compile', 'eval_seconds',
              'layout')  # compared on its own
# The fixed words of gloo's 'Rank R is connected to N peer ranks. Expected
# number of connected peer ranks is : N' lines.
GLOO_WORDS = ('[Gloo] Rank', 'is connected to',
              'peer ranks. Expected number of connected peer ranks is :')


@pytest.fixture
def runs(multiprocess_runs):
  return multiprocess_runs


def _assert_close(got, want, where):
  assert got.keys() == want.keys(), where
  for key, value in want.items():
    if key in UNCOMPARED:
      continue
    if isinstance(value, float) or (
        isinstance(value, list) and value and isinstance(value[0], float)):
      np.testing.assert_allclose(got[key], value, rtol=RTOL,
                                 err_msg=f'{where}: {key}')
    else:
      assert got[key] == value, f'{where}: {key}'


def _assert_same_metrics(workdir, reference):
  got = metric_files.read_metrics(workdir)
  want = metric_files.read_metrics(reference)
  # Same records in the same order: process 1 wrote none of its own.
  assert [r['step'] for r in got] == [r['step'] for r in want] == [2, 2, 4, 4]
  for g, w in zip(got, want):
    _assert_close(g, w, f'{workdir} step {w["step"]}')


@pytest.mark.xdist_group(multiprocess_runs.GROUP)
@pytest.mark.slow
def test_two_processes_match_one_process(runs):
  two = atomic_files.read_json(os.path.join(runs['two'], 'results.json'))
  one = atomic_files.read_json(os.path.join(runs['one'], 'results.json'))
  _assert_close(two, one, 'results.json')
  # The same split of the global batch of 8, by one process or two.
  for results, processes in ((one, 1), (two, 2)):
    assert results['layout'] == {'name': 'jit', 'devices': 4,
                                 'processes': processes,
                                 'device_batch_size': 2}
  _assert_same_metrics(runs['two'], runs['one'])
  for step in (2, 4):
    got = checkpointing.restore(
        checkpointing.create_manager(runs['two']), step=step)
    want = checkpointing.restore(
        checkpointing.create_manager(runs['one']), step=step)
    assert int(got['step']) == step
    for g, w in zip(jax.tree.leaves(got['params']), jax.tree.leaves(want['params'])):
      np.testing.assert_allclose(g, w, rtol=0, atol=PARAM_ATOL)


@pytest.mark.xdist_group(multiprocess_runs.GROUP)
@pytest.mark.slow
def test_process_zero_alone_writes_and_prints(runs):
  out0, out1 = runs['stdout']['two_0'], runs['stdout']['two_1']
  assert 'step 4/4' in out0 and 'finished at step 4: R ' in out0
  # No progress lines, no results from process 1. Gloo prints its own
  # connection lines from several threads, whose words can interleave
  # (a lone '3' on a line of its own was seen), so its fixed words are
  # removed and only its numbers may remain.
  rest = out1
  for words in GLOO_WORDS:
    rest = rest.replace(words, ' ')
  assert re.fullmatch(r'[\d\s]*', rest), out1
  two = runs['two']
  assert len(os.listdir(os.path.join(two, 'tensorboard'))) == 1
  assert sorted(os.listdir(os.path.join(two, 'images'))) == [
      'grid_00000002.png', 'grid_00000004.png']
  assert not [f for f in os.listdir(two) if f.endswith('.tmp')]


@pytest.mark.xdist_group(multiprocess_runs.GROUP)
@pytest.mark.slow
def test_two_process_checkpoint_resumes_in_one_process(runs):
  # One process with 4 devices restores the two-process step-2 checkpoint,
  # trains steps 3-4 and ends where the uninterrupted runs end.
  assert 'trained steps 2..4' in runs['stdout']['resumed']
  _assert_close(
      atomic_files.read_json(os.path.join(runs['resumed'], 'results.json')),
      atomic_files.read_json(os.path.join(runs['one'], 'results.json')),
      'resumed results.json')
  _assert_same_metrics(runs['resumed'], runs['one'])
  got = checkpointing.restore(checkpointing.create_manager(runs['resumed']))
  want = checkpointing.restore(checkpointing.create_manager(runs['one']))
  assert int(got['step']) == int(want['step']) == 4
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, w, rtol=0, atol=PARAM_ATOL)


# Settings from flags and the environment (no processes started).


def test_settings_read_the_environment():
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234',
         'JAX_NUM_PROCESSES': '8', 'JAX_PROCESS_ID': '3'}
  assert distributed.settings(environ=env) == dict(
      coordinator_address='10.0.0.1:1234', num_processes=8, process_id=3)


def test_flags_override_the_environment():
  env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234',
         'JAX_NUM_PROCESSES': '8', 'JAX_PROCESS_ID': '3'}
  assert distributed.settings('host:99', 2, 1, environ=env) == dict(
      coordinator_address='host:99', num_processes=2, process_id=1)


def test_unset_values_are_left_to_cluster_detection():
  assert distributed.settings(environ={}) == dict(
      coordinator_address=None, num_processes=None, process_id=None)


@pytest.mark.parametrize('kwargs, env, message', [
    ({}, {'JAX_NUM_PROCESSES': 'two'},
     r"JAX_NUM_PROCESSES='two' is not an integer"),
    ({}, {'JAX_PROCESS_ID': '-1'}, r"JAX_PROCESS_ID='-1' must be >= 0"),
    ({'num_processes': 2, 'process_id': 2}, {},
     r'--process_id=2 is not below --num_processes=2'),
    ({}, {'JAX_NUM_PROCESSES': '2', 'JAX_PROCESS_ID': '5'},
     r'JAX_PROCESS_ID=5 is not below JAX_NUM_PROCESSES=2'),
    ({'num_processes': 0}, {},
     r'--num_processes=0: the number of processes must be >= 1'),
    ({'coordinator_address': 'localhost'}, {}, r"'localhost' must be HOST:PORT"),
], ids=['count_not_int', 'negative_id', 'id_too_large', 'env_id_too_large',
        'zero_processes', 'no_port'])
def test_bad_settings_are_named(kwargs, env, message):
  with pytest.raises(ValueError, match=message):
    distributed.settings(environ=env, **kwargs)


def test_main_refuses_process_flags_without_multihost(tmp_path):
  out = subprocess.run(
      multiprocess_runs.command(str(tmp_path / 'run'), 1,
                                 '--num_processes=2'),
      cwd=REPO, env=multiprocess_runs.environment(), capture_output=True,
      text=True, timeout=120, check=False)
  assert out.returncode != 0
  assert '--num_processes is only for --multihost' in out.stderr
  assert not os.path.exists(tmp_path / 'run')
