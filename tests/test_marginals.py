"""Tests of rdvae.marginals: standard normal, MAF and VampPrior marginals (F.3)."""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from rdvae.models import encoders
from rdvae.models import marginals


@pytest.mark.parametrize('latent_dim', [1, 64], ids=['z1', 'z64'])
def test_standard_normal_log_prob_closed_form(latent_dim):
  marginal = marginals.StandardNormal(latent_dim=latent_dim)
  variables = marginal.init(jax.random.key(0))
  assert not jax.tree_util.tree_leaves(variables)  # fixed: no parameters
  m = marginal.apply(variables, encoder=None)
  assert m.event_shape == (latent_dim,) and m.batch_shape == ()
  z = jax.random.normal(jax.random.key(1), (5, latent_dim)) * 2.0
  expected = (-0.5 * latent_dim * np.log(2 * np.pi)
              - 0.5 * np.sum(np.asarray(z, np.float64) ** 2, axis=-1))
  np.testing.assert_allclose(m.log_prob(z), expected, rtol=1e-6)


def test_standard_normal_moments():
  m = marginals.StandardNormal().apply({})
  z = m.sample(seed=jax.random.key(2), sample_shape=(20_000,))
  assert z.shape == (20_000, 64)
  # Standard errors: 1/sqrt(n) = 0.007 for the mean, sqrt(2/n) = 0.01 for
  # the variance; 5 standard errors over 64 coordinates.
  np.testing.assert_allclose(jnp.mean(z, 0), 0.0, atol=0.036)
  np.testing.assert_allclose(jnp.var(z, 0), 1.0, atol=0.05)


# --- MAF marginal (+) and VampPrior (v) --------------------------------------

_PSEUDO_SHAPE = (2, 2, 1)
_IMAGE_SHAPE = (28, 28, 1)  # binarized MNIST, the paper's images


class _StandInEncoder(nn.Module):
  """x [B, 2, 2, 1] -> N(W x + b, diag softplus(V x + c)^2), latent Z."""

  latent_dim: int = 1

  @nn.compact
  def __call__(self, x):
    h = 4.0 * x.reshape(x.shape[0], -1) - 2.0
    loc = nn.Dense(self.latent_dim)(h)
    scale = jax.nn.softplus(nn.Dense(self.latent_dim)(h)) + 0.2
    return distrax.MultivariateNormalDiag(loc, scale)


class _EncoderAndVampPrior(nn.Module):
  latent_dim: int = 1
  num_pseudo_inputs: int = 3

  def setup(self):
    self.encoder = _StandInEncoder(self.latent_dim)
    self.marginal = marginals.VampPrior(
        image_shape=_PSEUDO_SHAPE, num_pseudo_inputs=self.num_pseudo_inputs)

  def __call__(self):
    return self.marginal(self.encoder)

  def components(self):
    phi = jnp.clip(self.marginal.variables['params']['pseudo_inputs'], 0, 1)
    return self.encoder(phi)

  def weights(self):
    return self.marginal.weights()


def _vamp_prior(latent_dim, num_pseudo_inputs=3, seed=0):
  """A VampPrior on a stand-in encoder with spread pseudo-inputs and weights."""
  module = _EncoderAndVampPrior(latent_dim, num_pseudo_inputs)
  params = module.init(jax.random.key(seed))['params']
  key_phi, key_logits = jax.random.split(jax.random.key(seed + 1))
  marginal = dict(params['marginal'])
  marginal['pseudo_inputs'] = jax.random.uniform(
      key_phi, marginal['pseudo_inputs'].shape)
  marginal['logits'] = jax.random.normal(key_logits, (num_pseudo_inputs,))
  params = {**params, 'marginal': marginal}
  return module, {'params': params}


@pytest.mark.parametrize('latent_dim', [1, 2], ids=['z1', 'z2'])
def test_vamp_prior_density_integrates_to_one(latent_dim):
  module, params = _vamp_prior(latent_dim)
  marginal = module.apply(params)
  assert marginal.event_shape == (latent_dim,)
  assert marginal.batch_shape == ()
  grid = np.linspace(-12.0, 12.0, 2001 if latent_dim == 1 else 401)
  cell = (grid[1] - grid[0]) ** latent_dim
  points = np.stack(np.meshgrid(*[grid] * latent_dim, indexing='ij'),
                     -1).reshape(-1, latent_dim)
  density = np.exp(np.asarray(jax.jit(marginal.log_prob)(points)))
  np.testing.assert_allclose(density.sum() * cell, 1.0, atol=1e-4)


def test_vamp_prior_weights_are_softmax_and_sum_to_one():
  module, params = _vamp_prior(2, num_pseudo_inputs=5)
  weights = module.apply(params, method='weights')
  np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
  logits = np.asarray(params['params']['marginal']['logits'], np.float64)
  np.testing.assert_allclose(weights, special.softmax(logits), rtol=1e-5)
  assert np.ptp(np.asarray(weights)) > 0.05  # learned, not uniform


