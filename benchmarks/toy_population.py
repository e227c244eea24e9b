r"""The toy's populations: what one vmapped program saves, step by step and
for a whole sweep.

  python benchmarks/toy_population.py
  python benchmarks/toy_population.py --sizes=1,4,60 --rounds=3 --sweeps=0
  python benchmarks/toy_population.py --sizes=1,64 --sweeps=0  # the ceiling
  python benchmarks/toy_population.py --sizes=1,2 --steps=10 --rounds=1 \
      --file_points=1 --sweeps=1 --sweep_steps=10   # does it run

1. Training steps. The points of configs/sweeps/toy_rd.py (one architecture,
   one objective, target rates sigma; member i takes point i and seed i)
   built as runs of one population (`programs.create_run` under
   `populations.PopulationLayout(n)` on the trainer's default devices, one
   per core on the CPU, each training a share of the members; their initial
   states stacked), and a
   run's compiled loop of `--steps` steps (`Run.short_loop(steps)`, the
   program `loop.train_population` dispatches) called on the population of
   each of `--sizes` members: the time per call and per member, and the
   cores busy during the calls (CPU seconds of every thread per wall
   second, benchmarks/_timing.py), each size timed once per round after a
   warm-up call (so a slower moment of the machine touches every size
   alike).
2. The whole sweep. `python -m experiments.sweep --sweep=configs/sweeps/
   toy_rd.py --population=on|off` (which trains through
   `rdvae.sweeps.runner`: `loop.train_population` or `loop.train_and_eval`
   per point) in fresh directories, alternating on, off, on, off
   (`--sweeps` rounds of the pair; the compilation cache off;
   `--sweep_steps` shortens every point), with each sweep's wall time and
   the cores its process kept busy (the child's CPU seconds per wall
   second), and whether every point's results.json is the same in both
   modes (but for the population size and the compilation report).
3. The ceiling (`--ceiling`). What a population could save on this machine
   at best: the sweep's per-point work outside training timed on a few
   points (start: `programs.validate` and `loop._start`: the workdir, the
   data spec, the run's build and initial state, checkpoint managers, as
   `loop.train_and_eval` does before it trains; finish: `loop._finish`:
   checkpoint, float64 evaluation, results, tables and Fig. 2 column); the
   trainer's loop alone and in the populations of part 1; and the same loss
   written with less work (log-probability tables, nothing but the loss
   and the trainer's Adam; its loss checked equal to the trainer's) alone
   and in the same populations. Each step's gain is its best per-member
   time in a population against its time alone. A point one after another
   costs start + training alone + finish; a population can at best divide
   the training by its per-member gain and spread everything over the
   machine's cores, so the sweep's speed-up is at most
     (start + train_1 + finish) / ((start + train_1 / gain + finish) / cores)
   (imports and compilation, paid once by both, left out: they lower it).

Populations hold at most `loop.MAX_POPULATION` members in the sweep (see
rdvae/training/loop.py); the step timing goes beyond that to show what
vectorising across members gives on this backend at all.
"""

from __future__ import annotations

import glob
import os
import pathlib
import subprocess
import sys
import tempfile

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'benchmarks'))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position

_SIZES = flags.DEFINE_list('sizes', ['1', '4', '16', '60'],
                           'Population sizes to time.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps per call.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Timed calls of each size.')
_SWEEPS = flags.DEFINE_integer(
    'sweeps', 2, 'Rounds of the whole sweep with --population=on then off '
    '(0: none).')
_SWEEP_STEPS = flags.DEFINE_integer(
    'sweep_steps', 0, 'Training steps of every sweep point (0: the sweep\'s '
    'own).')
_CEILING = flags.DEFINE_bool(
    'ceiling', True, 'Time the per-point work and the lean step, and '
    'print the bound on the sweep\'s speed-up.')
_FILE_POINTS = flags.DEFINE_integer(
    'file_points', 4, 'Points whose start and finish the ceiling times.')


def _point_config(i: int):
  """toy_rd's config at point i (cycling through the points), seed i."""
  from configs.sweeps import toy_rd  # pylint: disable=g-import-not-at-top
  points = toy_rd.get_sweep()
  config = toy_rd.get_config()
  config.update_from_flattened_dict(points[i % len(points)])
  config.train.seed = i
  return config


