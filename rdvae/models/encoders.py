"""Encoders e(z|x): linen modules mapping images to distributions over z.

Contract: `encoder(x)` with x [B, *image_shape] float32 in [0, 1] (binary
pixels 0/1, 8-bit values v as v / 255) returns a distrax distribution with
batch shape (B,) and event shape (Z,). The convolutions of F.1 take any H and
W divisible by 4 and any number of channels (`image_shape_error`).

The simple encoder `(-)` of Appendix F.1 is a gated convolutional torso
(`ConvTorso`) followed by a diagonal Gaussian head (`GaussianEncoder`). A richer
encoder (the IAF `(+)`) reuses both: `GaussianEncoder.features(x)` returns the
torso's [B, 256] feature vector (usable as context) and
`GaussianEncoder.gaussian(features)` the base distribution.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax

from rdvae.models import flows
from rdvae.models import nets

# F.1: Conv (depth, kernel, stride, padding), each with a gated activation.
# The last kernel spans the 7x7 map of 28x28 images; `torso_layers` sizes it
# for other images.
TORSO_LAYERS = ((32, 5, 1, 'SAME'), (32, 5, 2, 'SAME'), (64, 5, 1, 'SAME'),
                (64, 5, 2, 'SAME'), (256, 7, 1, 'VALID'))


def torso_layers(image_shape: tuple[int, ...]) -> tuple[tuple, ...]:
  """F.1's layers for images of `image_shape`: the two stride-2 'SAME'
  convolutions take H x W to H/4 x W/4, and the last ('VALID') kernel spans
  that map, (H/4, W/4), to give the 1x1 map of the features (7x7 for
  28x28 images, as in F.1)."""
  height, width = image_shape[:2]
  *first, (features, _, stride, padding) = TORSO_LAYERS
  return tuple(first) + ((features, (height // 4, width // 4), stride,
                          padding),)


def image_shape_error(image_shape: tuple[int, ...]) -> Optional[str]:
  """Why the torso cannot take images of `image_shape`, or None if it can:
  H and W must be divisible by 4 (two stride-2 layers, then a kernel that
  spans the H/4 x W/4 map); any number of channels."""
  height, width = image_shape[:2]
  if height % 4 == 0 and width % 4 == 0 and height and width:
    return None
  return (f'takes images whose height and width are divisible by 4 (two '
          f'stride-2 layers, F.1), not {tuple(image_shape)}')


class ConvTorso(nn.Module):
  """The five gated convolutions of F.1: x [B, H, W, C] -> features [B, 256].

  Inputs in [0, 1] are first mapped to [-1, 1] by x -> 2x - 1. The last
  layer's kernel spans the H/4 x W/4 map (`torso_layers`). Each layer is
  h = (W1 * x + b1) sigmoid(W2 * x + b2) with * a convolution of the listed
  (depth, kernel, stride, padding); see `nets.GatedConv`.

  Attributes:
    image_shape: (H, W, C) of the images; `image_shape_error` must be None.
    fast: compute the last (7x7 'VALID' on 7x7) layer as the dense layer it
      is (same values, a much faster input gradient on XLA:CPU); False uses
      `lax.conv_general_dilated` throughout, as `nn.Conv` does. The parameters
      are the same.
  """

  image_shape: tuple[int, int, int]
  fast: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    shape = tuple(self.image_shape)
    if tuple(x.shape[1:]) != shape:
      raise ValueError(f'ConvTorso takes images of shape {shape} (its '
                       f'image_shape), got {tuple(x.shape[1:])}')
    error = image_shape_error(shape)
    if error is not None:
      raise ValueError(f'ConvTorso {error}')
    h = 2.0 * x - 1.0
    for features, kernel, stride, padding in torso_layers(shape):
      h = nets.GatedConv(features, kernel, stride, padding, fast=self.fast)(h)
    return h.reshape(h.shape[0], -1)  # [B, 256]


class GaussianEncoder(nn.Module):
  """The simple encoder `(-)` of F.1: e(z|x) = N(z; mu(x), diag(sigma(x)^2)).

  mu = W_mu h + b_mu and sigma = softplus(W_s h + b_s) + min_scale, with h the
  `ConvTorso` features. F.1 says the softplus reads out the "variance"; we read
  it as the standard deviation (the scale), as the reference implementations
  do. `min_scale` (default 1e-5) keeps log e(z|x) finite when the softplus
  underflows; it is far below any scale a trained model uses.

  Attributes:
    image_shape: (H, W, C) of the images (see `ConvTorso`).
    latent_dim: Z (64 in the paper).
    min_scale: the floor added to the scale.
    fast: passed to the torso (see `ConvTorso`).

  Methods:
    features(x) -> [B, 256]; gaussian(features) -> MultivariateNormalDiag;
    __call__(x) -> MultivariateNormalDiag, batch (B,), event (Z,).
  """

  image_shape: tuple[int, int, int]
  latent_dim: int = 64
  min_scale: float = 1e-5
  fast: bool = True

  def setup(self):
    self.torso = ConvTorso(image_shape=self.image_shape, fast=self.fast)
    self.mean = nn.Dense(self.latent_dim)
    self.scale = nn.Dense(self.latent_dim)

  def features(self, x: jax.Array) -> jax.Array:
    """The torso's feature vector [B, 256] of images x [B, *image_shape]."""
    return self.torso(x)

  def gaussian(self, features: jax.Array) -> distrax.MultivariateNormalDiag:
    """The diagonal Gaussian read out from features [B, 256]."""
    scale = jax.nn.softplus(self.scale(features)) + self.min_scale
    return distrax.MultivariateNormalDiag(loc=self.mean(features),
                                          scale_diag=scale)

  def __call__(self, x: jax.Array) -> distrax.MultivariateNormalDiag:
    return self.gaussian(self.features(x))


