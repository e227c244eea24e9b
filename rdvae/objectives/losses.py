"""Training objectives: pure functions of per-example rate and distortion.

This is the only place where batch means are taken for training. Every
objective is a function of the batch-mean rate R and distortion D (Eqs. 4, 5):

  elbo                   D + R                       (-ELBO, Eq. 6 at beta = 1)
  beta_vae               D + beta R                  (Eq. 6)
  target_rate            D + |sigma_t - R|           (section 4)
  target_distortion      R + |delta - D|
  rate_constraint        min D  subject to R = sigma_t  (Lagrangian, section 2)
  distortion_constraint  min R  subject to D = delta

`target_rate` takes the absolute value of the *batch-mean* rate; a per-example
`|R_i - sigma|` would be a different objective. The kinds fall in groups, each
defined once here: `BETA_WEIGHTED` (elbo, beta_vae), `RATE_TARGETED` (a rate
sigma: target_rate, rate_constraint), `DISTORTION_TARGETED` (a distortion
delta: target_distortion, distortion_constraint) and `CONSTRAINED` (a
multiplier: the two constraints). `APPLIES_TO` says under which kinds each key
of the `objective` section acts; `validate` refuses a key set away from its
default where it has no effect.

Schedules (`ANNEAL_SCHEDULES`). The beta of `elbo` (1) and `beta_vae` can be
annealed: `linear` raises it from `beta_start` to its final value over
`anneal_steps` steps (Bowman et al., 2016). The rate target of `target_rate` and `rate_constraint`
can be annealed too (capacity annealing, Burgess et al., 2018): under the
`linear` rate schedule sigma_t = sigma min(1, t / rate_anneal_steps), t the
0-based step; under `constant` sigma_t = sigma.

Constraints. The constrained objectives minimise over the model parameters

  L = D + lambda (R - sigma_t) + (penalty / 2) sigma c^2,
  c = (R - sigma_t) / sigma                   (the violation relative to sigma)

while the multiplier lambda > 0 follows the multiplicative update of GECO
(Rezende & Viola, 2018) on a moving average of c:

  c_avg  <- decay c_avg + (1 - decay) c
  lambda <- lambda exp(multiplier_lr c_avg)

At a fixed point c_avg = 0, i.e. R = sigma, and lambda = -dD/dR is the slope
of the rate-distortion curve there: the beta that `beta_vae` would need to
land at sigma. Because c is relative to sigma and lambda enters the loss as a
slope (scaling R, D and sigma by k scales L by k, which Adam-like optimizers
ignore), the trajectory of lambda does not depend on the scale of R and D:
1 nat on the toy and 30 nats on MNIST move lambda alike (tested on a problem
scaled by 100 in tests/test_objectives.py). The twin `distortion_constraint`
swaps the roles of R and D (lambda = -dR/dD there). Where the defaults below
(lambda_0 = 1, lr 0.1, decay 0.9, penalty 5) land on MNIST and on the toy is
in docs/training.md ("Constraints") and docs/toy.md.

Numbers as arrays. `Objective` holds only what changes the traced program
(the kind and the schedule kinds); every number (beta, sigma, delta, the
schedule lengths, the multiplier's settings) is a float32 scalar of
`Hyperparameters`, carried in `ObjectiveState` beside the multiplier. Runs
that differ only in these numbers share one compiled step, and a population
of them can be stacked and trained under `jax.vmap`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from rdvae import types

KINDS = ('elbo', 'beta_vae', 'target_rate', 'target_distortion',
         'rate_constraint', 'distortion_constraint')
# The groups of kinds (see the module docstring).
BETA_WEIGHTED = ('elbo', 'beta_vae')
RATE_TARGETED = ('target_rate', 'rate_constraint')
DISTORTION_TARGETED = ('target_distortion', 'distortion_constraint')
CONSTRAINED = ('rate_constraint', 'distortion_constraint')
# How beta (`beta_schedule`) and the rate target (`rate_schedule`) move over
# training.
ANNEAL_SCHEDULES = ('constant', 'linear')


@dataclasses.dataclass(frozen=True)
class Objective:
  """What of the objective shapes the program; static (hashable) under jit."""

  kind: str = 'elbo'
  beta_schedule: str = 'constant'
  rate_schedule: str = 'constant'


class Hyperparameters(NamedTuple):
  """The objective's numbers, float32 scalars (stackable for a population).

  Attributes:
    beta: the final beta of `beta_vae` (Eq. 6); `elbo` uses 1.
    beta_start: the first beta of the linear beta schedule.
    anneal_steps: steps of the linear beta schedule.
    rate: sigma, the final target or constrained rate, nats.
    distortion: delta, the target or constrained distortion, nats.
    rate_anneal_steps: steps of the linear rate schedule.
    multiplier_init: lambda at step 0 (> 0).
    multiplier_lr: the rate of the multiplicative update of lambda.
    constraint_decay: the decay of the moving average c_avg.
    penalty: the weight of the quadratic penalty on the relative violation.
  """

  beta: jax.Array
  beta_start: jax.Array
  anneal_steps: jax.Array
  rate: jax.Array
  distortion: jax.Array
  rate_anneal_steps: jax.Array
  multiplier_init: jax.Array
  multiplier_lr: jax.Array
  constraint_decay: jax.Array
  penalty: jax.Array


# The defaults of `default_config()` and `hyperparameters()`; the multiplier
# settings are the ones chosen on MNIST (docs/training.md).
DEFAULTS = {
    'beta': 1.0,
    'beta_start': 0.0,
    'anneal_steps': 1,
    'rate': 0.0,
    'distortion': 0.0,
    'rate_anneal_steps': 1,
    'multiplier_init': 1.0,
    'multiplier_lr': 0.1,
    'constraint_decay': 0.9,
    'penalty': 5.0,
}


def hyperparameters(**numbers: float) -> Hyperparameters:
  """`Hyperparameters` from Python numbers; unnamed fields take DEFAULTS."""
  unknown = set(numbers) - set(Hyperparameters._fields)
  if unknown:
    raise TypeError(f'unknown hyperparameters {sorted(unknown)}; expected '
                    f'some of {Hyperparameters._fields}')
  values = {**DEFAULTS, **numbers}
  return Hyperparameters(**{k: jnp.asarray(values[k], jnp.float32)
                            for k in Hyperparameters._fields})


class ObjectiveState(NamedTuple):
  """What an objective carries across steps.

  Attributes:
    hparams: the numbers of the objective (constant during a run).
    multiplier: lambda, scalar; 1 and unused for unconstrained objectives.
    constraint_average: c_avg, the moving average of the relative violation.
  """

  hparams: Hyperparameters
  multiplier: jax.Array
  constraint_average: jax.Array


def init_state(hparams: Hyperparameters) -> ObjectiveState:
  """The state at step 0: lambda = multiplier_init, c_avg = 0."""
  return ObjectiveState(
      hparams=hparams,
      multiplier=jnp.asarray(hparams.multiplier_init, jnp.float32),
      constraint_average=jnp.zeros_like(hparams.multiplier_init,
                                        jnp.float32))


def _linear_fraction(step, num_steps) -> jax.Array:
  return jnp.clip(jnp.asarray(step, jnp.float32) / num_steps, 0.0, 1.0)


def beta_at(objective: Objective, hparams: Hyperparameters,
            step) -> jax.Array:
  """The beta in effect at `step` (0-based) under the objective's schedule."""
  final = (jnp.ones_like(hparams.beta) if objective.kind == 'elbo'
           else hparams.beta)
  if objective.beta_schedule == 'constant':
    return final
  fraction = _linear_fraction(step, hparams.anneal_steps)
  return hparams.beta_start + fraction * (final - hparams.beta_start)


