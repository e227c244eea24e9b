"""The model `RDModel`: encoder e(z|x), decoder d(x|z) and marginal m(z)
composed into per-example rate and distortion (RDTerms).

For one sample z ~ e(z|x) per example the model returns, in nats,

  rate       = log e(z|x) - log m(z)     (integrand of R, Eq. 5)
  distortion = -log d(x|z)               (integrand of D, Eq. 4)

and, when both e and m are diagonal Gaussians, the analytic KL(e(z|x) || m(z))
(the expectation of the rate over z). No batch reduction happens here.

Images. The model's methods take images as the data holds them, float32
values v: 0/1 for binary data, 0..255 for 8-bit data (`max_value` 1 or 255).
Every part sees them as x = v / max_value in [0, 1], and the images the
model draws (`reconstruct`, `generate`, `decode`) are in [0, 1] too;
`generative_pairs` returns its images as values v again, ready to be scored.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae import types
from rdvae.models import marginals
from rdvae.objectives import bounds


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
  max_value: int = 1

  def unit(self, v: jax.Array) -> jax.Array:
    """x = v / max_value: the data's values as the parts see them, [0, 1]."""
    return v if self.max_value == 1 else v / jnp.float32(self.max_value)

  def __call__(self, x: jax.Array) -> types.RDTerms:
    """RDTerms of one z ~ e(z|x) per example: rate, distortion [B] in nats.

    Args:
      x: float32 images [B, H, W, C] of the data's values (0/1, or 0..255).
    """
    x = self.unit(x)
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
    x = self.unit(x)
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
      {'z': [N, Z], 'x': [N, H, W, C] float32 values v, 'log_m': [N],
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
    if self.max_value != 1:  # the data's values, as log_importance_weights
      x = jnp.round(x * jnp.float32(self.max_value))  # takes them
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
    e = self.encoder(self.unit(x))
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
    z = self.encoder(self.unit(x)).sample(seed=self.make_rng('sample'))
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
