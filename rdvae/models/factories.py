"""The built-in components' factories: `factory(config, image_shape)` -> a
linen module, the signature a user's own component's factory has too
(`custom`, docs/models.md). `model` registers them by family letter.
"""

from __future__ import annotations

import flax.linen as nn
import ml_collections

from rdvae import validation
from rdvae.models import decoders
from rdvae.models import encoders
from rdvae.models import marginals

ImageShape = tuple[int, int, int]


def simple_encoder(config: ml_collections.ConfigDict,
                    image_shape: ImageShape) -> nn.Module:
  return encoders.GaussianEncoder(image_shape=image_shape,
                                  latent_dim=config.model.latent_dim)


def simple_decoder(config: ml_collections.ConfigDict,
                    image_shape: ImageShape) -> nn.Module:
  """The deconvolutional decoder with `model.likelihood` (resolved by
  `model.for_values`; '' or absent: Bernoulli)."""
  m = config.model
  if m.get('likelihood') == 'logistic_mixture':
    return decoders.DeconvDecoder(
        image_shape=image_shape, likelihood='logistic_mixture',
        mixture_components=m.mixture_components)
  return decoders.DeconvDecoder(image_shape=image_shape)


def pixelcnn_decoder(config: ml_collections.ConfigDict,
                      image_shape: ImageShape) -> nn.Module:
  m = config.model
  mixture = ({'likelihood': 'logistic_mixture',
              'mixture_components': m.mixture_components}
             if m.get('likelihood') == 'logistic_mixture' else {})
  return decoders.PixelCNNDecoder(
      image_shape=image_shape,
      features=m.pixelcnn_features,
      resnets_per_block=m.pixelcnn_resnets_per_block,
      num_scales=m.pixelcnn_scales, **mixture)


def standard_normal(config: ml_collections.ConfigDict,
                     image_shape: ImageShape) -> nn.Module:
  del image_shape
  return marginals.StandardNormal(latent_dim=config.model.latent_dim)


def iaf_encoder(config: ml_collections.ConfigDict,
                 image_shape: ImageShape) -> nn.Module:
  m = config.model
  return encoders.IAFEncoder(image_shape=image_shape, latent_dim=m.latent_dim,
                             flow_steps=m.flow_steps,
                             made_hidden=m.made_hidden,
                             made_layers=m.made_layers)


def maf_marginal(config: ml_collections.ConfigDict,
                  image_shape: ImageShape) -> nn.Module:
  del image_shape
  m = config.model
  return marginals.MAFMarginal(latent_dim=m.latent_dim,
                               flow_steps=m.flow_steps,
                               made_hidden=m.made_hidden,
                               made_layers=m.made_layers)


def vamp_prior(config: ml_collections.ConfigDict,
                image_shape: ImageShape) -> nn.Module:
  batch = config.model.get('pseudo_input_batch')
  if batch is None:
    raise validation.ConfigError(
        'config.model.pseudo_input_batch=None (the backend\'s choice) must be '
        'resolved before the model is built: pass the config through '
        'rdvae.runtime.backends.resolved_config, or set it (0: all '
        'pseudo-inputs in one encoder call)')
  return marginals.VampPrior(image_shape=image_shape,
                             num_pseudo_inputs=config.model.num_pseudo_inputs,
                             encode_batch=batch)
