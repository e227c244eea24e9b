"""End-to-end tests of rdvae/train.py on the real simple family and data.

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

from configs import mnist
from rdvae import checkpointing
from rdvae import train
from rdvae import validation
from rdvae import writers

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
     ({'optim.learning_rate': -1.0}, r'optim\.learning_rate')],
    ids=['dataset_name', 'missing_file', 'family_letter', 'family_length',
         'objective_kind', 'negative_beta', 'parallel_mode', 'log_every',
         'iwae_samples', 'learning_rate'])
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
  writers.prepare_workdir(workdir, _smoke())
  before = open(os.path.join(workdir, 'config.json')).read()
  with pytest.raises(writers.WorkdirConflictError, match='objective.beta'):
    train.train_and_eval(_smoke(**{'objective.beta': 2.0}), workdir)
  assert open(os.path.join(workdir, 'config.json')).read() == before
  assert sorted(os.listdir(workdir)) == ['config.json']


def test_check_finite_stops_with_a_clear_error(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  with pytest.raises(FloatingPointError, match=r'loss.*last good checkpoint'):
    train._check_finite({'loss': math.nan, 'rate': 1.0}, 10, manager)
  train._check_finite({'loss': 1.0}, 10, manager)


@pytest.mark.parametrize('epochs, steps, expected',
                         [(1.0, 0, 781), (0.5, 0, 391), (200.0, 0, 156200),
                          (1.0, 7, 7)], ids=['one', 'half', 'paper', 'steps'])
def test_num_train_steps(epochs, steps, expected):
  config = mnist.get_config()
  config.train.num_epochs = epochs
  config.train.num_steps = steps
  assert train.num_train_steps(config, 50000) == expected


def _numbers(record):
  return {k: v for k, v in record.items() if isinstance(v, (int, float))}


def test_smoke_run_writes_its_files_and_resumes(tmp_path):
  workdir = str(tmp_path / 'run')
  config = _smoke()
  results = train.train_and_eval(config, workdir)
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
  records = writers.read_metrics(workdir)
  assert [r['step'] for r in records if 'train/loss' in r] == [2, 4]
  # A rerun in the same workdir resumes at the end: no training, the same
  # evaluation (its keys are functions of the seed), the same files.
  again = train.train_and_eval(config, workdir)
  assert _numbers(again) == _numbers(results)
  assert writers.read_metrics(workdir) == records


def test_omniglot_smoke_run_on_mock_tfds(tmp_path):
  """configs/omniglot.py:smoke end to end through the TFDS path, served by
  `tfds.testing.mock_data` (random 105x105 images, binarized to 28x28)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from configs import omniglot  # pylint: disable=g-import-not-at-top
  config = omniglot.get_config('smoke')
  config.eval.num_grid_images = 0
  with tfds.testing.mock_data(num_examples=40):
    results = train.train_and_eval(config, str(tmp_path / 'run'))
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    assert math.isfinite(results[key]), key
  np.testing.assert_allclose(results['elbo'],
                             -(results['rate'] + results['distortion']),
                             rtol=1e-6)
  # The 4 smoke steps ran on the mock training split.
  assert results['step'] == 4


def _main(workdir, *flags):
  return [sys.executable, '-m', 'experiments.main',
          '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
          '--jax_platforms=cpu', '--config.train.num_steps=12',
          '--config.train.eval_every=6', *flags]


@pytest.mark.slow
def test_killed_run_resumes_bitwise(tmp_path):
  """SIGKILL after the first checkpoint, restart: same as never stopped."""
  killed, whole = str(tmp_path / 'killed'), str(tmp_path / 'whole')
  proc = subprocess.Popen(_main(killed), cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  first = os.path.join(killed, 'checkpoints', '4')
  deadline = time.time() + 500
  while not os.path.isdir(first) and proc.poll() is None:
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(killed, 'results.json'))
  for workdir in (killed, whole):
    subprocess.run(_main(workdir), cwd=REPO, check=True, timeout=600,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  assert writers.read_metrics(killed) == writers.read_metrics(whole)
  timing = 'train_images_per_second'  # wall-clock, differs between runs
  results = [writers.read_json(os.path.join(w, 'results.json'))
             for w in (killed, whole)]
  assert all(r.pop(timing) > 0 for r in results)
  # what each process compiled or read from the compilation cache differs
  assert all(r.pop('compile')['programs'] >= 0 for r in results)
  assert results[0] == results[1]
  a = checkpointing.restore(checkpointing.create_manager(killed))
  b = checkpointing.restore(checkpointing.create_manager(whole))
  import jax  # pylint: disable=g-import-not-at-top
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b) > 10
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(x, y)
