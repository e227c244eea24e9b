"""Tests of rdvae/files/ais_files.py: ais.json and ais_curve.csv written by
the writer and read back by the reader, and every kind of damage refused."""

import json
import os

import pytest

from rdvae.files import ais_files
from rdvae.files import atomic_files


def record(**changes):
  out = {
      'settings': {'examples': 2, 'chains': 2, 'steps': 2, 'beta_max': 1.0,
                   'seed': 0, 'params': 'last', 'indices': [3, 7]},
      'log_px': -95.0, 'log_px_stderr': 0.1, 'seconds_per_example': 0.5,
      'bdmc_lower': -90.0, 'bdmc_upper': -89.5, 'bdmc_gap': 0.5,
      'bdmc_log_d': -60.0,
      'curve': [{'beta': 0.0, 'rate': 0.0, 'distortion': 200.0},
                {'beta': 0.5, 'rate': 10.0, 'distortion': 90.0},
                {'beta': 1.0, 'rate': 20.0, 'distortion': 75.0}]}
  out.update(changes)
  return out


def test_round_trip_and_csv(tmp_path):
  workdir = str(tmp_path)
  assert ais_files.read_ais(workdir) is None
  ais_files.write_ais(workdir, record(log_px_stderr=float('nan')))
  back = ais_files.read_ais(workdir)
  assert back == record(log_px_stderr=None)
  with open(tmp_path / ais_files.CURVE_FILE) as f:
    lines = f.read().splitlines()
  assert lines == ['beta,rate,distortion', '0.0,0.0,200.0', '0.5,10.0,90.0',
                   '1.0,20.0,75.0']


def test_curve_with_sampled_distortion_round_trip_and_csv(tmp_path):
  curve = [dict(point, sampled_distortion=d, sampled_distortion_stderr=se)
           for point, d, se in zip(record()['curve'], (201.0, 89.0, 75.5),
                                   (2.0, 0.5, 0.25))]
  ais_files.write_ais(str(tmp_path), record(curve=curve))
  assert ais_files.read_ais(str(tmp_path))['curve'] == curve
  with open(tmp_path / ais_files.CURVE_FILE) as f:
    lines = f.read().splitlines()
  assert lines == [
      'beta,rate,distortion,sampled_distortion,sampled_distortion_stderr',
      '0.0,0.0,200.0,201.0,2.0', '0.5,10.0,90.0,89.0,0.5',
      '1.0,20.0,75.0,75.5,0.25']
  # A column only where every point has it.
  curve[1].pop('sampled_distortion_stderr')
  ais_files.write_ais(str(tmp_path), record(curve=curve))
  with open(tmp_path / ais_files.CURVE_FILE) as f:
    assert f.readline() == 'beta,rate,distortion,sampled_distortion\n'


def test_generative_information_sandwich():
  # I_gen in [log_d - upper, log_d - lower] = [29.5, 30].
  assert ais_files.generative_information(record()) == (29.5, 30.0)
  assert ais_files.generative_information(record(bdmc_log_d=None)) == (
      None, None)


@pytest.mark.parametrize('text, reason', [
    ('{"log_px": -95.0, "settings": {}, "cur', 'not valid JSON'),
    ('[1, 2]', 'holds a JSON'),
    (json.dumps(record(log_px='nan')), "'log_px' is 'nan'"),
    (json.dumps(record(seconds_per_example=None)), 'seconds_per_example'),
    (json.dumps(record(settings=None)), "'settings' is not an object"),
    (json.dumps(record(curve=[])), "'curve' is not a non-empty list"),
    (json.dumps(record(curve=[{'beta': 0.0, 'rate': 'x', 'distortion': 1}])),
     "'curve' has an entry"),
    (json.dumps(record(bdmc_gap='inf')), "'bdmc_gap' is 'inf'"),
    (json.dumps(record(curve=[{'beta': 0.0, 'rate': 0.0, 'distortion': 1.0,
                               'sampled_distortion_stderr': None}])),
     "'curve' has a .*'sampled_distortion_stderr'.* that is not a finite "
     'number'),
], ids=['torn', 'array', 'nan_log_px', 'no_seconds', 'no_settings',
        'empty_curve', 'bad_curve', 'bad_gap', 'bad_curve_stderr'])
def test_damaged_file_is_refused(tmp_path, text, reason):
  (tmp_path / ais_files.AIS_FILE).write_text(text)
  with pytest.raises(atomic_files.DamagedFileError, match=reason):
    ais_files.read_ais(str(tmp_path))


def test_writer_refuses_what_the_reader_would(tmp_path):
  with pytest.raises(ValueError, match='log_px'):
    ais_files.write_ais(str(tmp_path), record(log_px=float('inf')))
  assert not os.listdir(tmp_path)
