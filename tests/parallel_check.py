"""Runs the data-parallel agreement check on 4 emulated CPU devices.

Run as a script (tests/test_parallel.py starts it in a subprocess, since
XLA_FLAGS must be set before JAX initialises its backend). Trains the tiny
stand-in model for 3 dispatches of 3 steps with the same global batch and
seeds on (a) one device, (b) 4 devices with jit + NamedSharding, (c) 4
devices with pmap, and prints a JSON report of the per-step losses, the
largest parameter difference, and the evaluation sums.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rdvae import cpu_devices  # pylint: disable=g-import-not-at-top

cpu_devices.use_emulated_devices(4)  # before JAX starts
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import ml_collections
import numpy as np

import tiny_model
from rdvae import compilation
from rdvae import data
from rdvae import objectives
from rdvae import optim
from rdvae import parallel
from rdvae import steps

BATCH, DISPATCHES, LENGTH = 8, 3, 3

compilation.setup()  # the suite's cache (RDVAE_COMPILATION_CACHE)


def run(mode: str, num_devices: int) -> dict:
  model = tiny_model.TinyModel()
  images = (jax.random.uniform(jax.random.key(0), (40, 4, 4, 1)) > 0.5
            ).astype(jnp.uint8)
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  optimizer = optim.create_optimizer(config, DISPATCHES * LENGTH)
  objective = objectives.Objective(kind='target_rate', rate=1.0)
  mesh = parallel.create_mesh(jax.devices()[:num_devices])
  axis = parallel.AXIS if mode == 'pmap' else None
  data_key = jax.random.key(2)
  loop = parallel.make_train_loop(
      steps.make_train_step(model, optimizer, objective, axis),
      lambda start: data.batch_index_block(data_key, start, LENGTH, 40, BATCH),
      data.gather_batch, BATCH, LENGTH, mesh, mode)
  state = steps.create_train_state(model, optimizer, objective,
                                   jax.random.key(1),
                                   images[:1].astype(jnp.float32))
  state = parallel.put_replicated(state, mesh, mode)
  train = parallel.put_replicated(images, mesh, mode)
  losses = []
  for _ in range(DISPATCHES):
    state, metrics = loop(state, train)
    metrics = parallel.get_replicated(metrics, mode)
    losses += [float(v) for v in np.asarray(metrics['loss'])]
  evaluate = parallel.make_eval_loop(
      steps.make_eval_step(model, 3, axis), BATCH, mesh, mode)
  x, mask = next(data.eval_batches(np.asarray(images[:6]), BATCH))
  x, mask = parallel.put_sharded((x, mask), mesh, mode)
  rng = parallel.put_replicated(state.rng if mode != 'pmap' else
                                parallel.get_replicated(state.rng, mode),
                                mesh, mode)
  sums = parallel.get_replicated(
      evaluate(state.params, x, mask, rng, 0), mode)
  host = parallel.get_replicated(state, mode)
  return {'losses': losses, 'params': jax.tree.leaves(host.params),
          'sums': {k: float(v) for k, v in sums.items()},
          'step': int(host.step)}


def main():
  assert jax.device_count() == 4, jax.devices()
  reference = run('jit', 1)
  report = {'devices': jax.device_count(), 'reference': reference['losses'],
            'reference_sums': reference['sums']}
  for mode in ('jit', 'pmap'):
    out = run(mode, 4)
    report[mode] = {
        'losses': out['losses'], 'step': out['step'], 'sums': out['sums'],
        'max_param_diff': max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(reference['params'], out['params'])),
        'max_param': max(float(np.max(np.abs(a))) for a in out['params'])}
  print(json.dumps(report))


if __name__ == '__main__':
  main()
