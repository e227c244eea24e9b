"""Tests of rdvae.encoders: the simple Gaussian encoder of F.1."""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae.models import encoders
from rdvae.models import nets

BATCH = 3
IMAGE_SHAPE = (28, 28, 1)  # binarized MNIST, the paper's images


@pytest.fixture(scope='module')
def images():
  key = jax.random.key(0)
  return (jax.random.uniform(key, (BATCH, 28, 28, 1)) < 0.3).astype(jnp.float32)


@pytest.fixture(scope='module')
def encoder_and_params(images):
  encoder = encoders.GaussianEncoder(image_shape=IMAGE_SHAPE)
  params = jax.jit(encoder.init)(jax.random.key(1), images)['params']
  return encoder, params


def _reference_torso(params, x):
  """F.1 written with flax's own nn.Conv layers on the same parameters."""
  h = 2.0 * x - 1.0
  for i, (c, k, s, p) in enumerate(encoders.TORSO_LAYERS):
    conv = nn.Conv(2 * c, (k, k), (s, s), p)
    h = nets.gated_activation(
        conv.apply({'params': params['torso'][f'GatedConv_{i}']}, h))
  return h.reshape(h.shape[0], -1)


def test_parameter_count_matches_f1(encoder_and_params):
  _, params = encoder_and_params
  count = sum(p.size for p in jax.tree_util.tree_leaves(params))
  # Gated layers have 2C outputs: (5*5*1+1)*64 + (5*5*32+1)*64 +
  # (5*5*32+1)*128 + (5*5*64+1)*128 + (7*7*64+1)*512, heads 2*(256+1)*64.
  assert count == 1_999_424


def test_features_match_flax_conv_stack(encoder_and_params, images):
  encoder, params = encoder_and_params
  features = encoder.apply({'params': params}, images,
                           method=encoders.GaussianEncoder.features)
  assert features.shape == (BATCH, 256)
  np.testing.assert_allclose(features, _reference_torso(params, images),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'lax'])
