"""experiments/ais.py end to end on a copy of the smoke run
(tests/reference_run.py) as the one point of a sweep directory: 2 test
images, 2 chains, 5 steps, 1 BDMC image. It writes ais.json and
ais_curve.csv through the real writer, prints its progress, leaves
results.json as it was, and a second call on the run skips it.

(XLA:CPU's cheap compile options, as tests/test_ais.py uses, would make the
decoder's convolutions minutes slower here: the suite's compilation cache
keeps later runs quick instead.)
"""

import os
import shutil
import subprocess
import sys

import pytest

import reference_run
from rdvae.files import ais_files
from rdvae.files import run_files

FLAGS = ['--examples=2', '--chains=2', '--steps=5', '--bdmc_examples=1',
         '--chunk=1', '--progress_every=2', '--jax_platforms=cpu']


def _ais(workdir):
  return subprocess.run(
      [sys.executable, '-m', 'experiments.ais', f'--workdir={workdir}',
       *FLAGS], cwd=reference_run.REPO, capture_output=True,
      text=True, timeout=600, check=False)


@pytest.mark.xdist_group(reference_run.GROUP)
def test_command_writes_ais_json_and_skips_it_next_time(whole_smoke_run,
                                                        tmp_path):
  sweep = tmp_path / 'sweep'
  run = str(sweep / 'point')
  shutil.copytree(whole_smoke_run, run)
  with open(os.path.join(run, run_files.RESULTS_FILE)) as f:
    results = f.read()
  out = _ais(str(sweep))
  assert out.returncode == 0, out.stderr
  assert 'point 1 of 1: point' in out.stdout
  assert 'AIS chunk 2 of 2' in out.stdout and 'ETA' in out.stdout
  assert 's per image' in out.stdout
  record = ais_files.read_ais(run)
  settings = record['settings']
  assert (settings['examples'], settings['chains'], settings['steps'],
          settings['bdmc_examples'], settings['params']) == (2, 2, 5, 1,
                                                             'last')
  assert len(settings['indices']) == 2 and settings['indices'] != [0, 1]
  assert [c['beta'] for c in record['curve']][::5] == [0.0, 1.0]
  end = record['curve'][-1]
  # At beta = 1, R + D = -log p(x) by construction.
  assert end['rate'] + end['distortion'] == pytest.approx(-record['log_px'],
                                                          abs=1e-3)
  assert record['bdmc_gap'] == pytest.approx(
      record['bdmc_upper'] - record['bdmc_lower'], abs=1e-3)
  assert record['seconds_per_example'] > 0
  with open(os.path.join(run, ais_files.CURVE_FILE)) as f:
    assert len(f.read().splitlines()) == 1 + 6
  with open(os.path.join(run, run_files.RESULTS_FILE)) as f:
    assert f.read() == results
  mtime = os.path.getmtime(os.path.join(run, ais_files.AIS_FILE))
  again = _ais(run)
  assert again.returncode == 0, again.stderr
  assert 'has these settings already; skipped' in again.stdout
  assert os.path.getmtime(os.path.join(run, ais_files.AIS_FILE)) == mtime
