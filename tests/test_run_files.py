"""Tests of rdvae/files/run_files.py: config.json, results.json and
failure.json, each written by its writer and read back by its reader, and
the reader's error for each way a file can be damaged."""

import json
import math
import os
import re
import traceback

import ml_collections
import numpy as np
import pytest

import damaged_results
from rdvae.files import atomic_files
from rdvae.files import run_files

RESULTS = {'rate': 5.25, 'distortion': 80.5, 'elbo': -85.75, 'step': 3}


def _config(beta=1.0):
  return ml_collections.ConfigDict({'objective': {'beta': beta},
                                    'train': {'seed': 0}})


# ---------------------------------------------------------------- config.json


def test_prepare_workdir_creates_then_recognises_the_same_config(tmp_path):
  workdir = str(tmp_path / 'run')
  assert run_files.prepare_workdir(workdir, _config()) is False
  assert atomic_files.read_json(os.path.join(workdir, 'config.json')) == {
      'objective': {'beta': 1.0}, 'train': {'seed': 0}}
  assert run_files.prepare_workdir(workdir, _config()) is True


def test_prepare_workdir_refuses_a_different_config(tmp_path):
  workdir = str(tmp_path)
  run_files.prepare_workdir(workdir, _config())
  with pytest.raises(run_files.WorkdirConflictError, match='objective.beta'):
    run_files.prepare_workdir(workdir, _config(beta=2.0))
  assert atomic_files.read_json(os.path.join(workdir, 'config.json'))[
      'objective']['beta'] == 1.0


def test_config_round_trip(tmp_path):
  workdir = str(tmp_path)
  assert run_files.read_config(workdir) is None
  run_files.prepare_workdir(workdir, _config(beta=0.5))
  assert run_files.read_config(workdir) == run_files.config_to_dict(
      _config(beta=0.5))


@pytest.mark.parametrize('text, reason', [
    ('{"objective": {"be', 'not valid JSON'),
    ('[1, 2]', 'holds a JSON list, not an object')], ids=['torn', 'list'])
def test_damaged_config_is_a_workdir_conflict_naming_the_file(tmp_path, text,
                                                              reason):
  workdir = str(tmp_path)
  atomic_files.write_text_atomic(os.path.join(workdir, 'config.json'), text)
  with pytest.raises(atomic_files.DamagedFileError, match=reason):
    run_files.read_config(workdir)
  with pytest.raises(run_files.WorkdirConflictError,
                     match=rf'config.json that cannot be read \({reason}'):
    run_files.check_workdir(workdir, _config())


def test_changed_keys_are_dotted():
  a = {'objective': {'beta': 1.0}, 'train': {'seed': 0}}
  b = {'objective': {'beta': 2.0}, 'train': {'seed': 0, 'steps': 4}}
  assert run_files.changed_keys(a, b) == ['objective.beta', 'train.steps']
  assert run_files.changed_keys(a, a) == []


def test_flatten_gives_dotted_keys():
  assert run_files.flatten({'a': {'b': 1, 'c': {'d': [2, 3]}}, 'e': None}) == {
      'a.b': 1, 'a.c.d': [2, 3], 'e': None}
  assert run_files.flatten({}) == {}


# --------------------------------------------------------------- results.json


def test_write_results_round_trip(tmp_path):
  run_files.write_results(str(tmp_path), {'rate': np.float32(1.5), 'step': 3})
  with open(tmp_path / 'results.json') as f:
    assert json.load(f) == {'rate': 1.5, 'step': 3}
  assert not os.path.exists(tmp_path / 'results.json.tmp')


def test_results_round_trip(tmp_path):
  workdir = str(tmp_path)
  assert run_files.read_results(workdir) is None  # not finished
  run_files.write_results(workdir, dict(
      RESULTS, rate=np.float32(5.25), iwae=float('nan'),
      test={'bpd': np.float64(0.5)}))
  # NaN outside the required numbers is kept, as the string the writer uses.
  assert run_files.read_results(workdir) == dict(
      RESULTS, iwae='nan', test={'bpd': 0.5})


