"""A point's results.json missing, torn or malformed (tests/damaged_results.py)
reads the same everywhere: the run reader (`run_files.read_results`), the
rerun of a finished run (`train_and_eval`, `python -m experiments.main`),
the sweep runner's status, summary.csv and --dry_run, and the report. No
training runs: the point is an image-model point (configs/mnist.py:smoke),
whose files are written by the real writers and then damaged."""

import os
import re
import subprocess
import sys

import pytest

import damaged_results
from rdvae.analysis import report
from rdvae.analysis import sweep_results
from rdvae.files import atomic_files
from rdvae.files import run_files
from rdvae.files import sweep_files
from rdvae.runtime import preemption
from rdvae.sweeps import runner
from rdvae.sweeps import sweep_file
from rdvae.training import loop as train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP = '''
from configs import mnist


def get_config():
  config = mnist.get_config('smoke')
  config.objective.kind = 'beta_vae'
  return config


def get_sweep():
  return [{'objective.beta': 0.5}]
'''
NAME = 'beta=0.5'


def _sweep(tmp_path, kind):
  """A sweep file of one point, and its directory with the point's files
  written by the real writers and its results.json damaged as `kind` says.
  Returns (sweep file, sweep directory, the point, its directory)."""
  path = str(tmp_path / 'one_point.py')
  with open(path, 'w') as f:
    f.write(SWEEP)
  point, = sweep_file.expand(path)
  workdir = str(tmp_path / 'sweep')
  directory = os.path.join(workdir, point.name)
  run_files.prepare_workdir(directory, point.config)
  sweep_files.write_sweep_point(directory, point.name, point.overrides)
  damaged_results.DAMAGES[kind][0](directory)
  return path, workdir, point, directory


def _snapshot(directory):
  files = {}
  for name in sorted(os.listdir(directory)):
    with open(os.path.join(directory, name), 'rb') as f:
      files[name] = f.read()
  return files


@pytest.mark.parametrize('kind', damaged_results.DAMAGES)
def test_every_reader_agrees(tmp_path, kind):
  sweep, workdir, point, directory = _sweep(tmp_path, kind)
  if damaged_results.DAMAGES[kind][1] is None:
    status, error = 'pending', ''
    assert run_files.read_results(directory) is None
  else:
    with pytest.raises(atomic_files.DamagedFileError) as info:
      run_files.read_results(directory)
    status, error = 'damaged', str(info.value)
    assert error.startswith(os.path.join(directory, 'results.json') + ': ')
    # The rerun of the run refuses it with the same error, before any work.
    before = _snapshot(directory)
    with pytest.raises(atomic_files.DamagedFileError) as info:
      train.train_and_eval(point.config, directory)
    assert str(info.value) == error
    # The sweep runner leaves it alone and reports it.
    rows = runner.run(sweep, workdir, population='off')
    assert [(r['status'], r['error']) for r in rows] == [(status, error)]
    assert _snapshot(directory) == before
  assert runner.status(directory) == status
  row, = runner.summarise(workdir, [point])
  assert (row['status'], row['error'], row['rate']) == (status, error, None)
  runner.write_summary(workdir, [point])
  summary, = sweep_files.read_summary(workdir)
  assert (summary['status'], summary['error'], summary['rate']) == (
      status, error, '')
  # The report: the same status and error, nothing counted as done.
  out = report.write_report(workdir)
  got, = out['points']
  assert (got.status, got.error, got.results) == (status, error, {})
  assert sweep_results.finished(out['points']) == []
  with open(os.path.join(out['directory'], 'report.md')) as f:
    text = f.read()
  assert f'| {NAME} | {status} |' in text
  if status == 'damaged':
    assert '1 points: 0 done, 0 pending, 0 failed, 1 damaged.' in text
    assert f'## Damaged points\n\n- {NAME}: {error}\n' in text
  else:
    assert '1 points: 0 done, 1 pending, 0 failed.' in text
    assert '## Damaged points' not in text


def _python(*args):
  return subprocess.run(
      [sys.executable, '-m', *args, '--jax_platforms=cpu'], cwd=REPO,
      env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
      timeout=300, check=False)


def test_command_lines_name_the_file_and_what_is_wrong(tmp_path):
  """experiments.main on a torn results.json, experiments.sweep --dry_run on
  one holding a JSON list: one line each, naming the file and the reason."""
  sweep, workdir, _, directory = _sweep(tmp_path, 'truncated')
  path = os.path.join(directory, 'results.json')
  out = _python('experiments.main',
                f'--config={os.path.join(REPO, "configs/mnist.py")}:smoke',
                f'--workdir={directory}', '--config.objective.kind=beta_vae',
                '--config.objective.beta=0.5')
  assert out.returncode == preemption.EXIT_USAGE, out.stderr
  assert 'Traceback' not in out.stderr, out.stderr
  line, = out.stderr.strip().splitlines()
  prefix = f'DamagedFileError: {path}: '
  assert line.startswith(prefix), line
  assert re.search(damaged_results.DAMAGES['truncated'][1],
                   line[len(prefix):]), line
  damaged_results.DAMAGES['list'][0](directory)
  listing = _python('experiments.sweep', f'--sweep={sweep}',
                    f'--workdir={workdir}', '--dry_run')
  assert listing.returncode == 0, listing.stderr
  assert 'Traceback' not in listing.stderr, listing.stderr
  match = re.search(rf'^damaged +{re.escape(NAME)}: {re.escape(path)}: (.*)$',
                    listing.stdout, re.M)
  assert match, listing.stdout
  assert re.search(damaged_results.DAMAGES['list'][1], match.group(1))