def rate_target_at(objective: Objective, hparams: Hyperparameters,
                   step) -> jax.Array:
  """sigma_t: the target or constrained rate at `step` (0-based)."""
  if objective.rate_schedule == 'constant':
    return hparams.rate
  return hparams.rate * _linear_fraction(step, hparams.rate_anneal_steps)


def batch_mean(values: jax.Array, weights: Optional[jax.Array] = None,
               axis_name: Optional[str] = None) -> jax.Array:
  """Weighted mean over the batch, and over `axis_name` devices under pmap.

  With weights w the mean is sum_i w_i v_i / sum_i w_i. Under pmap the sums
  are taken across devices before dividing, so every device sees the global
  mean; its gradient, though, is this device's share only: the partial
  derivative of the global mean with respect to this device's copy of the
  parameters, through this device's examples (the other devices' examples do
  not depend on it). The caller sums those shares over devices (a psum of the
  gradients), which is the gradient of the global objective, also for
  objectives nonlinear in the means (|sigma - R|, (R - sigma)^2), since each
  share carries the global dL/dR.

  The gradient bypasses the psum (the global sums held constant, plus this
  device's sums minus themselves held constant: exactly the global value,
  with this device's derivative) because JAX's pmap transposes psum to psum:
  a loss built on the psum directly would hand each device D times its share.
  """
  if weights is None:
    weights = jnp.ones_like(values)
  total = jnp.sum(weights * values)
  count = jnp.sum(weights)
  if axis_name is not None:
    global_total, global_count = jax.lax.psum((total, count), axis_name)
    sg = jax.lax.stop_gradient
    total = sg(global_total) + (total - sg(total))
    count = sg(global_count) + (count - sg(count))
  return total / count


