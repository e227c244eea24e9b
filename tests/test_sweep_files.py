"""Tests of rdvae/files/sweep_files.py: sweep_point.json, sweep.json and
summary.csv round trips, and a point's status from its files."""

import os
import traceback

import ml_collections
import pytest

from rdvae.files import atomic_files
from rdvae.files import run_files
from rdvae.files import sweep_files

RESULTS = {'rate': 5.25, 'distortion': 80.5, 'elbo': -85.75, 'iwae': -85.0}


def test_sweep_point_round_trip(tmp_path):
  directory = str(tmp_path)
  assert sweep_files.read_sweep_point(directory) is None
  sweep_files.write_sweep_point(directory, 'beta=0.5,family=-+v',
                                {'objective.beta': 0.5, 'model.family': '-+v'})
  assert sweep_files.read_sweep_point(directory) == {
      'name': 'beta=0.5,family=-+v',
      'overrides': {'objective.beta': 0.5, 'model.family': '-+v'}}


@pytest.mark.parametrize('text, reason', [
    ('{"name": "a", "overr', 'not valid JSON'),
    ('["a", {}]', 'holds a JSON list'),
    ('{"name": "a"}', "not {'name': string, 'overrides': object}"),
], ids=['truncated', 'list', 'no_overrides'])
def test_damaged_sweep_point(tmp_path, text, reason):
  atomic_files.write_text_atomic(str(tmp_path / 'sweep_point.json'), text)
  with pytest.raises(atomic_files.DamagedFileError, match=reason):
    sweep_files.read_sweep_point(str(tmp_path))


def test_sweep_record_round_trip(tmp_path):
  workdir = str(tmp_path)
  assert sweep_files.read_sweep_record(workdir) is None
  sweep_files.write_sweep_record(
      workdir, 'configs/sweeps/toy_rd.py', {'train.num_steps': 40},
      [('seed=0', {'seed': 0}), ('seed=1', {'seed': 1})])
  assert sweep_files.read_sweep_record(workdir) == {
      'sweep': 'configs/sweeps/toy_rd.py',
      'overrides': {'train.num_steps': 40},
      'points': [{'name': 'seed=0', 'overrides': {'seed': 0}},
                 {'name': 'seed=1', 'overrides': {'seed': 1}}]}
  atomic_files.write_text_atomic(str(tmp_path / 'sweep.json'), '{}')
  with pytest.raises(atomic_files.DamagedFileError, match="'points': list"):
    sweep_files.read_sweep_record(workdir)


def test_summary_round_trip(tmp_path):
  workdir = str(tmp_path)
  assert sweep_files.read_summary(workdir) is None
  columns = sweep_files.summary_columns(['seed', 'data.class_probs'])
  assert columns == ['name', 'seed', 'data.class_probs', 'status', 'rate',
                     'distortion', 'elbo', 'iwae', 'error']
  rows = [{'name': 'seed=0', 'seed': 0, 'status': 'done', 'rate': 1.5,
           'distortion': float('inf'), 'elbo': None,
           'data.class_probs': (0.6, 0.4), 'error': ''},
          {'name': 'seed=1', 'seed': 1, 'status': 'failed',
           'error': 'RuntimeError: a, "quoted"; message'}]
  with sweep_files.summary_lock(workdir):
    sweep_files.write_summary(workdir, columns, rows)
  assert sweep_files.read_summary(workdir) == [
      {'name': 'seed=0', 'seed': '0', 'data.class_probs': '[0.6, 0.4]',
       'status': 'done', 'rate': '1.5', 'distortion': 'inf', 'elbo': '',
       'iwae': '', 'error': ''},
      {'name': 'seed=1', 'seed': '1', 'data.class_probs': '',
       'status': 'failed', 'rate': '', 'distortion': '', 'elbo': '',
       'iwae': '', 'error': 'RuntimeError: a, "quoted"; message'}]
  assert sorted(os.listdir(workdir)) == ['summary.csv', 'summary.lock']


# ------------------------------------------------------------- point status


def _point(directory, results=None, failure=None):
  config = ml_collections.ConfigDict({'objective': {'beta': 0.5}})
  run_files.prepare_workdir(directory, config)
  sweep_files.write_sweep_point(directory, 'beta=0.5',
                                {'objective.beta': 0.5})
  if results is not None:
    run_files.write_results(directory, results)
  if failure is not None:
    try:
      raise failure
    except type(failure) as e:
      run_files.write_failure(directory, e, traceback.format_exc())


def test_status_from_the_files(tmp_path):
  pending, done, failed = (str(tmp_path / n) for n in ('p', 'd', 'f'))
  _point(pending)
  _point(done, results=RESULTS)
  _point(failed, results=RESULTS, failure=RuntimeError('fails\non purpose'))
  files = sweep_files.read_point_files(pending)
  assert (files.status, files.error, files.results) == ('pending', '', {})
  assert files.config == {'objective': {'beta': 0.5}}
  assert files.sweep_point == {'name': 'beta=0.5',
                               'overrides': {'objective.beta': 0.5}}
  files = sweep_files.read_point_files(done)
  assert (files.status, files.error, files.results) == ('done', '', RESULTS)
  # failure.json wins over a results.json written before the run raised.
  files = sweep_files.read_point_files(failed)
  assert (files.status, files.error) == ('failed',
                                         'RuntimeError: fails on purpose')
  assert files.failure['message'] == 'fails\non purpose'
  assert files.results == {}
  row = sweep_files.summary_row('beta=0.5', {'objective.beta': 0.5},
                                files.status, files)
  assert row == {'name': 'beta=0.5', 'objective.beta': 0.5,
                 'status': 'failed', 'rate': None, 'distortion': None,
                 'elbo': None, 'iwae': None,
                 'error': 'RuntimeError: fails on purpose'}
  assert sweep_files.read_point_files(str(tmp_path / 'absent')).status == (
      'pending')


@pytest.mark.parametrize('name', ['config.json', 'sweep_point.json',
                                  'failure.json', 'results.json'])
def test_any_damaged_file_makes_the_point_damaged(tmp_path, name):
  directory = str(tmp_path)
  _point(directory, results=RESULTS)
  path = os.path.join(directory, name)
  atomic_files.write_text_atomic(path, '{"torn')
  files = sweep_files.read_point_files(directory)
  assert files.status == 'damaged'
  assert files.error.startswith(f'{path}: not valid JSON (')
  assert files.results == {} and files.failure == {}
