"""Tests of rdvae/evaluation/ais.py against the closed forms of a linear-Gaussian model.

  z ~ m(z) = N(0, I_k),   x | z ~ d(x|z) = N(W z + b, s^2 I_d),

with k = 2, d = 16, s = 0.5 and a fixed random W, b. For it

  log p(x)  = log N(x; b, W W^T + s^2 I),
  q_beta    = N(mu, P^-1),  P = I + beta W^T W / s^2,  mu = P^-1 h,
              h = beta W^T (x - b) / s^2,
  D_beta    = (d/2) log(2 pi s^2)
              + (|x - W mu - b|^2 + tr(W P^-1 W^T)) / (2 s^2),
  R_beta    = KL(N(mu, P^-1) || N(0, I))
            = (tr P^-1 + |mu|^2 - k + log det P) / 2,
  log Z_beta = log E_m[d(x|z)^beta]
             = -(beta d/2) log(2 pi s^2) - beta |x - b|^2 / (2 s^2)
               + h^T mu / 2 - (log det P) / 2,

and R_beta + beta D_beta = -log Z_beta, log Z_1 = log p(x) (checked first,
in float64, with a Monte Carlo check of the formulas themselves).

d = 16 with s = 0.5 makes the decoder informative enough that the rate at
beta = 0.05 (about 0.8 nats) is not swamped by the Monte Carlo noise of
beta D_beta; the accuracy run has 16 examples x 2048 chains, so that the 2 %
tolerance on the curve is several standard errors wide at every beta.

Small runs are compiled with XLA:CPU's cheap options: they take seconds to
compile with the default ones and milliseconds to run with either.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae.evaluation import ais
from rdvae.evaluation import bdmc
from rdvae.evaluation import hmc
from rdvae.runs import ais_workdir

LATENTS, DIMS, SIGMA = 2, 16, 0.5
_RNG = np.random.default_rng(0)
W = _RNG.normal(size=(DIMS, LATENTS))
OFFSET = 0.5 * _RNG.normal(size=DIMS)
FAST_COMPILE = {'xla_backend_optimization_level': 0,
                'xla_llvm_disable_expensive_passes': True}
TARGET_BETAS = (0.05, 0.1, 0.3, 0.6, 1.0)


# Closed forms (numpy float64).

def exact_log_px(x):
  cov = W @ W.T + SIGMA**2 * np.eye(DIMS)
  r = x - OFFSET
  return -0.5 * (DIMS * math.log(2 * math.pi) + np.linalg.slogdet(cov)[1]
                 + r @ np.linalg.solve(cov, r))


def exact_q(x, beta):
  """Precision P and mean mu of q_beta(z|x)."""
  precision = np.eye(LATENTS) + beta * W.T @ W / SIGMA**2
  h = beta * W.T @ (x - OFFSET) / SIGMA**2
  return precision, np.linalg.solve(precision, h)


def exact_rate_distortion(x, beta):
  precision, mu = exact_q(x, beta)
  cov = np.linalg.inv(precision)
  residual = x - W @ mu - OFFSET
  distortion = (0.5 * DIMS * math.log(2 * math.pi * SIGMA**2)
                + (residual @ residual + np.trace(W @ cov @ W.T))
                / (2 * SIGMA**2))
  rate = 0.5 * (np.trace(cov) + mu @ mu - LATENTS
                + np.linalg.slogdet(precision)[1])
  return rate, distortion


def exact_log_z(x, beta):
  precision, mu = exact_q(x, beta)
  r = x - OFFSET
  h = beta * W.T @ r / SIGMA**2
  return (-0.5 * beta * DIMS * math.log(2 * math.pi * SIGMA**2)
          - beta * (r @ r) / (2 * SIGMA**2) + 0.5 * h @ mu
          - 0.5 * np.linalg.slogdet(precision)[1])


def numpy_log_d(x, z):
  """log d(x|z) for z [n, k], float64."""
  r = x - z @ W.T - OFFSET
  return (-0.5 * np.sum(r**2, -1) / SIGMA**2
          - 0.5 * DIMS * math.log(2 * math.pi * SIGMA**2))


def simulate(seed, n):
  """n examples x ~ d(x|z), z ~ m(z), as float32 [n, d]."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, LATENTS))
  return (z @ W.T + OFFSET + SIGMA * rng.normal(size=(n, DIMS))).astype(
      np.float32)


