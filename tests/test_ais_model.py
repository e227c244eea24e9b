"""Tests of rdvae/evaluation/ais_model.py: the AIS densities are the model's
own terms.

At a z drawn by the encoder, log d(x|z) + log m(z) - log e(z|x) from the
densities must equal `RDModel.log_importance_weights` with the same rng (the
first 'sample' draw), for the simple family and for the PixelCNN++ decoder,
MAF and VampPrior marginals and the IAF encoder (widths cut to a few units).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mnist
from rdvae.evaluation import ais_model
from rdvae.models import model as rd

IMAGE_SHAPE = (28, 28, 1)
BATCH = 2


def _tiny(family: str):
  config = mnist.get_config('smoke')
  config.model.family = family
  config.model.latent_dim = 4
  config.model.flow_steps = 2
  config.model.made_hidden = 8
  config.model.made_layers = 2
  config.model.num_pseudo_inputs = 3
  config.model.pseudo_input_batch = 0
  config.model.pixelcnn_features = 4
  config.model.pixelcnn_resnets_per_block = 1
  config.model.pixelcnn_scales = 2
  return config


def _encode(module, x):
  """The first 'sample' draw, as in log_importance_weights: z [1, B, Z]."""
  return module.encoder(x).sample_and_log_prob(
      seed=module.make_rng('sample'), sample_shape=(1,))


@pytest.mark.parametrize('family', ['---', '-+v', '+-+'],
                         ids=['simple', 'pixelcnn_vamp', 'iaf_maf'])
def test_densities_are_the_models_terms(family):
  model = rd.create_model(_tiny(family), IMAGE_SHAPE)
  x = (jax.random.uniform(jax.random.key(0), (BATCH,) + IMAGE_SHAPE)
       < 0.3).astype(jnp.float32)
  params = model.init({'params': jax.random.key(1),
                       'sample': jax.random.key(2)}, x)['params']
  # Non-zero MADE and readout weights: perturb every parameter a little.
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(3), len(leaves))
  params = jax.tree.unflatten(tree, [
      p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  rngs = {'sample': jax.random.key(4)}

  @jax.jit
  def check(params):
    variables = {'params': params}
    log_w = model.apply(variables, x, 1, rngs=rngs,
                        method='log_importance_weights')[0]
    z, log_e = model.apply(variables, x, rngs=rngs, method=_encode)
    d = ais_model.densities(model, params)
    log_d = jax.vmap(d.log_likelihood)(x, z[0])
    log_m = jax.vmap(d.log_marginal)(z[0])
    grad = jax.vmap(jax.grad(d.log_likelihood, argnums=1))(x, z[0])
    zs = d.sample_marginal(jax.random.key(5), 3)
    sample = d.sample_likelihood(jax.random.key(6), zs[0])
    return log_w, log_d + log_m - log_e[0], grad, zs, sample

  log_w, by_densities, grad, zs, sample = jax.device_get(check(params))
  np.testing.assert_allclose(by_densities, log_w, rtol=1e-5, atol=1e-3)
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)
  assert zs.shape == (3, 4)
  assert sample.shape == IMAGE_SHAPE
  assert set(np.unique(sample)) <= {0.0, 1.0}
