"""Tests of rdvae.model: RDTerms of the simple family, IWAE weights, create_model."""

import ast
import os

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rdvae.models import model
from rdvae import types
from rdvae import validation

BATCH = 2
IMAGE_SHAPE = (28, 28, 1)  # binarized MNIST, the paper's images


def _config(family='---', latent_dim=64):
  section = model.default_config().to_dict()
  section.update(family=family, latent_dim=latent_dim)
  return ml_collections.ConfigDict({'model': section})


@pytest.fixture(scope='module')
def images():
  key = jax.random.key(0)
  return (jax.random.uniform(key, (BATCH, 28, 28, 1)) < 0.3).astype(jnp.float32)


@pytest.fixture(scope='module')
def model_and_variables(images):
  rd_model = model.create_model(_config(), IMAGE_SHAPE)
  variables = jax.jit(rd_model.init)({'params': jax.random.key(1),
                                      'sample': jax.random.key(2)}, images)
  return rd_model, variables


def _by_hand(module, x):
  """The same z as __call__ (first 'sample' draw), then R and D from formulas."""
  e = module.encoder(x)
  z, _ = e.sample_and_log_prob(seed=module.make_rng('sample'))
  loc, scale = e.loc, e.scale_diag
  log_e = -0.5 * jnp.sum(((z - loc) / scale) ** 2
                         + jnp.log(2 * jnp.pi * scale ** 2), -1)
  log_m = -0.5 * jnp.sum(z ** 2 + jnp.log(2 * jnp.pi), -1)
  logits = module.decoder.logits(z)
  log_d = jnp.sum(x * logits - jax.nn.softplus(logits), (1, 2, 3))
  kl = 0.5 * jnp.sum(scale ** 2 + loc ** 2 - 1 - 2 * jnp.log(scale), -1)
  return log_e - log_m, -log_d, kl, jax.nn.sigmoid(logits)