def loss_fn(objective: Objective, terms: types.RDTerms,
            state: ObjectiveState, step,
            weights: Optional[jax.Array] = None,
            axis_name: Optional[str] = None
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The scalar training loss and the batch means it was built from.

  Args:
    objective: which objective and schedules.
    terms: per-example rate and distortion, [B] each, in nats.
    state: the objective's numbers and the multiplier of the constrained
      objectives.
    step: the 0-based training step (for the schedules).
    weights: optional [B] example weights (e.g. p*(x) for exact enumeration,
      or a 0/1 mask); the means are weighted means.
    axis_name: the pmap axis to average over, if any.

  Returns:
    (loss, aux) where aux holds the batch means `rate`, `distortion`, `elbo`
    (= -(R + D)), `beta`, `multiplier`; for rate targets `rate_target`
    (sigma_t); for constrained objectives `constraint` (the violation
    R - sigma_t or D - delta, nats).
  """
  hp = state.hparams
  rate = batch_mean(terms.rate, weights, axis_name)
  distortion = batch_mean(terms.distortion, weights, axis_name)
  beta = beta_at(objective, hp, step)
  multiplier = jax.lax.stop_gradient(state.multiplier)
  aux = {'rate': rate, 'distortion': distortion, 'elbo': -(rate + distortion),
         'beta': beta, 'multiplier': multiplier}
  kind = objective.kind
  if kind in RATE_TARGETED:
    sigma = rate_target_at(objective, hp, step)
    aux['rate_target'] = sigma
  if kind in ('elbo', 'beta_vae'):
    loss = distortion + beta * rate
  elif kind == 'target_rate':
    loss = distortion + jnp.abs(sigma - rate)
  elif kind == 'target_distortion':
    loss = rate + jnp.abs(hp.distortion - distortion)
  elif kind in CONSTRAINED:
    if kind == 'rate_constraint':
      kept, violation, scale = distortion, rate - sigma, hp.rate
    else:
      kept, violation, scale = rate, distortion - hp.distortion, hp.distortion
    loss = (kept + multiplier * violation
            + 0.5 * hp.penalty * violation**2 / scale)
    aux['constraint'] = violation
  else:
    raise ValueError(f'unknown objective kind {kind!r}; expected one of {KINDS}')
  aux['loss'] = loss
  return loss, aux


def update_state(objective: Objective, state: ObjectiveState,
                 aux: dict[str, jax.Array]) -> ObjectiveState:
  """GECO's multiplicative update of lambda (see the module docstring).

  c = constraint / scale, with scale sigma (or delta) the final target;
  c_avg <- decay c_avg + (1 - decay) c; lambda <- lambda exp(lr c_avg).
  Unconstrained objectives return `state` unchanged.
  """
  if objective.kind not in CONSTRAINED:
    return state
  hp = state.hparams
  scale = hp.rate if objective.kind == 'rate_constraint' else hp.distortion
  relative = jax.lax.stop_gradient(aux['constraint']) / scale
  average = (hp.constraint_decay * state.constraint_average
             + (1.0 - hp.constraint_decay) * relative)
  multiplier = state.multiplier * jnp.exp(hp.multiplier_lr * average)
  return state._replace(multiplier=multiplier, constraint_average=average)


