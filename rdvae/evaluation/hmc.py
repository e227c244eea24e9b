"""The HMC transitions of annealed importance sampling and their step size.

AIS (`evaluation.ais`) moves K chains of one example x through the
distributions q_b(z|x) ∝ m(z) d(x|z)^b. This module owns one transition that
leaves q_b invariant and the rules that choose its step size eps.

HMC (identity mass). Momentum p ~ N(0, I); `leapfrog_steps` leapfrog steps
of size eps on the potential U(z) = -log m(z) - b log d(x|z), with gradients
from `jax.grad` of the caller's functions; the proposal is accepted with
probability min(1, exp(-dH)), dH = U(z') + |p'|^2/2 - U(z) - |p|^2/2; a
proposal whose dH is NaN (a non-finite density or gradient on its
trajectory) is rejected.

Step sizes. One eps per example, shared by its K chains. After a
transition whose mean acceptance probability over the chains is a,

  eps <- clip(eps * (1.02 if a > target else 0.98), *step_size_range)

when AIS adapts on its own chains (after Wu et al., 2017), or, in the pilot
run of `evaluation.ais` (adaptation_rate r > 0, r = 1 there),

  eps <- clip(eps * exp(r (a - target)), *step_size_range),

which follows the shrinking scale of q_b as b grows within a few
transitions (at a = 0 eps halves in about one).

Initial step size (the warm-up). The 2 % rule never makes good a poor start
on a short schedule: from eps = 0.05 the chains at b ~ 0, where m(z) (e.g.
N(0, I)) wants eps of order 1, accept nearly every proposal and hardly
move. So before annealing, `warmup_steps` transitions at b = 0, on m(z)
alone (no decoder evaluation), run K chains drawn afresh from m(z), and eps
follows a search with a shrinking gain:

  log eps <- log eps + g_i sign(a_i - target),  g_i = log(2) 0.85^i,

so it can travel by a factor up to 2^(1/0.15) ~ 100 either way and ends
where the chains' acceptance is near the target (a is close to monotone in
eps at b = 0; near the target it is flat, so the chains' noise leaves eps
uncertain by tens of per cent, a few hundredths of acceptance). These chains are then discarded, so the eps
found depends on nothing the annealed chains sample.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
LogLikelihood = Callable[[Array, Array], Array]  # (x_i, z [Z]) -> scalar
LogMarginal = Callable[[Array], Array]  # z [Z] -> scalar

STEP_SIZE_RANGE = (1e-4, 1.0)
WARMUP_GAIN = math.log(2.0)
WARMUP_DECAY = 0.85


class Settings(NamedTuple):
  """The densities and the transition settings, with their defaults."""
  log_likelihood: LogLikelihood
  log_marginal: LogMarginal
  num_chains: int
  leapfrog_steps: int = 10
  initial_step_size: float | Array = 0.05
  target_acceptance: float = 0.65
  step_size_range: tuple[float, float] = STEP_SIZE_RANGE
  chunk_size: Optional[int] = None
  warmup_steps: int = 30
  adaptation_rate: float = 0.0


class Point(NamedTuple):
  """K chain states with their log densities and gradients."""
  z: Array  # [K, Z]
  log_d: Array  # [K]
  log_m: Array  # [K]
  grad_d: Array  # [K, Z]
  grad_m: Array  # [K, Z]


def evaluate(settings: Settings, x: Array, z: Array) -> Point:
  """log d(x|z), log m(z) and their gradients for K chains z [K, Z]."""
  d_and_grad = jax.value_and_grad(settings.log_likelihood, argnums=1)
  m_and_grad = jax.value_and_grad(settings.log_marginal)
  log_d, grad_d = jax.vmap(d_and_grad, (None, 0))(x, z)
  log_m, grad_m = jax.vmap(m_and_grad)(z)
  return Point(z, log_d, log_m, grad_d, grad_m)


def transition(settings: Settings, key: Array, x: Array, point: Point,
               beta: Array, eps: Array) -> tuple[Point, Array]:
  """One HMC transition of K chains leaving q_beta invariant.

  Returns the new point and the [K] acceptance probabilities.
  """
  momentum_key, accept_key = jax.random.split(key)
  grad = lambda pt: pt.grad_m + beta * pt.grad_d  # of log q_beta
  log_q = lambda pt: pt.log_m + beta * pt.log_d
  p0 = jax.random.normal(momentum_key, point.z.shape, point.z.dtype)

  def leapfrog(_, carry):
    pt, p = carry
    pt = evaluate(settings, x, pt.z + eps * p)
    return pt, p + eps * grad(pt)

  # Half a momentum step, then full steps, the last of them taken back by
  # half: the point carries its gradients, so each step evaluates once.
  proposal, p = jax.lax.fori_loop(0, settings.leapfrog_steps, leapfrog,
                                  (point, p0 + 0.5 * eps * grad(point)))
  p = p - 0.5 * eps * grad(proposal)
  log_ratio = (log_q(proposal) - 0.5 * jnp.sum(p**2, -1)
               - log_q(point) + 0.5 * jnp.sum(p0**2, -1))
  log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
  accept = jnp.log(jax.random.uniform(accept_key, log_ratio.shape)) < log_ratio
  choose = lambda new, old: jnp.where(
      accept.reshape(accept.shape + (1,) * (new.ndim - 1)), new, old)
  return (jax.tree.map(choose, proposal, point),
          jnp.exp(jnp.minimum(log_ratio, 0.0)))


def adapt(settings: Settings, eps: Array, acceptance: Array) -> Array:
  """One step of the annealing rule or, for adaptation_rate > 0, of the
  pilot's (module docstring)."""
  error = jnp.mean(acceptance) - settings.target_acceptance
  if settings.adaptation_rate > 0:
    factor = jnp.exp(settings.adaptation_rate * error)
  else:
    factor = jnp.where(error > 0, 1.02, 0.98)
  return jnp.clip(eps * factor, *settings.step_size_range)


def warmup(settings: Settings, key: Array, x: Array, z: Array) -> Array:
  """The initial eps of annealing: the warm-up of the module docstring.

  Runs settings.warmup_steps transitions at b = 0 of the pilot chains
  z [K, Z] (fresh draws of m(z)) from settings.initial_step_size; the
  decoder is not evaluated (its term is replaced by 0). Returns eps, a
  scalar (settings.initial_step_size when warmup_steps = 0).
  """
  eps = jnp.asarray(settings.initial_step_size, z.dtype)
  if settings.warmup_steps == 0:
    return eps
  marginal_only = settings._replace(
      log_likelihood=lambda x_i, z_i: jnp.zeros((), z_i.dtype))
  start = evaluate(marginal_only, x, z)
  beta = jnp.zeros((), z.dtype)
  low, high = (math.log(r) for r in settings.step_size_range)

  def step(carry, inputs):
    point, log_eps = carry
    step_key, gain = inputs
    point, acceptance = transition(marginal_only, step_key, x, point, beta,
                                   jnp.exp(log_eps))
    up = jnp.mean(acceptance) > settings.target_acceptance
    log_eps = jnp.clip(log_eps + jnp.where(up, gain, -gain), low, high)
    return (point, log_eps), None

  gains = WARMUP_GAIN * WARMUP_DECAY ** jnp.arange(settings.warmup_steps,
                                                   dtype=z.dtype)
  keys = jax.random.split(key, settings.warmup_steps)
  (_, log_eps), _ = jax.lax.scan(step, (start, jnp.log(eps)), (keys, gains))
  return jnp.exp(log_eps)
