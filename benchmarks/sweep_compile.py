r"""Compile once per architecture: a sweep's wall time with every point
compiling its own programs, and with the sweep runner sharing them.

  python benchmarks/sweep_compile.py
  python benchmarks/sweep_compile.py --sweep=configs/sweeps/compile_once.py

Three runs of the same points (default configs/sweeps/compile_once.py: 5
betas of the simple family and 3 of a PixelCNN++ family on a budget short
enough that compiling is most of a point's cost), each in a fresh directory:

  1. each point as its own `python -m experiments.main` process with the
     persistent compilation cache off: every point traces and compiles every
     program it runs (what a shell loop over experiments.main costs);
  2. `python -m experiments.sweep` on a fresh cache directory: within the
     runner a family's programs are built once (the betas are arrays in the
     training state), so the later points of a family compile nothing;
  3. the runner again on a fresh workdir, SIGKILLed once the first PixelCNN++
     point has started, then rerun: the rerun reads from the cache of the
     killed runner every program it had written, and the killed point resumes.

Prints each run's wall time and the cores its processes kept busy (their
CPU seconds per wall second, benchmarks/_timing.py), and, per point, the
programs compiled and the persistent cache's hits and misses from the
point's results.json (`compile`).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.sweeps import sweep_file  # pylint: disable=g-import-not-at-top,wrong-import-position

_SWEEP = flags.DEFINE_string('sweep', 'configs/sweeps/compile_once.py',
                             'The sweep file.')
_WORKDIR = flags.DEFINE_string(
    'workdir', '', 'Where the three runs go (default: a temporary directory).')


def _env(cache: str) -> dict:
  env = dict(os.environ, RDVAE_COMPILATION_CACHE=cache, JAX_PLATFORMS='cpu')
  env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
  return env


def _flag(key: str, value) -> str:
  return f'--config.{key}={value}'


def _report(title: str, timed: _timing.Timer, workdir: str, points,
            earlier: frozenset = frozenset()) -> None:
  print(f'\n{title}: {timed.wall:.1f} s wall, cores busy '
        f'{timed.cores_busy:.2f}')
  print(f'  {"point":32s} {"programs":>8s} {"compile s":>9s} '
        f'{"hits":>5s} {"misses":>6s}')
  for point in points:
    path = os.path.join(workdir, point.name, 'results.json')
    with open(path) as f:
      c = json.load(f)['compile']
    note = '  (done before the kill)' if point.name in earlier else ''
    print(f'  {point.name:32s} {c["programs"]:8d} {c["seconds"]:9.1f} '
          f'{c["cache_hits"]:5d} {c["cache_misses"]:6d}{note}')


def _sweep_command(workdir: str) -> list[str]:
  return [sys.executable, '-m', 'experiments.sweep', f'--sweep={_SWEEP.value}',
          f'--workdir={workdir}', '--population=off', '--workers=1']


def main(argv):
  del argv
  root = _WORKDIR.value or tempfile.mkdtemp(prefix='sweep_compile_')
  points = sweep_file.expand(str(REPO / _SWEEP.value))
  print(f'{len(points)} points of {_SWEEP.value}; runs under {root}')

  # 1. Each point in its own process, no cache.
  alone = os.path.join(root, 'alone')
  with _timing.Timer(children=True) as timed:
    for point in points:
      subprocess.run(
          [sys.executable, '-m', 'experiments.main',
           f'--config={_SWEEP.value}',
           f'--workdir={os.path.join(alone, point.name)}',
           *(_flag(k, v) for k, v in point.overrides.items())],
          cwd=REPO, env=_env('off'), check=True, capture_output=True)
  _report('1. each point in its own process, no cache', timed, alone, points)

  # 2. The sweep runner, fresh cache.
  shared = os.path.join(root, 'sweep')
  with _timing.Timer(children=True) as timed:
    subprocess.run(_sweep_command(shared), cwd=REPO,
                   env=_env(os.path.join(root, 'cache_sweep')), check=True,
                   capture_output=True)
  _report('2. one sweep runner, fresh cache', timed, shared, points)

  # 3. Killed once the first point of the last family has started, rerun.
  killed = os.path.join(root, 'killed')
  env = _env(os.path.join(root, 'cache_killed'))
  last_family = points[-1].config.model.family
  first_of_last = next(p for p in points
                       if p.config.model.family == last_family)
  timed = _timing.Timer(children=True)
  with timed:
    runner = subprocess.Popen(_sweep_command(killed), cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    marker = os.path.join(killed, first_of_last.name, 'metrics.jsonl')
    while runner.poll() is None and not os.path.exists(marker):
      time.sleep(0.5)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
  killed_at = timed.wall
  earlier = frozenset(p.name for p in points if os.path.exists(
      os.path.join(killed, p.name, 'results.json')))
  with timed:
    subprocess.run(_sweep_command(killed), cwd=REPO, env=env, check=True,
                   capture_output=True)
  _report(f'3. one sweep runner SIGKILLed at {killed_at:.1f} s (point '
          f'{first_of_last.name} under way), then rerun', timed, killed,
          points, earlier)


if __name__ == '__main__':
  app.run(main)
