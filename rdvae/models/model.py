"""The model: composes encoder e(z|x), decoder d(x|z) and marginal m(z) into RDTerms.

For one sample z ~ e(z|x) per example the model returns, in nats,

  rate       = log e(z|x) - log m(z)     (integrand of R, Eq. 5)
  distortion = -log d(x|z)               (integrand of D, Eq. 4)

and, when both e and m are diagonal Gaussians, the analytic KL(e(z|x) || m(z))
(the expectation of the rate over z). No batch reduction happens here.

Model families are the paper's tuple (encoder, decoder, marginal) written as a
3-character string, e.g. '---' (section 4): encoder in {-, +}, decoder in
{-, +}, marginal in {-, +, v}. Each letter maps to a `Component` in the
`ENCODERS`, `DECODERS` and `MARGINALS` registries; a new architecture is added
by registering its constructor there.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_dict

from rdvae.objectives import bounds
from rdvae.models import custom
from rdvae.models import decoders
from rdvae.models import encoders
from rdvae.models import factories
from rdvae.models import marginals
from rdvae.models import pixelcnn
from rdvae import types
from rdvae import validation

ENCODER_LETTERS = ('-', '+')
DECODER_LETTERS = ('-', '+')
MARGINAL_LETTERS = ('-', '+', 'v')
# The paper's twelve families, '---' (simple) to '++v'.
FAMILIES = tuple(e + d + m for e in ENCODER_LETTERS for d in DECODER_LETTERS
                 for m in MARGINAL_LETTERS)
ImageShape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Component:
  """One registered encoder, decoder or marginal.

  Attributes:
    create: builds the linen module from the whole config and the shape
      (H, W, C) of the data's images.
    image_shape_error: why the component cannot take images of a shape, as
      the end of a sentence naming it, or None when it can; None for a
      component that takes any shape.
  """

  create: Callable[[ml_collections.ConfigDict, ImageShape], nn.Module]
  image_shape_error: Optional[Callable[[ImageShape], Optional[str]]] = None


ENCODERS: dict[str, Component] = {
    '-': Component(factories.simple_encoder, encoders.image_shape_error),
    '+': Component(factories.iaf_encoder, encoders.image_shape_error),
}
DECODERS: dict[str, Component] = {
    '-': Component(factories.simple_decoder, decoders.deconv_image_shape_error),
    '+': Component(factories.pixelcnn_decoder, decoders.pixelcnn_image_shape_error),
}
MARGINALS: dict[str, Component] = {
    '-': Component(factories.standard_normal),
    '+': Component(factories.maf_marginal),
    'v': Component(factories.vamp_prior),
}


def analytic_rate(encoder: distrax.Distribution,
                  marginal: distrax.Distribution) -> Optional[jax.Array]:
  """KL(e(z|x) || m(z)) [B] in nats when both are diagonal Gaussians, else None.

  For e = N(mu, diag s^2), m = N(nu, diag t^2):
  KL = 1/2 sum_j [s_j^2 / t_j^2 + (mu_j - nu_j)^2 / t_j^2 - 1 + 2 log(t_j / s_j)].
  """
  gaussian = distrax.MultivariateNormalDiag
  if isinstance(encoder, gaussian) and isinstance(marginal, gaussian):
    return encoder.kl_divergence(marginal)
  return None


class RDModel(nn.Module):
  """Encoder, decoder and marginal; returns per-example rate and distortion.

  Attributes:
    encoder: x [B, H, W, C] -> distribution, batch (B,), event (Z,).
    decoder: (z [B, Z], x or None) -> distribution over x, batch (B,).
    marginal: (encoder) -> distribution, event (Z,).

  All methods draw from the 'sample' rng stream.
  """

  encoder: nn.Module
  decoder: nn.Module
  marginal: nn.Module

  def __call__(self, x: jax.Array) -> types.RDTerms:
    """RDTerms of one z ~ e(z|x) per example: rate, distortion [B] in nats.

    Args:
      x: float32 images [B, H, W, C] with values in {0, 1}.
    """
    e = self.encoder(x)
    z, log_e = e.sample_and_log_prob(seed=self.make_rng('sample'))
    m = self.marginal(self.encoder)
    rate = log_e - m.log_prob(z)  # [B]
    distortion = -self.decoder(z, x).log_prob(x)  # [B]
    return types.RDTerms(rate=rate, distortion=distortion,
                         analytic_rate=analytic_rate(e, m))

  def log_importance_weights(self, x: jax.Array,
                             num_samples: int) -> jax.Array:
    """log w_k = log d(x|z_k) + log m(z_k) - log e(z_k|x), z_k ~ e(z|x) iid.

    log p(x) >= E[log 1/K sum_k w_k] (the IWAE bound, Burda et al.); at K = 1
    log w = -(rate + distortion) of `__call__` with the same rng. All K*B
    decodes run as one batch: call repeatedly (fresh rngs) for large K.

    Args:
      x: images [B, H, W, C].
      num_samples: K.

    Returns:
      [K, B] log-weights in nats.
    """
    e = self.encoder(x)
    z, log_e = e.sample_and_log_prob(seed=self.make_rng('sample'),
                                     sample_shape=(num_samples,))
    log_m = self.marginal(self.encoder).log_prob(z)  # [K, B]
    batch = x.shape[0]
    flat_x = jnp.broadcast_to(x, (num_samples,) + x.shape).reshape(
        (num_samples * batch,) + x.shape[1:])
    flat_z = z.reshape(num_samples * batch, z.shape[-1])
    log_d = self.decoder(flat_z, flat_x).log_prob(flat_x)
    return log_d.reshape(num_samples, batch) + log_m - log_e

  def generative_pairs(self, num_samples: int) -> dict[str, jax.Array]:
    """Pairs of the generative joint, z ~ m(z), x ~ d(x|z), scored (App. C).

    One x per z (sequentially for an autoregressive decoder). The scores are
    the integrands of the generative bounds E (Eq. 9, log e(z|x) - log m(z))
    and G (Eq. 10, log d(x|z) - log q(x)); see `bounds`. For the IAF encoder
    log e(z|x) at a z it did not draw runs the flow's sequential inverse.

    Returns:
      {'z': [N, Z], 'x': [N, H, W, C] float32 in {0, 1}, 'log_m': [N],
       'log_d': [N], 'log_e': [N]}, N = num_samples, nats.
    """
    m = self.marginal(self.encoder)
    z, log_m = m.sample_and_log_prob(seed=self.make_rng('sample'),
                                     sample_shape=(num_samples,))
    if getattr(self.decoder, 'autoregressive', False):
      x = self.decoder.sample(z, 1)[0]
    else:
      x = self.decoder(z).sample(seed=self.make_rng('sample'))
    x = x.astype(jnp.float32)
    log_d = self.decoder(z, x).log_prob(x)
    log_e = self.encoder(x).log_prob(z)
    return {'z': z, 'x': x, 'log_m': log_m, 'log_d': log_d, 'log_e': log_e}

  def latent_statistics(self, x: jax.Array) -> dict[str, jax.Array]:
    """Per-example statistics of e(z|x) for the active units and rate per dim.

    'mean' [B, Z]: E_{e(z|x)}[z] for the Gaussian encoder; for the IAF
    encoder, the mean of its Gaussian stage (z_0, before the flow;
    `marginals.gaussian_stage`), whose variance over the data is what
    `bounds.active_units` counts. 'rate_per_dim' [B, Z], present only when
    e(z|x) and m(z) are both diagonal Gaussians (the rate then factorises):
    the analytic KL of each dimension (`bounds.gaussian_kl_per_dim`), summing
    to `analytic_rate`.
    """
    e = self.encoder(x)
    stats = {'mean': marginals.gaussian_stage(e).mean()}
    m = self.marginal(self.encoder)
    gaussian = distrax.MultivariateNormalDiag
    if isinstance(e, gaussian) and isinstance(m, gaussian):
      stats['rate_per_dim'] = bounds.gaussian_kl_per_dim(
          e.loc, e.scale_diag, m.loc, m.scale_diag)
    return stats

  def reconstruct(self, x: jax.Array,
                  num_decodes: int) -> tuple[jax.Array, jax.Array]:
    """One z ~ e(z|x) per image and `num_decodes` x' ~ d(x|z) with that z (Fig. 4).

    Returns:
      (samples [num_decodes, B, H, W, C] in {0, 1},
       mean [B, H, W, C], the decoder's mean E[x|z] (pixel probabilities)).
    """
    z = self.encoder(x).sample(seed=self.make_rng('sample'))
    return self.decode(z, num_decodes)

  def generate(self, num_images: int,
               num_decodes: int) -> tuple[jax.Array, jax.Array]:
    """`num_images` z ~ m(z) and `num_decodes` x ~ d(x|z) each (Fig. 4).

    Returns:
      (samples [num_decodes, num_images, H, W, C], mean [num_images, H, W, C]).
    """
    z = self.marginal(self.encoder).sample(seed=self.make_rng('sample'),
                                           sample_shape=(num_images,))
    return self.decode(z, num_decodes)

  def decode(self, z: jax.Array,
             num_decodes: int) -> tuple[jax.Array, jax.Array]:
    """`num_decodes` x ~ d(x|z) per z [B, Z]: (samples [N, B, ...], mean
    E[x|z] [B, ...])."""
    if getattr(self.decoder, 'autoregressive', False):
      # Exact sequential samples. E[x|z] has no closed form: the mean is the
      # average over the samples of the teacher-forced pixel probabilities,
      # E[x_i|z] = E_{x_<i ~ d}[sigmoid(l_i(x_<i, z))] (unbiased; less noisy
      # than the samples' own mean, the 'average' column of Fig. 4).
      samples = self.decoder.sample(z, num_decodes)  # [N, B, H, W, C]
      flat = samples.reshape((-1,) + samples.shape[2:])
      probs = self.decoder(jnp.tile(z, (num_decodes, 1)), flat).mean()
      return samples, probs.reshape(samples.shape).mean(axis=0)
    likelihood = self.decoder(z)
    samples = likelihood.sample(seed=self.make_rng('sample'),
                                sample_shape=(num_decodes,))
    return samples, likelihood.mean()


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `model` section, at the paper's simple family."""
  return ml_collections.ConfigDict({
      'family': '---',
      'latent_dim': 64,
      # The flows of the '+' encoder (IAF) and '+' marginal (MAF), F.1 / F.3.
      'flow_steps': 4,
      'made_hidden': 640,
      'made_layers': 3,
      # The 'v' marginal (VampPrior): N pseudo-inputs (Tomczak & Welling).
      'num_pseudo_inputs': 500,
      # Pseudo-inputs per encoder call (the same values, another speed):
      # None for the backend's choice (rdvae/runtime/backends.py resolves it
      # before the model is built), 0 for all at once.
      'pseudo_input_batch': config_dict.placeholder(int),
      # The '+' decoder (PixelCNN++, F.2).
      **pixelcnn.default_config(),
      # A user's own modules ('package.module:factory'; '' the letter's).
      **custom.default_config(),
  })


def _warn_unused_keys(config: ml_collections.ConfigDict, family: str) -> None:
  """Warns about keys set for a component the family does not have."""
  defaults = default_config()
  if '+' not in (family[0], family[2]):
    validation.warn_no_effect(
        config, ('model.flow_steps', 'model.made_hidden', 'model.made_layers'),
        defaults, f'model.family={family!r} has no IAF encoder or MAF marginal')
  if family[1] != '+':
    validation.warn_no_effect(
        config, [f'model.{k}' for k in pixelcnn.default_config()], defaults,
        f'model.family={family!r} has no PixelCNN++ decoder')
  if family[2] != 'v':
    validation.warn_no_effect(
        config, ('model.num_pseudo_inputs',), defaults,
        f'model.family={family!r} has no VampPrior marginal')


def _check_family(config: ml_collections.ConfigDict) -> str:
  family = validation.get(config, 'model.family')
  allowed = (f'encoder in {ENCODER_LETTERS}, decoder in {DECODER_LETTERS}, '
             f'marginal in {MARGINAL_LETTERS}')
  if not isinstance(family, str) or len(family) != 3:
    raise validation.ConfigError(
        f'config.model.family={family!r} must be a 3-character string '
        f'(encoder, decoder, marginal) with {allowed}, e.g. "---"')
  parts = zip(('encoder', 'decoder', 'marginal'), family,
              (ENCODER_LETTERS, DECODER_LETTERS, MARGINAL_LETTERS))
  for position, (part, letter, letters) in enumerate(parts, start=1):
    if letter not in letters:
      raise validation.ConfigError(
          f'config.model.family={family!r}: position {position} ({part}) is '
          f'{letter!r}, not one of the allowed values {letters} ({allowed})')
  return family


def _components(family: str, user=()) -> tuple[tuple[str, str, dict], ...]:
  """(part, letter, registry) of the parts built from the family letters."""
  parts = (('encoder', family[0], ENCODERS), ('decoder', family[1], DECODERS),
           ('marginal', family[2], MARGINALS))
  return tuple(p for p in parts if p[0] not in user)


def _check_image_shape(family: str, image_shape, user) -> ImageShape:
  shape = tuple(image_shape)
  if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
    raise validation.ConfigError(
        f'config.model.family={family!r}: the images have shape {shape}, not '
        '(height, width, channels) (check config.dataset.name)')
  for part, letter, registry in _components(family, user):
    check = registry[letter].image_shape_error
    reason = check(shape) if check is not None else None
    if reason is not None:
      raise validation.ConfigError(
          f'config.model.family={family!r}: the {letter!r} {part} {reason} '
          f'(check config.dataset.name)')
  return shape


def _check_keys(config: ml_collections.ConfigDict, image_shape: ImageShape,
                family_parts: dict[str, str]) -> None:
  """The keys of the parts built from the family letters."""
  if family_parts.get('decoder') == '+':
    pixelcnn.validate(config, image_shape)
  if '+' in (family_parts.get('encoder'), family_parts.get('marginal')):
    for key in ('model.flow_steps', 'model.made_hidden', 'model.made_layers'):
      validation.check_positive_int(config, key)
  if family_parts.get('marginal') == 'v':
    validation.check_positive_int(config, 'model.num_pseudo_inputs')
    if config.model.get('pseudo_input_batch') is not None:
      validation.check_positive_int(config, 'model.pseudo_input_batch',
                                    allow_zero=True)


def _assemble(config, image_shape: ImageShape, family: str,
              user: dict) -> RDModel:
  built = {part: registry[letter].create(config, image_shape)
           for part, letter, registry in _components(family, user)}
  built.update({part: custom.build(name, factory, config, image_shape)
                for part, (name, factory) in user.items()})
  return RDModel(**built)


def validate(config: ml_collections.ConfigDict, image_shape,
             components: Optional[Mapping[str, nn.Module]] = None) -> dict:
  """Checks `config.model` for images of `image_shape`, naming the bad key.

  Args:
    config: the whole experiment config (reads `model.*`).
    image_shape: (H, W, C) of the data's images (`Dataset.image_shape`).
    components: {part: linen module} in place of the config's (`custom`).

  Returns:
    {part: (name, factory)} of the parts not built from the family letters
    (`custom.user_factories`).

  Raises:
    ConfigError: for a family string of the wrong length or with an unknown
      letter, a letter whose module is not available yet, a latent_dim that is
      not a positive integer, an image shape a component cannot take, or a
      user's component that breaks the protocol (docs/models.md).
  """
  family = _check_family(config)
  validation.check_positive_int(config, 'model.latent_dim')
  user = custom.user_factories(config, components)
  for part, letter, registry in _components(family, user):
    if letter not in registry:
      raise validation.ConfigError(
          f'config.model.family={family!r}: the {letter!r} {part} is not '
          f'available yet (available {part}s: {tuple(registry)})')
  image_shape = _check_image_shape(family, image_shape, user)
  _check_keys(config, image_shape,
              {part: letter for part, letter, _ in _components(family, user)})
  if not user:  # a user's factory may read any key
    _warn_unused_keys(config, family)
  if user:
    traced = config
    if config.model.get('pseudo_input_batch') is None:  # all at once
      traced = config.copy_and_resolve_references()
      with traced.unlocked():
        traced.model.pseudo_input_batch = 0
    names = {part: f'the {family!r} family\'s {part}' for part in custom.PARTS}
    names.update({part: name for part, (name, _) in user.items()})
    custom.check_model(_assemble(traced, image_shape, family, user),
                       image_shape, names)
  return user


def create_model(config: ml_collections.ConfigDict, image_shape,
                 components: Optional[Mapping[str, nn.Module]] = None
                 ) -> RDModel:
  """Builds the `RDModel` of `config.model` (validated first): each part
  from `components`, else `model.<part>` ('package.module:factory'), else
  the family letter.

  Args:
    config: the experiment config with the backend's settings resolved
      (`rdvae.runtime.backends.resolved_config`: a VampPrior needs a number
      for `model.pseudo_input_batch`).
    image_shape: (H, W, C) of the data's images (`Dataset.image_shape`).
    components: {'encoder' | 'decoder' | 'marginal': linen module}.
  """
  user = validate(config, image_shape, components)
  return _assemble(config, tuple(image_shape), config.model.family, user)
