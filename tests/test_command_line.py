"""A user's mistakes typed at the command line (`experiments.main`,
`experiments.sweep`, `experiments.report`, `experiments.evaluate`): each
prints one line naming the bad value or file and what was expected, exits
with status 2 and leaves the working directory as it was. BUILD.md ("Bad
input and exit statuses") tabulates `CASES`, printed by
`python tests/test_command_line.py` (repository root on `PYTHONPATH`).
"""

import dataclasses
import gc
import os
import subprocess
import sys
from typing import Callable, Optional

import pytest

from configs import toy
from experiments import cli
from rdvae.files import run_files
from rdvae.runtime import preemption

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = 'configs/mnist.py:smoke'
TOY = 'configs/toy.py:smoke'

SWEEP = '''
from configs import toy


def get_config():
  return toy.get_config('smoke')


def get_sweep():
  return [{'train.seed': 0}, {'train.seed': 1}]
'''


def _broken_config(directory: str) -> None:
  with open(os.path.join(directory, 'broken.py'), 'w') as f:
    f.write('import ml_collections\n\n\ndef get_config(:\n  pass\n')


def _a_file(directory: str) -> None:
  with open(os.path.join(directory, 'a_file'), 'w') as f:
    f.write('not a directory')


def _other_sweep(directory: str) -> None:
  """DIR/sweep holds the sweep's first point trained with another step
  count (as if run with --config.train.num_steps=8)."""
  config = toy.get_config('smoke')
  config.train.seed = 0
  config.train.num_steps = 8
  run_files.prepare_workdir(os.path.join(directory, 'sweep', 'seed=0'),
                            config)


def _empty(directory: str) -> None:
  os.makedirs(os.path.join(directory, 'empty'))


def _toy_run(directory: str) -> None:
  run_files.prepare_workdir(os.path.join(directory, 'toy_run'),
                            toy.get_config('smoke'))


@dataclasses.dataclass(frozen=True)
class Case:
  """A command as a user types it ('DIR' is a fresh temporary directory,
  made ready by `setup`) and the strings its one line must contain."""

  id: str
  what: str
  command: tuple
  needles: tuple
  setup: Optional[Callable[[str], None]] = None


def main(*args, config=MNIST, workdir='DIR/run'):
  return ('experiments.main', f'--config={config}', f'--workdir={workdir}',
          '--jax_platforms=cpu') + args


def sweep(*args):
  return ('experiments.sweep', '--sweep=DIR/sweep.py') + args