def test_vamp_prior_init_is_uniform_with_pseudo_inputs_near_005():
  defaults = marginals.VampPrior(image_shape=_IMAGE_SHAPE)
  assert defaults.num_pseudo_inputs == 500
  assert defaults.encode_batch == 0  # all pseudo-inputs in one call
  module = _EncoderAndVampPrior(latent_dim=2, num_pseudo_inputs=500)
  params = module.init(jax.random.key(0))['params']['marginal']
  pseudo = np.asarray(params['pseudo_inputs'])
  assert pseudo.shape == (500,) + _PSEUDO_SHAPE
  # N(0.05, 0.01^2) as in the VampPrior code; hardtanh keeps phi in [0, 1].
  np.testing.assert_allclose(pseudo.mean(), 0.05, atol=1e-3)
  np.testing.assert_allclose(pseudo.std(), 0.01, rtol=0.1)
  np.testing.assert_array_equal(params['logits'], np.zeros(500))
  weights = module.apply({'params': module.init(jax.random.key(0))['params']},
                         method='weights')
  np.testing.assert_allclose(weights, np.full(500, 1 / 500), rtol=1e-6)


def test_vamp_prior_log_prob_is_the_direct_logsumexp():
  module, params = _vamp_prior(2, num_pseudo_inputs=4)
  marginal = module.apply(params)
  components = module.apply(params, method='components')
  weights = np.asarray(module.apply(params, method='weights'), np.float64)
  loc = np.asarray(components.mean(), np.float64)       # [N, Z]
  scale = np.asarray(components.stddev(), np.float64)   # [N, Z]
  z = np.asarray(jax.random.normal(jax.random.key(3), (7, 2)) * 2.0)
  log_normal = (-0.5 * ((z[:, None, :] - loc) / scale) ** 2
                - np.log(scale) - 0.5 * np.log(2 * np.pi)).sum(-1)
  expected = special.logsumexp(log_normal + np.log(weights), axis=-1)
  np.testing.assert_allclose(marginal.log_prob(z), expected, rtol=1e-5)


def test_vamp_prior_samples_under_jit_follow_the_mixture():
  module, params = _vamp_prior(2, num_pseudo_inputs=3)
  n = 20000
  samples = jax.jit(lambda p, k: module.apply(p).sample(
      seed=k, sample_shape=(n,)))(params, jax.random.key(4))
  assert samples.shape == (n, 2)
  components = module.apply(params, method='components')
  weights = np.asarray(module.apply(params, method='weights'))
  mean = (weights[:, None] * np.asarray(components.mean())).sum(0)
  second = (weights[:, None] * (np.asarray(components.variance())
                                + np.asarray(components.mean()) ** 2)).sum(0)
  standard_error = np.sqrt((second - mean ** 2) / n)
  np.testing.assert_array_less(
      np.abs(np.asarray(samples).mean(0) - mean), 5 * standard_error)


def test_gaussian_stage_keeps_a_gaussian_and_unwraps_a_flow():
  gaussian = distrax.MultivariateNormalDiag(jnp.ones((3, 2)),
                                             2 * jnp.ones((3, 2)))
  # MultivariateNormalDiag is itself a distrax.Transformed: it must come back
  # unchanged, not as its N(0, 1) base.
  assert marginals.gaussian_stage(gaussian) is gaussian
  flow = distrax.Transformed(gaussian, distrax.Block(
      distrax.ScalarAffine(1.0), 1))
  assert marginals.gaussian_stage(flow) is gaussian


def test_vamp_prior_with_iaf_encoder_mixes_the_gaussian_stage():
  encoder = encoders.IAFEncoder(image_shape=_IMAGE_SHAPE, latent_dim=3,
                                flow_steps=2, made_hidden=8, made_layers=1)

  class Model(nn.Module):
    def setup(self):
      self.encoder = encoder
      self.marginal = marginals.VampPrior(image_shape=_IMAGE_SHAPE,
                                          num_pseudo_inputs=4)

    def __call__(self):
      marginal = self.marginal(self.encoder)
      phi = jnp.clip(self.marginal.variables['params']['pseudo_inputs'], 0, 1)
      return marginal, self.encoder(phi)

  model = Model()
  params = model.init(jax.random.key(0))
  z = jax.random.normal(jax.random.key(1), (5, 3))

  @jax.jit
  def densities(p):
    marginal, at_pseudo = model.apply(p)
    return marginal.log_prob(z), at_pseudo.distribution.log_prob(z[:, None])

  log_m, log_base = densities(params)
  _, at_pseudo = jax.eval_shape(model.apply, params)
  assert isinstance(at_pseudo, distrax.Transformed)
  expected = special.logsumexp(np.asarray(log_base) + np.log(0.25), axis=-1)
  np.testing.assert_allclose(log_m, expected, rtol=1e-5)


class _Calls:
  """The batch of every encoder call traced (flax keeps no list attribute)."""

  def __init__(self):
    self.batches = []


