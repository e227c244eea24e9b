"""Tests of rdvae/files/writers.py: workdir files, metrics, image grids."""

import json
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from rdvae.files import writers


def _config(beta=1.0):
  return ml_collections.ConfigDict({'objective': {'beta': beta},
                                    'train': {'seed': 0}})


def test_prepare_workdir_creates_then_recognises_the_same_config(tmp_path):
  workdir = str(tmp_path / 'run')
  assert writers.prepare_workdir(workdir, _config()) is False
  assert writers.read_json(os.path.join(workdir, 'config.json')) == {
      'objective': {'beta': 1.0}, 'train': {'seed': 0}}
  assert writers.prepare_workdir(workdir, _config()) is True


def test_prepare_workdir_refuses_a_different_config(tmp_path):
  workdir = str(tmp_path)
  writers.prepare_workdir(workdir, _config())
  with pytest.raises(writers.WorkdirConflictError, match='objective.beta'):
    writers.prepare_workdir(workdir, _config(beta=2.0))
  assert writers.read_json(os.path.join(workdir, 'config.json'))[
      'objective']['beta'] == 1.0


def test_metric_writer_appends_and_drops_records_after_resume_step(tmp_path):
  workdir = str(tmp_path)
  with writers.MetricWriter(workdir, tensorboard=False) as w:
    for step in (10, 20, 30):
      w.write_scalars(step, {'train/loss': np.float32(step / 10)})
  assert [r['train/loss'] for r in writers.read_metrics(workdir)] == [1, 2, 3]
  with writers.MetricWriter(workdir, start_step=20, tensorboard=False) as w:
    w.write_scalars(30, {'train/loss': 7.5})
  records = writers.read_metrics(workdir)
  assert [(r['step'], r['train/loss']) for r in records] == [
      (10, 1.0), (20, 2.0), (30, 7.5)]


def test_metric_writer_keep_predicate(tmp_path):
  workdir = str(tmp_path)
  with writers.MetricWriter(workdir, tensorboard=False) as w:
    w.write_scalars(4, {'train/loss': 1.0})
    w.write_scalars(4, {'test/elbo': -2.0})
  keep = lambda r: 'test/elbo' not in r
  writers.MetricWriter(workdir, 4, tensorboard=False, keep=keep).close()
  assert writers.read_metrics(workdir) == [{'step': 4, 'train/loss': 1.0}]


def test_nan_is_written_as_a_string(tmp_path):
  with writers.MetricWriter(str(tmp_path), tensorboard=False) as w:
    w.write_scalars(1, {'train/loss': float('nan')})
  assert writers.read_metrics(str(tmp_path))[0]['train/loss'] == 'nan'


def test_tensorboard_event_file_is_written(tmp_path):
  with writers.MetricWriter(str(tmp_path)) as w:
    w.write_scalars(1, {'train/loss': 1.0})
    w.write_images(1, {'grid': np.zeros((5, 7))})
  files = os.listdir(tmp_path / 'tensorboard')
  assert len(files) == 1 and files[0].startswith('events.out.tfevents')
  assert os.path.getsize(tmp_path / 'tensorboard' / files[0]) > 100


def test_write_results_round_trip(tmp_path):
  writers.write_results(str(tmp_path), {'rate': np.float32(1.5), 'step': 3})
  with open(tmp_path / 'results.json') as f:
    assert json.load(f) == {'rate': 1.5, 'step': 3}
  assert not os.path.exists(tmp_path / 'results.json.tmp')


def test_image_grid_places_every_tile():
  a = np.zeros((2, 3, 3, 1))
  b = np.ones((2, 3, 3, 1))
  c = np.full((2, 3, 3), 0.25)
  grid = writers.image_grid([[a, b], [c]], pad=1, gap=2)
  # Block 1: 2 rows x 2 columns of 3x3 tiles with 1-pixel padding: 9 x 9.
  # Gap 2, block 2: 9 x 5.
  assert grid.shape == (9, 9 + 2 + 5)
  np.testing.assert_array_equal(grid[1:4, 1:4], 0.0)   # a[0]
  np.testing.assert_array_equal(grid[5:8, 5:8], 1.0)   # b[1]
  np.testing.assert_array_equal(grid[5:8, 12:15], 0.25)  # c[1]
  assert grid[0, 0] == 0.5 and grid[4, 4] == 0.5       # padding


def test_write_sample_grid_png(tmp_path):
  samples = {k: np.full((3, 4, 4, 1), v) for k, v in (
      ('data', 1.0), ('reconstruction', 0.0), ('reconstruction_mean', 0.6),
      ('generation', 1.0), ('generation_mean', 0.2))}
  path = writers.write_sample_grid(str(tmp_path), None, 12, samples)
  assert path.endswith(os.path.join('images', 'grid_00000012.png'))
  pixels = np.asarray(Image.open(path))
  assert pixels.shape == (3 * 5 + 1, 3 * 5 + 1 + 4 + 2 * 5 + 1)
  assert pixels[1, 1] == 255 and pixels[1, 6] == 0
  assert pixels[1, 11] == round(0.6 * 255)


def test_flatten_gives_dotted_keys():
  assert writers.flatten({'a': {'b': 1, 'c': {'d': [2, 3]}}, 'e': None}) == {
      'a.b': 1, 'a.c.d': [2, 3], 'e': None}
  assert writers.flatten({}) == {}