# The model for AIS (JAX float32).

_W32, _B32 = jnp.asarray(W, jnp.float32), jnp.asarray(OFFSET, jnp.float32)


def log_likelihood(x, z):
  r = x - _W32 @ z - _B32
  return (-0.5 * jnp.sum(r**2) / SIGMA**2
          - 0.5 * DIMS * math.log(2 * math.pi * SIGMA**2))


def log_marginal(z):
  return -0.5 * jnp.sum(z**2) - 0.5 * LATENTS * math.log(2 * math.pi)


def sample_marginal(key, n):
  return jax.random.normal(key, (n, LATENTS))


def sample_likelihood(key, z):
  return _W32 @ z + _B32 + SIGMA * jax.random.normal(key, (DIMS,))


MODEL = (log_likelihood, log_marginal, sample_marginal)


def test_closed_forms_agree_with_each_other_and_with_monte_carlo():
  x = simulate(1, 1)[0].astype(np.float64)
  np.testing.assert_allclose(exact_log_z(x, 1.0), exact_log_px(x), rtol=1e-12)
  np.testing.assert_allclose(exact_log_z(x, 0.0), 0.0, atol=1e-12)
  rng = np.random.default_rng(2)
  for beta in (0.05, 0.3, 1.0):
    rate, distortion = exact_rate_distortion(x, beta)
    log_z = exact_log_z(x, beta)
    np.testing.assert_allclose(rate + beta * distortion, -log_z, rtol=1e-10)
    assert abs(rate - beta * distortion + log_z) > 1.0  # a wrong sign shows
    # D and R as expectations under samples of q_beta.
    precision, mu = exact_q(x, beta)
    cov = np.linalg.inv(precision)
    z = mu + rng.normal(size=(200_000, LATENTS)) @ np.linalg.cholesky(cov).T
    minus_log_d = -numpy_log_d(x, z)
    log_q_over_m = beta * -minus_log_d - log_z
    for value, samples in ((distortion, minus_log_d), (rate, log_q_over_m)):
      stderr = samples.std() / math.sqrt(samples.size)
      assert abs(samples.mean() - value) < 4 * stderr, (beta, value)
  # Z_beta = E_m[d^beta] by Monte Carlo over the prior at a small beta.
  beta = 0.05
  terms = beta * numpy_log_d(x, rng.normal(size=(400_000, LATENTS)))
  estimate = np.log(np.mean(np.exp(terms - terms.max()))) + terms.max()
  assert abs(estimate - exact_log_z(x, beta)) < 0.01


def test_schedule():
  betas = ais.schedule(300)
  assert betas.shape == (301,) and betas.dtype == jnp.float32
  betas = np.asarray(betas)
  assert betas[0] == 0.0 and betas[-1] == 1.0 and np.all(np.diff(betas) > 0)
  # Dense at the ends: the first and last steps are the smallest.
  steps = np.diff(betas)
  assert steps[0] < steps[150] / 10 and steps[-1] < steps[150] / 10
  assert np.asarray(ais.schedule(10, beta_max=2.5))[-1] == 2.5
  # Past 1, b = 1 is a knot (log Z_1 = log p(x)) and the order holds.
  for beta_max in (1.5, 2.5, 10.0):
    betas = np.asarray(ais.schedule(50, beta_max=beta_max))
    assert np.sum(betas == 1.0) == 1 and np.all(np.diff(betas) > 0)
    assert betas[0] == 0.0 and betas[-1] == np.float32(beta_max)


@functools.partial(jax.jit, static_argnames=('num_chains',))
def _accurate(key, x, betas, num_chains):
  return ais.ais(key, x, *MODEL, betas=betas, num_chains=num_chains,
                 leapfrog_steps=5, initial_step_size=0.2)


@pytest.fixture(scope='module')
def accurate_run():
  x = simulate(3, 16)
  result = _accurate(jax.random.key(0), jnp.asarray(x), ais.schedule(300),
                     num_chains=2048)
  return x.astype(np.float64), jax.device_get(result)