def test_terms_match_formulas(model_and_variables, images):
  rd_model, variables = model_and_variables
  rngs = {'sample': jax.random.key(3)}
  terms = rd_model.apply(variables, images, rngs=rngs)
  assert isinstance(terms, types.RDTerms)
  assert terms.rate.shape == terms.distortion.shape == (BATCH,)
  rate, distortion, kl, _ = rd_model.apply(variables, images, rngs=rngs,
                                           method=_by_hand)
  np.testing.assert_allclose(terms.rate, rate, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(terms.distortion, distortion, rtol=1e-5)
  np.testing.assert_allclose(terms.analytic_rate, kl, rtol=1e-5)


def test_importance_weights_at_one_sample(model_and_variables, images):
  rd_model, variables = model_and_variables
  rngs = {'sample': jax.random.key(4)}
  terms = rd_model.apply(variables, images, rngs=rngs)
  log_w = rd_model.apply(variables, images, 1, rngs=rngs,
                         method=model.RDModel.log_importance_weights)
  assert log_w.shape == (1, BATCH)
  np.testing.assert_allclose(log_w[0], -(terms.rate + terms.distortion),
                             rtol=1e-6)


def test_importance_weights_are_independent_samples(model_and_variables,
                                                    images):
  rd_model, variables = model_and_variables
  log_w = rd_model.apply(variables, images, 3,
                         rngs={'sample': jax.random.key(5)},
                         method=model.RDModel.log_importance_weights)
  assert log_w.shape == (3, BATCH)
  assert bool(jnp.all(jnp.isfinite(log_w)))
  assert len(np.unique(np.asarray(log_w))) == 3 * BATCH


def test_rate_monte_carlo_matches_analytic_kl(model_and_variables, images):
  """E_z[log e(z|x) - log m(z)] = KL(e || m): 256 draws per image."""
  rd_model, variables = model_and_variables
  copies = 256
  x = jnp.repeat(images, copies, axis=0)
  terms = jax.jit(lambda x: rd_model.apply(
      variables, x, rngs={'sample': jax.random.key(6)}))(x)
  rate = np.asarray(terms.rate).reshape(BATCH, copies)
  kl = np.asarray(terms.analytic_rate).reshape(BATCH, copies)[:, 0]
  stderr = rate.std(axis=1) / np.sqrt(copies)
  assert np.all(np.abs(rate.mean(axis=1) - kl) < 4 * stderr), (
      rate.mean(axis=1), kl, stderr)


def test_reconstruct_and_generate(model_and_variables, images):
  rd_model, variables = model_and_variables
  rngs = {'sample': jax.random.key(7)}
  samples, mean = rd_model.apply(variables, images, 5, rngs=rngs,
                                 method=model.RDModel.reconstruct)
  assert samples.shape == (5, BATCH, 28, 28, 1)
  assert set(np.unique(samples)) <= {0.0, 1.0}
  # reconstruct draws z first with the same rng as __call__: same mean image.
  *_, probs = rd_model.apply(variables, images, rngs=rngs, method=_by_hand)
  np.testing.assert_allclose(mean, probs, rtol=1e-4, atol=1e-6)
  samples, mean = rd_model.apply(variables, 4, 3, rngs=rngs,
                                 method=model.RDModel.generate)
  assert samples.shape == (3, 4, 28, 28, 1) and mean.shape == (4, 28, 28, 1)
  assert bool(jnp.all((mean > 0) & (mean < 1)))


@pytest.mark.parametrize('family,match', [
    ('--', 'must be a 3-character string'),
    ('----', 'must be a 3-character string'),
    (3, 'must be a 3-character string'),
    ('x--', r"position 1 \(encoder\) is 'x'"),
    ('-x-', r"position 2 \(decoder\) is 'x'"),
    ('--x', r"position 3 \(marginal\) is 'x'"),
    ('+--', "'\\+' encoder is not available yet"),
    ('-+-', "'\\+' decoder is not available yet"),
    ('--+', "'\\+' marginal is not available yet"),
    ('--v', "'v' marginal is not available yet"),
], ids=['short', 'long', 'not_string', 'encoder_letter', 'decoder_letter',
        'marginal_letter', 'iaf', 'pixelcnn', 'maf', 'vamp'])
def test_create_model_rejects_family(family, match, monkeypatch):
  # Pretend nothing beyond the simple family is registered yet.
  monkeypatch.setattr(model, 'ENCODERS', {'-': model.ENCODERS['-']})
  monkeypatch.setattr(model, 'DECODERS', {'-': model.DECODERS['-']})
  monkeypatch.setattr(model, 'MARGINALS', {'-': model.MARGINALS['-']})
  with pytest.raises(validation.ConfigError, match=match) as error:
    model.create_model(_config(family), IMAGE_SHAPE)
  assert 'model.family' in str(error.value)


@pytest.mark.parametrize('shape, match', [
    ((30, 28, 1), r"'-' encoder takes images whose height and width are "
     r'divisible by 4 .*, not \(30, 28, 1\)'),
    ((28, 28), r'shape \(28, 28\), not \(height, width, channels\)')],
    ids=['size', 'rank'])
def test_create_model_rejects_image_shape(shape, match):
  with pytest.raises(validation.ConfigError, match=match) as error:
    model.create_model(_config('---'), image_shape=shape)
  assert 'model.family' in str(error.value)


@pytest.mark.parametrize('latent_dim', [0, 2.5, None],
                         ids=['zero', 'float', 'none'])
def test_create_model_rejects_latent_dim(latent_dim):
  with pytest.raises(validation.ConfigError, match='model.latent_dim'):
    model.create_model(_config(latent_dim=latent_dim), IMAGE_SHAPE)


def test_missing_model_section():
  with pytest.raises(validation.ConfigError, match="'model.family' is missing"):
    model.validate(ml_collections.ConfigDict({}), IMAGE_SHAPE)


class _PseudoInputMixture(nn.Module):
  """A VampPrior-shaped marginal: a mixture of the encoder at 2 pseudo-inputs."""

  @nn.compact
  def __call__(self, encoder):
    pseudo = self.param('pseudo', nn.initializers.uniform(1.0), (2, 28, 28, 1))
    e = encoder(pseudo)
    return distrax.MixtureSameFamily(
        distrax.Categorical(logits=jnp.zeros(2)),
        distrax.MultivariateNormalDiag(e.loc, e.scale_diag))


def test_registered_marginal_gets_encoder(images, monkeypatch):
  """A new letter registers a constructor; the marginal may call the encoder."""
  monkeypatch.setitem(model.MARGINALS, 'v',
                      model.Component(lambda config, shape: _PseudoInputMixture()))
  rd_model = model.create_model(_config('--v'), IMAGE_SHAPE)
  variables = rd_model.init({'params': jax.random.key(1),
                             'sample': jax.random.key(2)}, images)
  assert variables['params']['marginal']['pseudo'].shape == (2, 28, 28, 1)
  terms = rd_model.apply(variables, images, rngs={'sample': jax.random.key(3)})
  assert terms.analytic_rate is None
  assert bool(jnp.all(jnp.isfinite(terms.rate)))


def test_default_config_validates():
  model.validate(ml_collections.ConfigDict({'model': model.default_config()}),
                 IMAGE_SHAPE)


# --- Flow and VampPrior families: IAF encoder (+), MAF (+) and VampPrior (v) --


def _small_flow_config(family):
  config = _config(family, latent_dim=4)
  config.model.flow_steps = 2
  config.model.made_hidden = 16
  config.model.made_layers = 1
  config.model.num_pseudo_inputs = 3
  config.model.pseudo_input_batch = 0  # all at once, as a GPU resolves it
  return config


def _rate_by_hand(module, x):
  """log e(z|x) - log m(z) at the same z as __call__, via the sequential
  (IAF) and one-pass (MAF) densities rather than sample_and_log_prob."""
  e = module.encoder(x)
  z = e.sample(seed=module.make_rng('sample'))
  return e.log_prob(z) - module.marginal(module.encoder).log_prob(z)


@pytest.mark.parametrize(
    'family', [pytest.param('+-+', marks=pytest.mark.slow), '+-v'])
def test_flow_and_vamp_families(family, images):
  # '+-v' has the IAF encoder and the VampPrior over its Gaussian stage;
  # '+-+' the IAF encoder and MAF marginal (slow: ~25-60 s on the shared
  # 2-core machine, mostly compiling the conv encoder and decoder gradients).
  # tests/test_marginals.py covers '--v' and the MAF on its own.
  rd_model = model.create_model(_small_flow_config(family), IMAGE_SHAPE)
  variables = rd_model.init({'params': jax.random.key(1),
                             'sample': jax.random.key(2)}, images)
  rngs = {'sample': jax.random.key(3)}

  def loss(v):
    terms = rd_model.apply(v, images, rngs=rngs)
    return jnp.mean(terms.rate + terms.distortion), terms

  @jax.jit
  def check(v):
    (_, terms), grads = jax.value_and_grad(loss, has_aux=True)(v)
    rate = rd_model.apply(v, images, rngs=rngs, method=_rate_by_hand)
    samples, mean = rd_model.apply(v, 3, 2, rngs=rngs,
                                   method=model.RDModel.generate)
    return terms, grads, rate, samples, mean

  terms, grads, rate, samples, mean = check(variables)
  assert terms.analytic_rate is None
  assert terms.rate.shape == terms.distortion.shape == (BATCH,)
  np.testing.assert_allclose(terms.rate, rate, rtol=1e-4, atol=1e-3)
  assert bool(jnp.all(jnp.isfinite(terms.distortion)))
  for part in ('encoder', 'decoder', 'marginal'):
    leaves = jax.tree_util.tree_leaves(grads['params'][part])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves), part
    assert sum(float(jnp.sum(g ** 2)) for g in leaves) > 0, part
  assert samples.shape == (2, 3, 28, 28, 1) and mean.shape == (3, 28, 28, 1)


