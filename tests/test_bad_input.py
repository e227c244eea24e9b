"""Every bad input tried (config values, data files, workdirs): each is
refused with a message naming the key or file and the bad value, before
anything is written, and `python -m experiments.main` prints that message
alone (no traceback) and exits non-zero. BUILD.md ("Bad input and exit statuses") tabulates `CASES`.
"""

import dataclasses
import os
import subprocess
import sys
from typing import Callable, Optional

import ml_collections
import numpy as np
import pytest

from configs import mnist
from rdvae.data import sources as data
from rdvae.runtime import preemption
from rdvae.training import loop as train
from rdvae import validation
from rdvae.files import atomic_files
from rdvae.files import run_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _arrays(**changes):
  arrays = {k: np.zeros((16, 98), np.uint8) for k in data.NPZ_KEYS}
  arrays.update(changes)
  return {k: v for k, v in arrays.items() if v is not None}


def _npz(**changes) -> Callable[[str], str]:
  def make(directory):
    path = os.path.join(directory, 'data.npz')
    np.savez(path, **_arrays(**changes))
    return path
  return make


def _truncated(directory):
  path = _npz()(directory)
  with open(path, 'rb') as f:
    payload = f.read()
  with open(path, 'wb') as f:
    f.write(payload[:len(payload) // 2])
  return path


def _damaged(directory):
  """A flipped byte inside the train array: the zip CRC check fails."""
  path = _npz()(directory)
  with open(path, 'r+b') as f:
    payload = bytearray(f.read())
    offset = payload.index(b'train.npy') + 200  # inside its data
    payload[offset] ^= 0xFF
    f.seek(0)
    f.write(payload)
  return path


def _text_file(directory):
  path = os.path.join(directory, 'data.npz')
  with open(path, 'w') as f:
    f.write('not a zip archive')
  return path


@dataclasses.dataclass(frozen=True)
class Case:
  """One bad input: config overrides ('{file}' is replaced by the path the
  `data_file` maker returns), an optional workdir set-up, the error type
  and the strings its message must contain."""

  id: str
  what: str
  overrides: dict
  error: type
  needles: tuple
  data_file: Optional[Callable[[str], str]] = None
  # 'other_config' | 'a_file' | 'below_a_file' | 'torn_config' |
  # 'torn_results'
  workdir: Optional[str] = None


E = validation.ConfigError
W = run_files.WorkdirConflictError
D = atomic_files.DamagedFileError
CASES = [
    Case('dataset_name', 'unknown dataset', {'dataset.name': 'mnist'}, E,
         ('config.dataset.name', "'mnist'")),
    Case('dataset_source', 'unknown source', {'dataset.source': 'hdf5'}, E,
         ('config.dataset.source', "'hdf5'")),
    Case('path_is_directory', 'data path is a directory',
         {'dataset.path': '{file}'}, E, ('config.dataset.path', 'a directory'),
         lambda directory: directory),
    Case('omniglot_npz_no_path', 'omniglot from npz without a file',
         {'dataset.name': 'omniglot'}, E, ('config.dataset.path', 'omniglot')),
    Case('family_letter', 'unknown family letter', {'model.family': '-x-'}, E,
         ('config.model.family', "'-x-'")),
    Case('family_length', 'family of 4 letters', {'model.family': '----'}, E,
         ('config.model.family', "'----'")),
    Case('latent_dim', 'zero latent dimensions', {'model.latent_dim': 0}, E,
         ('config.model.latent_dim=0',)),
    Case('objective_kind', 'unknown objective', {'objective.kind': 'elbow'},
         E, ('config.objective.kind', "'elbow'")),
    Case('negative_beta', 'negative beta', {'objective.beta': -1.0}, E,
         ('config.objective.beta=-1.0',)),
    Case('beta_of_elbo', 'beta with the ELBO, which ignores it',
         {'objective.beta': 2.0}, E,
         ('config.objective.beta=2.0', "objective.kind='elbo'", 'beta_vae')),
    Case('learning_rate', 'negative learning rate',
         {'optim.learning_rate': -1.0}, E, ('config.optim.learning_rate=-1.0',)),
    Case('learning_rate_inf', 'infinite learning rate',
         {'optim.learning_rate': float('inf')}, E,
         ('config.optim.learning_rate=inf', 'finite')),
    Case('beta_nan', 'beta of nan',
         {'objective.kind': 'beta_vae', 'objective.beta': float('nan')}, E,
         ('config.objective.beta=nan', 'finite')),
    Case('parallel_mode', 'unknown parallel mode',
         {'train.parallel': 'shard_map'}, E,
         ('config.train.parallel', "'shard_map'")),
    Case('batch_size_zero', 'batch of 0', {'train.batch_size': 0}, E,
         ('config.train.batch_size=0',)),
    Case('batch_size_too_large', 'batch larger than the training split',
         {'train.batch_size': 50008}, E,
         ('config.train.batch_size=50008', '50000 images', 'binarized_mnist.npz')),
    Case('batch_size_file', 'batch larger than a small data file',
         {'train.batch_size': 24, 'dataset.path': '{file}'}, E,
         ('config.train.batch_size=24', '16 images', 'data.npz'), _npz()),
    Case('seed', 'negative seed', {'train.seed': -1}, E,
         ('config.train.seed=-1',)),
    Case('num_steps', 'negative step count', {'train.num_steps': -4}, E,
         ('config.train.num_steps=-4', '>= 0')),
    Case('num_epochs', 'zero epochs', {'train.num_epochs': 0.0}, E,
         ('config.train.num_epochs=0.0',)),
    Case('steps_per_dispatch', 'negative steps per dispatch',
         {'train.steps_per_dispatch': -1}, E,
         ('config.train.steps_per_dispatch=-1',)),
    Case('log_every', 'log_every not a multiple of the dispatch',
         {'train.log_every': 3}, E, ('config.train.log_every=3', 'multiple')),
    Case('checkpoint_every', 'checkpoint_every not a multiple of the '
         'dispatch', {'train.checkpoint_every': 5}, E,
         ('config.train.checkpoint_every=5', 'multiple')),
    Case('nonfinite_mode', 'unknown non-finite mode',
         {'train.nonfinite': 'ignore'}, E,
         ('config.train.nonfinite', "'ignore'")),
    Case('max_skipped', 'zero skips allowed', {'train.max_skipped': 0}, E,
         ('config.train.max_skipped=0',)),
    Case('iwae_samples', 'IWAE with K = 0', {'eval.iwae_samples': 0}, E,
         ('config.eval.iwae_samples=0',)),
    Case('eval_batch_size', 'negative evaluation batch',
         {'eval.batch_size': -8}, E, ('config.eval.batch_size=-8',)),
    Case('max_examples', 'negative evaluation subset',
         {'eval.max_examples': -1}, E, ('config.eval.max_examples=-1',)),
    Case('max_examples_too_large', 'evaluation subset larger than the '
         'split', {'eval.max_examples': 100000}, E,
         ('config.eval.max_examples=100000', '10000 images')),
    Case('grid_images', 'grid larger than the validation split',
         {'eval.num_grid_images': 10001}, E,
         ('config.eval.num_grid_images=10001', '10000 images')),
    Case('missing_file', 'data file missing',
         {'dataset.path': '/no/such/dir/data.npz'}, E,
         ("'/no/such/dir/data.npz'", 'does not exist')),
    Case('not_a_zip', 'data file not an npz', {'dataset.path': '{file}'}, E,
         ('data.npz', 'not a readable .npz'), _text_file),
    Case('truncated_file', 'data file cut in half', {'dataset.path': '{file}'},
         E, ('data.npz', 'not a readable .npz'), _truncated),
    Case('damaged_file', 'a flipped byte in the data file',
         {'dataset.path': '{file}'}, E, ('data.npz', 'CRC'),
         _damaged),
    Case('missing_split', 'data file without the validation split',
         {'dataset.path': '{file}'}, E, ('data.npz', "['valid']"),
         _npz(valid=None)),
    Case('wrong_dtype', 'float32 data', {'dataset.path': '{file}'}, E,
         ('data.npz', "'train'", 'float32', 'uint8'),
         _npz(train=np.zeros((16, 98), np.float32))),
    Case('wrong_shape', 'unpacked images', {'dataset.path': '{file}'}, E,
         ('data.npz', "'test'", '(16, 784)', '(N, 98)'),
         _npz(test=np.zeros((16, 784), np.uint8))),
    Case('empty_split', 'an empty training split', {'dataset.path': '{file}'},
         E, ('data.npz', "'train'", '(0, 98)'),
         _npz(train=np.zeros((0, 98), np.uint8))),
    Case('other_config', 'workdir of a run with another config',
         {'objective.kind': 'beta_vae', 'objective.beta': 2.0}, W,
         ('holds a run with a different config', 'objective.beta'),
         workdir='other_config'),
    Case('workdir_is_file', 'workdir is a file', {}, W, ('is a file',),
         workdir='a_file'),
    Case('workdir_below_file', 'workdir whose parent is a file', {}, W,
         ('cannot be written', 'Not a directory'), workdir='below_a_file'),
    Case('torn_config', 'workdir with an unreadable config.json', {}, W,
         ('config.json', 'cannot be read'), workdir='torn_config'),
    Case('torn_results', 'finished run with a torn results.json', {}, D,
         ('results.json: not valid JSON', 'remove it'),
         workdir='torn_results'),
]


def _config(case: Case, directory: str) -> ml_collections.ConfigDict:
  config = mnist.get_config('smoke')
  path = case.data_file(directory) if case.data_file else None
  for key, value in case.overrides.items():
    section, name = key.split('.')
    config[section][name] = path if value == '{file}' else value
  return config


def _prepare_workdir(case: Case, workdir: str) -> str:
  """Sets up `case`'s workdir at `workdir`; the workdir to run in."""
  if case.workdir == 'below_a_file':
    with open(workdir, 'w') as f:
      f.write('a file where the parent of the workdir should be')
    return os.path.join(workdir, 'run')
  if case.workdir == 'other_config':
    run_files.prepare_workdir(workdir, mnist.get_config('smoke'))
  elif case.workdir == 'a_file':
    with open(workdir, 'w') as f:
      f.write('a file where the workdir should be')
  elif case.workdir == 'torn_config':
    os.makedirs(workdir)
    with open(os.path.join(workdir, run_files.CONFIG_FILE), 'w') as f:
      f.write('{"dataset": {"na')
  elif case.workdir == 'torn_results':
    run_files.prepare_workdir(workdir, mnist.get_config('smoke'))
    with open(os.path.join(workdir, run_files.RESULTS_FILE), 'w') as f:
      f.write('{"rate": 5.2, "disto')
  return workdir


def _snapshot(path: str):
  """Every file under `path` with its bytes (None when `path` is absent)."""
  if not os.path.exists(path):
    return None
  if os.path.isfile(path):
    with open(path, 'rb') as f:
      return f.read()
  files = {}
  for root, _, names in os.walk(path):
    for name in names:
      with open(os.path.join(root, name), 'rb') as f:
        files[os.path.relpath(os.path.join(root, name), path)] = f.read()
  return files


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_before_anything_is_written(case, tmp_path):
  workdir = str(tmp_path / 'run')
  config = _config(case, str(tmp_path))
  run_in = _prepare_workdir(case, workdir)
  before = _snapshot(workdir)
  with pytest.raises(case.error) as info:
    train.train_and_eval(config, run_in)
  message = str(info.value)
  for needle in case.needles:
    assert needle in message, (needle, message)
  assert _snapshot(workdir) == before


def test_non_binary_values_are_refused(monkeypatch, tmp_path):
  """The packed npz format holds bits only; TFDS images can hold others."""
  images = np.zeros((16,) + data.IMAGE_SHAPE, np.uint8)
  bad = images.copy()
  bad[3, 5, 5, 0] = 255
  monkeypatch.setattr(data, 'load_tfds', lambda name, data_dir, splits: {
      'train': images, 'validation': bad, 'test': images})
  config = mnist.get_config('smoke')
  config.dataset.source = 'tfds'
  workdir = str(tmp_path / 'run')
  with pytest.raises(validation.ConfigError,
                     match=r"TFDS 'binarized_mnist'.*'validation' holds "
                     r'values \[255\] besides 0 and 1'):
    train.train_and_eval(config, workdir)
  assert not os.path.exists(workdir)


# ------------------------------------ through the command line, elsewhere


def _main_elsewhere(tmp_path, *flags, config='configs/mnist.py:smoke'):
  """`python -m experiments.main` from a directory outside the repository,
  with only `rdvae` and `experiments` importable (as when installed) and the
  config given by its absolute path."""
  packages = tmp_path / 'site'
  packages.mkdir(exist_ok=True)
  for name in ('rdvae', 'experiments'):
    if not (packages / name).exists():
      (packages / name).symlink_to(os.path.join(REPO, name))
  env = dict(os.environ, PYTHONPATH=str(packages))
  return subprocess.run(
      [sys.executable, '-m', 'experiments.main',
       f'--config={os.path.join(REPO, config)}', '--jax_platforms=cpu',
       *flags], capture_output=True, text=True, cwd=str(tmp_path), env=env,
      timeout=300, check=False)


@pytest.mark.parametrize('case_id', ['batch_size_too_large', 'truncated_file',
                                     'other_config', 'torn_results'])
def test_command_line_prints_the_message_alone(case_id, tmp_path):
  case = next(c for c in CASES if c.id == case_id)
  workdir = str(tmp_path / 'run')
  _prepare_workdir(case, workdir)
  before = _snapshot(workdir)
  flags = []
  for key, value in case.overrides.items():
    if value == '{file}':
      value = case.data_file(str(tmp_path))
    flags.append(f'--config.{key}={value}')
  out = _main_elsewhere(tmp_path, f'--workdir={workdir}', *flags)
  assert out.returncode == preemption.EXIT_USAGE, out.stderr
  assert 'Traceback' not in out.stderr, out.stderr
  assert out.stderr.strip().startswith(case.error.__name__), out.stderr
  for needle in case.needles:
    assert needle in out.stderr, (needle, out.stderr)
  assert _snapshot(workdir) == before


@pytest.mark.parametrize('config, flag, needle', [
    ('configs/mnist.py:smoke', '--config.train.batch_sise=8',
     'Did you mean "batch_size" instead of "batch_sise"?'),
    ('configs/mnist.py:smok', '--config.train.batch_size=8',
     "unknown mnist config variant 'smok'")], ids=['key', 'variant'])
def test_command_line_bad_flag_is_an_absl_usage_error(tmp_path, config, flag,
                                                      needle):
  workdir = str(tmp_path / 'run')
  out = _main_elsewhere(tmp_path, f'--workdir={workdir}', flag,
                        config=config)
  assert out.returncode == preemption.EXIT_USAGE
  assert len(out.stderr.strip().splitlines()) == 1, out.stderr
  assert out.stderr.startswith('FATAL Flags parsing error'), out.stderr
  assert needle in out.stderr
  assert 'Traceback' not in out.stderr
  assert not os.path.exists(workdir)


def test_command_line_bug_keeps_its_traceback(tmp_path):
  """An internal failure (here a malformed fault-injection setting) is not a
  user error: it shows its traceback."""
  workdir = str(tmp_path / 'run')
  os.environ['RDVAE_FAULT'] = 'checkpoint@x'
  try:
    out = _main_elsewhere(tmp_path, f'--workdir={workdir}')
  finally:
    del os.environ['RDVAE_FAULT']
  assert out.returncode == 1
  assert 'Traceback' in out.stderr and 'ValueError' in out.stderr


def errors_table() -> str:
  """BUILD.md's bad-input table: each case with the message it gets (temporary
  paths shortened to DIR)."""
  import tempfile  # pylint: disable=g-import-not-at-top
  rows = ['| case | bad input | error | message |', '|---|---|---|---|']
  for case in CASES:
    with tempfile.TemporaryDirectory() as directory:
      workdir = os.path.join(directory, 'run')
      config = _config(case, directory)
      run_in = _prepare_workdir(case, workdir)
      try:
        train.train_and_eval(config, run_in)
      except case.error as e:
        message = str(e).replace(directory, 'DIR').replace(
            str(data.packaged_npz_path()), 'rdvae/data/binarized_mnist.npz')
      overrides = ', '.join(f'`{k}={v!r}`'.replace("'{file}'", 'FILE')
                            for k, v in case.overrides.items())
      what = f'{case.what} ({overrides})' if overrides else case.what
      message = message.replace('|', '\\|').replace('\n', ' ')
      rows.append(f'| `{case.id}` | {what} | {case.error.__name__} | '
                  f'{message} |')
  return '\n'.join(rows)


if __name__ == '__main__':
  print(errors_table())