def _member_runs(size: int) -> list:
  """The runs of a population of `size` toy_rd points (`_point_config`),
  built as `loop.train_population` builds its members."""
  from rdvae.runtime import populations  # pylint: disable=g-import-not-at-top
  from rdvae.training import programs  # pylint: disable=g-import-not-at-top
  configs = [_point_config(i) for i in range(size)]
  data = programs.validate(configs[0]).load_data(configs[0])
  layout = populations.PopulationLayout(size)
  return [programs.create_run(c, data, layout) for c in configs]


def _time_sizes(sizes: list[int], rounds: int, carries: dict, call
                ) -> tuple[dict[int, list[float]], dict[int, _timing.Timer]]:
  """Calls `call(size, carry) -> carry` once per size (warm-up), then once
  per size in each round; returns each size's seconds per call and its
  Timer."""
  import jax  # pylint: disable=g-import-not-at-top
  for size in sizes:
    carries[size] = jax.block_until_ready(call(size, carries[size]))
  timers = {size: _timing.Timer() for size in sizes}
  times = {size: [] for size in sizes}
  for _ in range(rounds):
    for size in sizes:
      with timers[size]:
        carries[size] = jax.block_until_ready(call(size, carries[size]))
      times[size].append(timers[size].last_wall)
  return times, timers


def time_steps(sizes: list[int], steps: int,
               rounds: int) -> dict[int, float]:
  """Part 1: seconds per member-step of the trainer's loop (best call)."""
  carries, loops, devices = {}, {}, {}
  for size in sizes:
    runs = _member_runs(size)
    layout = runs[0].layout
    devices[size] = len(layout.devices)
    loops[size] = runs[0].short_loop(steps)
    carries[size] = (layout.put_states([r.init_state for r in runs]),
                     layout.put_replicated(runs[0].task.train_data(
                         runs[0].data)))

  def call(size, carry):
    state, train_data = carry
    return loops[size](state, train_data)[0], train_data

  times, timers = _time_sizes(sizes, rounds, carries, call)
  print(f'{steps} training steps per call, {rounds} timed calls per size; '
        f'load average {os.getloadavg()}')
  print(' members   devices   ms per call (each round)   '
        'ms per member (best)   member-steps/s   cores busy')
  for size in sizes:
    calls = ', '.join(f'{1e3 * t:.1f}' for t in times[size])
    best = min(times[size])
    print(f' {size:7d}   {devices[size]:7d}   {calls:26s}   '
          f'{1e3 * best / size:20.2f}   '
          f'{size * steps / best:14.0f}   {timers[size].cores_busy:10.2f}')
  return {size: min(times[size]) / (size * steps) for size in sizes}