def test_log_px_matches_the_exact_value(accurate_run):
  x, result = accurate_run
  error = result.log_px - np.array([exact_log_px(xi) for xi in x])
  print('AIS log p(x) error (nats):', np.round(error, 4))
  assert abs(np.mean(error)) < 0.05
  # Per example: 0.1 nats, about six standard errors of 2048 chains.
  assert np.max(np.abs(error)) < 0.1
  # The stated standard errors are the errors' scale.
  assert 0.3 < np.sqrt(np.mean((error / result.log_px_stderr) ** 2)) < 3.0


def test_rate_and_distortion_match_the_exact_curve(accurate_run):
  x, result = accurate_run
  curve = _curve(result)
  betas = np.asarray(result.betas, np.float64)
  worst = 0.0
  for target in TARGET_BETAS:
    t = int(np.argmin(np.abs(betas - target)))
    exact = np.mean([exact_rate_distortion(xi, betas[t]) for xi in x], 0)
    estimate = np.array(curve[t][1:])
    relative = estimate / exact - 1
    print(f'beta {betas[t]:.4f}: R {estimate[0]:.4f} (exact {exact[0]:.4f}),'
          f' D {estimate[1]:.4f} (exact {exact[1]:.4f})')
    np.testing.assert_array_less(np.abs(relative), 0.02)
    worst = max(worst, np.max(np.abs(relative)))
    # The tolerance resolves the curve: at 0.9 beta the exact rate differs
    # by more than it.
    shifted = np.mean([exact_rate_distortion(xi, 0.9 * betas[t])[0]
                       for xi in x])
    assert abs(estimate[0] / shifted - 1) > 0.02
  print(f'largest relative error of R and D: {worst:.4f}')


def _curve(result):
  """ais.json's curve of `result` as (b, R_b, D_b) tuples."""
  return [(c['beta'], c['rate'], c['distortion']) for c in
          ais_workdir.rate_distortion_curve(result.betas, result.log_z)]


def test_rate_distortion_curve_is_that_of_the_mean_log_z(accurate_run):
  _, result = accurate_run
  curve = ais_workdir.rate_distortion_curve(
      result.betas, result.log_z, result.sampled_distortion,
      result.sampled_distortion_stderr)
  assert len(curve) == 301
  mean_log_z = np.mean(result.log_z.astype(np.float64), 0)
  with jax.enable_x64(True):
    rate, distortion = map(np.asarray, ais.monotone_curve(
        jnp.asarray(result.betas, jnp.float64), jnp.asarray(mean_log_z)))
  for key, value in [('beta', result.betas), ('rate', rate),
                     ('distortion', distortion),
                     ('sampled_distortion',
                      np.mean(result.sampled_distortion, 0)),
                     ('sampled_distortion_stderr',
                      np.sqrt(np.sum(result.sampled_distortion_stderr.astype(
                          np.float64)**2, 0)) / len(result.log_z))]:
    np.testing.assert_allclose([c[key] for c in curve], value, rtol=1e-6)
  assert curve[0]['rate'] == 0.0  # R_0 = -log Z_0 - 0 D_0 = 0
  assert curve[-1]['rate'] + curve[-1]['distortion'] == pytest.approx(
      -np.mean(result.log_px, dtype=np.float64), abs=1e-6)
  # For exact log Z it is the mean of the examples' curves; with 2048
  # chains the two differ by little. Measured: at most 0.014 nats of R and
  # 0.11 of D.
  d_rate = np.abs(rate - np.mean(result.rate, 0))
  d_distortion = np.abs(distortion - np.mean(result.distortion, 0))
  print('curve of the mean against the mean of the curves, R, D:',
        np.max(d_rate), np.max(d_distortion))
  assert np.max(d_rate) < 0.05 and np.max(d_distortion) < 0.5