class IAFEncoder(nn.Module):
  """The complex encoder `(+)` of F.1: the simple encoder, then 4 IAF steps.

  z_0 ~ N(mu(x), diag sigma(x)^2) from `GaussianEncoder` (same torso, same
  heads), then z = f_x(z_0) with f_x = s_4 o R o s_3 o R o s_2 o R o s_1 a
  mean-only inverse autoregressive flow (Kingma et al., 2016; see
  rdvae/models/flows.py): s_k(v)_i = v_i + mu^k_i(v_<i, h), R the reversal. Since
  every step has unit Jacobian determinant,

    log e(z|x) = log N(z_0; mu(x), diag sigma(x)^2).

  Context (our choice; F.1 is silent): each step's MADE reads the torso's
  256-d features h, linearly projected (no bias) into its first hidden layer;
  see rdvae/models/made.py. The MADEs start at mu = 0, so at init e(z|x) is the
  Gaussian with its coordinates reversed three times (= once).

  `__call__` returns a `distrax.Transformed` whose `sample_and_log_prob` gives
  z and log e(z|x) in one MADE pass per step (the IAF direction). Its
  `log_prob` at an arbitrary z needs the sequential inverse (64 MADE passes
  per step). No closed-form KL exists, so the model's `analytic_rate` is None
  for this encoder. `transformed.distribution` is the Gaussian stage (the
  VampPrior uses it; see `marginals.VampPrior`).

  Attributes:
    image_shape: (H, W, C) of the images (see `ConvTorso`).
    latent_dim: Z (64 in the paper).
    flow_steps: number of IAF steps (4).
    made_hidden: MADE units per hidden layer (640).
    made_layers: MADE hidden layers (3).
    min_scale, fast: passed to `GaussianEncoder`.
  """

  image_shape: tuple[int, int, int]
  latent_dim: int = 64
  flow_steps: int = 4
  made_hidden: int = 640
  made_layers: int = 3
  min_scale: float = 1e-5
  fast: bool = True

  def setup(self):
    self.gaussian_encoder = GaussianEncoder(
        image_shape=self.image_shape, latent_dim=self.latent_dim, min_scale=self.min_scale, fast=self.fast)
    self.flow = flows.MeanOnlyFlow(
        latent_dim=self.latent_dim, direction='iaf', steps=self.flow_steps,
        hidden=self.made_hidden, layers=self.made_layers)

  def __call__(self, x: jax.Array) -> distrax.Transformed:
    """e(z|x) for images x [B, *image_shape]: batch (B,), event (Z,)."""
    features = self.gaussian_encoder.features(x)  # [B, 256]
    return distrax.Transformed(self.gaussian_encoder.gaussian(features),
                               self.flow(features))
