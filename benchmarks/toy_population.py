r"""The toy's populations: what one vmapped program saves, step by step and
for a whole sweep.

  python benchmarks/toy_population.py
  python benchmarks/toy_population.py --sizes=1,4,60 --rounds=3 --sweeps=0
  python benchmarks/toy_population.py --sizes=1,64 --sweeps=0  # the ceiling

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
3. The ceiling (`--ceiling`). What a population could save on this machine
   at best: the sweep's per-point work outside training (`toy._start`:
   validation, data spec, initial state, checkpoint manager; `toy._finish`:
   checkpoint, float64 evaluation, results, Fig. 2 column) timed on a few
   points; the trainer's step alone and in the populations of part 1; and
   the same loss written with less work (log-probability tables, nothing
   but the loss and Adam; its loss checked equal to the trainer's) alone
   and in the same populations. Each step's gain is its best per-member
   time in a population against its time alone. A point one after another costs
   start + training alone + finish; a population can at best divide the
   training by its per-member gain and spread everything over the machine's
   cores, so the sweep's speed-up is at most
     (start + train_1 + finish) / ((start + train_1 / gain + finish) / cores)
   (imports and compilation, paid once by both, left out: they lower it).

Populations hold at most `toy.MAX_POPULATION` members in the sweep (see
rdvae/toy/toy.py); the step timing goes beyond that to show what vectorising
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
_CEILING = flags.DEFINE_bool(
    'ceiling', True, 'Time the per-point work and the lean step, and '
    'print the bound on the sweep\'s speed-up.')
_FILE_POINTS = flags.DEFINE_integer(
    'file_points', 4, 'Points whose start and finish the ceiling times.')


def time_steps(sizes: list[int], steps: int,
               rounds: int) -> dict[int, float]:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs.sweeps import toy_rd  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import losses as objectives  # pylint: disable=g-import-not-at-top
  from rdvae.toy import toy  # pylint: disable=g-import-not-at-top

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
  return {size: min(times[size]) / (size * steps) for size in sizes}


def lean_step(sizes: list[int], steps: int,
              rounds: int) -> dict[int, float]:
  """Seconds per member-step of the toy_rd loss written with less work.

  The same loss as the trainer's, D + |sigma - R| over the exact tables, but
  from log-probability tables (log-softmax: no log of a probability, no
  division), with nothing else in the step (no metrics, no objective state)
  and the trainer's Adam; checked equal to the trainer's loss at step 0.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from configs.sweeps import toy_rd  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import exact  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import losses as objectives  # pylint: disable=g-import-not-at-top
  from rdvae.toy import toy  # pylint: disable=g-import-not-at-top

  base = toy_rd.get_config()
  if (base.model.encoder, base.model.decoder) != ('bump', 'tabular'):
    raise ValueError('the lean step is written for a bump encoder and '
                     f'a tabular decoder, not {base.model.encoder!r}, '
                     f'{base.model.decoder!r}')
  spec = toy.validate(base)
  model = toy.create_model(base, spec)
  options = toy.create_train_options(base)
  optimizer = toy.adam_optimizer(options)
  p_data = jnp.asarray(spec.p_data, jnp.float32)
  centres = jnp.asarray(spec.centres, jnp.float32)
  sigmas = [float(point['objective.rate']) for point in toy_rd.get_sweep()]

  def loss(params, sigma):
    w, b = params['encoder']['wb']
    log_e = jax.nn.log_softmax(
        -jnp.square(w[:, None] * centres[None, :] - b[:, None]), axis=0)
    log_d = jax.nn.log_softmax(params['decoder']['logits'], axis=1)
    log_m = jax.nn.log_softmax(params['marginal'])
    e = jnp.exp(log_e)  # [K, X] e(z|x)
    rate = jnp.sum(e * (log_e - log_m[:, None]), axis=0) @ p_data
    distortion = -jnp.sum(e * log_d, axis=0) @ p_data
    return distortion + jnp.abs(sigma - rate)

  def member(params, opt_state, sigma):
    def step(carry, _):
      params, opt_state = carry
      updates, opt_state = optimizer.update(jax.grad(loss)(params, sigma),
                                            opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    return jax.lax.scan(step, (params, opt_state), None, length=steps)[0]

  program = jax.jit(jax.vmap(member), compiler_options=(
      toy.MEMBERWISE_COMPILER_OPTIONS))
  config = toy_rd.get_config()
  config.objective.rate = sigmas[1]
  state = toy.init_state(model, options, objectives.create_state(config), 0)
  trainer_loss, _ = objectives.loss_fn(
      objectives.create_objective(config),
      exact.terms(*model.apply({'params': state.params})),
      state.objective_state, 0, weights=p_data)
  np.testing.assert_allclose(loss(state.params, sigmas[1]), trainer_loss,
                             rtol=1e-5)

  carries = {}
  for size in sizes:
    params = toy.stack([toy.init_state(model, options,
                                       objectives.create_state(config), i)
                        for i in range(size)]).params
    sigma = jnp.asarray([sigmas[i % len(sigmas)] for i in range(size)])
    carries[size] = (params, jax.vmap(optimizer.init)(params), sigma)
    carries[size] = (*jax.block_until_ready(program(*carries[size])), sigma)
  best = {size: float('inf') for size in sizes}
  for _ in range(rounds):
    for size in sizes:
      tic = time.perf_counter()
      carries[size] = (*jax.block_until_ready(program(*carries[size])),
                       carries[size][2])
      best[size] = min(best[size], time.perf_counter() - tic)
  return {size: best[size] / (size * steps) for size in sizes}


def point_overheads(points: int) -> tuple[float, float]:
  """Mean seconds of `toy._start` and `toy._finish` per toy_rd point (after
  one point untimed), in fresh directories."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from configs.sweeps import toy_rd  # pylint: disable=g-import-not-at-top
  from rdvae.toy import toy  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)  # orbax logs every save
  sweep = toy_rd.get_sweep()
  starts, finishes = [], []
  with tempfile.TemporaryDirectory() as root:
    for i in range(points + 1):
      config = toy_rd.get_config()
      config.update_from_flattened_dict(sweep[i % len(sweep)])
      workdir = os.path.join(root, str(i))
      tic = time.perf_counter()
      run = toy._start(config, workdir)  # pylint: disable=protected-access
      middle = time.perf_counter()
      toy._finish(run, workdir)  # pylint: disable=protected-access
      if i:
        starts.append(middle - tic)
        finishes.append(time.perf_counter() - middle)
  return sum(starts) / points, sum(finishes) / points


def print_ceiling(trainer: dict[int, float], lean: dict[int, float],
                  start: float, finish: float) -> None:
  """The bound of the module doc for the trainer's step and the lean one,
  each with its best per-member gain over the sizes timed."""
  from configs import toy as toy_config  # pylint: disable=g-import-not-at-top
  num_steps = toy_config.get_config().train.num_steps
  cores = os.cpu_count() or 1
  print(f'per point: start {start:.3f} s, finish {finish:.3f} s '
        f'(mean of {_FILE_POINTS.value}); {cores} cores; '
        f'{num_steps} training steps a point')
  print(' step         us per member-step: alone, best population   gain   '
        'training alone   bound on the sweep')
  for name, seconds in (('trainer', trainer), ('lean', lean)):
    alone = seconds[1]
    size = min((n for n in seconds if n > 1), key=seconds.get)
    gain = alone / seconds[size]
    train = alone * num_steps
    bound = (start + train + finish) / ((start + train / gain + finish)
                                        / cores)
    print(f' {name:11s}  {1e6 * alone:6.2f}, {1e6 * seconds[size]:6.2f} '
          f'({size} members){"":12s}{gain:5.2f}   {train:6.3f} s'
          f'          {bound:.2f}x')


def _results(workdir: str) -> dict:
  out = {}
  from rdvae.files import run_files  # pylint: disable=g-import-not-at-top
  for path in glob.glob(os.path.join(workdir, '*', run_files.RESULTS_FILE)):
    results = run_files.read_results(os.path.dirname(path))
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
  trainer = time_steps(sizes, _STEPS.value, _ROUNDS.value) if sizes else {}
  if _CEILING.value:
    if 1 not in sizes or len(sizes) < 2:
      raise app.UsageError('--ceiling needs --sizes with 1 and a larger '
                           f'population, not {sizes}')
    lean = lean_step(sizes, _STEPS.value, _ROUNDS.value)
    print_ceiling(trainer, lean, *point_overheads(_FILE_POINTS.value))
  if _SWEEPS.value:
    time_sweeps(_SWEEPS.value)


if __name__ == '__main__':
  app.run(main)
