"""Tests for rdvae/objectives/exact.py against brute-force sums and closed forms."""

from absl.testing import absltest
from absl.testing import parameterized
import distrax
import jax
import jax.numpy as jnp
import numpy as np

from rdvae.objectives import exact

CASES = (('x5_k4', 5, 4, 0), ('x3_k7', 3, 7, 1), ('x8_k2', 8, 2, 2),
         ('x6_k6_sparse', 6, 6, 3))


def _tables(num_x, num_k, seed):
  """Random p*, e, m, d, q in float64; the 'sparse' seed has exact zeros."""
  rng = np.random.default_rng(seed)
  p = rng.dirichlet(np.ones(num_x))
  e = rng.dirichlet(np.ones(num_k) * 0.7, size=num_x)
  m = rng.dirichlet(np.ones(num_k))
  d = rng.dirichlet(np.ones(num_x) * 0.7, size=num_k)
  q = rng.dirichlet(np.ones(num_x))
  if seed == 3:  # states e never uses: e(z|x) = 0 on one column
    e[:, 0] = 0.0
    e /= e.sum(axis=1, keepdims=True)
  return p, e, m, d, q


def _brute_force(p, e, m, d, q):
  """Eqs. 1-5 and 8-10 by explicit loops over x and z."""
  num_x, num_k = e.shape
  pe_z = [sum(p[x] * e[x, z] for x in range(num_x)) for z in range(num_k)]
  g = [sum(m[z] * d[z, x] for z in range(num_k)) for x in range(num_x)]
  r = dist = info = lower = upper = info_gen = 0.0
  for x in range(num_x):
    for z in range(num_k):
      if e[x, z] > 0:
        r += p[x] * e[x, z] * np.log(e[x, z] / m[z])
        dist -= p[x] * e[x, z] * np.log(d[z, x])
        info += p[x] * e[x, z] * np.log(e[x, z] / pe_z[z])
      if m[z] * d[z, x] > 0:
        with np.errstate(divide='ignore'):  # e = 0 there: E = -inf
          lower += m[z] * d[z, x] * np.log(e[x, z] / m[z])
        upper += m[z] * d[z, x] * np.log(d[z, x] / q[x])
        info_gen += m[z] * d[z, x] * np.log(d[z, x] / g[x])
  h = -sum(px * np.log(px) for px in p)
  return dict(rate=r, distortion=dist, mutual_information=info, entropy=h,
              lower=lower, upper=upper, info_gen=info_gen)


class ExactTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.enter_context(jax.enable_x64(True))

  @parameterized.named_parameters(*CASES)
  def test_matches_brute_force(self, num_x, num_k, seed):
    p, e, m, d, q = _tables(num_x, num_k, seed)
    want = _brute_force(p, e, m, d, q)
    np.testing.assert_allclose(exact.rate(p, e, m), want['rate'], rtol=1e-12)
    np.testing.assert_allclose(exact.distortion(p, e, d), want['distortion'],
                               rtol=1e-12)
    np.testing.assert_allclose(exact.mutual_information(p, e),
                               want['mutual_information'], rtol=1e-12,
                               atol=1e-15)
    np.testing.assert_allclose(exact.entropy(p), want['entropy'], rtol=1e-12)
    np.testing.assert_allclose(exact.generative_lower_bound(m, d, e),
                               want['lower'], rtol=1e-12)
    np.testing.assert_allclose(exact.generative_upper_bound(m, d, q),
                               want['upper'], rtol=1e-12)
    np.testing.assert_allclose(exact.generative_mutual_information(m, d),
                               want['info_gen'], rtol=1e-12)
    self.assertEqual(exact.rate(p, e, m).dtype, jnp.float64)

  @parameterized.named_parameters(*CASES)
  def test_representational_bounds(self, num_x, num_k, seed):
    """H - D <= I_e <= R (Eq. 2) for arbitrary d and m."""
    p, e, m, d, _ = _tables(num_x, num_k, seed)
    h, dist = exact.entropy(p), exact.distortion(p, e, d)
    info, r = exact.mutual_information(p, e), exact.rate(p, e, m)
    self.assertLess(h - dist, info)
    self.assertLess(info, r)

  @parameterized.named_parameters(*CASES)
  def test_aggregate_marginal_makes_rate_tight(self, num_x, num_k, seed):
    """With m = p_e(z) the rate equals I_e (Appendix D.3)."""
    p, e, _, _, _ = _tables(num_x, num_k, seed)
    m = exact.aggregate_posterior(p, e)
    np.testing.assert_allclose(exact.rate(p, e, m),
                               exact.mutual_information(p, e), atol=1e-14)

  @parameterized.named_parameters(*CASES)
  def test_posterior_decoder_makes_distortion_tight(self, num_x, num_k, seed):
    """With d = p_e(x|z), H - D equals I_e (Appendix D.4)."""
    p, e, _, _, _ = _tables(num_x, num_k, seed)
    # Bayes: p_e(x|z) = p*(x) e(z|x) / p_e(z) [K, X]; a state e never uses
    # (p_e(z) = 0) gets any row, here p*.
    joint = (p[:, None] * e).T  # [K, X]
    mass = joint.sum(axis=1, keepdims=True)
    d = np.where(mass > 0, joint / np.where(mass > 0, mass, 1.0), p[None, :])
    np.testing.assert_allclose(np.sum(d, axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(exact.entropy(p) - exact.distortion(p, e, d),
                               exact.mutual_information(p, e), atol=1e-14)

  @parameterized.named_parameters(*CASES)
  def test_generative_bounds(self, num_x, num_k, seed):
    """E <= I_d <= G (Eq. 11); G - I_d = KL(g || q), 0 when q = g."""
    p, e, m, d, q = _tables(num_x, num_k, seed)
    del p
    info_gen = exact.generative_mutual_information(m, d)
    self.assertLess(exact.generative_lower_bound(m, d, e), info_gen)
    self.assertLess(info_gen, exact.generative_upper_bound(m, d, q))
    g = exact.generative_distribution(m, d)
    np.testing.assert_allclose(
        exact.generative_upper_bound(m, d, q) - info_gen,
        exact.kl_divergence(g, q), atol=1e-14)
    np.testing.assert_allclose(exact.generative_upper_bound(m, d, g),
                               info_gen, atol=1e-14)
    np.testing.assert_allclose(
        info_gen, exact.joint_mutual_information(m[:, None] * d), atol=1e-14)

  def test_lower_bound_is_tight_at_the_generative_posterior(self):
    """E = I_d when e(z|x) is the posterior of m(z) d(x|z) (Appendix D.5)."""
    _, _, m, d, _ = _tables(5, 4, 0)
    joint = m[:, None] * d                        # [K, X]
    e = (joint / joint.sum(axis=0, keepdims=True)).T
    np.testing.assert_allclose(exact.generative_lower_bound(m, d, e),
                               exact.generative_mutual_information(m, d),
                               atol=1e-14)

  @parameterized.named_parameters(('n2', 2), ('n7', 7), ('n30', 30))
  def test_closed_forms(self, n):
    uniform = np.full(n, 1.0 / n)
    np.testing.assert_allclose(exact.entropy(uniform), np.log(n), rtol=1e-14)
    # A deterministic code z = x with the aggregate marginal: R = I = H.
    e = np.eye(n)
    p = np.random.default_rng(n).dirichlet(np.ones(n))
    np.testing.assert_allclose(exact.rate(p, e, p), exact.entropy(p),
                               rtol=1e-13)
    np.testing.assert_allclose(exact.mutual_information(p, e),
                               exact.entropy(p), rtol=1e-13)
    # An encoder that ignores x: I = 0, and R = KL(e || m).
    row = np.random.default_rng(n + 1).dirichlet(np.ones(3))
    m = np.array([0.5, 0.25, 0.25])
    e = np.tile(row, (n, 1))
    self.assertAlmostEqual(float(exact.mutual_information(p, e)), 0.0,
                           places=14)
    np.testing.assert_allclose(exact.rate(p, e, m),
                               np.sum(row * np.log(row / m)), rtol=1e-13)

  def test_zero_mass_gives_finite_values_and_gradients(self):
    p = np.array([0.5, 0.5, 0.0])
    e = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    m = np.array([0.5, 0.5])
    d = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    self.assertAlmostEqual(float(exact.rate(p, e, m)), np.log(2), places=14)
    self.assertAlmostEqual(float(exact.distortion(p, e, d)), 0.0, places=14)
    grad = jax.grad(lambda logits: exact.rate(
        p, jax.nn.softmax(logits, axis=1), m))(jnp.log(e + 1e-300))
    self.assertTrue(np.all(np.isfinite(grad)))

  def test_terms_are_per_example_and_weight_to_rate(self):
    p, e, m, d, _ = _tables(5, 4, 0)
    terms = exact.terms(e, d, m)
    self.assertEqual(terms.rate.shape, (5,))
    np.testing.assert_allclose(p @ terms.rate, exact.rate(p, e, m),
                               rtol=1e-14)
    np.testing.assert_allclose(p @ terms.distortion,
                               exact.distortion(p, e, d), rtol=1e-14)

  def test_reconstruction_tables(self):
    p, e, _, d, _ = _tables(5, 4, 0)
    kernel = e @ d  # p(x'|x) = sum_z e(z|x) d(x'|z) [X, X] (Fig. 2 row v)
    np.testing.assert_allclose(kernel.sum(axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(exact.reconstruction_distribution(p, e, d),
                               p @ kernel, atol=1e-14)


class MonteCarloRateTest(parameterized.TestCase):
  """The sampled rate log e(z|x) - log m(z) averages to the analytic KL."""

  @parameterized.named_parameters(
      ('dim1', [0.3], [0.5], [0.0], [1.0]),
      ('dim3', [0.5, -1.0, 2.0], [0.5, 1.5, 0.8], [0.0, 0.0, 0.0],
       [1.0, 1.0, 1.0]),
      ('dim2_shifted_marginal', [1.0, 0.0], [0.2, 0.3], [0.5, -0.5],
       [2.0, 0.7]))
  def test_gaussian(self, loc, scale, m_loc, m_scale):
    encoder = distrax.MultivariateNormalDiag(jnp.array(loc), jnp.array(scale))
    marginal = distrax.MultivariateNormalDiag(jnp.array(m_loc),
                                              jnp.array(m_scale))
    z = encoder.sample(seed=jax.random.key(0), sample_shape=(200_000,))
    sampled = encoder.log_prob(z) - marginal.log_prob(z)
    analytic = encoder.kl_divergence(marginal)
    stderr = np.std(sampled) / np.sqrt(sampled.size)
    self.assertLess(abs(float(np.mean(sampled)) - float(analytic)),
                    4 * stderr + 1e-4)
    # The closed form, independently of distrax.
    var, m_var = np.square(scale), np.square(m_scale)
    closed = 0.5 * np.sum(var / m_var + np.square(np.subtract(m_loc, loc))
                          / m_var - 1 + np.log(m_var / var))
    np.testing.assert_allclose(analytic, closed, rtol=1e-5)


if __name__ == '__main__':
  absltest.main()
