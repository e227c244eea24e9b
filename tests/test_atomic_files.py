"""Tests of rdvae/files/atomic_files.py: atomic whole-file writes and the one
JSON reader, with its DamagedFileError for each way a file can be bad."""

import math
import os

import numpy as np
import pytest

from rdvae.files import atomic_files


def test_json_round_trip_with_numpy_values_and_nan(tmp_path):
  path = str(tmp_path / 'a.json')
  atomic_files.write_json_atomic(path, {
      'x': np.float32(1.5), 'n': np.int64(3), 'v': np.arange(2),
      'nested': {'inf': float('inf')}, 'flag': True})
  assert atomic_files.read_json(path) == {
      'x': 1.5, 'n': 3, 'v': [0, 1], 'nested': {'inf': 'inf'}, 'flag': True}


def test_missing_file_is_none(tmp_path):
  assert atomic_files.read_json(str(tmp_path / 'absent.json')) is None


@pytest.mark.parametrize('content, reason', [
    (b'{"rate": 1.', r'not valid JSON \(Expecting'),
    (b'', r'not valid JSON \(Expecting value'),
    (b'\xff\xfe\x00garbage', 'not valid JSON'),
    (b'[1, 2]', 'holds a JSON list, not an object'),
    (b'"text"', 'holds a JSON string, not an object'),
    (b'3.5', 'holds a JSON number, not an object'),
    (b'null', 'holds a JSON null, not an object'),
], ids=['truncated', 'empty', 'binary', 'list', 'string', 'number', 'null'])
def test_damaged_file_raises_naming_path_and_reason(tmp_path, content,
                                                    reason):
  path = str(tmp_path / 'a.json')
  with open(path, 'wb') as f:
    f.write(content)
  with pytest.raises(atomic_files.DamagedFileError, match=reason) as info:
    atomic_files.read_json(path)
  assert info.value.path == path
  assert str(info.value) == f'{path}: {info.value.reason}'
  assert isinstance(info.value, ValueError)


def test_a_directory_in_the_file_s_place_cannot_be_read(tmp_path):
  path = str(tmp_path / 'a.json')
  os.makedirs(path)
  with pytest.raises(atomic_files.DamagedFileError,
                     match=r'cannot be read \(IsADirectoryError'):
    atomic_files.read_json(path)


def test_write_text_atomic_replaces_the_whole_file(tmp_path):
  path = str(tmp_path / 'summary.csv')
  atomic_files.write_text_atomic(path, 'a long first version\n')
  atomic_files.write_text_atomic(path, 'b\n')
  with open(path) as f:
    assert f.read() == 'b\n'
  assert os.listdir(tmp_path) == ['summary.csv']


@pytest.mark.parametrize('value, number', [
    (1, 1.0), (2.5, 2.5), (True, None), ('1.5', None), ('nan', None),
    (math.nan, None), (math.inf, None), (None, None), ([1], None)])
def test_finite_number(value, number):
  assert atomic_files.finite_number(value) == number


def test_require_numbers_lists_every_problem(tmp_path):
  atomic_files.require_numbers('r.json', {'a': 1, 'b': 0.5}, ('a', 'b'))
  with pytest.raises(atomic_files.DamagedFileError,
                     match=r"^r.json: no 'a'; 'b' is 'x', not a finite "
                     r'number; see$'):
    atomic_files.require_numbers('r.json', {'b': 'x'}, ('a', 'b'), '; see')


@pytest.mark.parametrize('umask, mode', [(0o022, 0o644), (0o077, 0o600),
                                         (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
  path = str(tmp_path / 'results.json')
  old = os.umask(umask)
  try:
    atomic_files.write_json_atomic(path, {'rate': 1.0})
  finally:
    os.umask(old)
  assert os.stat(path).st_mode & 0o777 == mode