@pytest.mark.parametrize('family,key,value', [
    ('+--', 'flow_steps', 0), ('--+', 'made_hidden', -3),
    ('+--', 'made_layers', None), ('--v', 'num_pseudo_inputs', 0),
    ('--v', 'pseudo_input_batch', -1)],
    ids=['flow_steps', 'made_hidden', 'made_layers', 'num_pseudo_inputs',
         'pseudo_input_batch'])
def test_create_model_rejects_flow_keys(family, key, value):
  config = _small_flow_config(family)
  config.model[key] = value
  with pytest.raises(validation.ConfigError, match=f'model.{key}'):
    model.create_model(config, IMAGE_SHAPE)


@pytest.mark.parametrize('value', [0, 2])
def test_pseudo_input_batch_reaches_the_vamp_prior(value):
  config = _small_flow_config('--v')
  config.model.pseudo_input_batch = value
  assert model.create_model(config, IMAGE_SHAPE).marginal.encode_batch == value


@pytest.mark.parametrize('backend, batch', [('cpu', 64), ('gpu', 0)])
def test_vamp_prior_takes_the_resolved_pseudo_input_batch(backend, batch):
  # The model reads the number the runtime resolved (None is 'auto'); it
  # never asks the backend itself.
  from configs import mnist  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import backends  # pylint: disable=g-import-not-at-top
  config = mnist.get_config('smoke')
  config.model.family = '--v'
  assert config.model.pseudo_input_batch is None
  with pytest.raises(validation.ConfigError,
                     match=r'pseudo_input_batch=None .*resolved_config'):
    model.create_model(config, IMAGE_SHAPE)
  resolved, _ = backends.resolved_config(config, backend)
  assert model.create_model(resolved, IMAGE_SHAPE).marginal.encode_batch == batch