def lean_step(sizes: list[int], steps: int,
              rounds: int) -> dict[int, float]:
  """Seconds per member-step of the toy_rd loss written with less work.

  The same loss as the trainer's, D + |sigma - R| over the exact tables, but
  from log-probability tables (log-softmax: no log of a probability, no
  division), with nothing else in the step (no metrics, no objective state)
  and the trainer's Adam (its optimizer, the run's numbers in its state);
  checked equal to the trainer's loss at step 0.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import exact  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import losses  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import settings  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import populations  # pylint: disable=g-import-not-at-top
  from rdvae.training import optim  # pylint: disable=g-import-not-at-top

  base = _point_config(1)
  if (base.model.encoder, base.model.decoder) != ('bump', 'tabular'):
    raise ValueError('the lean step is written for a bump encoder and '
                     f'a tabular decoder, not {base.model.encoder!r}, '
                     f'{base.model.decoder!r}')
  runs = _member_runs(max(sizes))
  spec, model = runs[0].data, runs[0].model
  optimizer = optim.create_optimizer_of(optim.settings(base))
  p_data = jnp.asarray(spec.p_data, jnp.float32)
  centres = jnp.asarray(spec.centres, jnp.float32)
  sigmas = jnp.asarray([float(r.config.objective.rate) for r in runs])

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
      compilation.known_options(populations.MEMBERWISE_COMPILER_OPTIONS)))
  state = runs[1].init_state
  trainer_loss, _ = losses.loss_fn(
      settings.create_objective(base),
      exact.terms(*model.apply({'params': state.params})),
      state.objective_state, 0, weights=p_data)
  np.testing.assert_allclose(loss(state.params, sigmas[1]), trainer_loss,
                             rtol=1e-5)

  carries = {}
  for size in sizes:
    states = populations.stack([r.init_state for r in runs[:size]])
    carries[size] = (states.params, states.opt_state, sigmas[:size])

  def call(size, carry):
    del size
    return (*program(*carry), carry[2])

  times, _ = _time_sizes(sizes, rounds, carries, call)
  return {size: min(times[size]) / (size * steps) for size in sizes}


def point_overheads(points: int) -> tuple[float, float]:
  """Mean seconds of a toy_rd point's start (`programs.validate` and
  `loop._start`) and finish (`loop._finish`), after one point untimed, in
  fresh directories."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  from rdvae.training import loop  # pylint: disable=g-import-not-at-top
  from rdvae.training import monitors  # pylint: disable=g-import-not-at-top
  from rdvae.training import programs  # pylint: disable=g-import-not-at-top

  start_point = loop._start  # pylint: disable=protected-access
  finish_point = loop._finish  # pylint: disable=protected-access
  logging.set_verbosity(logging.WARNING)  # orbax logs every save
  with tempfile.TemporaryDirectory() as root:
    for i in range(points + 1):
      if i <= 1:  # the first point untimed
        start, finish = _timing.Timer(), _timing.Timer()
      config = _point_config(i)
      workdir = os.path.join(root, str(i))
      with start:
        programs.validate(config)
        member = start_point(config, workdir)
      with finish:  # its initial state, at step 0
        finish_point(member, member.state, None, int(member.state.step),
                     monitors.Speed(), compilation.Counter())
  return start.wall / points, finish.wall / points


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
  """Every point's results.json, less what differs between modes and runs
  (the population size, the compilation report)."""
  out = {}
  from rdvae.files import run_files  # pylint: disable=g-import-not-at-top
  for path in glob.glob(os.path.join(workdir, '*', run_files.RESULTS_FILE)):
    results = run_files.read_results(os.path.dirname(path))
    results.pop('population_size', None)
    results.pop('compile', None)
    out[os.path.basename(os.path.dirname(path))] = results
  return out


def time_sweeps(rounds: int, steps: int) -> None:
  env = dict(os.environ, RDVAE_COMPILATION_CACHE='off')
  env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')
  overrides = [f'--config.train.{key}={steps}' for key in (
      'num_steps', 'steps_per_dispatch', 'log_every')] if steps else []
  print(f'the toy_rd sweep{f", {steps} steps a point" if steps else ""}, '
        f'compilation cache off; load average {os.getloadavg()}')
  results = {}
  for i in range(rounds):
    for mode in ('on', 'off'):
      with tempfile.TemporaryDirectory() as root:
        workdir = os.path.join(root, 'sweep')
        with _timing.Timer(children=True) as timed:
          subprocess.run(
              [sys.executable, '-m', 'experiments.sweep',
               '--sweep=configs/sweeps/toy_rd.py', f'--workdir={workdir}',
               f'--population={mode}', '--workers=1', *overrides],
              cwd=REPO, env=env, check=True, capture_output=True)
        results[(i, mode)] = _results(workdir)
      print(f' round {i + 1} --population={mode:3s} {timed.wall:6.1f} s '
            f'({len(results[(i, mode)])} points), cores busy '
            f'{timed.cores_busy:.2f}', flush=True)
  first = next(iter(results.values()))
  same = all(r == first for r in results.values())
  print(f'every point\'s results.json the same in every sweep: {same}; '
        f'load average {os.getloadavg()}')


def main(argv):
  del argv
  from rdvae.runtime import cpu_devices  # pylint: disable=g-import-not-at-top
  cpu_devices.use_default()  # the trainer's default, before JAX starts
  sizes = [int(s) for s in _SIZES.value]
  trainer = time_steps(sizes, _STEPS.value, _ROUNDS.value) if sizes else {}
  if _CEILING.value:
    if 1 not in sizes or len(sizes) < 2:
      raise app.UsageError('--ceiling needs --sizes with 1 and a larger '
                           f'population, not {sizes}')
    lean = lean_step(sizes, _STEPS.value, _ROUNDS.value)
    print_ceiling(trainer, lean, *point_overheads(_FILE_POINTS.value))
  if _SWEEPS.value:
    time_sweeps(_SWEEPS.value, _SWEEP_STEPS.value)


if __name__ == '__main__':
  app.run(main)