def test_the_curve_is_monotone_and_follows_the_samples(accurate_run):
  _, result = accurate_run
  # Exactly monotone per example: D falls and R rises with b.
  assert np.all(np.diff(result.distortion, axis=1) <= 0)
  assert np.all(np.diff(result.rate, axis=1) >= -1e-5)
  # Read off the estimates of log Z: -(R_b + b D_b) is their convex
  # minorant, equal to them at both ends and nowhere above them.
  minorant = -(result.rate + result.betas * result.distortion)
  assert np.all(minorant <= result.log_z + 1e-4)
  np.testing.assert_allclose(minorant[:, [0, -1]], result.log_z[:, [0, -1]],
                             atol=1e-4)
  # The curve follows the sampled D within its noise: its D on (b_t,
  # b_t+1], a chord slope of log Z, against the mean of the sampled D at the
  # two ends, in units of their standard error. Measured: median 0.27, at
  # most 2.53 (16 examples x 300 knots).
  ends = (result.sampled_distortion[:, :-1] + result.sampled_distortion[:, 1:])
  units = (np.abs(result.distortion[:, 1:] - ends / 2)
           / result.sampled_distortion_stderr[:, 1:])
  print('|D - sampled D| / se: median', np.median(units), 'max',
        np.max(units))
  assert np.median(units) < 0.5 and np.max(units) < 4.0


def test_the_monotone_curve_is_the_greatest_convex_minorant():
  # On random, noisy log Z curves: against a lower hull built in Python
  # (the lower chain of Andrew's monotone chain algorithm) and against the
  # max-min formula of its slopes.
  rng = np.random.default_rng(0)
  curve = jax.jit(ais.monotone_curve)
  for _ in range(50):
    betas = np.unique(np.concatenate([[0.0], rng.uniform(0, 1, 30)]))
    log_z = -np.cumsum(rng.uniform(0, 5, betas.size)) * rng.uniform()
    log_z += rng.normal(0, rng.uniform(0, 2), betas.size)
    log_z[0] = 0.0
    hull = []
    for k in range(betas.size):
      while len(hull) > 1 and ((log_z[hull[-1]] - log_z[hull[-2]])
                               * (betas[k] - betas[hull[-2]])
                               >= (log_z[k] - log_z[hull[-2]])
                               * (betas[hull[-1]] - betas[hull[-2]])):
        hull.pop()
      hull.append(k)
    lower = np.interp(betas, betas[hull], log_z[hull])
    slopes = np.diff(lower) / np.diff(betas)
    slopes = np.concatenate([slopes[:1], slopes])
    rate, distortion = map(np.asarray, curve(jnp.asarray(betas, jnp.float32),
                                             jnp.asarray(log_z, jnp.float32)))
    np.testing.assert_allclose(distortion, -slopes, rtol=1e-4, atol=1e-3)
    # The same slopes by the max-min formula of isotonic regression:
    # s_t = max_{i < t} min_{j >= t} chord(i, j).
    chord = lambda i, j: (log_z[j] - log_z[i]) / (betas[j] - betas[i])
    max_min = [max(min(chord(i, j) for j in range(t, betas.size))
                   for i in range(t)) for t in range(1, betas.size)]
    np.testing.assert_allclose(distortion[1:], -np.array(max_min), rtol=1e-4,
                               atol=1e-3)
    expected_rate = -lower + betas * slopes
    expected_rate[0] = 0.0
    np.testing.assert_allclose(rate, expected_rate, rtol=1e-4, atol=1e-3)
  # Convex estimates are their own minorant: D is minus their chord slopes.
  betas = np.linspace(0.0, 1.0, 11)
  log_z = -10 * betas + 3 * betas**2
  rate, distortion = curve(jnp.asarray(betas), jnp.asarray(log_z))
  chords = np.diff(log_z) / np.diff(betas)
  np.testing.assert_allclose(distortion[1:], -chords, rtol=1e-5)
  np.testing.assert_allclose(rate[1:], -log_z[1:] + betas[1:] * chords,
                             atol=1e-5)


def test_rate_plus_distortion_at_one_is_minus_log_px(accurate_run):
  _, result = accurate_run
  rate, distortion = result.rate[:, -1], result.distortion[:, -1]
  assert result.betas[-1] == 1.0
  np.testing.assert_allclose(rate + distortion, -result.log_px, rtol=1e-6,
                             atol=1e-5)
  assert np.all(np.abs(rate - distortion + result.log_px) > 1.0)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _repeated(key, x, betas):
  return ais.ais(key, x, *MODEL, betas=betas, num_chains=16,
                 leapfrog_steps=3)


