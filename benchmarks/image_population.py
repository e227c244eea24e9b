r"""A population of image models: one vmapped program against its members
one after another, for the simple family on this backend.

  python benchmarks/image_population.py
  python benchmarks/image_population.py --sizes=2,4 --rounds=3 --batch_size=64

The simple family (-,-,-) of configs/mnist.py, the trainer's own training
step (`steps.make_train_step`: Adam on block-normalized gradients, the
beta-VAE objective), on a batch of static binarized MNIST. A population of
`--sizes` members (betas 0.1, 0.3, 1, 3, ...; each its own parameters, Adam
state and keys, one shared batch) trains one step per call in two ways:

  together  `jax.jit(jax.vmap(step))` over the stacked states: one program;
  apart     `jax.jit(step)` called once per member: one program, run as
            many times as there are members.

Each size is compiled and run once before timing; then each round times
`together`, then `apart` (A B A B, so a slower moment of the machine
touches both). Prints the milliseconds per member-step of each way in every
round, the ratio apart / together (above 1: the population is faster), and
each way's cores busy over its timed calls (CPU seconds of every thread per
wall second, benchmarks/_timing.py).
This is the measurement behind `--population=auto` training image models
one point at a time on the CPU (rdvae/sweeps/runner.py).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position

_SIZES = flags.DEFINE_list('sizes', ['2', '4'], 'Population sizes to time.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Timed rounds (together, apart).')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Training batch size.')

BETAS = (0.1, 0.3, 1.0, 3.0, 10.0, 0.2, 0.5, 2.0)


def main(argv):
  del argv
  from configs import mnist  # pylint: disable=g-import-not-at-top
  from rdvae.data import batching  # pylint: disable=g-import-not-at-top
  from rdvae.data import sources as data  # pylint: disable=g-import-not-at-top
  from rdvae.models import model as model_lib  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import settings  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import parallel  # pylint: disable=g-import-not-at-top
  from rdvae.training import optim  # pylint: disable=g-import-not-at-top
  from rdvae.training import steps  # pylint: disable=g-import-not-at-top

  sizes = [int(s) for s in _SIZES.value]
  if not sizes or min(sizes) < 1 or max(sizes) > len(BETAS):
    raise app.UsageError(f'--sizes={_SIZES.value}: expected sizes from 1 to '
                         f'{len(BETAS)}')
  batch = _BATCH.value
  config = mnist.get_config()
  config.model.family = '---'
  config.objective.kind = 'beta_vae'
  model = model_lib.create_model(config, data.IMAGE_SHAPE)
  optimizer = optim.create_optimizer(config, 1000)
  objective = settings.create_objective(config)
  images = data.load_npz(str(data.packaged_npz_path()))['train'][:batch]
  x = jnp.asarray(batching.gather_batch(images, np.arange(batch)))
  step = steps.make_train_step(model, optimizer, objective)

  def one_step(state, x):
    keys = parallel.example_keys(state.rng, state.step, batch)
    return step(state, x, keys)

  def member(i):
    config.objective.beta = BETAS[i]
    state = steps.create_train_state(model, optimizer,
                                     settings.create_state(config),
                                     jax.random.key(i), x)
    return state.replace(rng=jax.random.key_data(jax.random.key(100 + i)))

  apart = jax.jit(one_step)
  together = jax.jit(jax.vmap(one_step, in_axes=(0, None)))
  print(f'devices: {jax.devices()}; batch {batch}; load average '
        f'{os.getloadavg()}')
  for size in sizes:
    members = [member(i) for i in range(size)]
    population = jax.tree.map(lambda *a: jnp.stack(a), *members)
    tic = time.perf_counter()
    jax.block_until_ready(together(population, x))
    first_together = time.perf_counter() - tic
    tic = time.perf_counter()
    jax.block_until_ready([apart(m, x) for m in members])
    first_apart = time.perf_counter() - tic
    times = {'together': [], 'apart': []}
    timers = {name: _timing.Timer() for name in times}
    for _ in range(_ROUNDS.value):
      with timers['together']:
        jax.block_until_ready(together(population, x))
      with timers['apart']:
        jax.block_until_ready([apart(m, x) for m in members])
      for name, timer in timers.items():
        times[name].append(timer.last_wall)
    per_member = {k: [1e3 * t / size for t in v] for k, v in times.items()}
    ratios = [a / t for a, t in zip(per_member['apart'],
                                    per_member['together'])]
    print(f'{size} members: first call (compile and run) together '
          f'{first_together:.1f} s, apart {first_apart:.1f} s')
    for name in ('together', 'apart'):
      print(f'  {name:8s} ms per member-step: '
            + ', '.join(f'{t:.0f}' for t in per_member[name])
            + f'; cores busy {timers[name].cores_busy:.2f}')
    print('  apart / together: ' + ', '.join(f'{r:.2f}' for r in ratios))
  print(f'load average {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
