"""experiments/ais.py end to end on a copy of the smoke run
(tests/reference_run.py) as the one point of a sweep directory: 2 test
images, 2 chains, 5 steps to beta_max 3, 1 BDMC image. It writes ais.json
and ais_curve.csv through the real writer, prints its progress, leaves
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


def _ais(workdir, *extra):
  return subprocess.run(
      [sys.executable, '-m', 'experiments.ais', f'--workdir={workdir}',
       *FLAGS, *extra], cwd=reference_run.REPO, capture_output=True,
      text=True, timeout=600, check=False)


@pytest.mark.xdist_group(reference_run.GROUP)
def test_command_writes_ais_json_and_skips_it_next_time(whole_smoke_run,
                                                        tmp_path):
  sweep = tmp_path / 'sweep'
  run = str(sweep / 'point')
  shutil.copytree(whole_smoke_run, run)
  with open(os.path.join(run, run_files.RESULTS_FILE)) as f:
    results = f.read()
  # Past b = 1 the curve goes on; log p(x) is still read at b = 1.
  out = _ais(str(sweep), '--beta_max=3')
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
  assert settings['beta_max'] == 3.0
  betas = [c['beta'] for c in record['curve']]
  assert betas[0] == 0.0 and betas[-1] == 3.0 and betas.count(1.0) == 1
  at_one = record['curve'][betas.index(1.0)]
  # At b = 1 inside the schedule, -(R + D) is the convex minorant of the
  # estimates of log Z there: at most log p(x)'s estimate, and close to it
  # (measured 0.008 nats below).
  minorant = -(at_one['rate'] + at_one['distortion'])
  assert record['log_px'] - 0.1 < minorant <= record['log_px'] + 1e-4
  assert record['bdmc_gap'] == pytest.approx(
      record['bdmc_upper'] - record['bdmc_lower'], abs=1e-3)
  assert record['seconds_per_example'] > 0
  # The run's own R and D on the same images: the loaded model's, with the
  # keys ais_workdir documents.
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import rdvae  # pylint: disable=g-import-not-at-top
  from rdvae.runs import ais_workdir  # pylint: disable=g-import-not-at-top
  model = rdvae.load(run)
  images = model.dataset.test[np.asarray(settings['indices'])]
  key = jax.random.fold_in(jax.random.key(settings['seed']), 2)
  draws = [model.rate_distortion(images, jax.random.fold_in(key, d))
           for d in range(ais_workdir.OWN_DRAWS)]
  assert record['own_rate'] == pytest.approx(
      np.mean([r for r, _ in draws]), rel=1e-5)
  assert record['own_distortion'] == pytest.approx(
      np.mean([d for _, d in draws]), rel=1e-5)
  assert record['own_rate'] > 0 and record['own_distortion'] > 0
  with open(os.path.join(run, ais_files.CURVE_FILE)) as f:
    assert len(f.read().splitlines()) == 1 + 6
  with open(os.path.join(run, run_files.RESULTS_FILE)) as f:
    assert f.read() == results
  mtime = os.path.getmtime(os.path.join(run, ais_files.AIS_FILE))
  again = _ais(run, '--beta_max=3')
  assert again.returncode == 0, again.stderr
  assert 'has these settings already; skipped' in again.stdout
  assert os.path.getmtime(os.path.join(run, ais_files.AIS_FILE)) == mtime


def test_beta_max_below_one_is_refused_before_any_run_is_read(tmp_path):
  """log p(x) is read at the knot b = 1: a schedule ending below it is a
  usage error (exit 2, one line, no traceback), named before anything is
  read or written."""
  run = tmp_path / 'no_such_run'
  out = _ais(str(run), '--beta_max=0.5')
  assert out.returncode == 2, out.stderr
  assert ('ValueError: beta_max=0.5 must be >= 1: log p(x) is log Z at '
          'b = 1') in out.stderr
  assert 'Traceback' not in out.stderr and not run.exists()
