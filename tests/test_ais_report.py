"""The report with ais.json (rdvae/analysis/report.py, sweep_results.py,
ais_figures.py): the fake sweep of tests/test_report.py with AIS records
written by the real writer on two frontier points, one dominated point and
one damaged file."""

import os

import numpy as np

from rdvae.analysis import report
from rdvae.analysis import sweep_results
from rdvae.files import ais_files
import test_ais_files
import test_report

# name -> AIS log p(x); a_beta0.1 and b_beta1 are on the Pareto frontier.
AIS = {'a_beta0.1': -94.0, 'b_beta1': -93.0, 'd_dominated': -99.0}


def _sweep(tmp_path, with_ais=True):
  workdir = str(tmp_path / 'sweep')
  test_report.make_fake_sweep(workdir)
  if with_ais:
    for name, log_px in AIS.items():
      ais_files.write_ais(os.path.join(workdir, name),
                          test_ais_files.record(log_px=log_px))
    with open(os.path.join(workdir, 'c_beta10', ais_files.AIS_FILE),
              'w') as f:
      f.write('{"log_px": ')
  return workdir


def test_h_hat_is_the_tightest_bound_ais_or_iwae(tmp_path):
  """H-hat is the lowest -log p(x) estimate: an AIS log p(x) above every
  IWAE (a tighter bound on harder images) leaves the IWAE's, one below it
  takes over."""
  points = sweep_results.read_sweep(_sweep(tmp_path / 'iwae', False))
  h_hat, source = sweep_results.estimate_entropy(points)
  assert h_hat == 90.5 and '-IWAE' in source  # f_pixel's IWAE
  workdir = _sweep(tmp_path / 'ais')
  points = sweep_results.read_sweep(workdir)
  h_hat, source = sweep_results.estimate_entropy(points)
  assert h_hat == 90.5 and '-IWAE' in source  # AIS's best is -93
  ais_files.write_ais(os.path.join(workdir, 'b_beta1'),
                      test_ais_files.record(log_px=-88.0))
  h_hat, source = sweep_results.estimate_entropy(
      sweep_results.read_sweep(workdir))
  assert h_hat == 88.0
  assert '-AIS log p(x)' in source and 'b_beta1' in source


def test_report_draws_curves_and_tabulates_ais(tmp_path):
  workdir = _sweep(tmp_path)
  out = report.write_report(workdir)
  assert 'rd_curves_ais.png' in out['files']
  png = os.path.join(out['directory'], 'rd_curves_ais.png')
  assert os.path.getsize(png) > 10_000
  drawn = [c.point.name for c in report.decoder_curves(out['points'])]
  assert drawn == ['a_beta0.1', 'b_beta1']  # the frontier's, by default
  curve = report.decoder_curves(out['points'], ['d_dominated'])[0]
  np.testing.assert_array_equal(curve.distortion, [200.0, 90.0, 75.0])
  with open(os.path.join(out['directory'], 'report.md')) as f:
    text = f.read()
  assert 'AIS log p(x) | BDMC gap | I_gen lower | I_gen upper' in text
  row = [line for line in text.splitlines()
         if line.startswith('| b_beta1 |')][-1]  # the points table's
  assert '| -93 | 0.5 | 29.5 | 30 |' in row
  assert 'H-hat = 90.5 nats: the lowest -IWAE' in text
  assert '## Damaged ais.json' in text and 'c_beta10' in text
  by_name = {p.name: p for p in out['points']}
  assert by_name['c_beta10'].status == 'done'  # results.json is what counts
  rows = test_report._read_csv(os.path.join(out['directory'], 'points.csv'))
  assert {r['name']: r['ais_log_px'] for r in rows}['a_beta0.1'] == '-94.0'
