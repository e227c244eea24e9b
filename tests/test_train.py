"""End-to-end tests of rdvae/training/loop.py on the real simple family and data.

The smoke config (configs/mnist.py:smoke) trains 4 steps of batch 8 on the
packaged static binarized MNIST and evaluates 12 examples per split.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest

import reference_run
from configs import mnist
from rdvae.training import tasks
from rdvae.runs import reevaluate
from rdvae.files import checkpointing
from rdvae.evaluation import measures as evaluation
from rdvae.training import loop as train
from rdvae.training import monitors
from rdvae import validation
from rdvae.files import atomic_files
from rdvae.files import metric_files
from rdvae.files import run_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke(**overrides) -> ml_collections.ConfigDict:
  config = mnist.get_config('smoke')
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


@pytest.mark.parametrize(
    'overrides, pattern',
    [({'dataset.name': 'mnist'}, r'dataset\.name'),
     ({'dataset.path': 'no/such/file.npz'}, r'does not exist'),
     ({'model.family': '-x-'}, r'model\.family'),
     ({'model.family': '----'}, r'model\.family'),
     ({'objective.kind': 'elbow'}, r'objective\.kind'),
     ({'objective.beta': -1.0}, r'objective\.beta'),
     ({'train.parallel': 'shard_map'}, r'train\.parallel'),
     ({'train.log_every': 3}, r'train\.log_every.*multiple'),
     ({'eval.iwae_samples': 0}, r'eval\.iwae_samples'),
     ({'eval.subset_seed': -1}, r'eval\.subset_seed=-1'),
     ({'eval.generative_samples': -1}, r'eval\.generative_samples=-1'),
     ({'optim.learning_rate': -1.0}, r'optim\.learning_rate')],
    ids=['dataset_name', 'missing_file', 'family_letter', 'family_length',
         'objective_kind', 'negative_beta', 'parallel_mode', 'log_every',
         'iwae_samples', 'subset_seed', 'generative_samples',
         'learning_rate'])
def test_bad_config_fails_before_any_work(tmp_path, overrides, pattern):
  workdir = str(tmp_path / 'run')
  with pytest.raises(validation.ConfigError, match=pattern):
    train.train_and_eval(_smoke(**overrides), workdir)
  assert not os.path.exists(workdir)


def test_batch_size_not_divisible_by_devices_fails_before_work(tmp_path):
  # 4 emulated devices need a subprocess; batch 6 does not split over 4.
  workdir = str(tmp_path / 'run')
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.main',
       '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
       '--cpu_devices=4', '--jax_platforms=cpu', '--config.train.batch_size=6'],
      capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert out.returncode != 0
  assert 'ConfigError' in out.stderr
  assert 'config.train.batch_size=6 is not divisible by the number of devices (4)' in out.stderr
  assert not os.path.exists(workdir)


def test_workdir_with_other_config_is_not_overwritten(tmp_path):
  workdir = str(tmp_path / 'run')
  run_files.prepare_workdir(workdir, _smoke())
  before = open(os.path.join(workdir, 'config.json')).read()
  with pytest.raises(run_files.WorkdirConflictError, match='objective.beta'):
    train.train_and_eval(
        _smoke(**{'objective.kind': 'beta_vae', 'objective.beta': 2.0}),
        workdir)
  assert open(os.path.join(workdir, 'config.json')).read() == before
  assert sorted(os.listdir(workdir)) == ['config.json']


def test_nonfinite_stop_names_the_step_and_quantities(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  check = monitors.NonFinite(_smoke(), manager)
  assert check.check(np.zeros(2, np.int32), 10) == 0
  flags = np.array([0, 0b01001], np.int32)  # loss and grad_norm at step 12
  with pytest.raises(FloatingPointError,
                     match=r'non-finite loss, grad_norm at step 12 .*'
                     r'no checkpoint was saved before it'):
    check.check(flags, 12)


def test_nonfinite_skip_counts_and_stops_after_max_skipped(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  check = monitors.NonFinite(
      _smoke(**{'train.nonfinite': 'skip', 'train.max_skipped': 3}), manager)
  assert check.check(np.array([2, 0], np.int32), 2) == 1  # reset by step 2
  assert check.check(np.array([0, 4], np.int32), 4) == 1
  assert check.check(np.array([4, 0], np.int32), 6) == 1  # 2 in a row, reset
  assert check.check(np.array([16, 16], np.int32), 8) == 2
  with pytest.raises(FloatingPointError,
                     match=r'non-finite rate at step 9 \(3 consecutive'):
    check.check(np.array([2, 0], np.int32), 10)


@pytest.mark.parametrize('epochs, steps, expected',
                         [(1.0, 0, 781), (0.5, 0, 391), (200.0, 0, 156200),
                          (1.0, 7, 7)], ids=['one', 'half', 'paper', 'steps'])
def test_num_train_steps(epochs, steps, expected):
  config = mnist.get_config()
  config.train.num_epochs = epochs
  config.train.num_steps = steps
  assert tasks.num_train_steps(config, 50000) == expected


def _numbers(record):
  return {k: v for k, v in record.items() if isinstance(v, (int, float))}


# The tests that use this fixture share one pytest-xdist worker (their
# xdist_group), so it is built once rather than once per worker.
@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
  """A finished smoke run: (config, workdir, results)."""
  workdir = str(tmp_path_factory.mktemp('smoke') / 'run')
  config = _smoke()
  return config, workdir, train.train_and_eval(config, workdir)


@pytest.mark.xdist_group('train_smoke_run')
def test_smoke_run_writes_its_files_and_resumes(smoke_run):
  config, workdir, results = smoke_run
  for name in ('config.json', 'metrics.jsonl', 'results.json',
               'images/grid_00000002.png', 'images/grid_00000004.png'):
    assert os.path.isfile(os.path.join(workdir, name)), name
  assert any(f.startswith('events.out.tfevents')
             for f in os.listdir(os.path.join(workdir, 'tensorboard')))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  assert os.listdir(os.path.join(workdir, 'checkpoints_best'))
  for key in ('rate', 'distortion', 'elbo', 'iwae', 'validation/elbo',
              'validation/iwae', 'test/bpd'):
    assert math.isfinite(results[key]), key
  # Exact relations between the reported figures.
  np.testing.assert_allclose(results['elbo'],
                             -(results['rate'] + results['distortion']),
                             rtol=1e-6)
  np.testing.assert_allclose(results['bpd'],
                             -results['elbo'] / (784 * math.log(2)), rtol=1e-9)
  assert 0 < results['distortion'] < 784 * math.log(2) * 1.1
  with open(os.path.join(workdir, 'results.json')) as f:
    assert _numbers(json.load(f)) == pytest.approx(_numbers(results))
  records = metric_files.read_metrics(workdir)
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4]
  # A rerun in the same workdir resumes at the end: no training, the same
  # evaluation (its keys are functions of the seed), the same files.
  again = train.train_and_eval(config, workdir)
  assert _numbers(again) == _numbers(results)
  assert metric_files.read_metrics(workdir) == records


@pytest.mark.xdist_group('train_smoke_run')
def test_smoke_run_reports_the_new_measures(smoke_run):
  config, _, results = smoke_run
  assert results['eval_subset'] == {'max_examples': 12, 'seed': 0}
  assert results['params'] == 'last'
  for key in ('generative_lower', 'generative_upper', 'active_units'):
    assert results[key] == results[f'test/{key}'], key
    assert math.isfinite(results[key]), key
  assert 0 <= results['active_units'] <= config.model.latent_dim
  assert isinstance(results['active_units'], int)
  # '---' factorises: the rate per dimension sums to the analytic rate.
  for split in ('validation', 'test'):
    per_dim = results[f'{split}/rate_per_dim']
    assert len(per_dim) == config.model.latent_dim
    assert min(per_dim) >= 0
    np.testing.assert_allclose(sum(per_dim),
                               results[f'{split}/analytic_rate'], rtol=1e-5)


@pytest.mark.xdist_group('train_smoke_run')
def test_evaluate_again_reproduces_then_changes_the_evaluation(smoke_run):
  config, workdir, results = smoke_run
  files = {name: open(os.path.join(workdir, name)).read()
           for name in evaluation.RUN_FILES}
  # The same settings on the last checkpoint give results.json's figures.
  same = reevaluate.evaluate_workdir(workdir, 'last', {}, 'same.json')
  assert same['params'] == 'last' and same['step'] == 4
  for key, value in _numbers(results).items():
    if key.startswith(('test/', 'validation/')):
      np.testing.assert_allclose(same[key], value, rtol=1e-6, err_msg=key)
  assert same['test/rate_per_dim'] == pytest.approx(
      results['test/rate_per_dim'], rel=1e-6)
  assert atomic_files.read_json(os.path.join(workdir, 'same.json')) == same
  # Other evaluation settings, on the best checkpoint.
  other = reevaluate.evaluate_workdir(
      workdir, 'best', {'eval.iwae_samples': 3, 'eval.max_examples': 16,
                        'eval.subset_seed': 1}, 'other.json')
  assert other['params'] == 'best'
  assert other['eval_subset'] == {'max_examples': 16, 'seed': 1}
  assert other['eval_overrides']['eval.iwae_samples'] == 3
  assert other['test/elbo'] != results['test/elbo']
  # Nothing of the run was touched; bad requests fail before any work.
  for name, text in files.items():
    assert open(os.path.join(workdir, name)).read() == text, name
  with pytest.raises(validation.ConfigError, match=r'train\.num_steps'):
    reevaluate.evaluate_workdir(workdir, overrides={'train.num_steps': 8})
  with pytest.raises(validation.ConfigError, match=r'eval\.bogus'):
    reevaluate.evaluate_workdir(workdir, overrides={'eval.bogus': 1})
  with pytest.raises(validation.ConfigError, match=r'eval\.iwae_samples=0'):
    reevaluate.evaluate_workdir(workdir, overrides={'eval.iwae_samples': 0})
  for output in ('results.json', 'config.json', 'sub/x.json', 'x.txt'):
    with pytest.raises(ValueError, match='output'):
      reevaluate.evaluate_workdir(workdir, output=output)
  with pytest.raises(FileNotFoundError):
    reevaluate.evaluate_workdir(os.path.dirname(workdir))


@pytest.mark.xdist_group('train_smoke_run')
@pytest.mark.slow
def test_evaluate_command_line(smoke_run):
  _, workdir, _ = smoke_run
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.evaluate', f'--workdir={workdir}',
       '--params=best', '--output=cli.json', '--eval.iwae_samples=4',
       '--eval.generative_samples=2', '--jax_platforms=cpu'],
      capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  written = atomic_files.read_json(os.path.join(workdir, 'cli.json'))
  assert written['params'] == 'best'
  assert written['eval_overrides'] == {'eval.iwae_samples': 4,
                                       'eval.generative_samples': 2}
  assert math.isfinite(written['test/iwae'])
  assert math.isfinite(written['generative_upper'])


def test_omniglot_smoke_run_on_mock_tfds(tmp_path):
  """configs/omniglot.py:smoke end to end through the TFDS path, served by
  `tfds.testing.mock_data` (random 105x105 images, binarized to 28x28)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from configs import omniglot  # pylint: disable=g-import-not-at-top
  config = omniglot.get_config('smoke')
  config.eval.num_grid_images = 0
  # The mock's validation split (the last tenth of train) holds 4 images.
  config.eval.max_examples = 0
  with tfds.testing.mock_data(num_examples=40):
    results = train.train_and_eval(config, str(tmp_path / 'run'))
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    assert math.isfinite(results[key]), key
  np.testing.assert_allclose(results['elbo'],
                             -(results['rate'] + results['distortion']),
                             rtol=1e-6)
  # The 4 smoke steps ran on the mock training split.
  assert results['step'] == 4


@pytest.mark.xdist_group(reference_run.GROUP)
@pytest.mark.slow
def test_killed_run_resumes_bitwise(tmp_path, whole_smoke_run):
  """SIGKILL after the first checkpoint, restart: the same as the run never
  stopped (tests/reference_run.py, shared with tests/test_faults.py)."""
  killed = str(tmp_path / 'killed')
  proc = subprocess.Popen(reference_run.command(killed), cwd=REPO,
                          env=reference_run.environment(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  first = os.path.join(killed, 'checkpoints', '4')
  deadline = time.time() + 500
  while not os.path.isdir(first) and proc.poll() is None:
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(killed, 'results.json'))
  out = reference_run.run(killed)
  assert out.returncode == 0, out.stderr
  reference_run.assert_same_run(killed, whole_smoke_run)