def test_models_import_no_runtime_or_training_settings():
  directory = os.path.dirname(model.__file__)
  for name in sorted(os.listdir(directory)):
    if not name.endswith('.py'):
      continue
    with open(os.path.join(directory, name)) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom):
        modules = [node.module or ''] + [
            f'{node.module}.{a.name}' for a in node.names]
      elif isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
      else:
        continue
      for module in modules:
        assert not module.startswith(('rdvae.runtime', 'rdvae.training')), (
            name, module)


@pytest.mark.slow
@pytest.mark.parametrize('family', ['+-v', '-++'])
def test_generative_pairs_and_latent_statistics_of_other_families(family,
                                                                  images):
  # '+-v': log e(z|x) at a generated z runs the IAF's sequential inverse; z
  # comes from the VampPrior. '-++': x from the PixelCNN++ sampler (784
  # sequential steps), z from the MAF. Slow: measured 100-200 s each on the
  # shared 2-core machine, mostly compiling.
  config = _small_flow_config(family)
  if family[1] == '+':
    config.model.pixelcnn_features = 4
    config.model.pixelcnn_resnets_per_block = 1
    config.model.pixelcnn_scales = 1
  rd_model = model.create_model(config, IMAGE_SHAPE)
  variables = rd_model.init({'params': jax.random.key(1),
                             'sample': jax.random.key(2)}, images)

  @jax.jit
  def check(v):
    rngs = {'sample': jax.random.key(4)}
    pairs = rd_model.apply(v, 3, rngs=rngs, method='generative_pairs')

    def scores(module, z, x):
      return (module.marginal(module.encoder).log_prob(z),
              module.decoder(z, x).log_prob(x))

    log_m, log_d = rd_model.apply(v, pairs['z'], pairs['x'], method=scores)
    # Each score again, from the pair's z and x alone.
    log_e = rd_model.apply(
        v, pairs['x'], pairs['z'],
        method=lambda m, x, z: m.encoder(x).log_prob(z))
    stats = rd_model.apply(v, images, method='latent_statistics')
    gaussian = rd_model.apply(
        v, images, method=lambda m, x: m.encoder(x).distribution.loc
        if family[0] == '+' else m.encoder(x).loc)
    return pairs, log_m, log_d, log_e, stats, gaussian

  pairs, log_m, log_d, log_e, stats, gaussian = check(variables)
  assert pairs['z'].shape == (3, 4) and pairs['x'].shape == (3, 28, 28, 1)
  assert set(np.unique(pairs['x'])) <= {0.0, 1.0}
  np.testing.assert_allclose(pairs['log_m'], log_m, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(pairs['log_d'], log_d, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(pairs['log_e'], log_e, rtol=1e-4, atol=1e-3)
  assert all(bool(jnp.all(jnp.isfinite(pairs[k])))
             for k in ('log_m', 'log_d', 'log_e'))
  # The encoder's mean for the active units: the Gaussian stage's; no rate
  # per dimension, since neither the IAF nor these marginals factorise.
  np.testing.assert_allclose(stats['mean'], gaussian, rtol=1e-6)
  assert 'rate_per_dim' not in stats


def test_latent_statistics_of_the_simple_family(model_and_variables, images):
  rd_model, variables = model_and_variables
  stats = rd_model.apply(variables, images, method='latent_statistics')
  terms = rd_model.apply(variables, images, rngs={'sample': jax.random.key(3)})
  posterior = rd_model.apply(variables, images,
                             method=lambda m, x: m.encoder(x))
  np.testing.assert_allclose(stats['mean'], posterior.loc, rtol=1e-6)
  assert stats['rate_per_dim'].shape == (BATCH, 64)
  np.testing.assert_allclose(jnp.sum(stats['rate_per_dim'], axis=1),
                             terms.analytic_rate, rtol=1e-5)