def test_sampled_distortion_stderr_is_the_scale_of_repeated_runs():
  # One example 400 times: each copy draws its own chains, so the spread of
  # its sampled D_b over the copies is the estimate's Monte Carlo error,
  # which the stated standard error (the delta method of a self-normalised
  # mean) should give. Measured: 0.65-0.99 of the spread with 16 chains,
  # falling as b grows and the weights concentrate on fewer chains
  # (0.42-0.88 with 4 chains), never above it.
  x = np.repeat(simulate(13, 1), 400, 0)
  result = jax.device_get(_repeated(jax.random.key(11), jnp.asarray(x),
                                    ais.schedule(30)))
  spread = np.std(result.sampled_distortion, 0, ddof=1)
  stated = np.sqrt(np.mean(result.sampled_distortion_stderr**2, 0))
  ratio = stated / spread
  print('stated / spread of D_b:', np.round(ratio[::5], 3))
  assert np.all((0.5 < ratio) & (ratio < 1.1)), ratio
  # The curve's D, an average over the knots of its segment, spreads less
  # than one knot's sample where segments are long.
  # Measured: 0.56-0.82 at knots 1, 6, ..., 26.
  calmer = np.std(result.distortion, 0, ddof=1)[1:] / spread[:-1]
  print('spread of the curve / of the samples:', np.round(calmer[::5], 3))
  assert np.median(calmer) < 0.9 and np.max(calmer) < 1.1, calmer
  # One chain has no standard error, and its curve none.
  one = jax.device_get(ais.ais(jax.random.key(1), jnp.asarray(x[:2]), *MODEL,
                               betas=ais.schedule(3), num_chains=1))
  assert np.all(np.isnan(one.sampled_distortion_stderr))
  assert 'sampled_distortion_stderr' not in ais_workdir.rate_distortion_curve(
      one.betas, one.log_z, one.sampled_distortion,
      one.sampled_distortion_stderr)[0]


@functools.partial(jax.jit, static_argnames=('chunk_size',),
                   compiler_options=FAST_COMPILE)
def _small(key, x, betas, first_index, chunk_size=None):
  return ais.ais(key, x, *MODEL, betas=betas, num_chains=8,
                 leapfrog_steps=3, initial_step_size=0.2,
                 chunk_size=chunk_size, first_index=first_index)


def test_a_batch_equals_its_examples_one_at_a_time():
  x = simulate(4, 4)
  x[3] = x[0]  # the same example at another index draws other numbers
  key, betas = jax.random.key(5), ais.schedule(20)
  batch = jax.device_get(_small(key, x, betas, 0))
  for i in range(4):
    alone = jax.device_get(_small(key, x[i:i + 1], betas, i))
    for name, value in batch._asdict().items():
      expected = value if name == 'betas' else value[i:i + 1]
      np.testing.assert_allclose(getattr(alone, name), expected, rtol=1e-5,
                                 atol=1e-5, err_msg=name)
  chunked = jax.device_get(_small(key, x, betas, 0, chunk_size=3))
  for name, value in batch._asdict().items():
    np.testing.assert_allclose(getattr(chunked, name), value, rtol=1e-5,
                               atol=1e-5, err_msg=name)
  assert abs(batch.log_px[3] - batch.log_px[0]) > 1e-4


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _adapting(key, x, betas, initial_step_size):
  return ais.ais(key, x, *MODEL, betas=betas, num_chains=32,
                 leapfrog_steps=5, initial_step_size=initial_step_size,
                 warmup_steps=0)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _fixed(key, x, betas, step_sizes):
  return ais.ais(key, x, *MODEL, betas=betas, num_chains=32,
                 leapfrog_steps=5, step_sizes=step_sizes)