CASES = [
    Case('learning_rate_inf', 'an infinite learning rate',
         main('--config.optim.learning_rate=inf'),
         ('config.optim.learning_rate=inf must be a finite number',)),
    Case('toy_learning_rate_inf', 'an infinite learning rate on the toy',
         main('--config.optim.learning_rate=inf', config=TOY),
         ('config.optim.learning_rate=inf must be a finite number',)),
    Case('beta_inf', 'an infinite beta',
         main('--config.objective.kind=beta_vae',
              '--config.objective.beta=inf'),
         ('config.objective.beta=inf must be a finite number',)),
    Case('rate_nan', 'a target rate of nan',
         main('--config.objective.kind=target_rate',
              '--config.objective.rate=nan', config=TOY),
         ('config.objective.rate=nan must be a finite number',)),
    Case('max_examples', 'an evaluation subset larger than the split',
         main('--config.eval.max_examples=100000'),
         ('config.eval.max_examples=100000', '(10000 images)')),
    Case('workdir_parent_file', 'a workdir whose parent is a file',
         main(workdir='DIR/a_file/run'),
         ("'DIR/a_file/run' cannot be written", 'Not a directory'), _a_file),
    Case('workdir_read_only', 'a workdir on a read-only file system',
         main(workdir='/sys/rdvae_run'),
         ("'/sys/rdvae_run' cannot be written",)),
    Case('workdir_is_file', 'a workdir that is a file',
         main(workdir='DIR/a_file'), ("'DIR/a_file' is a file",), _a_file),
    Case('cache_unwritable', 'a compilation cache that cannot be written',
         main('--compilation_cache=DIR/a_file/cache'),
         ("'DIR/a_file/cache' cannot be written", '--compilation_cache'),
         _a_file),
    Case('config_syntax', 'a syntax error in a config file',
         main(config='DIR/broken.py'),
         ("--config: config file 'DIR/broken.py', line 4",), _broken_config),
    Case('config_missing', 'a mistyped config path',
         main(config='configs/mnsit.py'),
         ("--config='configs/mnsit.py': no such file",)),
    Case('config_directory', 'a config path that is a directory',
         main(config='configs'), ("--config='configs': a directory",)),
    Case('config_variant', 'an unknown config variant',
         main(config='configs/mnist.py:smok'),
         ("unknown mnist config variant 'smok'",)),
    Case('unknown_key', 'an unknown config key',
         main('--config.train.batch_sise=8'),
         ('Did you mean "batch_size" instead of "batch_sise"?',)),
    Case('wrong_type', 'a word for a number',
         main('--config.train.batch_size=eight'),
         ('--config.train.batch_size=eight',)),
    Case('cpu_devices_negative', 'a negative device count',
         main('--cpu_devices=-2'), ('--cpu_devices=-2',)),
    Case('cpu_devices_float', 'a fractional device count',
         main('--cpu_devices=1.5'), ('--cpu_devices=1.5',)),
    Case('no_workdir', 'no --workdir', ('experiments.main', f'--config={MNIST}'),
         ('--workdir is required',)),
    Case('extra_argument', 'an argument without a flag', main('runs/x'),
         ("unexpected arguments: ['runs/x']",)),
    Case('backend_without_dry_run', '--backend without --dry_run',
         main('--backend=gpu'), ('--backend only names a backend',)),
    Case('process_id_alone', '--process_id without --multihost',
         main('--process_id=1'), ('--process_id is only for --multihost',)),
    Case('sweep_syntax', 'a syntax error in a sweep file',
         ('experiments.sweep', '--sweep=DIR/broken.py', '--workdir=DIR/sweep'),
         ("--sweep: config file 'DIR/broken.py', line 4",), _broken_config),
    Case('sweep_missing', 'a mistyped sweep path',
         ('experiments.sweep', '--sweep=configs/sweeps/toy_beta.py',
          '--workdir=DIR/sweep'),
         ("--sweep='configs/sweeps/toy_beta.py': no such file",)),
    Case('sweep_config_flag', 'a sweep file given as --config',
         ('experiments.sweep', '--config=DIR/sweep.py', '--workdir=DIR/sweep'),
         ('pass the sweep file as --sweep=PATH',)),
    Case('sweep_workdir_file', 'a sweep directory that is a file',
         sweep('--workdir=DIR/a_file'), ("'DIR/a_file' is a file",), _a_file),
    Case('sweep_workdir_unwritable', 'a sweep directory below a file',
         sweep('--workdir=DIR/a_file/sweep', '--jax_platforms=cpu'),
         ("sweep directory 'DIR/a_file/sweep' cannot be written",), _a_file),
    Case('sweep_other_sweep', 'a sweep directory of another sweep',
         sweep('--workdir=DIR/sweep', '--dry_run'),
         ("sweep point 'seed=0'", 'holds a run with another config',
          'train.num_steps'), _other_sweep),
    Case('sweep_workers_zero', 'no runner processes',
         sweep('--workdir=DIR/sweep', '--workers=0'),
         ('--workers=0', 'expected a number of runner processes >= 1')),
    Case('sweep_workers_negative', 'a negative number of runner processes',
         sweep('--workdir=DIR/sweep', '--workers=-3'),
         ('--workers=-3', 'expected a number of runner processes >= 1')),
    Case('sweep_workers_float', 'a fractional number of runner processes',
         sweep('--workdir=DIR/sweep', '--workers=1.5'),
         ('--workers=1.5', 'invalid literal for int()')),
    Case('sweep_unknown_key', 'an unknown key in a sweep override',
         sweep('--workdir=DIR/sweep', '--config.train.num_step=8'),
         ('Did you mean "num_steps"',)),
    Case('report_missing', 'a report of a directory that does not exist',
         ('experiments.report', '--workdir=DIR/sweep'),
         ("--workdir='DIR/sweep' is not a directory",)),
    Case('report_no_runs', 'a report of a directory without runs',
         ('experiments.report', '--workdir=DIR/empty'),
         ("--workdir='DIR/empty' holds no runs",), _empty),
    Case('report_max_grids', 'zero grids per figure',
         ('experiments.report', '--workdir=DIR/empty', '--max_grids=0'),
         ('--max_grids=0 must be >= 1',), _empty),
    Case('report_grid_betas', 'a grid beta that is not a number',
         ('experiments.report', '--workdir=DIR/empty', '--grid_betas=one'),
         ("--grid_betas=['one']",), _empty),
    Case('evaluate_not_a_run', 'evaluating a directory without a run',
         ('experiments.evaluate', '--workdir=DIR/empty', '--jax_platforms=cpu'),
         ("'DIR/empty' holds no run",), _empty),
    Case('evaluate_toy', 'evaluating a toy run again',
         ('experiments.evaluate', '--workdir=DIR/toy_run',
          '--jax_platforms=cpu'), ('holds a toy run',), _toy_run),
    Case('evaluate_params', 'an unknown checkpoint choice',
         ('experiments.evaluate', '--workdir=DIR/empty', '--params=bogus'),
         ('--params=bogus', '<last|best>'), _empty),
    Case('evaluate_output', 'an output outside the run',
         ('experiments.evaluate', '--workdir=DIR/empty',
          '--output=../results.json'), ("--output='../results.json'",),
         _empty),
    Case('evaluate_unknown_key', 'an evaluation key that does not exist',
         ('experiments.evaluate', '--workdir=DIR/empty',
          '--eval.iwae_sample=10'), ('eval.iwae_sample',), _empty),
]


