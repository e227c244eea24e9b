"""Annealed importance sampling (AIS) of a decoder, its rate-distortion curve
and bidirectional Monte Carlo (BDMC).

This module owns the AIS estimate of log p(x) = log E_{m(z)}[d(x|z)] for a
fixed decoder d(x|z) and marginal m(z), the decoder's rate-distortion curve
from the same chains (Huang et al., 2020), and the sandwich of log p(x)
between forward and reverse AIS on data simulated from the model (Grosse et
al., 2015). It is pure and imports nothing from rdvae.

Intermediate distributions, on a schedule 0 = b_0 < ... < b_T = b_max:
q_b(z|x) = m(z) d(x|z)^b / Z_b(x), Z_b(x) = E_{m(z)}[d(x|z)^b]; so Z_0 = 1
and, for b_max = 1, Z_1(x) = p(x).

Forward AIS. Each of K chains starts at z_0 ~ m(z), log w_0 = 0; for t >= 1

  log w_t = log w_{t-1} + (b_t - b_{t-1}) log d(x|z_{t-1}),
  z_t     = an HMC transition of z_{t-1} leaving q_{b_t} invariant,

and E[w_t] = Z_{b_t}(x). log Z_{b_t} is estimated by the log-mean-exp of
log w_t over the chains, whose expectation is at most log Z_{b_t} (Jensen):
at b = 1 a stochastic lower bound on log p(x).

Rate and distortion (Huang et al., 2020). (z_t, w_t) is properly weighted
for q_{b_t}, so with normalised weights wbar_t = w_t / sum_k w_t,

  D_b = E_{q_b}[-log d(x|z)]  ~  sum_k wbar_t,k (-log d(x|z_t,k)),
  R_b = KL(q_b || m) = -log Z_b - b D_b     (log q_b/m = b log d - log Z_b),

and at b = 1 the estimates satisfy R + D = -log p(x) by construction.

Reverse AIS and BDMC. For x ~ d(x|z*), z* ~ m(z), z* is an exact sample of
q_1(z|x). Chains started at z* run the schedule backwards (b_T, ..., b_0)
with the same updates, so their log weights add (b_{t-1} - b_t) log d(x|z)
(the forward increments with the sign flipped) and E[w_rev] = Z_0 / Z_1 =
1 / p(x). The log-mean-exp of log w_rev is then (Jensen) a stochastic lower
bound on -log p(x), and its negation a stochastic UPPER bound on log p(x).
On simulated data the gap between the two bounds bounds either's error.

HMC (identity mass). Momentum p ~ N(0, I); `leapfrog_steps` leapfrog steps
of size eps on the potential -log m(z) - b log d(x|z), with gradients from
`jax.grad` of the caller's functions; Metropolis acceptance with probability
min(1, exp(-dH)); a proposal whose dH is NaN (from a non-finite density or
gradient on its trajectory) is rejected.

Step size (after Wu et al., 2017). One eps per example, shared by its K
chains; after each transition, with a = the chains' mean acceptance
probability, eps <- clip(eps * (1.02 if a > target else 0.98), *range).
An adapted eps depends on the chains' past, a slight departure from AIS's
assumptions that is common practice; `step_sizes` (e.g. a pilot run's) fix
them in advance instead.

Example i uses key fold_in(key, first_index + i): a batch, its examples one
at a time and its pieces with their first_index draw the same numbers.
Values are in nats; shapes: [B] examples, [K] chains, [Z] latents.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
LogLikelihood = Callable[[Array, Array], Array]  # (x_i, z [Z]) -> scalar
LogMarginal = Callable[[Array], Array]  # z [Z] -> scalar
SampleMarginal = Callable[[Array, int], Array]  # (key, n) -> [n, Z]
SampleLikelihood = Callable[[Array, Array], Array]  # (key, z [Z]) -> x_i

STEP_SIZE_RANGE = (1e-4, 1.0)


class AISResult(NamedTuple):
  """Forward AIS of B examples with K chains each, in nats.

  Attributes:
    log_px: [B] log-mean-exp over chains of the final log weights: log
      Z_{b_T}(x) (log p(x) when b_T = 1), a stochastic lower bound.
    log_px_stderr: [B] its delta-method standard error, the weights' sample
      std / (sqrt(K) mean) = sqrt((K sum_k wbar_k^2 - 1) / (K - 1)), NaN for
      K = 1.
    betas: [T + 1] the schedule.
    rate: [B, T + 1] R_b = -log Z_b - b D_b at each schedule point.
    distortion: [B, T + 1] D_b, the weighted mean of -log d(x|z).
    acceptance: [B] acceptance probability, mean over transitions and chains.
    step_size: [B] the step size after the last adaptation.
    step_sizes: [B, T] the step size of each transition t = 1..T.
  """

  log_px: Array
  log_px_stderr: Array
  betas: Array
  rate: Array
  distortion: Array
  acceptance: Array
  step_size: Array
  step_sizes: Array


class ReverseAISResult(NamedTuple):
  """Reverse AIS from exact posterior samples, in nats: the stochastic upper
  bound log_px_upper [B] on log Z_{b_T}(x), its delta-method log_px_stderr
  [B] (as in AISResult) and the mean acceptance probability [B]."""

  log_px_upper: Array
  log_px_stderr: Array
  acceptance: Array


class BDMCResult(NamedTuple):
  """Forward and reverse AIS on data simulated from the model, in nats:
  lower [B] and upper [B] (stochastic bounds on log p(x)), gap = upper -
  lower [B], the data x [B, ...], the latents z [B, Z] that generated them,
  and the forward run with its rate-distortion curve."""

  lower: Array
  upper: Array
  gap: Array
  x: Array
  z: Array
  forward: AISResult


class _Settings(NamedTuple):
  """What `ais` takes besides the data, with its defaults."""
  log_likelihood: LogLikelihood
  log_marginal: LogMarginal
  num_chains: int
  leapfrog_steps: int = 10
  initial_step_size: float | Array = 0.05
  target_acceptance: float = 0.65
  step_size_range: tuple[float, float] = STEP_SIZE_RANGE
  chunk_size: Optional[int] = None


class _Point(NamedTuple):
  """K chain states with their log densities and gradients."""
  z: Array  # [K, Z]
  log_d: Array  # [K]
  log_m: Array  # [K]
  grad_d: Array  # [K, Z]
  grad_m: Array  # [K, Z]


def schedule(num_steps: int, beta_max: float = 1.0,
             sharpness: float = 4.0) -> Array:
  """The sigmoid schedule of Grosse et al. (2015): float32 [num_steps + 1].

  b_t = b_max (s(t) - s(0)) / (s(T) - s(0)), s(t) = sigmoid(sharpness
  (2 t / T - 1)): dense near 0 and near b_max, where q_b changes fastest;
  b_0 = 0 and b_T = b_max exactly.
  """
  t = np.arange(num_steps + 1, dtype=np.float64)
  s = 1.0 / (1.0 + np.exp(-sharpness * (2.0 * t / num_steps - 1.0)))
  betas = beta_max * (s - s[0]) / (s[-1] - s[0])
  betas[0], betas[-1] = 0.0, beta_max
  return jnp.asarray(betas, jnp.float32)


def _evaluate(settings: _Settings, x: Array, z: Array) -> _Point:
  """log d(x|z), log m(z) and their gradients for K chains z [K, Z]."""
  d_and_grad = jax.value_and_grad(settings.log_likelihood, argnums=1)
  m_and_grad = jax.value_and_grad(settings.log_marginal)
  log_d, grad_d = jax.vmap(d_and_grad, (None, 0))(x, z)
  log_m, grad_m = jax.vmap(m_and_grad)(z)
  return _Point(z, log_d, log_m, grad_d, grad_m)


def _hmc(settings: _Settings, key: Array, x: Array, point: _Point,
         beta: Array, eps: Array) -> tuple[_Point, Array]:
  """One HMC transition of K chains leaving q_beta invariant.

  Returns the new point and the [K] acceptance probabilities.
  """
  momentum_key, accept_key = jax.random.split(key)
  grad = lambda pt: pt.grad_m + beta * pt.grad_d  # of log q_beta
  log_q = lambda pt: pt.log_m + beta * pt.log_d
  p0 = jax.random.normal(momentum_key, point.z.shape, point.z.dtype)

  def leapfrog(_, carry):
    pt, p = carry
    pt = _evaluate(settings, x, pt.z + eps * p)
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


def _adapt(settings: _Settings, eps: Array, acceptance: Array) -> Array:
  """The step-size rule of the module docstring."""
  factor = jnp.where(jnp.mean(acceptance) > settings.target_acceptance,
                     1.02, 0.98)
  return jnp.clip(eps * factor, *settings.step_size_range)


def _stderr(log_w: Array) -> Array:
  """Delta-method standard error of log mean_k w_k from log w [K]."""
  k = log_w.shape[-1]
  if k < 2:
    return jnp.full((), jnp.nan, log_w.dtype)
  sum_sq = jnp.sum(jax.nn.softmax(log_w) ** 2)
  return jnp.sqrt(jnp.maximum(k * sum_sq - 1.0, 0.0) / (k - 1))


def _anneal(settings: _Settings, key: Array, x: Array, z0: Array,
            path: Array, step_sizes: Optional[Array]) -> dict[str, Array]:
  """K chains from z0 [K, Z] along path [T + 1] for one example x.

  Weights add (path_t - path_{t-1}) log d(x|z_{t-1}), then the chains take
  one HMC step on q_{path_t}. With step_sizes [T] given, transition t uses
  step_sizes[t - 1] and nothing adapts. Only per-step summaries leave the
  scan, so memory does not grow with K times T.
  """
  num_steps = path.shape[0] - 1
  start = _evaluate(settings, x, z0)
  fixed = jnp.zeros((num_steps,)) if step_sizes is None else step_sizes

  def transition(carry, inputs):
    point, log_w, eps = carry
    beta_prev, beta, step_key, fixed_eps = inputs
    eps = eps if step_sizes is None else fixed_eps
    log_w = log_w + (beta - beta_prev) * point.log_d
    point, acceptance = _hmc(settings, step_key, x, point, beta, eps)
    log_z = jax.scipy.special.logsumexp(log_w) - np.log(log_w.shape[0])
    distortion = -jnp.sum(jax.nn.softmax(log_w) * point.log_d)
    next_eps = _adapt(settings, eps, acceptance) if step_sizes is None else eps
    return ((point, log_w, next_eps),
            (log_z, distortion, jnp.mean(acceptance), eps))

  carry = (start, jnp.zeros(z0.shape[:1], z0.dtype),
           jnp.asarray(settings.initial_step_size, z0.dtype))
  inputs = (path[:-1], path[1:], jax.random.split(key, num_steps), fixed)
  (_, log_w, eps), (log_z, distortion, acceptance, used) = jax.lax.scan(
      transition, carry, inputs)
  return dict(
      log_z=jnp.concatenate([jnp.zeros((1,), log_z.dtype), log_z]),
      distortion=jnp.concatenate([-jnp.mean(start.log_d, keepdims=True),
                                  distortion]),
      stderr=_stderr(log_w), acceptance=jnp.mean(acceptance), step_size=eps,
      step_sizes=used)


def _run(settings: _Settings, key: Array, x: Array, path: Array,
         initial: Callable[[Array, Optional[Array]], Array],
         z_exact: Optional[Array], step_sizes: Optional[Array],
         first_index: int | Array) -> dict[str, Array]:
  """`_anneal` for every example i with key fold_in(key, first_index + i).

  initial(key_i, z_exact_i) gives the chains' start [K, Z]. Vmapped over the
  examples; with a chunk size, `lax.map` over chunks of that many (the last
  padded by repeating the last example), so memory is that of one chunk.
  """
  num = x.shape[0]
  if step_sizes is not None:
    step_sizes = jnp.broadcast_to(step_sizes, (num, path.shape[0] - 1))

  def one(i, x_i, z_i, eps_i):
    init_key, chain_key = jax.random.split(jax.random.fold_in(key, i))
    return _anneal(settings, chain_key, x_i, initial(init_key, z_i), path,
                   eps_i)

  arrays = jax.tree.map(jnp.asarray, (first_index + jnp.arange(num), x,
                                      z_exact, step_sizes))
  size = settings.chunk_size
  if size is None or size >= num:
    return jax.vmap(one)(*arrays)
  index = jnp.minimum(jnp.arange(num + (-num % size)), num - 1)
  chunk = lambda a: a[index].reshape((-1, size) + a.shape[1:])
  out = jax.lax.map(lambda c: jax.vmap(one)(*c), jax.tree.map(chunk, arrays))
  return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:num], out)


def ais(key: Array, x: Array, log_likelihood: LogLikelihood,
        log_marginal: LogMarginal, sample_marginal: SampleMarginal, *,
        betas: Array, num_chains: int, leapfrog_steps: int = 10,
        initial_step_size: float | Array = 0.05,
        target_acceptance: float = 0.65,
        step_sizes: Optional[Array] = None,
        step_size_range: tuple[float, float] = STEP_SIZE_RANGE,
        chunk_size: Optional[int] = None,
        first_index: int | Array = 0) -> AISResult:
  """Forward AIS of log p(x) and the rate-distortion curve of a decoder.

  Pure and traceable: jit a wrapper that closes over the callables and the
  static num_chains, leapfrog_steps and chunk_size (a decoder's parameters
  being traced arguments of the wrapper); betas is an array, so schedules of
  one length share a compilation.

  Args:
    key: PRNG key; example i uses fold_in(key, first_index + i).
    x: [B, ...] examples.
    log_likelihood: (x_i, z [Z]) -> log d(x_i|z), a scalar.
    log_marginal: z [Z] -> log m(z), a scalar (its normaliser is unused).
    sample_marginal: (key, n) -> [n, Z] draws of m(z).
    betas: [T + 1] schedule, 0 = b_0 < ... < b_T (e.g. `schedule`).
    num_chains: K chains per example.
    leapfrog_steps: per HMC transition.
    initial_step_size, target_acceptance: of the step-size rule.
    step_sizes: [B, T] or [T] step sizes of transitions 1..T (e.g. a pilot
      run's `step_sizes`); then nothing adapts.
    step_size_range: (lowest, highest) adapted eps.
    chunk_size: examples per vmapped chunk (None: all B at once).
    first_index: index of x[0] in the key stream.

  Returns:
    AISResult: log p(x) [B] with standard errors, R_b, D_b [B, T + 1].
  """
  settings = _Settings(log_likelihood, log_marginal, num_chains,
                       leapfrog_steps, initial_step_size, target_acceptance,
                       step_size_range, chunk_size)
  betas = jnp.asarray(betas, jnp.float32)
  initial = lambda init_key, _: sample_marginal(init_key, num_chains)
  out = _run(settings, key, x, betas, initial, None, step_sizes, first_index)
  return AISResult(
      log_px=out['log_z'][:, -1], log_px_stderr=out['stderr'], betas=betas,
      rate=-out['log_z'] - betas * out['distortion'],
      distortion=out['distortion'], acceptance=out['acceptance'],
      step_size=out['step_size'], step_sizes=out['step_sizes'])


def reverse_ais(key: Array, x: Array, z_exact: Array,
                log_likelihood: LogLikelihood, log_marginal: LogMarginal, *,
                betas: Array, num_chains: int,
                step_sizes: Optional[Array] = None,
                first_index: int | Array = 0, **settings) -> ReverseAISResult:
  """Reverse AIS: a stochastic upper bound on log Z_{b_T}(x).

  The K chains of example i all start at z_exact[i] [Z], an exact sample of
  q_{b_T}(z|x_i), and anneal along b_T, ..., b_0, their log weights adding
  (b_{t-1} - b_t) log d(x|z). E[w_rev] = Z_0 / Z_{b_T} (= 1 / p(x) for
  b_T = 1), so log_px_upper = -log mean_k w_rev,k >= log Z_{b_T}(x) in
  expectation.

  The arguments are those of `ais` (betas is the forward schedule; settings
  are leapfrog_steps, initial_step_size, target_acceptance, step_size_range,
  chunk_size), except that step_sizes [B, T] or [T] are those of the FORWARD
  transitions at b_1..b_T (e.g. `AISResult.step_sizes`): the reverse
  transition at b_t uses the forward one's, that at b_0 the one at b_1.
  None: adapt.
  """
  settings = _Settings(log_likelihood, log_marginal, num_chains, **settings)
  path = jnp.asarray(betas, jnp.float32)[::-1]
  if step_sizes is not None:
    forward = jnp.broadcast_to(step_sizes, (x.shape[0], path.shape[0] - 1))
    step_sizes = jnp.concatenate([forward[:, -2::-1], forward[:, :1]], 1)
  initial = lambda _, z: jnp.broadcast_to(z, (num_chains,) + z.shape)
  out = _run(settings, key, x, path, initial, z_exact, step_sizes,
             first_index)
  return ReverseAISResult(log_px_upper=-out['log_z'][:, -1],
                          log_px_stderr=out['stderr'],
                          acceptance=out['acceptance'])


def bdmc(key: Array, log_likelihood: LogLikelihood,
         log_marginal: LogMarginal, sample_marginal: SampleMarginal,
         sample_likelihood: SampleLikelihood, num_examples: int, *,
         betas: Array, num_chains: int, **settings) -> BDMCResult:
  """BDMC: log p(x) between forward and reverse AIS on simulated data.

  Draws z_i ~ m(z), x_i ~ sample_likelihood(key, z_i) = one draw of
  d(x|z_i), for i < num_examples (B). Forward AIS (`ais`, adapting its step
  sizes) gives lower <= log p(x), reverse AIS (`reverse_ais` from z_i with
  the forward run's step sizes, so its kernels are fixed in advance) gives
  upper >= log p(x), both in expectation. The other arguments and settings
  are those of `ais`.
  """
  z_key, x_key, forward_key, reverse_key = jax.random.split(key, 4)
  z = sample_marginal(z_key, num_examples)
  x = jax.vmap(sample_likelihood)(jax.random.split(x_key, num_examples), z)
  forward = ais(forward_key, x, log_likelihood, log_marginal,
                sample_marginal, betas=betas, num_chains=num_chains,
                **settings)
  reverse = reverse_ais(reverse_key, x, z, log_likelihood, log_marginal,
                        betas=betas, num_chains=num_chains,
                        step_sizes=forward.step_sizes, **settings)
  return BDMCResult(lower=forward.log_px, upper=reverse.log_px_upper,
                    gap=reverse.log_px_upper - forward.log_px, x=x, z=z,
                    forward=forward)


def rate_distortion_curve(result: AISResult
                          ) -> list[tuple[float, float, float]]:
  """(b_t, mean over examples of R_b, of D_b) for t = 0..T, in nats."""
  rate = np.mean(np.asarray(result.rate, np.float64), axis=0)
  distortion = np.mean(np.asarray(result.distortion, np.float64), axis=0)
  return [(float(b), float(r), float(d)) for b, r, d in
          zip(np.asarray(result.betas, np.float64), rate, distortion)]