def test_step_size_adaptation_moves_acceptance_towards_the_target():
  # Every transition on the posterior q_1, so that one step size suits all.
  # (With a fixed number of leapfrog steps the acceptance of a Gaussian
  # target is not monotone in eps near the stability limit, so the rule
  # meets its target on average over its oscillation, not at every eps.)
  num_steps = 300
  betas = jnp.ones((num_steps + 1,)).at[0].set(0.0)
  x, key = jnp.asarray(simulate(6, 2)), jax.random.key(7)
  fixed = lambda eps: float(np.mean(
      _fixed(key, x, betas, jnp.full((num_steps,), eps)).acceptance))
  assert fixed(0.002) > 0.95 and fixed(3.0) < 0.05
  finals = []
  for start in (0.002, 3.0):
    adapted = _adapting(key, x, betas, start)
    finals.append(float(np.mean(adapted.step_size)))
    # From the adapted eps on, the rule holds the acceptance at the target.
    again = _adapting(jax.random.key(8), x, betas, finals[-1])
    print(f'from eps {start}: to {finals[-1]:.4f}, mean acceptance '
          f'{np.mean(adapted.acceptance):.3f}, '
          f'then {np.mean(again.acceptance):.3f}')
    assert abs(np.mean(again.acceptance) - 0.65) < 0.05
  np.testing.assert_allclose(finals[0], finals[1], rtol=0.25)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _bdmc(key, betas):
  return bdmc.bdmc(key, *MODEL, sample_likelihood, 512, betas=betas,
                  num_chains=1, leapfrog_steps=5, initial_step_size=0.2)


def test_bdmc_sandwiches_log_px_and_its_gap_shrinks_with_more_steps():
  # One chain per example (as Grosse et al.): the bounds' bias then stands
  # clear of their noise on the mean over examples. A single estimate can
  # land on the wrong side of log p(x) (AIS is unbiased in p(x), not in
  # log p(x)), so the sandwich is checked on the mean.
  gaps = {}
  for num_steps in (10, 100, 1000):
    result = jax.device_get(_bdmc(jax.random.key(8), ais.schedule(num_steps)))
    exact = np.array([exact_log_px(xi) for xi in
                      np.asarray(result.x, np.float64)])
    lower, upper = np.mean(result.lower), np.mean(result.upper)
    print(f'T={num_steps}: lower - exact {lower - np.mean(exact):+.4f}, '
          f'upper - exact {upper - np.mean(exact):+.4f}, gap '
          f'{np.mean(result.gap):.4f}')
    assert lower < np.mean(exact) < upper
    gaps[num_steps] = (np.mean(result.gap),
                       np.std(result.gap) / math.sqrt(result.gap.size))
  for fewer, more in ((10, 100), (100, 1000)):
    (gap_few, se_few), (gap_more, se_more) = gaps[fewer], gaps[more]
    assert gap_few - gap_more > 3 * math.hypot(se_few, se_more)


def test_bdmc_past_one_anneals_to_the_posterior_only():
  """A schedule to beta_max > 1 (for the RD curve) gives BDMC its knots up
  to b = 1: on them the bounds bracket log p(x); on the whole schedule the
  forward chains would estimate log Z_3 and the reverse ones, started at
  the posterior, would bound nothing (both land ~20 nats below log p(x))."""
  betas = ais.schedule(200, beta_max=3.0)
  cut = np.asarray(bdmc.up_to_one(betas))
  assert cut[-1] == 1.0 and np.array_equal(cut, np.asarray(betas)[:len(cut)])
  assert np.array_equal(np.asarray(bdmc.up_to_one(ais.schedule(10))),
                        np.asarray(ais.schedule(10)))
  with pytest.raises(ValueError, match=r'no knot at b = 1 \(it ends at 0.5\)'):
    bdmc.up_to_one(jnp.asarray([0.0, 0.5]))
  for schedule, brackets in ((cut, True), (betas, False)):
    result = jax.device_get(_bdmc(jax.random.key(8), schedule))
    exact = np.mean([exact_log_px(xi) for xi in
                     np.asarray(result.x, np.float64)])
    holds = np.mean(result.lower) < exact < np.mean(result.upper)
    assert holds == brackets, (np.mean(result.lower) - exact,
                               np.mean(result.upper) - exact)


# The step sizes of the shipped defaults: the warm-up on m(z) and the pilot.

