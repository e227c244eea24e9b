r"""python -m experiments.main --config=examples/mlp_vae.py --workdir=runs/mlp_vae

A VAE of one's own, outside the package: an MLP encoder (a diagonal
Gaussian) and an MLP decoder (Bernoulli pixels) on static binarized MNIST,
named in the config as 'examples.mlp_vae:encoder' and
'examples.mlp_vae:decoder' (the protocol: docs/models.md); the marginal is
the family letter's N(0, I). Variants as configs/mnist.py ('short',
'smoke', ...), e.g. --config=examples/mlp_vae.py:short.
"""

import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from configs import mnist

HIDDEN = 256


class Encoder(nn.Module):
  """e(z|x) = N(mu(x), diag sigma(x)^2) from one hidden layer."""

  latent_dim: int

  @nn.compact
  def __call__(self, x):  # x [B, H, W, C] -> batch (B,), event (Z,)
    h = nn.relu(nn.Dense(HIDDEN)(x.reshape(x.shape[0], -1)))
    scale = jax.nn.softplus(nn.Dense(self.latent_dim)(h)) + 1e-5
    return distrax.MultivariateNormalDiag(nn.Dense(self.latent_dim)(h), scale)


class Decoder(nn.Module):
  """d(x|z) = prod_pixels Bernoulli(sigmoid(l(z))), one hidden layer."""

  image_shape: tuple[int, int, int]

  @nn.compact
  def __call__(self, z, x=None):  # z [B, Z] -> batch (B,), event image_shape
    del x  # not autoregressive
    h = nn.relu(nn.Dense(HIDDEN)(z))
    logits = nn.Dense(math.prod(self.image_shape))(h)
    return distrax.Independent(distrax.Bernoulli(
        logits=logits.reshape((-1,) + self.image_shape), dtype=jnp.float32),
                               reinterpreted_batch_ndims=3)


def encoder(config, image_shape):
  del image_shape  # any shape: the images are flattened
  return Encoder(latent_dim=config.model.latent_dim)


def decoder(config, image_shape):
  del config
  return Decoder(image_shape=tuple(image_shape))


def get_config(variant: str = ''):
  """configs/mnist.py's `variant` with this file's encoder and decoder."""
  config = mnist.get_config(variant)
  config.model.encoder = 'examples.mlp_vae:encoder'
  config.model.decoder = 'examples.mlp_vae:decoder'
  return config