def test_gaussian_head_by_hand(encoder_and_params, images, fast):
  _, params = encoder_and_params
  encoder = encoders.GaussianEncoder(image_shape=IMAGE_SHAPE, fast=fast)
  e = encoder.apply({'params': params}, images)
  assert isinstance(e, distrax.MultivariateNormalDiag)
  assert e.batch_shape == (BATCH,) and e.event_shape == (64,)
  h = _reference_torso(params, images)
  loc = h @ params['mean']['kernel'] + params['mean']['bias']
  scale = jax.nn.softplus(h @ params['scale']['kernel']
                          + params['scale']['bias']) + 1e-5
  np.testing.assert_allclose(e.loc, loc, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(e.scale_diag, scale, rtol=1e-4, atol=1e-6)
  z = jnp.zeros((BATCH, 64)) + 0.3
  log_density = -0.5 * jnp.sum(((z - loc) / scale) ** 2
                               + jnp.log(2 * jnp.pi * scale ** 2), axis=-1)
  np.testing.assert_allclose(e.log_prob(z), log_density, rtol=1e-4)


def test_scale_floor(encoder_and_params, images):
  _, params = encoder_and_params
  params = dict(params)
  params['scale'] = {'kernel': jnp.zeros_like(params['scale']['kernel']),
                     'bias': jnp.full((64,), -200.0)}
  e = encoders.GaussianEncoder(image_shape=IMAGE_SHAPE).apply(
      {'params': params}, images)
  np.testing.assert_allclose(e.scale_diag, 1e-5, rtol=1e-6)
  assert bool(jnp.all(jnp.isfinite(e.log_prob(e.loc))))


def test_wrong_image_shape_raises(encoder_and_params):
  encoder, params = encoder_and_params
  with pytest.raises(ValueError, match=r'\(28, 28, 1\)'):
    encoder.apply({'params': params}, jnp.zeros((1, 32, 32, 1)))


@pytest.mark.parametrize('shape, kernel', [
    ((28, 28, 1), (7, 7)), ((32, 32, 3), (8, 8)), ((8, 12, 1), (2, 3))],
    ids=['mnist', 'cifar', 'digits_wide'])
def test_torso_follows_the_image_size(shape, kernel):
  # The last layer's kernel spans the H/4 x W/4 map: 7x7 for 28x28 (F.1).
  assert encoders.torso_layers(shape)[-1] == (256, kernel, 1, 'VALID')
  assert encoders.torso_layers((28, 28, 1)) == encoders.TORSO_LAYERS[:-1] + (
      (256, (7, 7), 1, 'VALID'),)
  assert encoders.image_shape_error(shape) is None
  encoder = encoders.GaussianEncoder(image_shape=shape, latent_dim=3)
  x = jnp.zeros((2,) + shape)
  out = jax.eval_shape(lambda x: encoder.init_with_output(
      jax.random.key(0), x, method='features')[0], x)
  assert out.shape == (2, 256)


@pytest.mark.parametrize('shape', [(30, 28, 1), (28, 26, 3), (14, 14, 1)])
def test_torso_refuses_a_shape_its_layers_cannot_take(shape):
  assert 'divisible by 4' in encoders.image_shape_error(shape)
  encoder = encoders.GaussianEncoder(image_shape=shape)
  with pytest.raises(ValueError, match='divisible by 4'):
    jax.eval_shape(encoder.init, jax.random.key(0), jnp.zeros((1,) + shape))


# --- IAF encoder (+) ----------------------------------------------------------


def _iaf_encoder_and_params(latent_dim=4, seed=0):
  """A small IAF encoder whose MADEs have random (non-zero) weights."""
  encoder = encoders.IAFEncoder(image_shape=IMAGE_SHAPE, latent_dim=latent_dim,
                                flow_steps=2, made_hidden=16, made_layers=1)
  x = (jax.random.uniform(jax.random.key(seed), (3, 28, 28, 1)) > 0.5
       ).astype(jnp.float32)
  params = jax.jit(encoder.init)(jax.random.key(seed + 1), x)['params']
  flow = jax.tree_util.tree_map(
      lambda p: 0.3 * jax.random.normal(jax.random.key(seed + 2), p.shape),
      params['flow'])
  return encoder, {'params': {**params, 'flow': flow}}, x


def test_iaf_encoder_samples_and_scores_in_one_pass():
  encoder, params, x = _iaf_encoder_and_params()

  @jax.jit
  def sample(p, key):
    posterior = encoder.apply(p, x)
    z, log_e = posterior.sample_and_log_prob(seed=key)
    z0 = posterior.bijector.inverse(z)
    return (z, log_e, posterior.log_prob(z), z0,
            posterior.distribution.log_prob(z0))

  z, log_e, sequential, z0, gaussian = sample(params, jax.random.key(5))
  posterior = jax.eval_shape(lambda p: encoder.apply(p, x), params)
  assert isinstance(posterior, distrax.Transformed)
  assert posterior.batch_shape == (3,) and posterior.event_shape == (4,)
  assert z.shape == (3, 4) and log_e.shape == (3,)
  # One-pass density of its own samples == density through the sequential
  # inverse == Gaussian-stage density at the inverse (unit Jacobian).
  np.testing.assert_allclose(log_e, sequential, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(log_e, gaussian, rtol=1e-5, atol=1e-4)
  # The flow is not the identity (nor only the reversal).
  assert float(jnp.max(jnp.abs(z - z0[:, ::-1]))) > 1e-2


def test_iaf_encoder_gaussian_stage_is_the_simple_encoder():
  encoder, params, x = _iaf_encoder_and_params()
  simple = encoders.GaussianEncoder(image_shape=IMAGE_SHAPE, latent_dim=4)
  gaussian = simple.apply(
      {'params': params['params']['gaussian_encoder']}, x)
  stage = encoder.apply(params, x).distribution
  np.testing.assert_allclose(stage.mean(), gaussian.mean(), rtol=1e-6)
  np.testing.assert_allclose(stage.stddev(), gaussian.stddev(), rtol=1e-6)


def test_iaf_encoder_flow_reads_the_torso_features():
  encoder, params, x = _iaf_encoder_and_params()

  def flow_output(features):
    bijector = encoder.apply(
        params, features, method=lambda m, h: m.flow(h))
    return bijector.forward(jnp.zeros((3, 4)))

  features = encoder.apply(params, x,
                           method=lambda m, v: m.gaussian_encoder.features(v))
  assert features.shape == (3, 256)
  jac = jax.jacfwd(flow_output)(features)  # [3, 4, 3, 256]
  per_output = jnp.abs(jac[jnp.arange(3), :, jnp.arange(3)]).sum(-1)
  assert bool(jnp.all(per_output > 0))  # every z_i depends on the context


def test_iaf_encoder_at_init_is_the_reversed_gaussian():
  encoder = encoders.IAFEncoder(image_shape=IMAGE_SHAPE, latent_dim=4,
                                flow_steps=4, made_hidden=8, made_layers=1)
  x = jnp.zeros((2, 28, 28, 1))
  params = encoder.init(jax.random.key(0), x)
  posterior = encoder.apply(params, x)
  z0 = jnp.arange(8.0).reshape(2, 4)
  # Zero-initialised MADEs: the flow is three reversals, i.e. one.
  np.testing.assert_allclose(posterior.bijector.forward(z0), z0[:, ::-1])
