r"""AIS throughput: B examples x K chains as one vectorised program against
the same examples run one per call.

  python benchmarks/ais_throughput.py
  python benchmarks/ais_throughput.py --examples=32 --chains=16 --steps=100
  python benchmarks/ais_throughput.py --models=linear

For each model, `rdvae.evaluation.ais.ais` over `--examples` examples with `--chains`
chains each and `--steps` transitions of `--leapfrog` leapfrog steps is run
(a) as one jitted call on the whole batch and (b) as one jitted call per
example (x[i:i+1] with first_index=i, so the draws are the same as in (a)),
looped on the host and waited on once at the end. Each is compiled once
beforehand (compile time printed apart) and timed `--rounds` times, the
best kept. The table gives chain transitions per second (B K T / seconds;
the step-size pilot's transitions, `ais.default_pilot_steps(T)` more per
chain, run in both forms and are not counted), the batch's speed-up and
the cores busy over each form's timed calls (CPU seconds of every thread
per wall second, benchmarks/_timing.py); it also prints the largest
difference between the two runs' log p(x) estimates, which should be
float32 rounding.

Models:
  linear  the linear-Gaussian model of tests/test_ais.py (k = 2, d = 16).
  mlp     a random MLP decoder (16 -> 256 -> 784, tanh) with a Bernoulli
          likelihood on 784 binary pixels drawn from the model itself.

Timings on a shared machine are provisional: the load average is printed.
"""

from __future__ import annotations

import math
import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from rdvae.evaluation import ais  # pylint: disable=wrong-import-position
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position

_EXAMPLES = flags.DEFINE_integer('examples', 16, 'B: examples.')
_CHAINS = flags.DEFINE_integer('chains', 32, 'K: chains per example.')
_STEPS = flags.DEFINE_integer('steps', 100, 'T: AIS transitions.')
_LEAPFROG = flags.DEFINE_integer('leapfrog', 10, 'Leapfrog steps each.')
_ROUNDS = flags.DEFINE_integer('rounds', 2, 'Timed runs of each form.')
_MODELS = flags.DEFINE_list('models', ['linear', 'mlp'],
                            'Models to time: linear, mlp.')


def _prior(latents):
  log_marginal = lambda z: (-0.5 * jnp.sum(z**2)
                            - 0.5 * latents * math.log(2 * math.pi))
  sample = lambda key, n: jax.random.normal(key, (n, latents))
  return log_marginal, sample


def linear_model(num_examples):
  """(params, log_likelihood(params, x, z), log_marginal, sample, x)."""
  rng = np.random.default_rng(0)
  latents, dims, sigma = 2, 16, 0.5
  params = (jnp.asarray(rng.normal(size=(dims, latents)), jnp.float32),
            jnp.asarray(0.5 * rng.normal(size=dims), jnp.float32))

  def log_likelihood(params, x, z):
    w, b = params
    return (-0.5 * jnp.sum((x - w @ z - b) ** 2) / sigma**2
            - 0.5 * dims * math.log(2 * math.pi * sigma**2))

  z = rng.normal(size=(num_examples, latents))
  x = (z @ np.asarray(params[0]).T + np.asarray(params[1])
       + sigma * rng.normal(size=(num_examples, dims)))
  return (params, log_likelihood, *_prior(latents),
          jnp.asarray(x, jnp.float32))


def mlp_model(num_examples):
  """A random tanh MLP decoder with Bernoulli pixels, as linear_model."""
  rng = np.random.default_rng(1)
  latents, hidden, pixels = 16, 256, 784
  params = tuple(jnp.asarray(a, jnp.float32) for a in (
      rng.normal(size=(latents, hidden)) / math.sqrt(latents),
      np.zeros(hidden),
      rng.normal(size=(hidden, pixels)) / math.sqrt(hidden),
      np.full(pixels, -1.0)))

  def logits(params, z):
    w1, b1, w2, b2 = params
    return jnp.tanh(z @ w1 + b1) @ w2 + b2

  def log_likelihood(params, x, z):
    # log Bernoulli(x; sigmoid(l)) = x l - softplus(l).
    l = logits(params, z)
    return jnp.sum(x * l - jax.nn.softplus(l))

  z = jnp.asarray(rng.normal(size=(num_examples, latents)), jnp.float32)
  probs = np.asarray(jax.nn.sigmoid(logits(params, z)))
  x = (rng.random(probs.shape) < probs).astype(np.float32)
  return (params, log_likelihood, *_prior(latents), jnp.asarray(x))


def time_model(name, model, num_examples, chains, steps, leapfrog, rounds):
  params, log_likelihood, log_marginal, sample, x = model(num_examples)
  betas = ais.schedule(steps)

  @jax.jit
  def run(params, key, x, betas, first_index):
    return ais.ais(key, x, lambda xi, z: log_likelihood(params, xi, z),
                   log_marginal, sample, betas=betas, num_chains=chains,
                   leapfrog_steps=leapfrog, first_index=first_index)

  key = jax.random.key(0)
  batch_args = (params, key, x, betas, 0)
  single_args = [(params, key, x[i:i + 1], betas, i)
                 for i in range(num_examples)]
  compile_s = {}
  for form, args in (('batch', batch_args), ('per example', single_args[0])):
    tic = time.perf_counter()
    jax.block_until_ready(run(*args))
    compile_s[form] = time.perf_counter() - tic
  best = {'batch': math.inf, 'per example': math.inf}
  timers = {'batch': _timing.Timer(), 'per example': _timing.Timer()}
  for _ in range(rounds):
    with timers['batch'] as timed:
      batch = jax.block_until_ready(run(*batch_args))
    best['batch'] = min(best['batch'], timed.last_wall)
    with timers['per example'] as timed:
      singles = jax.block_until_ready([run(*a) for a in single_args])
    best['per example'] = min(best['per example'], timed.last_wall)
  difference = np.max(np.abs(
      np.asarray(batch.log_px)
      - np.concatenate([np.asarray(s.log_px) for s in singles])))
  transitions = num_examples * chains * steps
  for form, calls in (('batch', 1), ('per example', num_examples)):
    print(f' {name:6s}  {form:11s}  {calls:5d}  {compile_s[form]:10.2f}  '
          f'{best[form]:9.3f}  {transitions / best[form]:16,.0f}  '
          f'{best["per example"] / best[form]:8.2f}x  '
          f'{timers[form].cores_busy:5.2f}')
  print(f' {name:6s}  largest |log p(x) batch - per example| = '
        f'{difference:.2e} nats; acceptance '
        f'{float(np.mean(batch.acceptance)):.2f}')


def main(argv):
  del argv
  models = {'linear': linear_model, 'mlp': mlp_model}
  print(f'devices: {jax.devices()}; load average: {os.getloadavg()}')
  print(f'B={_EXAMPLES.value} examples x K={_CHAINS.value} chains, '
        f'T={_STEPS.value} transitions of {_LEAPFROG.value} leapfrog steps; '
        f'best of {_ROUNDS.value}')
  print(' model   form         calls  compile s  run s      chain '
        'transitions/s  speed-up  cores busy')
  for name in _MODELS.value:
    time_model(name, models[name], _EXAMPLES.value, _CHAINS.value,
               _STEPS.value, _LEAPFROG.value, _ROUNDS.value)
  print(f'load average after: {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
