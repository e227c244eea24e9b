r"""The toy's populations: what one vmapped program saves, step by step and
for a whole sweep.

  python benchmarks/toy_population.py
  python benchmarks/toy_population.py --sizes=1,4,60 --rounds=3 --sweeps=0

1. Training steps. The points of configs/sweeps/toy_rd.py (one architecture,
   one objective, target rates sigma) trained by `toy.train_steps` for
   `--steps` steps as populations of each of `--sizes` members: the time per
   call and per member, each size timed once per round after a warm-up call
   (so a slower moment of the machine touches every size alike).
2. The whole sweep. `python -m experiments.sweep --sweep=configs/sweeps/
   toy_rd.py --population=on|off` in fresh directories, alternating on, off,
   on, off (`--sweeps` rounds of the pair; the compilation cache off), with
   each sweep's wall time, and whether every point's results.json is the
   same in both modes.

Populations hold at most `toy.MAX_POPULATION` members in the sweep (see
rdvae/toy.py); the step timing goes beyond that to show what vectorising
across members gives on this backend at all.
"""

from __future__ import annotations

import glob
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_SIZES = flags.DEFINE_list('sizes', ['1', '4', '16', '60'],
                           'Population sizes to time.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps per call.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Timed calls of each size.')
_SWEEPS = flags.DEFINE_integer(
    'sweeps', 2, 'Rounds of the whole sweep with --population=on then off '
    '(0: none).')


def time_steps(sizes: list[int], steps: int, rounds: int) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs.sweeps import toy_rd  # pylint: disable=g-import-not-at-top
  from rdvae import objectives  # pylint: disable=g-import-not-at-top
  from rdvae import toy  # pylint: disable=g-import-not-at-top

  base = toy_rd.get_config()
  spec = toy.validate(base)
  model = toy.create_model(base, spec)
  objective = objectives.create_objective(base)
  options = toy.create_train_options(base)
  p_data = jnp.asarray(spec.p_data, jnp.float32)
  points = toy_rd.get_sweep()

  def population(size):
    states = []
    for i in range(size):
      config = toy_rd.get_config()
      config.update_from_flattened_dict(points[i % len(points)])
      states.append(toy.init_state(model, options,
                                   objectives.create_state(config), i))
    return toy.stack(states)

  def call(states):
    return toy.train_steps(states, p_data, model=model, objective=objective,
                           options=options, length=steps)

  populations = {}
  for size in sizes:  # warm-up: compile each size
    populations[size] = jax.block_until_ready(call(population(size))[0])
  times = {size: [] for size in sizes}
  for _ in range(rounds):
    for size in sizes:
      tic = time.perf_counter()
      populations[size] = jax.block_until_ready(call(populations[size])[0])
      times[size].append(time.perf_counter() - tic)
  print(f'{steps} training steps per call, {rounds} timed calls per size; '
        f'load average {os.getloadavg()}')
  print(' members   ms per call (each round)   ms per member (best)')
  for size in sizes:
    calls = ', '.join(f'{1e3 * t:.1f}' for t in times[size])
    print(f' {size:7d}   {calls:26s}   {1e3 * min(times[size]) / size:.2f}')


def _results(workdir: str) -> dict:
  out = {}
  from rdvae import writers  # pylint: disable=g-import-not-at-top
  for path in glob.glob(os.path.join(workdir, '*', writers.RESULTS_FILE)):
    results = writers.read_json(path)
    results.pop('population_size', None)
    out[os.path.basename(os.path.dirname(path))] = results
  return out


def time_sweeps(rounds: int) -> None:
  env = dict(os.environ, RDVAE_COMPILATION_CACHE='off')
  env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
  print(f'the toy_rd sweep, compilation cache off; load average '
        f'{os.getloadavg()}')
  results = {}
  for i in range(rounds):
    for mode in ('on', 'off'):
      workdir = os.path.join(tempfile.mkdtemp(), 'sweep')
      tic = time.perf_counter()
      subprocess.run(
          [sys.executable, '-m', 'experiments.sweep',
           '--sweep=configs/sweeps/toy_rd.py', f'--workdir={workdir}',
           f'--population={mode}'],
          cwd=REPO, env=env, check=True, capture_output=True)
      seconds = time.perf_counter() - tic
      results[(i, mode)] = _results(workdir)
      print(f' round {i + 1} --population={mode:3s} {seconds:6.1f} s '
            f'({len(results[(i, mode)])} points)', flush=True)
  first = next(iter(results.values()))
  same = all(r == first for r in results.values())
  print(f'every point\'s results.json the same in every sweep: {same}; '
        f'load average {os.getloadavg()}')


def main(argv):
  del argv
  sizes = [int(s) for s in _SIZES.value]
  if sizes:
    time_steps(sizes, _STEPS.value, _ROUNDS.value)
  if _SWEEPS.value:
    time_sweeps(_SWEEPS.value)


if __name__ == '__main__':
  app.run(main)
