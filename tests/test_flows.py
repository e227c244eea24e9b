"""Tests for rdvae/models/flows.py: mean-only IAF and MAF bijectors and flows."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import distrax
import jax
import jax.numpy as jnp
import numpy as np

from rdvae.models import flows
from rdvae.models import made

DIM = 4


def _random_params(params, seed=0, scale=0.5):
  """Replaces every parameter by N(0, scale^2): mu is far from zero."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(
      treedef, [scale * jax.random.normal(k, l.shape)
                for k, l in zip(keys, leaves)])


def _shift_fn(dim=DIM, seed=0):
  """A random MADE x [..., dim] -> mu(x) as a pure function."""
  network = made.MADE(hidden=16, layers=3, zero_init_output=False)
  params = _random_params(
      network.init(jax.random.key(seed), jnp.zeros((dim,))), seed)
  return lambda x: network.apply(params, x)


def _flow(direction, dim=DIM, steps=3, context=None, seed=0, scale=0.5,
          hidden=16):
  """A random `MeanOnlyFlow` bijector and the module and params behind it."""
  module = flows.MeanOnlyFlow(latent_dim=dim, direction=direction,
                              steps=steps, hidden=hidden, layers=2,
                              zero_init_output=False)
  params = _random_params(module.init(jax.random.key(seed), context), seed,
                          scale)
  return module.apply(params, context), module, params


def _step(kind):
  shift = _shift_fn()
  return flows.IAFStep(shift) if kind == 'iaf' else flows.MAFStep(shift)


class StepTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(('iaf', 'iaf'), ('maf', 'maf'))
  def test_forward_jacobian_is_unit_lower_triangular(self, kind):
    bijector = _step(kind)
    x = jax.random.normal(jax.random.key(1), (DIM,))
    jac = np.asarray(self.variant(jax.jacfwd(bijector.forward))(x))
    np.testing.assert_array_equal(np.triu(jac, 1), 0.0)
    np.testing.assert_allclose(np.diag(jac), 1.0, atol=1e-6)
    self.assertGreater(np.count_nonzero(np.tril(jac, -1)), 3)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(('iaf', 'iaf'), ('maf', 'maf'))
  def test_inverse_jacobian_is_unit_lower_triangular(self, kind):
    bijector = _step(kind)
    y = jax.random.normal(jax.random.key(1), (DIM,))
    jac = np.asarray(self.variant(jax.jacfwd(bijector.inverse))(y))
    np.testing.assert_allclose(np.triu(jac, 1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.diag(jac), 1.0, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(('iaf', 'iaf'), ('maf', 'maf'))
  def test_log_det_matches_slogdet_of_jacfwd(self, kind):
    bijector = _step(kind)
    x = jax.random.normal(jax.random.key(1), (DIM,))
    _, log_det = self.variant(bijector.forward_and_log_det)(x)
    _, inverse_log_det = self.variant(bijector.inverse_and_log_det)(x)
    numerical = jnp.linalg.slogdet(jax.jacfwd(bijector.forward)(x))[1]
    inverse_numerical = jnp.linalg.slogdet(jax.jacfwd(bijector.inverse)(x))[1]
    np.testing.assert_allclose(log_det, numerical, atol=1e-5)
    np.testing.assert_allclose(inverse_log_det, inverse_numerical, atol=1e-5)
    np.testing.assert_allclose(log_det, -inverse_log_det, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ('iaf_single', 'iaf', ()), ('iaf_batch', 'iaf', (3,)),
      ('iaf_batch2', 'iaf', (2, 3)), ('maf_single', 'maf', ()),
      ('maf_batch', 'maf', (3,)), ('maf_batch2', 'maf', (2, 3)))
  def test_round_trip(self, kind, batch_shape):
    bijector = _step(kind)
    x = jax.random.normal(jax.random.key(2), batch_shape + (DIM,))
    y, log_det = self.variant(bijector.forward_and_log_det)(x)
    x_back, inverse_log_det = self.variant(bijector.inverse_and_log_det)(y)
    self.assertEqual(log_det.shape, batch_shape)
    self.assertEqual(inverse_log_det.shape, batch_shape)
    np.testing.assert_allclose(x_back, x, atol=1e-5)
    self.assertGreater(float(jnp.max(jnp.abs(y - x))), 0.1)

  def test_iaf_forward_is_one_pass_shift(self):
    shift = _shift_fn()
    x = jax.random.normal(jax.random.key(2), (5, DIM))
    np.testing.assert_allclose(flows.IAFStep(shift).forward(x), x + shift(x))
    np.testing.assert_allclose(flows.MAFStep(shift).inverse(x), x - shift(x))

  def test_raises_on_scalar_input(self):
    with self.assertRaises(ValueError):
      _step('iaf').forward(jnp.zeros(()))


class ReverseTest(parameterized.TestCase):

  def test_jacobian_is_the_exchange_matrix(self):
    jac = jax.jacfwd(flows.Reverse().forward)(jnp.arange(4.0))
    np.testing.assert_array_equal(jac, np.eye(4)[::-1])
    _, log_det = flows.Reverse().forward_and_log_det(jnp.ones((2, 4)))
    np.testing.assert_array_equal(log_det, np.zeros(2))


class MeanOnlyFlowTest(chex.TestCase):

  @parameterized.named_parameters(('iaf', 'iaf'), ('maf', 'maf'))
  def test_two_steps_are_triangular_in_reversed_order(self, direction):
    # f = s_2 o R o s_1 (Chain lists [s_2, R, s_1]). s_1 is autoregressive in
    # the natural order; s_2 o R in the reversed order: output k of s_2 o R
    # reads inputs j > D - 1 - k, so its Jacobian with columns reversed is
    # unit lower triangular.
    bijector, _, _ = _flow(direction, steps=2)
    second, reverse, first = bijector.bijectors
    self.assertIsInstance(reverse, flows.Reverse)
    x = jax.random.normal(jax.random.key(3), (DIM,))
    jac_first = np.asarray(jax.jacfwd(first.forward)(x))
    np.testing.assert_allclose(np.triu(jac_first, 1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.diag(jac_first), 1.0, atol=1e-6)
    jac_second = np.asarray(jax.jacfwd(
        lambda v: second.forward(reverse.forward(v)))(x))[:, ::-1]
    np.testing.assert_allclose(np.triu(jac_second, 1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.diag(jac_second), 1.0, atol=1e-6)
    self.assertGreater(np.count_nonzero(np.tril(jac_second, -1)), 3)
    # The composite, composed in the Chain's order, is their product.
    jac_outer = jax.jacfwd(lambda v: second.forward(reverse.forward(v)))(
        first.forward(x))
    np.testing.assert_allclose(jax.jacfwd(bijector.forward)(x),
                               jac_outer @ jac_first, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(('iaf', 'iaf'), ('maf', 'maf'))
  def test_chain_round_trip_and_log_det(self, direction):
    bijector, _, _ = _flow(direction, steps=4)
    x = jax.random.normal(jax.random.key(4), (6, DIM))
    y, log_det = self.variant(bijector.forward_and_log_det)(x)
    x_back, inverse_log_det = self.variant(bijector.inverse_and_log_det)(y)
    np.testing.assert_allclose(x_back, x, atol=1e-4)
    numerical = jax.vmap(
        lambda v: jnp.linalg.slogdet(jax.jacfwd(bijector.forward)(v))[1])(x)
    np.testing.assert_allclose(log_det, numerical, atol=1e-4)
    np.testing.assert_allclose(inverse_log_det, -numerical, atol=1e-4)

  def test_context_changes_the_iaf(self):
    context = jax.random.normal(jax.random.key(5), (3, 7))
    bijector, module, params = _flow('iaf', context=context, hidden=64)
    other = module.apply(params, context + 1.0)
    x = jnp.zeros((3, DIM))
    self.assertGreater(
        float(jnp.max(jnp.abs(bijector.forward(x) - other.forward(x)))), 1e-3)
    # Every dimension of the first step (even mu_0) reads the context.
    first = bijector.bijectors[-1]
    delta = jnp.abs(first.forward(x) - other.bijectors[-1].forward(x))
    self.assertTrue(bool(jnp.all(delta > 0)))

  def test_zero_initialised_flow_is_a_permutation(self):
    module = flows.MeanOnlyFlow(latent_dim=DIM, direction='maf', steps=2,
                                hidden=8, layers=1)
    bijector = module.apply(module.init(jax.random.key(0)))
    x = jnp.arange(float(DIM))
    np.testing.assert_allclose(bijector.forward(x), x[::-1])

  def test_gradients_reach_every_made(self):
    module = flows.MeanOnlyFlow(latent_dim=DIM, direction='maf', steps=3,
                                hidden=8, layers=2, zero_init_output=False)
    params = module.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, DIM))

    def loss(p):
      return jnp.sum(module.apply(p).inverse(x) ** 2)

    grads = jax.grad(loss)(params)['params']
    for k in range(3):
      norm = sum(float(jnp.sum(g ** 2))
                 for g in jax.tree_util.tree_leaves(grads[f'made_{k}']))
      self.assertGreater(norm, 0.0)

  def test_iaf_sample_and_log_prob_in_one_pass(self):
    context = jax.random.normal(jax.random.key(5), (3, 7))
    bijector, _, _ = _flow('iaf', context=context)
    base = distrax.MultivariateNormalDiag(jnp.zeros((3, DIM)),
                                          jnp.full((3, DIM), 0.7))
    encoder = distrax.Transformed(base, bijector)
    z, log_prob = jax.jit(lambda k: encoder.sample_and_log_prob(
        seed=k, sample_shape=(2,)))(jax.random.key(6))
    self.assertEqual(z.shape, (2, 3, DIM))
    # The one-pass density of its own samples equals the density computed
    # through the sequential inverse, and (volume preserving) the base density
    # at the inverse.
    np.testing.assert_allclose(log_prob, encoder.log_prob(z), atol=1e-4)
    np.testing.assert_allclose(log_prob, base.log_prob(bijector.inverse(z)),
                               atol=1e-4)

  def test_maf_samples_follow_its_log_prob(self):
    # In 2-D: the density integrates to one on a grid, and the sample mean and
    # covariance (sequential direction) match the quadrature moments of
    # exp(log_prob) (one-pass direction).
    bijector, _, _ = _flow('maf', dim=2, steps=4)
    marginal = distrax.Transformed(
        distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2)), bijector)
    grid = np.linspace(-12.0, 12.0, 481)
    area = (grid[1] - grid[0]) ** 2
    points = np.stack(np.meshgrid(grid, grid, indexing='ij'), -1).reshape(-1, 2)
    density = np.exp(np.asarray(jax.jit(marginal.log_prob)(points)))
    self.assertAlmostEqual(density.sum() * area, 1.0, places=3)
    mean = (density[:, None] * points).sum(0) * area
    centred = points - mean
    cov = (density[:, None, None] * centred[:, :, None] * centred[:, None, :]
           ).sum(0) * area
    self.assertGreater(np.abs(mean).max(), 0.2)  # the flow moved the mass
    n = 20000
    samples = np.asarray(jax.jit(lambda k: marginal.sample(
        seed=k, sample_shape=(n,)))(jax.random.key(7)))
    standard_error = np.sqrt(np.diag(cov) / n)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean),
                                 5 * standard_error)
    np.testing.assert_allclose(np.cov(samples.T), cov, rtol=0.05, atol=0.02)

  def test_bijector_outlives_apply(self):
    module = flows.MeanOnlyFlow(latent_dim=DIM, direction='maf', steps=2,
                                hidden=8, layers=1, zero_init_output=False)
    params = module.init(jax.random.key(0))
    bijector = module.apply(params)
    x = jnp.ones((DIM,))
    sample = jax.jit(bijector.forward)(x)
    np.testing.assert_allclose(bijector.inverse(sample), x, atol=1e-5)

  def test_paper_size_maf_sample_and_density(self):
    # 64 dims, 4 steps, MADE 3 x 640: one compiled sequential sampling pass
    # and one density pass.
    module = flows.MeanOnlyFlow(latent_dim=64, direction='maf', steps=4,
                                hidden=640, layers=3, zero_init_output=False)
    params = _random_params(module.init(jax.random.key(0)), scale=0.02)
    marginal = distrax.Transformed(
        distrax.MultivariateNormalDiag(jnp.zeros(64), jnp.ones(64)),
        module.apply(params))
    z, log_prob = jax.jit(lambda k: marginal.sample_and_log_prob(
        seed=k, sample_shape=(2,)))(jax.random.key(1))
    self.assertEqual(z.shape, (2, 64))
    np.testing.assert_allclose(marginal.log_prob(z), log_prob, rtol=1e-4,
                               atol=1e-3)

  def test_unknown_direction_raises(self):
    module = flows.MeanOnlyFlow(latent_dim=DIM, direction='sideways')
    with self.assertRaisesRegex(ValueError, 'sideways'):
      module.init(jax.random.key(0))


if __name__ == '__main__':
  absltest.main()
