"""Annealed importance sampling (AIS) of a decoder and its rate-distortion
curve.

This module owns the AIS estimate of log p(x) = log E_{m(z)}[d(x|z)] for a
fixed decoder d(x|z) and marginal m(z) and the decoder's rate-distortion
curve from the same chains (Huang et al., 2020). It is pure; its HMC
transitions are `evaluation.hmc`'s, and `evaluation.bdmc` runs its chains
backwards.

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
  R_b = KL(q_b || m) = -log Z_b - b D_b     (log q_b/m = b log d - log Z_b).

These sampled D_b (and their delta-method standard error sqrt(sum_k
wbar_t,k^2 (-log d(x|z_t,k) - D_b)^2)) are noisy: the chains' states move
between knots, so the sampled curve zigzags where its true steps are small.
The curve returned has the shape of the exact one: log Z_b is convex in b
(d^2 log Z_b / db^2 = Var_{q_b}[log d] >= 0), so D_b = -d log Z_b / db
falls and R_b = -log Z_b + b d log Z_b / db rises. `monotone_curve` takes
the greatest convex minorant of the AIS estimates log Z_{b_t} (the largest
convex function of b under them; Grenander's estimator of a monotone
density is the same construction) and reads D_b and R_b off it: D falls
and R rises exactly, R_0 = 0, and at b = b_T R + b_T D = -log Z_{b_T}, so
for b_max = 1 R + D = -log p(x) of the same chains. (For b_max > 1, R + D
at the knot b = 1 is minus the minorant there: at most the estimate of
-log p(x), and equal to it where the estimates are convex.) On (b_{t-1},
b_t] its D is minus the minorant's slope, -(log Z_{b_t} - log Z_{b_t-1}) /
(b_t - b_{t-1}) where the estimates are convex there: the mean of the
sampled D at the two ends up to O((b_t - b_{t-1})^2), as log Z's
increments come from the same weighted states. Where it pools knots it
averages their noise. Like Grenander's estimator it is biased at the ends,
where a slope is the most extreme of many noisy chords: D_{b_max} low and
D_0 high, by up to a few standard errors of the sampled D there. The curve
of several examples is best taken from their mean log Z (as ais.json's is,
`runs.ais_workdir.rate_distortion_curve`): for exact log Z it is the mean
of their curves, and its noise, pooling and bias are smaller.

HMC transitions leave each q_b invariant (`evaluation.hmc`). Their step
size eps, one per example and transition, is fixed before the chains run,
by a pilot: a short forward run of K chains of its own (a warm-up on m(z)
alone, then P transitions along the sub-schedule b_{t_0}, ..., b_{t_P} of
the schedule, t_j = round(j T / P), its eps adapting quickly towards an
acceptance rate of 0.65), whose weights are discarded. Transition t of the
AIS run uses exp of the pilot's log eps interpolated linearly in t between
the t_j. Fixed in advance, the kernels leave AIS exact: an eps adapted on
the chains themselves depends on their past, and quickly adapted it can
push the forward "lower" bound above log p(x). The caller's `step_sizes`
replace the pilot; pilot_steps = 0 adapts on the chains instead, from the
warm-up's eps, slowly (2 % a transition).

Example i uses key fold_in(key, first_index + i): a batch, its examples one
at a time and its pieces with their first_index draw the same numbers.
Values are in nats; shapes: [B] examples, [K] chains, [Z] latents.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rdvae.evaluation import hmc

Array = jax.Array
LogLikelihood = hmc.LogLikelihood
LogMarginal = hmc.LogMarginal
SampleMarginal = Callable[[Array, int], Array]  # (key, n) -> [n, Z]

STEP_SIZE_RANGE = hmc.STEP_SIZE_RANGE
PILOT_MIN_STEPS = 20
PILOT_ADAPTATION_RATE = 1.0
PILOT_STREAM = 0x7FFFFFFF  # the pilot's keys: fold_in(key, this), then i


class AISResult(NamedTuple):
  """Forward AIS of B examples with K chains each, in nats.

  Attributes:
    log_px: [B] log-mean-exp over chains of the final log weights: log
      Z_{b_T}(x) (log p(x) when b_T = 1), a stochastic lower bound.
    log_px_stderr: [B] its delta-method standard error, the weights' sample
      std / (sqrt(K) mean) = sqrt((K sum_k wbar_k^2 - 1) / (K - 1)), NaN for
      K = 1.
    betas: [T + 1] the schedule.
    log_z: [B, T + 1] the AIS estimates of log Z_b at each schedule point.
    rate: [B, T + 1] R_b of the curve (`monotone_curve`), rising with b.
    distortion: [B, T + 1] D_b of the curve, falling with b.
    sampled_distortion: [B, T + 1] the weighted mean of -log d(x|z) over
      the chains at each schedule point.
    sampled_distortion_stderr: [B, T + 1] its delta-method standard error.
    acceptance: [B] acceptance probability, mean over transitions and chains.
    step_size: [B] the step size after the last adaptation.
    step_sizes: [B, T] the step size of each transition t = 1..T.
  """

  log_px: Array
  log_px_stderr: Array
  betas: Array
  log_z: Array
  rate: Array
  distortion: Array
  sampled_distortion: Array
  sampled_distortion_stderr: Array
  acceptance: Array
  step_size: Array
  step_sizes: Array


def schedule(num_steps: int, beta_max: float = 1.0,
             sharpness: float = 4.0) -> Array:
  """The sigmoid schedule of Grosse et al. (2015): float32 [num_steps + 1].

  b_t = b_max (s(t) - s(0)) / (s(T) - s(0)), s(t) = sigmoid(sharpness
  (2 t / T - 1)): dense near 0 and near b_max, where q_b changes fastest;
  b_0 = 0 and b_T = b_max exactly. With b_max > 1 the knot nearest to 1 is
  moved to 1 exactly, so that log Z_1 = log p(x) is one of the estimates.
  """
  t = np.arange(num_steps + 1, dtype=np.float64)
  s = 1.0 / (1.0 + np.exp(-sharpness * (2.0 * t / num_steps - 1.0)))
  betas = beta_max * (s - s[0]) / (s[-1] - s[0])
  betas[0], betas[-1] = 0.0, beta_max
  if beta_max > 1.0:
    betas[np.argmin(np.abs(betas[1:-1] - 1.0)) + 1] = 1.0
  return jnp.asarray(betas, jnp.float32)


def monotone_curve(betas: Array, log_z: Array) -> tuple[Array, Array]:
  """The rate-distortion curve (R_b, D_b) [T + 1] of one example from AIS's
  log Z_b [T + 1] on betas [T + 1] (module docstring).

  The greatest convex minorant L of the points (b_t, log Z_t) is the lower
  hull of the points: its vertices are found in one pass over t (Andrew's
  monotone chain: a vertex leaves the stack when the chord from it to the
  new point is no steeper than the chord into it), O(T) time and memory.
  On (b_{t-1}, b_t] between vertices i < j, L has the slope s_t = (log Z_j
  - log Z_i) / (b_j - b_i) (equivalently max_{i' < t} min_{j' >= t} of the
  chord slopes, the max-min formula of isotonic regression). With D = -L'
  and R = -L + b L' (module docstring), knot t >= 1 gets D_t = -s_t and
  R_t = -log Z_i + b_i s_t; knot 0 gets D_0 = -s_1 and R_0 = 0.
  """
  betas = jnp.asarray(betas, log_z.dtype)
  num = betas.shape[0]

  def add(carry, t):
    stack, size = carry

    def bends_down(c):  # the stack's top is no vertex once t is added
      top, below = c[0][c[1] - 1], c[0][c[1] - 2]
      into = (log_z[top] - log_z[below]) * (betas[t] - betas[top])
      out = (log_z[t] - log_z[top]) * (betas[top] - betas[below])
      return (c[1] >= 2) & (out <= into)

    stack, size = jax.lax.while_loop(bends_down, lambda c: (c[0], c[1] - 1),
                                     (stack, size))
    return (stack.at[size].set(t), size + 1), None

  start = (jnp.zeros((num,), jnp.int32), jnp.ones((), jnp.int32))
  (stack, size), _ = jax.lax.scan(add, start,
                                  jnp.arange(1, num, dtype=jnp.int32))
  vertices = jnp.where(jnp.arange(num) < size, stack, num)
  knots = jnp.arange(1, num)
  right = jnp.searchsorted(vertices, knots, side='left')  # vertex j >= t
  i, j = vertices[right - 1], vertices[right]
  slope = (log_z[j] - log_z[i]) / (betas[j] - betas[i])
  rate = -log_z[i] + betas[i] * slope
  return (jnp.concatenate([jnp.zeros((1,), rate.dtype), rate]),
          -jnp.concatenate([slope[:1], slope]))


def _stderr(log_w: Array) -> Array:
  """Delta-method standard error of log mean_k w_k from log w [K]."""
  k = log_w.shape[-1]
  if k < 2:
    return jnp.full((), jnp.nan, log_w.dtype)
  sum_sq = jnp.sum(jax.nn.softmax(log_w) ** 2)
  return jnp.sqrt(jnp.maximum(k * sum_sq - 1.0, 0.0) / (k - 1))


def _weighted_mean_and_stderr(log_w: Array, values: Array):
  """sum_k wbar_k v_k, wbar = softmax(log_w), and its standard error (NaN
  for K = 1)."""
  weights = jax.nn.softmax(log_w)
  mean = jnp.sum(weights * values)
  stderr = jnp.sqrt(jnp.sum(weights**2 * (values - mean)**2))
  return mean, stderr if log_w.shape[-1] > 1 else jnp.full_like(mean, jnp.nan)


def _anneal(settings: hmc.Settings, key: Array, x: Array, z0: Array,
            path: Array, step_sizes: Optional[Array],
            eps0: Array) -> dict[str, Array]:
  """K chains from z0 [K, Z] along path [T + 1] for one example x.

  Weights add (path_t - path_{t-1}) log d(x|z_{t-1}), then the chains take
  one HMC step on q_{path_t}. With step_sizes [T] given, transition t uses
  step_sizes[t - 1] and nothing adapts; else eps starts at eps0 and follows
  `hmc.adapt`. Only per-step summaries leave the scan, so memory does not
  grow with K times T.
  """
  num_steps = path.shape[0] - 1
  start = hmc.evaluate(settings, x, z0)
  fixed = jnp.zeros((num_steps,)) if step_sizes is None else step_sizes

  def transition(carry, inputs):
    point, log_w, eps = carry
    beta_prev, beta, step_key, fixed_eps = inputs
    eps = eps if step_sizes is None else fixed_eps
    log_w = log_w + (beta - beta_prev) * point.log_d
    point, acceptance = hmc.transition(settings, step_key, x, point, beta,
                                       eps)
    log_z = jax.scipy.special.logsumexp(log_w) - np.log(log_w.shape[0])
    distortion = _weighted_mean_and_stderr(log_w, -point.log_d)
    next_eps = (hmc.adapt(settings, eps, acceptance) if step_sizes is None
                else eps)
    return ((point, log_w, next_eps),
            (log_z, distortion, jnp.mean(acceptance), eps, next_eps))

  carry = (start, jnp.zeros(z0.shape[:1], z0.dtype),
           jnp.asarray(eps0, z0.dtype))
  inputs = (path[:-1], path[1:], jax.random.split(key, num_steps), fixed)
  (_, log_w, eps), (log_z, (distortion, distortion_stderr), acceptance,
                    used, adapted) = jax.lax.scan(transition, carry, inputs)
  first = _weighted_mean_and_stderr(jnp.zeros_like(start.log_d),
                                    -start.log_d)
  return dict(
      log_z=jnp.concatenate([jnp.zeros((1,), log_z.dtype), log_z]),
      distortion=jnp.concatenate([first[0][None], distortion]),
      distortion_stderr=jnp.concatenate([first[1][None],
                                         distortion_stderr]),
      stderr=_stderr(log_w), acceptance=jnp.mean(acceptance), step_size=eps,
      step_sizes=used, adapted=adapted)


def run_chains(settings: hmc.Settings, key: Array, x: Array, path: Array,
               initial: Callable[[Array, Optional[Array]], Array],
               z_exact: Optional[Array], step_sizes: Optional[Array],
               first_index: int | Array,
               pilot: Optional[Callable[[Array], Array]] = None
               ) -> dict[str, Array]:
  """`_anneal` for every example i with key fold_in(key, first_index + i).

  The chains of forward AIS (`ais`) and of reverse AIS (`bdmc`): path
  [T + 1] is the schedule in the order it is run. initial(key_i,
  z_exact_i) gives the chains' start [K, Z]. When step sizes adapt and
  pilot (key -> [K, Z] draws of m(z)) is given, `hmc.warmup` on pilot
  chains of their own sets the first eps; else it is
  settings.initial_step_size. Vmapped over the
  examples; with a chunk size, `lax.map` over chunks of that many (the last
  padded by repeating the last example), so memory is that of one chunk.
  """
  num = x.shape[0]
  if step_sizes is not None:
    step_sizes = jnp.broadcast_to(step_sizes, (num, path.shape[0] - 1))

  def one(i, x_i, z_i, eps_i):
    init_key, chain_key = jax.random.split(jax.random.fold_in(key, i))
    eps0 = jnp.asarray(settings.initial_step_size, jnp.float32)
    if step_sizes is None and pilot is not None and settings.warmup_steps:
      draw_key, warm_key = jax.random.split(jax.random.fold_in(init_key, 1))
      eps0 = hmc.warmup(settings, warm_key, x_i, pilot(draw_key))
    return _anneal(settings, chain_key, x_i, initial(init_key, z_i), path,
                   eps_i, eps0)

  arrays = jax.tree.map(jnp.asarray, (first_index + jnp.arange(num), x,
                                      z_exact, step_sizes))
  size = settings.chunk_size
  if size is None or size >= num:
    return jax.vmap(one)(*arrays)
  index = jnp.minimum(jnp.arange(num + (-num % size)), num - 1)
  chunk = lambda a: a[index].reshape((-1, size) + a.shape[1:])
  out = jax.lax.map(lambda c: jax.vmap(one)(*c), jax.tree.map(chunk, arrays))
  return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:num], out)


def default_pilot_steps(num_steps: int) -> int:
  """The pilot's P for a schedule of T transitions: T / 10, at least 20 (a
  tenth of the cost of the run, or all of it for T <= 20)."""
  return min(num_steps, max(PILOT_MIN_STEPS, num_steps // 10))


def _pilot_step_sizes(settings: hmc.Settings, key: Array, x: Array,
                      betas: Array, initial, pilot, pilot_steps: int,
                      first_index: int | Array) -> Array:
  """The pilot of the module docstring: step sizes [B, T] for the run."""
  num_steps = betas.shape[0] - 1
  knots = np.round(np.linspace(0, num_steps, pilot_steps + 1)).astype(int)
  fast = settings._replace(adaptation_rate=PILOT_ADAPTATION_RATE)
  out = run_chains(fast, jax.random.fold_in(key, PILOT_STREAM), x,
                   betas[knots], initial, None, None, first_index, pilot)
  steps = jnp.arange(1, num_steps + 1, dtype=jnp.float32)
  log_eps = jax.vmap(lambda e: jnp.interp(steps, knots[1:], jnp.log(e)))(
      out['adapted'])
  return jnp.exp(log_eps)


def ais(key: Array, x: Array, log_likelihood: LogLikelihood,
        log_marginal: LogMarginal, sample_marginal: SampleMarginal, *,
        betas: Array, num_chains: int, leapfrog_steps: int = 10,
        initial_step_size: float | Array = 0.05,
        target_acceptance: float = 0.65,
        step_sizes: Optional[Array] = None,
        step_size_range: tuple[float, float] = STEP_SIZE_RANGE,
        chunk_size: Optional[int] = None,
        warmup_steps: int = 30,
        pilot_steps: Optional[int] = None,
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
    initial_step_size: where the warm-up's search starts (where annealing
      starts for warmup_steps = 0).
    target_acceptance: of the step-size rules (`evaluation.hmc`).
    step_sizes: [B, T] or [T] step sizes of transitions 1..T (e.g. a pilot
      run's `step_sizes`); then nothing adapts.
    step_size_range: (lowest, highest) adapted eps.
    chunk_size: examples per vmapped chunk (None: all B at once).
    warmup_steps: transitions at b = 0 on m(z) alone that set the first
      eps (`hmc.warmup`; 0: none); unused when step_sizes are given.
    pilot_steps: P, transitions of the pilot that sets the step sizes
      (module docstring); None: `default_pilot_steps(T)`; 0: no pilot, eps
      adapts on the chains themselves (`hmc.adapt`, 2 % a transition).
    first_index: index of x[0] in the key stream.

  Returns:
    AISResult: log p(x) [B] with standard errors, log Z_b and the curve
    R_b, D_b [B, T + 1].
  """
  settings = hmc.Settings(log_likelihood, log_marginal, num_chains,
                          leapfrog_steps, initial_step_size,
                          target_acceptance, step_size_range, chunk_size,
                          warmup_steps)
  betas = jnp.asarray(betas, jnp.float32)
  initial = lambda init_key, _: sample_marginal(init_key, num_chains)
  pilot = lambda pilot_key: sample_marginal(pilot_key, num_chains)
  num_steps = betas.shape[0] - 1
  if pilot_steps is None:
    pilot_steps = default_pilot_steps(num_steps)
  if step_sizes is None and pilot_steps:
    step_sizes = _pilot_step_sizes(settings, key, x, betas, initial, pilot,
                                   min(pilot_steps, num_steps), first_index)
  out = run_chains(settings, key, x, betas, initial, None, step_sizes,
                   first_index, pilot)
  rate, distortion = jax.vmap(monotone_curve, (None, 0))(betas,
                                                         out['log_z'])
  return AISResult(
      log_px=out['log_z'][:, -1], log_px_stderr=out['stderr'], betas=betas,
      log_z=out['log_z'], rate=rate, distortion=distortion,
      sampled_distortion=out['distortion'],
      sampled_distortion_stderr=out['distortion_stderr'],
      acceptance=out['acceptance'], step_size=out['step_size'],
      step_sizes=out['step_sizes'])