class _CountingEncoder(nn.Module):
  """The simple conv encoder, recording the batch of every call it traces."""

  calls: _Calls

  @nn.compact
  def __call__(self, x):
    self.calls.batches.append(x.shape[0])
    return encoders.GaussianEncoder(image_shape=_IMAGE_SHAPE, latent_dim=3,
                                    name='inner')(x)


class _ConvEncoderAndVampPrior(nn.Module):
  calls: _Calls
  encode_batch: int = 0
  num_pseudo_inputs: int = 7

  def setup(self):
    self.encoder = _CountingEncoder(self.calls)
    self.marginal = marginals.VampPrior(
        image_shape=_IMAGE_SHAPE, num_pseudo_inputs=self.num_pseudo_inputs,
        encode_batch=self.encode_batch)

  def __call__(self, z):
    return self.marginal(self.encoder).log_prob(z)


def _conv_vamp_params(z):
  params = _ConvEncoderAndVampPrior(_Calls(), encode_batch=0).init(
      jax.random.key(0), z)
  params['params']['marginal']['pseudo_inputs'] = jax.random.uniform(
      jax.random.key(2), (7, 28, 28, 1))
  return params


@pytest.mark.parametrize('encode_batch, batches',
                         [(0, [7]), (3, [3, 3, 1]), (7, [7]), (64, [7])],
                         ids=['all', 'three', 'exact', 'larger'])
def test_vamp_prior_encoder_calls(encode_batch, batches):
  # The batches the pseudo-inputs go through the encoder in (traced only).
  z = jnp.zeros((5, 3))
  calls = _Calls()
  module = _ConvEncoderAndVampPrior(calls, encode_batch=encode_batch)
  jax.eval_shape(module.apply, _conv_vamp_params(z), z)
  assert calls.batches == batches


def test_vamp_prior_in_batches_equals_all_at_once():
  # The real conv encoder on 7 pseudo-inputs in batches of 3, 3 and 1: each
  # pseudo-input's features are computed alone, so the components and log
  # m(z) are the same to the last bit; the gradient sums the pseudo-inputs'
  # shares in another order, so it agrees to float32 rounding.
  z = jax.random.normal(jax.random.key(1), (5, 3))
  params = _conv_vamp_params(z)
  batched, whole = (_ConvEncoderAndVampPrior(_Calls(), encode_batch=b)
                    for b in (3, 0))
  np.testing.assert_array_equal(jax.jit(batched.apply)(params, z),
                                jax.jit(whole.apply)(params, z))
  grads = [jax.jit(jax.grad(lambda p, m=m: jnp.sum(m.apply(p, z))))(params)
           for m in (batched, whole)]
  for got, want in zip(*map(jax.tree.leaves, grads)):
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-7)
  assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads[1])
             ) > 1e-3  # a gradient worth comparing


def test_vamp_prior_in_batches_with_iaf_encoder():
  encoder = encoders.IAFEncoder(image_shape=_IMAGE_SHAPE, latent_dim=3,
                                flow_steps=2, made_hidden=8, made_layers=1)

  class Model(nn.Module):
    encode_batch: int

    def setup(self):
      self.encoder = encoder
      self.marginal = marginals.VampPrior(image_shape=_IMAGE_SHAPE,
                                          num_pseudo_inputs=5,
                                          encode_batch=self.encode_batch)

    def __call__(self, z):
      return self.marginal(self.encoder).log_prob(z)

  z = jax.random.normal(jax.random.key(1), (4, 3))
  params = Model(0).init(jax.random.key(0), z)
  np.testing.assert_array_equal(jax.jit(Model(2).apply)(params, z),
                                jax.jit(Model(0).apply)(params, z))


def test_maf_marginal_starts_at_standard_normal_and_samples_under_jit():
  module = marginals.MAFMarginal(latent_dim=4, flow_steps=2, made_hidden=8,
                                  made_layers=2)
  params = module.init(jax.random.key(0))
  marginal = module.apply(params)
  assert marginal.event_shape == (4,) and marginal.batch_shape == ()
  z = jax.random.normal(jax.random.key(1), (6, 4))
  standard = distrax.MultivariateNormalDiag(jnp.zeros(4), jnp.ones(4))
  np.testing.assert_allclose(marginal.log_prob(z), standard.log_prob(z),
                              rtol=1e-6)
  # Non-zero MADE outputs: samples (sequential) invert to the base exactly.
  random = jax.tree_util.tree_map(
      lambda p: 0.3 * jax.random.normal(jax.random.key(2), p.shape), params)
  samples, log_prob = jax.jit(lambda p, k: module.apply(p).sample_and_log_prob(
      seed=k, sample_shape=(3,)))(random, jax.random.key(3))
  assert samples.shape == (3, 4)
  np.testing.assert_allclose(module.apply(random).log_prob(samples),
                              log_prob, rtol=1e-4, atol=1e-4)
  assert not np.allclose(log_prob, standard.log_prob(samples), atol=1e-3)
