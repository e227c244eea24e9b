"""A tiny stand-in VAE with the RDModel interface, for fast step tests.

Encoder: diagonal Gaussian from one dense layer on the flattened image;
decoder: Bernoulli logits from one dense layer; marginal: N(0, I). It returns
the same RDTerms and has the same methods as `rdvae.model.RDModel`
(`log_importance_weights`, `reconstruct`, `generate`), so the steps, parallel
wrappers and bounds can be tested in seconds.
"""

import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae import types


class TinyModel(nn.Module):
  latent_dim: int = 3
  image_shape: tuple = (4, 4, 1)

  def setup(self):
    self.loc = nn.Dense(self.latent_dim)
    self.scale = nn.Dense(self.latent_dim)
    self.logits = nn.Dense(math.prod(self.image_shape))

  def encoder(self, x):
    h = 2.0 * x.reshape(x.shape[0], -1) - 1.0
    return distrax.MultivariateNormalDiag(
        self.loc(h), jax.nn.softplus(self.scale(h)) + 1e-3)

  def decoder(self, z):
    logits = self.logits(z).reshape((z.shape[0],) + self.image_shape)
    return distrax.Independent(distrax.Bernoulli(logits=logits), 3)

  def marginal(self):
    return distrax.MultivariateNormalDiag(jnp.zeros(self.latent_dim))

  def __call__(self, x):
    e = self.encoder(x)
    z, log_e = e.sample_and_log_prob(seed=self.make_rng('sample'))
    rate = log_e - self.marginal().log_prob(z)
    distortion = -self.decoder(z).log_prob(x)
    return types.RDTerms(rate, distortion, e.kl_divergence(self.marginal()))

  def log_importance_weights(self, x, num_samples):
    e = self.encoder(x)
    z, log_e = e.sample_and_log_prob(seed=self.make_rng('sample'),
                                     sample_shape=(num_samples,))  # [K, B, Z]
    flat = z.reshape(-1, self.latent_dim)
    log_d = self.decoder(flat).log_prob(
        jnp.broadcast_to(x, (num_samples,) + x.shape).reshape(
            (-1,) + self.image_shape)).reshape(num_samples, -1)
    return log_d + self.marginal().log_prob(z) - log_e

  def _decode_draws(self, z, num_decodes):
    d = self.decoder(z)
    samples = d.sample(seed=self.make_rng('sample'),
                       sample_shape=(num_decodes,))
    return samples.astype(jnp.float32), d.mean()

  def reconstruct(self, x, num_decodes):
    z = self.encoder(x).sample(seed=self.make_rng('sample'))
    return self._decode_draws(z, num_decodes)

  def generate(self, num_images, num_decodes):
    z = self.marginal().sample(seed=self.make_rng('sample'),
                               sample_shape=(num_images,))
    return self._decode_draws(z, num_decodes)


class TinyEncoder(nn.Module):
  """e(z|x): a diagonal Gaussian from one dense layer (the RDModel contract)."""

  latent_dim: int = 3

  @nn.compact
  def __call__(self, x):
    h = 2.0 * x.reshape(x.shape[0], -1) - 1.0
    return distrax.MultivariateNormalDiag(
        nn.Dense(self.latent_dim)(h),
        jax.nn.softplus(nn.Dense(self.latent_dim)(h)) + 1e-3)


class TinyDecoder(nn.Module):
  """d(x|z): Bernoulli pixels from one dense layer (the RDModel contract)."""

  image_shape: tuple = (4, 4, 1)

  @nn.compact
  def __call__(self, z, x=None):
    del x  # not autoregressive
    logits = nn.Dense(math.prod(self.image_shape))(z).reshape(
        (z.shape[0],) + self.image_shape)
    return distrax.Independent(
        distrax.Bernoulli(logits=logits, dtype=jnp.float32), 3)


def tiny_rd_model(latent_dim: int = 3, image_shape: tuple = (4, 4, 1)):
  """The real `rdvae.model.RDModel` over tiny components and m = N(0, I)."""
  from rdvae.models import marginals  # pylint: disable=g-import-not-at-top
  from rdvae.models import model  # pylint: disable=g-import-not-at-top
  return model.RDModel(encoder=TinyEncoder(latent_dim),
                       decoder=TinyDecoder(image_shape),
                       marginal=marginals.StandardNormal(latent_dim))
