"""Tests of rdvae/runtime/parallel.py.

The agreement of the jit-sharded and pmap paths with one device needs 4
devices, which on CPU means XLA_FLAGS=--xla_force_host_platform_device_count=4
set before JAX starts: that check runs in a subprocess
(tests/parallel_check.py) so the rest of the suite keeps its single device.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

import multiprocess_runs
from rdvae.runtime import cpu_devices
from rdvae.runtime import parallel
from rdvae import validation
from rdvae.files import atomic_files
from rdvae.files import checkpointing
from rdvae.files import run_files

HERE = os.path.dirname(os.path.abspath(__file__))


# Session scope: under pytest-xdist a worker may leave this module and come
# back, which would rerun a module-scoped fixture.
@pytest.fixture(scope='session')
def report():
  out = subprocess.run(
      [sys.executable, os.path.join(HERE, 'parallel_check.py')],
      capture_output=True, text=True, timeout=600, check=False,
      cwd=os.path.dirname(HERE))
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


OBJECTIVES = ['elbo', 'rate_constraint']
LAYOUTS = [(o, m) for o in OBJECTIVES for m in ('jit', 'pmap')]
LAYOUT_IDS = [f'{o}-{m}' for o, m in LAYOUTS]


# The tests that read the subprocess's report run on one pytest-xdist worker,
# so the subprocess runs once.
@pytest.mark.xdist_group('parallel_check')
@pytest.mark.parametrize('objective, mode', LAYOUTS, ids=LAYOUT_IDS)
def test_four_devices_follow_the_one_device_trajectory(report, objective,
                                                       mode):
  # Same global batch, same per-example keys: the only differences are the
  # order of floating-point reductions across devices, so losses agree to
  # float32 rounding (rtol 1e-5) and parameters after 9 Adam steps of size
  # <= 3e-4 each to 1e-5 absolute.
  assert report['devices'] == 4
  got = report['objectives'][objective][mode]
  want = report['objectives'][objective]['reference']
  assert got['step'] == 9
  np.testing.assert_allclose(got['losses'], want['losses'], rtol=1e-5)
  assert got['max_param_diff'] < 1e-5
  assert got['max_param'] > 0.1  # parameters are not trivially zero


@pytest.mark.xdist_group('parallel_check')
@pytest.mark.parametrize('objective, mode', LAYOUTS, ids=LAYOUT_IDS)
def test_a_fixed_layout_repeats_bitwise(report, objective, mode):
  # The same seeds on the same 4 devices and layout: every loss and every
  # parameter after 9 steps equal, bit for bit.
  assert report['objectives'][objective][mode]['repeat_equal'] is True


@pytest.mark.xdist_group('parallel_check')
@pytest.mark.parametrize('objective, mode', LAYOUTS, ids=LAYOUT_IDS)
def test_four_devices_take_the_one_device_gradient(report, objective, mode):
  # The raw gradient (recorded ahead of the optimizer's normalization, which
  # would hide a scale error) of the first step, where the parameters are the
  # same everywhere, leaf by leaf, and the logged grad_norm of all 9 steps.
  # rate_constraint (penalty 2, R far from sigma) is nonlinear in the global
  # mean rate, so a per-device objective or a mis-scaled share would differ.
  got = report['objectives'][objective][mode]
  want = report['objectives'][objective]['reference']
  assert len(got['first_grads']) == len(want['first_grads']) == 6
  for g, w in zip(got['first_grads'], want['first_grads']):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(got['grad_norms'], want['grad_norms'],
                             rtol=1e-5)
  assert min(want['grad_norms']) > 1.0  # a gradient worth comparing


@pytest.mark.xdist_group('parallel_check')
@pytest.mark.parametrize('objective, mode', LAYOUTS, ids=LAYOUT_IDS)
def test_four_device_evaluation_sums_match(report, objective, mode):
  # K = 4 IWAE samples with iwae_batch 8: the global batch of 8 is drawn in
  # chunks of 1, one device's 2 rows would take chunks of 4; the draws (and
  # so the IWAE sums) agree only if the chunk follows the global batch.
  chunks = report['iwae_chunks']
  assert chunks['global'] != chunks['per_device']
  got = report['objectives'][objective][mode]['sums']
  want = report['objectives'][objective]['reference']['sums']
  assert got['count'] == want['count'] == 6.0
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5, err_msg=key)


@pytest.mark.parametrize('batch, devices, ok',
                         [(64, 4, True), (64, 1, True), (10, 4, False),
                          (3, 2, False)],
                         ids=['64_on_4', '64_on_1', '10_on_4', '3_on_2'])
def test_check_batch_size(batch, devices, ok):
  config = ml_collections.ConfigDict({'train': {'batch_size': batch}})
  if ok:
    assert parallel.check_batch_size(config, 'train.batch_size',
                                     devices) == batch
  else:
    with pytest.raises(validation.ConfigError,
                       match=r'train\.batch_size.*not divisible'):
      parallel.check_batch_size(config, 'train.batch_size', devices)


def test_validate_rejects_unknown_mode():
  config = ml_collections.ConfigDict(
      {'train': {'batch_size': 8, 'parallel': 'shard_map'},
       'eval': {'batch_size': 8}})
  with pytest.raises(validation.ConfigError, match=r'train\.parallel'):
    parallel.validate(config, num_devices=1)


def test_put_sharded_and_replicated_on_one_device():
  x = np.arange(12.0).reshape(4, 3)
  for name in parallel.NAMES:
    layout = parallel.create_layout(name)
    assert layout.name == name
    sharded = layout.put_sharded(x)
    np.testing.assert_array_equal(np.asarray(sharded).reshape(4, 3), x)
    rep = layout.put_replicated({'a': x})
    np.testing.assert_array_equal(layout.get_replicated(rep)['a'], x)
  with pytest.raises(ValueError, match='shard_map'):
    parallel.create_layout('shard_map')


def test_emulated_device_flags():
  flags = cpu_devices.xla_flags(4).split()
  assert '--xla_force_host_platform_device_count=4' in flags
  assert ('--xla_cpu_collective_call_terminate_timeout_seconds='
          f'{cpu_devices.COLLECTIVE_TIMEOUT_SECONDS}') in flags
  for bad in (0, -1, 2.0, '4'):
    with pytest.raises(ValueError, match='num_devices'):
      cpu_devices.xla_flags(bad)


def test_process_rows_single_host():
  assert parallel.process_rows(64) == slice(0, 64)
  assert jax.process_count() == 1


SMOKE_BATCH = 8  # configs/mnist.py:smoke's train.batch_size and eval's


def _smoke_run(workdir, devices, mode, env=None):
  command = [sys.executable, '-m', 'experiments.main',
             '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
             '--jax_platforms=cpu', f'--config.train.parallel={mode}']
  if devices > 1:
    command.append(f'--cpu_devices={devices}')
  out = subprocess.run(command, cwd=os.path.dirname(HERE), check=False,
                       timeout=900, capture_output=True, text=True, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def one_device(tmp_path_factory):
  """The workdir of the smoke run on one device."""
  workdir = str(tmp_path_factory.mktemp('one_device') / 'run')
  _smoke_run(workdir, 1, 'jit')
  return workdir


def _assert_figures_close(got, want):
  assert got['step'] == want['step'] == 4
  for key, value in want.items():
    if isinstance(value, float) and key != 'train_images_per_second':
      np.testing.assert_allclose(got[key], value, rtol=1e-5, err_msg=key)


@pytest.mark.xdist_group(multiprocess_runs.GROUP)
@pytest.mark.slow
def test_real_model_smoke_run_agrees_on_four_devices(tmp_path, one_device,
                                                     multiprocess_runs):
  """The simple family, 4 steps: 1 device vs jit and pmap over 4 devices.

  Every figure of results.json (trained 4 steps, then evaluated with the same
  per-example keys) agrees to rtol 1e-5; measured 8.5e-7 for jit. The jit
  run over 4 devices is the one-process run of tests/multiprocess_runs.py
  (the same smoke config; jit is the default `train.parallel`), made once
  for both files. results.json states each run's split of its batch.
  """
  one = atomic_files.read_json(os.path.join(one_device,
                                            run_files.RESULTS_FILE))
  assert one['layout'] == {'name': 'jit', 'devices': 1, 'processes': 1,
                           'device_batch_size': SMOKE_BATCH}
  jit = atomic_files.read_json(
      os.path.join(multiprocess_runs['one'], run_files.RESULTS_FILE))
  for mode in ('jit', 'pmap'):
    got = jit if mode == 'jit' else _smoke_run(str(tmp_path / mode), 4, mode)
    assert got['layout'] == {'name': mode, 'devices': 4, 'processes': 1,
                             'device_batch_size': SMOKE_BATCH // 4}
    _assert_figures_close(got, one)


@pytest.mark.xdist_group(multiprocess_runs.GROUP)
@pytest.mark.slow
def test_one_device_run_resumes_in_the_default_layout(tmp_path, one_device):
  """The one-device smoke run's step-2 checkpoint, resumed by the command's
  default layout (no --cpu_devices: one device per core, 2 here; 2 on a
  machine of one core), ends where the one-device run ends: every figure of
  results.json to rtol 1e-5 (float32 sums in another order), and its
  results.json states the new split."""
  env = {k: v for k, v in os.environ.items() if k != cpu_devices.ENV}
  if cpu_devices.core_share() < 2:
    env[cpu_devices.ENV] = '2'
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(one_device, resumed)
  os.remove(os.path.join(resumed, run_files.RESULTS_FILE))
  shutil.rmtree(os.path.join(resumed, checkpointing.LATEST_DIR, '4'))
  got = _smoke_run(resumed, 1, 'jit', env=env)
  devices = max(2, min(cpu_devices.core_share(),
                       cpu_devices.MAX_DEFAULT_DEVICES))
  devices = max(d for d in range(1, devices + 1) if SMOKE_BATCH % d == 0)
  assert got['layout'] == {'name': 'jit', 'devices': devices, 'processes': 1,
                           'device_batch_size': SMOKE_BATCH // devices}
  _assert_figures_close(got, atomic_files.read_json(
      os.path.join(one_device, run_files.RESULTS_FILE)))
