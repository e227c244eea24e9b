"""Tests of rdvae/files/metric_files.py: metrics.jsonl, TensorBoard events,
image grids."""

import os

import numpy as np
import pytest
from PIL import Image

from rdvae.files import atomic_files
from rdvae.files import metric_files


def test_metric_writer_appends_and_drops_records_after_resume_step(tmp_path):
  workdir = str(tmp_path)
  with metric_files.MetricWriter(workdir, tensorboard=False) as w:
    for step in (10, 20, 30):
      w.write_scalars(step, {'train/loss': np.float32(step / 10)})
  assert [r['train/loss'] for r in metric_files.read_metrics(workdir)
          ] == [1, 2, 3]
  with metric_files.MetricWriter(workdir, start_step=20,
                                 tensorboard=False) as w:
    w.write_scalars(30, {'train/loss': 7.5})
  records = metric_files.read_metrics(workdir)
  assert [(r['step'], r['train/loss']) for r in records] == [
      (10, 1.0), (20, 2.0), (30, 7.5)]


def test_metric_writer_keep_predicate(tmp_path):
  workdir = str(tmp_path)
  with metric_files.MetricWriter(workdir, tensorboard=False) as w:
    w.write_scalars(4, {'train/loss': 1.0})
    w.write_scalars(4, {'test/elbo': -2.0})
  keep = lambda r: 'test/elbo' not in r
  metric_files.MetricWriter(workdir, 4, tensorboard=False, keep=keep).close()
  assert metric_files.read_metrics(workdir) == [{'step': 4, 'train/loss': 1.0}]


def test_nan_is_written_as_a_string(tmp_path):
  with metric_files.MetricWriter(str(tmp_path), tensorboard=False) as w:
    w.write_scalars(1, {'train/loss': float('nan')})
  assert metric_files.read_metrics(str(tmp_path))[0]['train/loss'] == 'nan'


def test_tensorboard_event_file_is_written(tmp_path):
  with metric_files.MetricWriter(str(tmp_path)) as w:
    w.write_scalars(1, {'train/loss': 1.0})
    w.write_images(1, {'grid': np.zeros((5, 7))})
  files = os.listdir(tmp_path / 'tensorboard')
  assert len(files) == 1 and files[0].startswith('events.out.tfevents')
  assert os.path.getsize(tmp_path / 'tensorboard' / files[0]) > 100


def test_image_grid_places_every_tile():
  a = np.zeros((2, 3, 3, 1))
  b = np.ones((2, 3, 3, 1))
  c = np.full((2, 3, 3), 0.25)
  grid = metric_files.image_grid([[a, b], [c]], pad=1, gap=2)
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
  path = metric_files.write_sample_grid(str(tmp_path), None, 12, samples)
  assert path.endswith(os.path.join('images', 'grid_00000012.png'))
  pixels = np.asarray(Image.open(path))
  header = metric_files.GRID_HEADER  # the column labels' strip
  assert pixels.shape == (header + 3 * 5 + 1, 3 * 5 + 1 + 4 + 2 * 5 + 1)
  assert pixels[:header].min() < 128  # dark text on white
  pixels = pixels[header:]
  assert pixels[1, 1] == 255 and pixels[1, 6] == 0
  assert pixels[1, 11] == round(0.6 * 255)
  # read_grid gives the tiles alone, in [0, 1].
  tiles = metric_files.read_grid(path)
  np.testing.assert_array_equal(tiles, pixels.astype(np.float32) / 255.0)


def test_a_record_that_is_not_an_object_is_damage_naming_the_line(tmp_path):
  with open(tmp_path / 'metrics.jsonl', 'w') as f:
    f.write('{"step": 2}\n[3]\n{"step": 4}\n')
  with pytest.raises(atomic_files.DamagedFileError,
                     match=r'metrics.jsonl: line 2: not a JSON object'):
    metric_files.read_metrics(str(tmp_path))


def test_latest_grid_is_the_highest_step(tmp_path):
  assert metric_files.latest_grid(str(tmp_path)) is None
  samples = {k: np.zeros((1, 4, 4, 1)) for k in (
      'data', 'reconstruction', 'reconstruction_mean', 'generation',
      'generation_mean')}
  paths = [metric_files.write_sample_grid(str(tmp_path), None, step, samples)
           for step in (200, 10, 1000)]
  assert metric_files.latest_grid(str(tmp_path)) == paths[2]
