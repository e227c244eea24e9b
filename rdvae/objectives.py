"""Training objectives: pure functions of per-example rate and distortion.

This is the only place where batch means are taken for training. Every
objective is a function of the batch-mean rate R and distortion D (Eqs. 4, 5):

  elbo                   D + R                       (-ELBO, Eq. 6 at beta = 1)
  beta_vae               D + beta R                  (Eq. 6)
  target_rate            D + |sigma - R|             (section 4)
  target_distortion      R + |delta - D|
  rate_constraint        min D  subject to R = sigma  (Lagrangian, section 2)
  distortion_constraint  min R  subject to D = delta

`target_rate` takes the absolute value of the *batch-mean* rate; a per-example
`|R_i - sigma|` would be a different objective.

The constrained objectives minimise the augmented Lagrangian

  L = D + lambda (R - sigma) + (penalty / 2) (R - sigma)^2

over the model parameters, while the multiplier lambda, carried in
`ObjectiveState`, ascends the constraint: lambda <- lambda + lr (R - sigma)
after every step (the basic differential method of multipliers; the quadratic
`penalty` term damps its oscillation). The twin swaps the roles of R and D.

The beta of `elbo` (1) and `beta_vae` can be annealed: `linear` raises it from
`beta_start` to its final value over `anneal_steps` steps (Bowman et al., 2016).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections

from rdvae import types
from rdvae import validation

KINDS = ('elbo', 'beta_vae', 'target_rate', 'target_distortion',
         'rate_constraint', 'distortion_constraint')
SCHEDULES = ('constant', 'linear')
CONSTRAINED = ('rate_constraint', 'distortion_constraint')


class ObjectiveState(NamedTuple):
  """State an objective carries across steps: the Lagrange multiplier."""

  multiplier: jax.Array  # scalar; 0 and unused for unconstrained objectives


@dataclasses.dataclass(frozen=True)
class Objective:
  """Hyperparameters of one objective; static (hashable) under jit."""

  kind: str = 'elbo'
  beta: float = 1.0
  rate: float = 0.0          # sigma, the target or constrained rate
  distortion: float = 0.0    # delta, the target or constrained distortion
  beta_schedule: str = 'constant'
  beta_start: float = 0.0
  anneal_steps: int = 1
  multiplier_init: float = 0.0
  multiplier_lr: float = 0.01
  penalty: float = 0.0

  def init_state(self) -> ObjectiveState:
    return ObjectiveState(multiplier=jnp.asarray(self.multiplier_init,
                                                 jnp.float32))


def beta_at(objective: Objective, step) -> jax.Array:
  """The beta in effect at `step` (0-based) under the objective's schedule."""
  final = 1.0 if objective.kind == 'elbo' else objective.beta
  if objective.beta_schedule == 'constant':
    return jnp.asarray(final, jnp.float32)
  fraction = jnp.clip(jnp.asarray(step, jnp.float32) / objective.anneal_steps,
                      0.0, 1.0)
  return objective.beta_start + fraction * (final - objective.beta_start)


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
    objective: which objective and its hyperparameters.
    terms: per-example rate and distortion, [B] each, in nats.
    state: the multiplier of the constrained objectives.
    step: the 0-based training step (for beta schedules).
    weights: optional [B] example weights (e.g. p*(x) for exact enumeration,
      or a 0/1 mask); the means are weighted means.
    axis_name: the pmap axis to average over, if any.

  Returns:
    (loss, aux) where aux holds the batch means `rate`, `distortion`, `elbo`
    (= -(R + D)), `beta`, `multiplier` and, for constrained objectives,
    `constraint` (the violation R - sigma or D - delta).
  """
  rate = batch_mean(terms.rate, weights, axis_name)
  distortion = batch_mean(terms.distortion, weights, axis_name)
  beta = beta_at(objective, step)
  multiplier = jax.lax.stop_gradient(state.multiplier)
  aux = {'rate': rate, 'distortion': distortion, 'elbo': -(rate + distortion),
         'beta': beta, 'multiplier': multiplier}
  kind = objective.kind
  if kind in ('elbo', 'beta_vae'):
    loss = distortion + beta * rate
  elif kind == 'target_rate':
    loss = distortion + jnp.abs(objective.rate - rate)
  elif kind == 'target_distortion':
    loss = rate + jnp.abs(objective.distortion - distortion)
  elif kind == 'rate_constraint':
    violation = rate - objective.rate
    loss = (distortion + multiplier * violation
            + 0.5 * objective.penalty * violation**2)
    aux['constraint'] = violation
  elif kind == 'distortion_constraint':
    violation = distortion - objective.distortion
    loss = (rate + multiplier * violation
            + 0.5 * objective.penalty * violation**2)
    aux['constraint'] = violation
  else:
    raise ValueError(f'unknown objective kind {kind!r}; expected one of {KINDS}')
  aux['loss'] = loss
  return loss, aux


def update_state(objective: Objective, state: ObjectiveState,
                 aux: dict[str, jax.Array]) -> ObjectiveState:
  """Gradient ascent of the multiplier on the constraint violation."""
  if objective.kind not in CONSTRAINED:
    return state
  violation = jax.lax.stop_gradient(aux['constraint'])
  return ObjectiveState(
      multiplier=state.multiplier + objective.multiplier_lr * violation)


def validate(config: ml_collections.ConfigDict,
             data_entropy: Optional[float] = None) -> None:
  """Checks `config.objective`, naming the bad key and value.

  Args:
    config: the whole experiment config (reads `objective.*`).
    data_entropy: H of the data in nats where it is known; a target or
      constrained rate above it is unreachable (R >= I <= H at D = 0).
  """
  kind = validation.check_choice(config, 'objective.kind', KINDS)
  validation.check_number(config, 'objective.beta', minimum=0.0)
  validation.check_choice(config, 'objective.beta_schedule', SCHEDULES)
  validation.check_number(config, 'objective.beta_start', minimum=0.0)
  validation.check_positive_int(config, 'objective.anneal_steps')
  validation.check_number(config, 'objective.multiplier_lr', minimum=0.0)
  validation.check_number(config, 'objective.penalty', minimum=0.0)
  validation.check_number(config, 'objective.multiplier_init')
  sigma = validation.check_number(config, 'objective.rate', minimum=0.0)
  validation.check_number(config, 'objective.distortion', minimum=0.0)
  if (kind in ('target_rate', 'rate_constraint') and data_entropy is not None
      and sigma > data_entropy):
    raise validation.ConfigError(
        f'config.objective.rate={sigma!r} is above the data entropy '
        f'H={data_entropy:.6f} nats; a rate target must lie in [0, H]')


def create_objective(config: ml_collections.ConfigDict) -> Objective:
  """Builds the objective from `config.objective` (validated first)."""
  validate(config)
  c = config.objective
  return Objective(
      kind=c.kind, beta=float(c.beta), rate=float(c.rate),
      distortion=float(c.distortion), beta_schedule=c.beta_schedule,
      beta_start=float(c.beta_start), anneal_steps=int(c.anneal_steps),
      multiplier_init=float(c.multiplier_init),
      multiplier_lr=float(c.multiplier_lr), penalty=float(c.penalty))


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `objective` section, at the ELBO."""
  return ml_collections.ConfigDict({
      'kind': 'elbo',
      'beta': 1.0,
      'rate': 0.0,
      'distortion': 0.0,
      'beta_schedule': 'constant',
      'beta_start': 0.0,
      'anneal_steps': 1,
      'multiplier_init': 0.0,
      'multiplier_lr': 0.01,
      'penalty': 0.0,
  })