@pytest.mark.parametrize('kind', damaged_results.DAMAGES)
def test_damaged_results_raise_one_error_naming_the_file(tmp_path, kind):
  workdir = str(tmp_path)
  damage, reason = damaged_results.DAMAGES[kind]
  damage(workdir)
  if reason is None:  # missing: not finished
    assert run_files.read_results(workdir) is None
    return
  path = os.path.join(workdir, 'results.json')
  with pytest.raises(atomic_files.DamagedFileError) as info:
    run_files.read_results(workdir)
  assert info.value.path == path
  assert str(info.value) == f'{path}: {info.value.reason}'
  assert '\n' not in str(info.value)
  assert re.search(reason, info.value.reason), info.value.reason


# --------------------------------------------------------------- failure.json


def test_failure_round_trip(tmp_path):
  workdir = str(tmp_path)
  assert run_files.read_failure(workdir) is None
  try:
    raise FloatingPointError('non-finite loss at step 2\n(lower the rate)')
  except FloatingPointError as e:
    written = run_files.write_failure(workdir, e, traceback.format_exc())
  failure = run_files.read_failure(workdir)
  assert failure == written
  assert failure['type'] == 'FloatingPointError'
  assert failure['message'] == 'non-finite loss at step 2\n(lower the rate)'
  assert 'test_failure_round_trip' in failure['traceback']
  assert len(failure['token']) == 32 and math.isfinite(failure['time'])
  assert run_files.failure_text(failure) == (
      'FloatingPointError: non-finite loss at step 2 (lower the rate)')
  run_files.remove_failure(workdir)
  run_files.remove_failure(workdir)  # already gone: nothing to do
  assert run_files.read_failure(workdir) is None


@pytest.mark.parametrize('text, reason', [
    ('{"type": "RuntimeErr', 'not valid JSON'),
    ('"RuntimeError"', 'holds a JSON string, not an object'),
    ('{"error": "RuntimeError: x"}', "no string 'type' or 'message'"),
], ids=['truncated', 'string', 'no_type'])
def test_damaged_failure_raises_naming_the_file(tmp_path, text, reason):
  path = os.path.join(str(tmp_path), 'failure.json')
  atomic_files.write_text_atomic(path, text)
  with pytest.raises(atomic_files.DamagedFileError, match=reason) as info:
    run_files.read_failure(str(tmp_path))
  assert info.value.path == path


_RESULTS = {'step': 40, 'rate': 5.4321, 'distortion': 150.0, 'elbo': -155.4321,
            'iwae': -150.25, 'generative_lower': -3.0, 'generative_upper': 20.5,
            'eval_subset': {'max_examples': 200, 'seed': 0},
            'eval_seconds': {'generative': 8.9, 'grid': 0.4, 'test': 4.0,
                             'total': 17.6, 'validation': 4.2},  # as read
            'test/elbo': -155.4321}


def test_summary_of_a_run_is_a_few_lines(tmp_path):
  text = run_files.summary(str(tmp_path), _RESULTS)
  assert text.splitlines() == [
      'finished at step 40: R 5.43, D 150.00, ELBO -155.43, IWAE -150.25 '
      '(nats per example, 200 test examples)',
      '  generative bounds: E -3.00 <= I <= G 20.50',
      '  final evaluation: 18 s (validation 4 s, test 4 s, generative 9 s, '
      'grid 0 s)',
      f'results: {tmp_path}/results.json (every measure; metrics.jsonl, '
      'TensorBoard events and checkpoints beside it)']


def test_summary_of_a_finished_toy_run(tmp_path):
  text = run_files.summary(str(tmp_path), {'rate': 0.5, 'distortion': 1.0,
                                           'elbo': -1.5},
                           already_finished=True)
  assert text.splitlines()[0] == (
      'already finished: R 0.50, D 1.00, ELBO -1.50 (nats per example)')
  assert len(text.splitlines()) == 2