def _snapshot(path: str) -> dict:
  files = {}
  for root, _, names in os.walk(path):
    for name in names:
      with open(os.path.join(root, name), 'rb') as f:
        files[os.path.relpath(os.path.join(root, name), path)] = f.read()
  return files


def run_case(case: Case, directory: str) -> subprocess.CompletedProcess:
  """Runs `case` in `directory` (made ready first) from the repository."""
  with open(os.path.join(directory, 'sweep.py'), 'w') as f:
    f.write(SWEEP)
  if case.setup:
    case.setup(directory)
  args = [a.replace('DIR', directory) for a in case.command]
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run([sys.executable, '-m', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300,
                        check=False)


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_mistake_is_one_line_and_status_2(case, tmp_path):
  directory = str(tmp_path)
  before = {}

  def setup(d):
    if case.setup:
      case.setup(d)
    before.update(_snapshot(d))

  out = run_case(dataclasses.replace(case, setup=setup), directory)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == preemption.EXIT_USAGE, out.stderr
  assert len(lines) == 1, out.stderr
  message = lines[0].replace(directory, 'DIR')
  for needle in case.needles:
    assert needle in message, (needle, message)
  assert _snapshot(directory) == before


def commands_table() -> str:
  """BUILD.md's table of CASES, each with its status and line."""
  import tempfile  # pylint: disable=g-import-not-at-top
  rows = ['| case | command (`python -m ...`; with `--jax_platforms=cpu` '
          'where JAX starts) | exit | message |',
          '|---|---|---|---|']
  for case in CASES:
    with tempfile.TemporaryDirectory() as directory:
      out = run_case(case, directory)
    message = out.stderr.strip().replace(directory, 'DIR').replace(
        REPO + os.sep, '')
    message = message.replace('|', '\\|').replace('\n', ' ')
    command = ' '.join(a for a in case.command if a != '--jax_platforms=cpu')
    rows.append(f'| `{case.id}` | `{command}` | {out.returncode} | '
                f'{message} |')
  return '\n'.join(rows)


def test_every_command_collects_garbage_less_often(monkeypatch):
  """`cli.run` raises the collector's thresholds before the command runs
  (and the commands outside it call `collect_less` themselves)."""
  before = gc.get_threshold()
  seen = []
  monkeypatch.setattr(cli.app, 'run',
                      lambda main, flags_parser: seen.append(gc.get_threshold()))
  try:
    gc.set_threshold(700, 10, 10)
    cli.run(lambda argv: 0, lambda: '')
  finally:
    gc.set_threshold(*before)
  assert seen == [cli.GC_THRESHOLDS]
  assert cli.GC_THRESHOLDS[0] > 700  # fewer young collections than CPython's
  for name in ('ais', 'ais_check', 'toy_report'):
    with open(os.path.join(REPO, 'experiments', f'{name}.py')) as f:
      assert 'cli.collect_less()\n  app.run(main)' in f.read(), name


if __name__ == '__main__':
  print(commands_table())
