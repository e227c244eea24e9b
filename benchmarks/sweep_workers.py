r"""A sweep's wall time with one runner and with several at once.

  python benchmarks/sweep_workers.py
  python benchmarks/sweep_workers.py --sweep=configs/sweeps/toy_rd.py --rounds=2

Runs the whole sweep (default configs/sweeps/mnist_simple_betas.py: 8 betas
of the simple family on a budget whose time is mostly training) with
`python -m experiments.sweep --workers=1` and then with the default
`--workers` (one runner per core on the CPU, rdvae/sweeps/workers.py), each
in a fresh directory, `--rounds` times in that order. Prints each sweep's
wall time and the cores its processes kept busy (their CPU seconds per wall
second, benchmarks/_timing.py), the ratio of the wall times per round, and
whether every point's results.json is the same in every sweep (its
`compile` record, `population_size` and `layout` aside: what was compiled,
how many members a program trained and over how many devices, not what it
computed), with the largest relative difference of its figures (one
runner splits each batch over a device per core, each of several runners
over the devices of its share: float32 sums in another order). The
persistent compilation cache stays on, as for a user; before the timed
sweeps the sweep file's base config is trained once in each of the two
layouts (`python -m experiments.main --config=<sweep file>`,
untimed), so that every timed sweep reads its programs from the cache
(`--no-warmup` to leave that out).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.sweeps import workers  # pylint: disable=g-import-not-at-top,wrong-import-position

# What a results.json records about how a point was computed, not what.
HOW_KEYS = ('compile', 'population_size', 'layout')


def _results(workdir: str) -> dict[str, dict]:
  """{point name: its results.json without HOW_KEYS}."""
  out = {}
  for name in sorted(os.listdir(workdir)):
    path = os.path.join(workdir, name, 'results.json')
    if os.path.isfile(path):
      with open(path) as f:
        results = json.load(f)
      for key in HOW_KEYS:
        results.pop(key, None)
      out[name] = results
  return out


def _sweep(sweep: str, workdir: str, count: str) -> _timing.Timer:
  """Runs the sweep with `--workers=<count>` ('' for the default)."""
  command = [sys.executable, '-m', 'experiments.sweep', f'--sweep={sweep}',
             f'--workdir={workdir}', '--jax_platforms=cpu']
  if count:
    command.append(f'--workers={count}')
  env = dict(os.environ, PYTHONPATH=str(REPO))
  with _timing.Timer(children=True) as timed:
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                         text=True, check=False)
  if out.returncode:
    raise RuntimeError(f'{" ".join(command)} exited {out.returncode}:\n'
                       f'{out.stderr[-3000:]}')
  return timed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sweep', default='configs/sweeps/mnist_simple_betas.py')
  parser.add_argument('--rounds', type=int, default=1)
  parser.add_argument('--workdir', default='',
                      help='where the sweeps go (default: a temporary '
                      'directory, removed after)')
  parser.add_argument('--warmup', action=argparse.BooleanOptionalAction,
                      default=True, help='train the base config once first')
  args = parser.parse_args()
  if args.rounds < 1:
    parser.error(f'--rounds={args.rounds}; expected a count >= 1')
  default = workers.default_count('cpu')
  print(f'{args.sweep}: --workers=1 against the default ({default} on '
        f'{workers.available_cores()} cores); load average '
        f'{os.getloadavg()}', flush=True)
  with tempfile.TemporaryDirectory() as scratch:
    root = args.workdir or scratch
    # The programs of both layouts: one runner's (a device per core) and
    # each of the default's runners' (a device per core of its share).
    for devices in ((0, workers.cores_per_worker(default))
                    if args.warmup else ()):
      subprocess.run(
          [sys.executable, '-m', 'experiments.main', f'--config={args.sweep}',
           f'--workdir={os.path.join(root, f"warmup{devices}")}',
           '--jax_platforms=cpu', f'--cpu_devices={devices}'],
          cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
          capture_output=True, check=True)
    results = {}
    for i in range(args.rounds):
      walls = {}
      for count in ('1', ''):
        workdir = os.path.join(root, f'round{i}_workers{count or "default"}')
        timed = _sweep(args.sweep, workdir, count)
        walls[count] = timed.wall
        results[(i, count)] = _results(workdir)
        print(f' round {i + 1} --workers={count or f"default ({default})"}: '
              f'{timed.wall:7.1f} s ({len(results[(i, count)])} points), '
              f'cores busy {timed.cores_busy:.2f}', flush=True)
      print(f' round {i + 1}: the default {walls["1"] / walls[""]:.2f}x '
            'faster in wall time', flush=True)
  first = next(iter(results.values()))
  same = all(r == first for r in results.values())
  gap = max((abs(r[p][k] - first[p][k]) / max(abs(first[p][k]), 1e-30)
             for r in results.values() for p in first for k in first[p]
             if isinstance(first[p][k], float) and 'per_second' not in k
             and 'seconds' not in k), default=0.0)
  print(f'every point\'s results.json the same in every sweep (apart from '
        f'{", ".join(HOW_KEYS)}): {same}; largest relative difference of a '
        f'figure (timings aside) {gap:.1e}; load average after '
        f'{os.getloadavg()}')


if __name__ == '__main__':
  main()
