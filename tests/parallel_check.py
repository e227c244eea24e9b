"""Runs the data-parallel agreement check on 4 emulated CPU devices.

Run as a script (tests/test_parallel.py starts it in a subprocess, since
XLA_FLAGS must be set before JAX initialises its backend). For each objective
of OBJECTIVES (the ELBO, linear in the batch means, and the rate constraint
with a quadratic penalty, nonlinear in the global mean rate), trains the tiny stand-in model for 3 dispatches of
3 steps with the same global batch and seeds on (a) one device, (b) 4 devices
with jit + NamedSharding, (c) 4 devices with pmap. The optimizer records the
raw gradient it receives (`recording`) ahead of the real one, so the report
holds, per objective and layout, the per-step losses and `grad_norm`s, the raw
gradient of the first step (same parameters everywhere) as lists, the largest
parameter difference from (a), the evaluation sums with an IWAE chunk that differs
between the global and the per-device batch, and whether (b) and (c), run
again from the same seeds through the same compiled programs, end bitwise
equal. It prints the report as JSON.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rdvae.evaluation import steps as eval_steps
from rdvae.runtime import cpu_devices  # pylint: disable=g-import-not-at-top

cpu_devices.use_emulated_devices(4)  # before JAX starts
os.environ['JAX_PLATFORMS'] = 'cpu'
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import tiny_model
from experiments import cli
from rdvae.runtime import compilation
from rdvae.data import batching
from rdvae.objectives import losses as objectives
from rdvae.training import optim
from rdvae.runtime import parallel
from rdvae.training import steps

BATCH, DISPATCHES, LENGTH = 8, 3, 3
# IWAE: K samples in chunks of C, the largest divisor of K with B C <=
# IWAE_BATCH; the global batch (8) gives C = 1, one device's rows (2) C = 4.
IWAE_SAMPLES, IWAE_BATCH = 4, 8
OBJECTIVES = {  # name: (the static objective, its numbers)
    'elbo': (objectives.Objective(kind='elbo'), {}),
    'rate_constraint': (objectives.Objective(kind='rate_constraint'),
                        {'rate': 1.0, 'multiplier_init': 0.5, 'penalty': 2.0}),
}

compilation.setup()  # the suite's cache (RDVAE_COMPILATION_CACHE)
cli.collect_less()  # as the commands


def recording() -> optax.GradientTransformation:
  """Passes the gradient on unchanged; its state keeps the first one seen."""

  def init_fn(params):
    return (jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    del params
    count, first = state
    first = jax.tree.map(lambda f, g: jnp.where(count == 0, g, f), first,
                         updates)
    return updates, (count + 1, first)

  return optax.GradientTransformation(init_fn, update_fn)


def run(mode: str, num_devices: int, spec, repeats: int = 1) -> list[dict]:
  """`repeats` runs from the same seeds through one compiled loop and
  evaluation: the report of each."""
  model = tiny_model.TinyModel()
  images = (jax.random.uniform(jax.random.key(0), (40, 4, 4, 1)) > 0.5
            ).astype(jnp.uint8)
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  optimizer = optax.chain(
      recording(), optim.create_optimizer(config, DISPATCHES * LENGTH))
  objective, numbers = spec
  objective_state = objectives.init_state(objectives.hyperparameters(**numbers))
  layout = parallel.create_layout(mode, jax.devices()[:num_devices])
  data_key = jax.random.key(2)
  loop = layout.train_loop(
      steps.make_train_step(model, optimizer, objective, layout.axis_name),
      lambda start: batching.batch_index_block(data_key, start, LENGTH, 40,
                                               BATCH),
      batching.gather_batch, BATCH)
  evaluate = layout.eval_loop(
      eval_steps.make_eval_step(model, IWAE_SAMPLES, layout.axis_name,
                                IWAE_BATCH), BATCH)
  initial = steps.create_train_state(model, optimizer, objective_state,
                                     jax.random.key(1),
                                     images[:1].astype(jnp.float32))
  train = layout.put_replicated(images)
  x, mask = next(batching.eval_batches(np.asarray(images[:6]), BATCH))
  x, mask = layout.put_sharded((x, mask))
  reports = []
  for _ in range(repeats):
    state = layout.put_replicated(initial)  # the loop donates its state
    losses, grad_norms = [], []
    for _ in range(DISPATCHES):
      state, metrics = loop(state, train)
      metrics = layout.get_replicated(metrics)
      losses += [float(v) for v in np.asarray(metrics['loss'])]
      grad_norms += [float(v) for v in np.asarray(metrics['grad_norm'])]
    rng = layout.put_replicated(layout.get_replicated(state.rng))
    sums = layout.get_replicated(evaluate(state.params, x, mask, rng, 0))
    host = layout.get_replicated(state)
    first_grads = host.opt_state[0][1]
    reports.append({'losses': losses, 'grad_norms': grad_norms,
                    'first_grads': [np.asarray(g).tolist()
                                    for g in jax.tree.leaves(first_grads)],
                    'params': jax.tree.leaves(host.params),
                    'sums': {k: float(v) for k, v in sums.items()},
                    'step': int(host.step)})
  return reports


def main():
  assert jax.device_count() == 4, jax.devices()
  report = {'devices': jax.device_count(),
            'iwae_chunks': {
                'global': eval_steps.iwae_chunk(IWAE_SAMPLES, BATCH, IWAE_BATCH),
                'per_device': eval_steps.iwae_chunk(IWAE_SAMPLES, BATCH // 4,
                                               IWAE_BATCH)},
            'objectives': {}}
  for name, spec in OBJECTIVES.items():
    reference, = run('jit', 1, spec)
    entry = {'reference': {k: reference[k] for k in
                           ('losses', 'grad_norms', 'first_grads', 'sums')}}
    for mode in ('jit', 'pmap'):
      out, again = run(mode, 4, spec, repeats=2)
      entry[mode] = {
          'losses': out['losses'], 'grad_norms': out['grad_norms'],
          'first_grads': out['first_grads'], 'step': out['step'],
          'sums': out['sums'],
          'max_param_diff': max(
              float(np.max(np.abs(np.subtract(a, b))))
              for a, b in zip(reference['params'], out['params'])),
          'max_param': max(float(np.max(np.abs(a))) for a in out['params']),
          'repeat_equal': (out['losses'] == again['losses'] and all(
              np.array_equal(a, b)
              for a, b in zip(out['params'], again['params'])))}
    report['objectives'][name] = entry
  print(json.dumps(report))


if __name__ == '__main__':
  main()
