"""Tests of rdvae/objectives/bounds.py: the IWAE bound, unit conversions, the generative
bounds E and G (against exact enumeration), active units and moments."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae.objectives import bounds
from rdvae.objectives import exact


from rdvae.toy import measures
from rdvae.toy import model
from rdvae.toy import data
def test_iwae_is_log_mean_exp_over_samples():
  log_w = np.array([[0.0, -1.0], [math.log(3.0), -2.0]], np.float32)  # [K, B]
  expected = [math.log((1 + 3) / 2), math.log((math.exp(-1) + math.exp(-2)) / 2)]
  np.testing.assert_allclose(bounds.iwae(jnp.asarray(log_w)), expected,
                             rtol=1e-6)


@pytest.mark.parametrize('k', [1, 7, 1000], ids=lambda k: f'k{k}')
def test_iwae_of_equal_weights_is_the_weight(k):
  log_w = jnp.full((k, 3), -500.0)  # exp underflows; logsumexp must not
  np.testing.assert_allclose(bounds.iwae(log_w), [-500.0] * 3, rtol=1e-6)


def test_iwae_is_at_least_the_mean_log_weight():
  # Jensen: log mean exp >= mean log, equality iff all weights are equal.
  log_w = jax.random.normal(jax.random.key(0), (50, 20)) * 3.0
  assert np.all(bounds.iwae(log_w) >= jnp.mean(log_w, axis=0) - 1e-5)


def test_iwae_matches_exact_log_marginal_of_a_discrete_model():
  # z in {0, 1} with m = (0.3, 0.7), d(x=1|z) = (0.9, 0.2): p(x=1) = 0.41.
  # With e(z|x) equal to the true posterior every weight is exactly p(x).
  m, d = np.array([0.3, 0.7]), np.array([0.9, 0.2])
  posterior = m * d / 0.41
  z = np.array([0, 1, 1, 0, 1])
  log_w = np.log(d[z] * m[z] / posterior[z])[:, None]
  np.testing.assert_allclose(bounds.iwae(jnp.asarray(log_w)), [math.log(0.41)],
                             rtol=1e-6)


@pytest.mark.parametrize('nats, dims, expected',
                         [(784 * math.log(2.0), 784, 1.0), (0.0, 10, 0.0),
                          (100.0, 784, 100.0 / (784 * math.log(2.0))),
                          (math.log(8.0), 1, 3.0)],
                         ids=['one_bit', 'zero', 'mnist', 'nats_to_bits'])
def test_bits_per_dim(nats, dims, expected):
  np.testing.assert_allclose(bounds.bits_per_dim(nats, dims), expected,
                             rtol=1e-12)


def _random_model(seed, num_latents=4, num_values=6):
  """A random discrete model: m(z) [K], d(x|z) [K, X], e(z|x) [X, K]."""
  rng = np.random.default_rng(seed)
  return (rng.dirichlet(np.ones(num_latents)),
          rng.dirichlet(np.full(num_values, 0.3), size=num_latents),
          rng.dirichlet(np.ones(num_latents), size=num_values))


def _categorical(rng, probs):
  """One draw per row of probs [N, C]."""
  return (rng.random((len(probs), 1)) > np.cumsum(probs, axis=1)).sum(axis=1)


def _generated_pairs(rng, m, d, num_pairs):
  z = rng.choice(len(m), size=num_pairs, p=m)
  return z, _categorical(rng, d[z])


def _x64(f):
  def wrapped(*args):
    with jax.enable_x64(True):
      return float(f(*(jnp.asarray(a, jnp.float64) for a in args)))
  return wrapped


def test_generative_bounds_monte_carlo_converge_to_exact():
  m, d, e = _random_model(0)
  g = m @ d
  exact_e = _x64(exact.generative_lower_bound)(m, d, e)
  info_gen = _x64(exact.generative_mutual_information)(m, d)
  # With q = g, the model's exact marginal, G is I_d itself.
  exact_g = _x64(exact.generative_upper_bound)(m, d, g)
  np.testing.assert_allclose(exact_g, info_gen, rtol=1e-12)
  rng = np.random.default_rng(1)
  num_pairs = 200_000
  z, x = _generated_pairs(rng, m, d, num_pairs)
  lower = np.asarray(bounds.generative_lower_terms(np.log(e[x, z]),
                                                   np.log(m[z])))
  upper = np.asarray(bounds.generative_upper_terms(np.log(d[z, x]),
                                                   np.log(g[x])))
  for terms, target in ((lower, exact_e), (upper, exact_g)):
    stderr = terms.std() / math.sqrt(num_pairs)
    assert abs(terms.mean() - target) < 5 * stderr, (terms.mean(), target)
    assert stderr < 0.01
  assert exact_e < info_gen - 0.5  # a loose encoder: the bounds differ


def test_generative_upper_with_importance_weighted_q_errs_upwards():
  # q(x) from IWAE_K with proposals e(z|x): E[IWAE_K] <= log g(x), so the
  # estimate of G lies above I_d in expectation and falls to it as K grows.
  m, d, e = _random_model(0)
  info_gen = _x64(exact.generative_mutual_information)(m, d)
  # K = 1 exactly: log q(x) = E_e[log m d / e], the ELBO of x under g.
  elbo_x = np.sum(e * (np.log(m[None, :] * d.T) - np.log(e)), axis=1)
  exact_g1 = float(np.sum(m[:, None] * d * (np.log(d) - elbo_x[None, :])))
  rng = np.random.default_rng(2)
  num_pairs = 100_000
  z, x = _generated_pairs(rng, m, d, num_pairs)
  estimates = {}
  for k in (1, 8, 64):
    z_k = np.stack([_categorical(rng, e[x]) for _ in range(k)])  # [K, N]
    log_w = np.log(m[z_k] * d[z_k, x[None]] / e[x[None], z_k])
    log_q = np.asarray(bounds.iwae(jnp.asarray(log_w)))
    terms = np.asarray(bounds.generative_upper_terms(np.log(d[z, x]), log_q))
    estimates[k] = (terms.mean(), terms.std() / math.sqrt(num_pairs))
  mean_1, stderr_1 = estimates[1]
  assert abs(mean_1 - exact_g1) < 5 * stderr_1
  means = [estimates[k][0] for k in (1, 8, 64)]
  # measured 1.645, 0.315, 0.097 against I_d = 0.067
  assert means[0] > means[1] > means[2] > info_gen
  assert means[2] - info_gen < 0.06


@pytest.fixture(scope='module')
def toy_spec():
  return data.compute_data_spec()


@pytest.mark.parametrize('seed', range(5))
def test_information_sandwiches_hold_exactly_on_the_toy(seed, toy_spec):
  # The toy's data distribution p*(x) (30 bins) with random tables of 30
  # latent states: H - D <= I <= R (Eq. 2) and E <= I_d <= G (Eq. 11) for
  # any q, with equality G = I_d at q = g.
  spec = toy_spec
  num_values = len(spec.p_data)
  m, d, e = _random_model(seed, num_latents=30, num_values=num_values)
  q = np.random.default_rng(seed + 100).dirichlet(np.ones(num_values))
  with jax.enable_x64(True):
    p, m, d, e, q = (jnp.asarray(a, jnp.float64)
                     for a in (spec.p_data, m, d, e, q))
    h, dist = exact.entropy(p), exact.distortion(p, e, d)
    info, rate = exact.mutual_information(p, e), exact.rate(p, e, m)
    info_gen = exact.generative_mutual_information(m, d)
    lower = exact.generative_lower_bound(m, d, e)
    upper = exact.generative_upper_bound(m, d, q)
    upper_g = exact.generative_upper_bound(
        m, d, exact.generative_distribution(m, d))
  assert h - dist <= info <= rate
  assert lower <= info_gen <= upper
  assert float(upper - info_gen) > 1e-3 and float(info_gen - lower) > 1e-3
  np.testing.assert_allclose(upper_g, info_gen, rtol=1e-10)
  # And on the hand-built optimal model of Fig. 2a the encoder is the true
  # posterior of the generative joint, so E = I_d = G(q = g = p*).
  tables = model.true_process_tables(spec, 30)
  results = measures.evaluate(spec, tables)
  assert results['bounds_hold']
  np.testing.assert_allclose(results['generative_lower_bound_E'],
                             results['generative_mutual_information'],
                             atol=1e-12)


def test_gaussian_kl_per_dim_sums_to_the_kl():
  rng = np.random.default_rng(3)
  mean, scale = rng.normal(size=(5, 4)), rng.uniform(0.2, 2.0, size=(5, 4))
  # The marginal m(z) = N(nu, diag t^2).
  nu, t = rng.normal(size=4), rng.uniform(0.5, 2.0, size=4)
  per_dim = bounds.gaussian_kl_per_dim(mean, scale, nu, t)
  by_hand = (np.log(t / scale) + (scale ** 2 + (mean - nu) ** 2) / (2 * t ** 2)
             - 0.5)
  np.testing.assert_allclose(per_dim, by_hand, rtol=1e-5)
  # Against distrax's KL of the diagonal Gaussians, summed over dimensions.
  import distrax  # pylint: disable=g-import-not-at-top
  kl = distrax.MultivariateNormalDiag(mean, scale).kl_divergence(
      distrax.MultivariateNormalDiag(nu, t))
  np.testing.assert_allclose(np.sum(per_dim, axis=1), kl, rtol=1e-5)
  np.testing.assert_allclose(bounds.gaussian_kl_per_dim(0.0, 1.0), 0.0)


@pytest.mark.parametrize('sizes', [(7,), (3, 4), (1, 5, 0, 2), (2, 2, 2, 2)])
def test_merge_moments_equals_the_variance_of_all(sizes):
  rng = np.random.default_rng(4)
  # A large common offset: the merge must not lose the small variances.
  parts = [1000.0 + rng.normal(size=(n, 3)) * [1.0, 0.1, 0.001]
           for n in sizes]
  merged = (0.0, 0.0, 0.0)
  for part in parts:
    if len(part):
      mean = part.mean(axis=0)
      merged = bounds.merge_moments(
          merged, (len(part), mean, ((part - mean) ** 2).sum(axis=0)))
    else:
      merged = bounds.merge_moments(merged, (0.0, np.zeros(3), np.zeros(3)))
  everything = np.concatenate(parts)
  count, mean, m2 = merged
  assert count == len(everything)
  np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-13)
  np.testing.assert_allclose(m2 / count, everything.var(axis=0), rtol=1e-9)


def test_active_units_counts_variances_above_the_threshold():
  assert bounds.active_units(np.array([0.5, 0.0101, 0.01, 0.0099, 0.0])) == 2
  assert bounds.active_units(np.array([0.5, 0.2]), threshold=0.3) == 1