_NARROW = 0.1  # a marginal N(0, 0.1^2 I_8): its eps is far from 1e-3 and 1


def _narrow_log_marginal(z):
  return -0.5 * jnp.sum((z / _NARROW) ** 2)


@functools.partial(jax.jit, compiler_options=FAST_COMPILE)
def _warmed(key, initial_step_size):
  no_decoder = lambda x, z: jnp.zeros(())
  settings = hmc.Settings(no_decoder, _narrow_log_marginal, 64,
                          leapfrog_steps=5,
                          initial_step_size=initial_step_size)
  draw, warm, test_key = jax.random.split(key, 3)
  sample = lambda k: _NARROW * jax.random.normal(k, (64, 8))
  eps = hmc.warmup(settings, warm, jnp.zeros(DIMS), sample(draw))
  # The acceptance of eps on fresh draws of the marginal.
  point = hmc.evaluate(settings, jnp.zeros(DIMS), sample(test_key))
  accept = jax.vmap(lambda k: hmc.transition(
      settings, k, jnp.zeros(DIMS), point, 0.0, eps)[1].mean())(
          jax.random.split(test_key, 8))
  return eps, jnp.mean(accept)


def test_warmup_finds_the_marginals_step_size_from_any_start():
  found = [jax.device_get(_warmed(jax.random.key(9), start))
           for start in (1e-3, 1.0)]
  print('warm-up eps and acceptance:', found)
  for eps, acceptance in found:
    assert 0.02 < eps < 0.5  # moved far from both starts
    assert abs(acceptance - 0.65) < 0.1
  # Acceptance is flat near the target (0.72 at eps 0.098, 0.64 at 0.128 in
  # the run that set this), so the chains' noise moves the end by tens of
  # per cent; the starts, 1000 times apart, are forgotten.
  np.testing.assert_allclose(found[0][0], found[1][0], rtol=0.4)


@functools.partial(jax.jit, static_argnames=('pilot_steps', 'warmup_steps'),
                   compiler_options=FAST_COMPILE)
def _short(key, x, initial_step_size, pilot_steps, warmup_steps):
  return ais.ais(key, x, *MODEL, betas=ais.schedule(50), num_chains=32,
                 leapfrog_steps=5, initial_step_size=initial_step_size,
                 pilot_steps=pilot_steps, warmup_steps=warmup_steps)


def test_the_pilot_makes_a_short_schedule_good_from_a_poor_start():
  # 50 transitions from eps = 0.002: adapting 2 % a transition on the chains
  # leaves them nearly still (the known problem of a short schedule); the
  # warm-up and the pilot fix eps first.
  x = simulate(10, 16)
  exact = np.array([exact_log_px(xi) for xi in x.astype(np.float64)])
  key = jax.random.key(11)
  old = jax.device_get(_short(key, x, 0.002, 0, 0))
  new = jax.device_get(_short(key, x, 0.002, None, 30))
  other = jax.device_get(_short(key, x, 3.0, None, 30))
  old_error = np.mean(exact - old.log_px)
  new_error = np.mean(exact - new.log_px)
  print(f'mean log p(x) error: adapting on the chains {old_error:.3f}, '
        f'pilot {new_error:.3f}; acceptance {np.mean(old.acceptance):.3f}, '
        f'{np.mean(new.acceptance):.3f}')
  assert np.mean(old.acceptance) > 0.95
  assert 0.45 < np.mean(new.acceptance) < 0.85
  assert new_error < 0.3 * old_error
  # The pilot's step sizes hardly depend on where its warm-up started.
  np.testing.assert_allclose(np.median(new.step_sizes),
                             np.median(other.step_sizes), rtol=0.2)
  # The run's kernels were fixed in advance: given the same step sizes,
  # AIS draws the same numbers.
  again = jax.device_get(jax.jit(
      lambda k, x, s: ais.ais(k, x, *MODEL, betas=ais.schedule(50),
                              num_chains=32, leapfrog_steps=5, step_sizes=s),
      compiler_options=FAST_COMPILE)(key, x, new.step_sizes))
  np.testing.assert_allclose(again.log_px, new.log_px, rtol=1e-5, atol=1e-4)
