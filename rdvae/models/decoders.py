"""Decoders d(x|z): linen modules mapping latents to distributions over images.

Contract: `decoder(z, x=None)` with z [B, Z] returns a distrax distribution
over images x in [0, 1] with batch shape (B,) and event shape `image_shape`
(the data's): a `distrax.Independent` of per-pixel Bernoulli logits for
binary images, or for 8-bit images (x = v / 255) the discretized logistic
mixture of PixelCNN++ (`eight_bit_images`). `x` is read only by
autoregressive decoders (teacher forcing); the simple decoder ignores it.
Autoregressive decoders (`autoregressive = True`, the PixelCNN++) need x and
draw images with their own `sample(z, num_decodes)` method.
"""

from __future__ import annotations

import functools
from typing import Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae.models import logistic_mixture
from rdvae.models import nets
from rdvae.models import pixelcnn

# F.2: Deconv (depth, kernel, stride, padding), each with a gated activation.
# The first kernel draws the 7x7 map of 28x28 images; `torso_layers` sizes
# it for other images.
TORSO_LAYERS = ((64, 7, 1, 'VALID'), (64, 5, 1, 'SAME'), (64, 5, 2, 'SAME'),
                (32, 5, 1, 'SAME'), (32, 5, 2, 'SAME'), (32, 4, 1, 'SAME'))


def torso_layers(image_shape: tuple[int, ...]) -> tuple[tuple, ...]:
  """F.2's layers for images of `image_shape`: the first ('VALID') kernel,
  (H/4, W/4), turns the 1x1 latent map into the H/4 x W/4 map that the two
  stride-2 layers take to H x W (7x7 for 28x28 images, as in F.2)."""
  height, width = image_shape[:2]
  (features, _, stride, padding), *rest = TORSO_LAYERS
  return ((features, (height // 4, width // 4), stride, padding),
          *rest)


def deconv_image_shape() -> tuple[int, int, int]:
  """The shape of the images F.2's layers draw, (28, 28, 1).

  z enters as a 1x1 map; a transposed convolution of stride s maps n pixels
  to n s ('SAME') or n s + max(k - s, 0) ('VALID'); the readout has one
  channel. F.2's layers give 1 -> 7 -> 7 -> 14 -> 14 -> 28 -> 28.
  """
  n = 1
  for _, kernel, stride, padding in TORSO_LAYERS:
    n = n * stride + (max(kernel - stride, 0) if padding == 'VALID' else 0)
  return (n, n, 1)


def deconv_image_shape_error(image_shape: tuple[int, ...]) -> Optional[str]:
  """Why the simple decoder cannot draw images of `image_shape`, or None:
  H and W must be divisible by 4 (`torso_layers`); any number of channels."""
  height, width = image_shape[:2]
  if height % 4 == 0 and width % 4 == 0 and height and width:
    return None
  return (f'draws images whose height and width are divisible by 4 (two '
          f'stride-2 layers, F.2), not {tuple(image_shape)}')


def bernoulli_images(logits: jax.Array) -> distrax.Independent:
  """Independent Bernoulli pixels: log d(x|z) = sum_pixels x l - softplus(l).

  Args:
    logits: [B, H, W, C].

  Returns:
    Distribution with batch (B,) and event (H, W, C); samples are float32.
  """
  return distrax.Independent(
      distrax.Bernoulli(logits=logits, dtype=jnp.float32),
      reinterpreted_batch_ndims=3)


class EightBitImages(distrax.Distribution):
  """A distribution over 8-bit images v read at x = v / 255 in [0, 1].

  log_prob(x) = log p(round(255 x)) of the wrapped distribution p over
  values 0..255 (a probability mass, so no Jacobian: the map is a relabelling
  of the 256 levels); samples are v / 255; `mean()` is the mixture's mean
  before binning, / 255 (`DiscretizedLogisticMixture.continuous_mean`).
  """

  def __init__(self, values: logistic_mixture.DiscretizedLogisticMixture):
    super().__init__()
    self.values = values

  @property
  def event_shape(self):
    return self.values.event_shape

  @property
  def batch_shape(self):
    return self.values.batch_shape

  def log_prob(self, value: jax.Array) -> jax.Array:
    return self.values.log_prob(jnp.round(value * 255.0))

  def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
    return self.values.sample(seed=key, sample_shape=n) / 255.0

  def mean(self) -> jax.Array:
    return self.values.continuous_mean() / 255.0


def eight_bit_images(params: jax.Array,
                     num_channels: int) -> EightBitImages:
  """The discretized logistic mixture of raw outputs params [B, H, W, P]
  (`logistic_mixture.split_params`), over x = v / 255."""
  return EightBitImages(
      logistic_mixture.DiscretizedLogisticMixture.from_params(
          params, num_channels))


class DeconvDecoder(nn.Module):
  """The simple decoder `(-)` of F.2: z -> the distribution of H x W x C images.

  z [B, Z] is read as a (1, 1, Z) image, passed through six gated transposed
  convolutions (64,(H/4,W/4),1,valid) 1 -> H/4 x W/4, (64,5,1,same),
  (64,5,2,same) -> H/2 x W/2, (32,5,1,same), (32,5,2,same) -> H x W,
  (32,4,1,same) (F.2 for 28x28: 1->7->7->14->14->28->28), then a linear
  convolution (P,5,1,same) to the outputs o [B, H, W, P], and with
  likelihood 'bernoulli' (P = C logits)

    d(x|z) = prod_subpixels Bernoulli(x; sigmoid(o)),

  with 'logistic_mixture' (P = K (1 + 2C + C(C-1)/2)) the discretized logistic
  mixture of K components over v = 255 x (`eight_bit_images`).

  The parameters of each transposed convolution are those of
  `nn.ConvTranspose(2 C, (kh, kw), (s, s), padding)`; with `fast` the layers
  are computed in the exact stride-1 form of `nets.conv_transpose` (the first
  layer as a dense layer to (H/4)(W/4)*128, each stride-2 layer as four
  stride-1 convolutions, one per output phase with only its taps, interleaved
  by depth-to-space). `fast=False` uses `jax.lax.conv_transpose`, as
  `nn.ConvTranspose` does; both compute the same function of the same
  parameters.

  Attributes:
    image_shape: (H, W, C), H and W divisible by 4.
    fast: use the stride-1 forms (default) or `lax.conv_transpose`.
    likelihood: 'bernoulli' (binary images) or 'logistic_mixture' (8-bit).
    mixture_components: K of the mixture.
  """

  image_shape: tuple[int, int, int]
  fast: bool = True
  likelihood: str = 'bernoulli'
  mixture_components: int = 10

  def setup(self):
    error = deconv_image_shape_error(self.image_shape)
    if error is not None:
      raise ValueError(f'DeconvDecoder {error}')
    if self.likelihood not in ('bernoulli', 'logistic_mixture'):
      raise ValueError(f'DeconvDecoder likelihood={self.likelihood!r}')
    self.layers = [nets.GatedDeconv(c, k, s, p, fast=self.fast)
                   for c, k, s, p in torso_layers(self.image_shape)]
    channels = self.image_shape[-1]
    outputs = (channels if self.likelihood == 'bernoulli' else
               logistic_mixture.num_params(channels, self.mixture_components))
    self.readout = nn.Conv(outputs, (5, 5), padding='SAME')

  def logits(self, z: jax.Array) -> jax.Array:
    """The readout o [B, H, W, P] of latents z [B, Z] (Bernoulli logits, or
    the mixture's raw parameters)."""
    h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    for layer in self.layers:
      h = layer(h)
    return self.readout(h)

  def __call__(self, z: jax.Array,
               x: Optional[jax.Array] = None) -> distrax.Distribution:
    del x  # not autoregressive
    if self.likelihood == 'bernoulli':
      return bernoulli_images(self.logits(z))
    return eight_bit_images(self.logits(z), self.image_shape[-1])


def draw_mixture(outputs: jax.Array, noise: jax.Array,
                 num_channels: int) -> jax.Array:
  """One pixel x = v / 255 of C channels from its mixture's parameters and
  its noise (`logistic_mixture.DiscretizedLogisticMixture.sample_from_noise`).

  Args:
    outputs: [B, P] raw parameters (`logistic_mixture.split_params`).
    noise: [B, K + C]: K standard Gumbel variables, which pick the
      component, then C standard logistic variables, one per channel.
    num_channels: C.

  Returns:
    [B, C] values v / 255.
  """
  # One pixel per row: parameters [B, P] read as a 1x1 image of batch B.
  mixture = logistic_mixture.DiscretizedLogisticMixture.from_params(
      outputs[:, None, None], num_channels)
  k = mixture.num_components
  v = mixture.sample_from_noise(noise[:, None, None, :k],
                                noise[:, None, None, k:])
  return v[:, 0, 0] / 255.0


class PixelCNNDecoder(nn.Module):
  """The complex decoder `(+)` of F.2: a conditional PixelCNN++ over pixels.

    d(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i(x_<i, z))),  i in raster order,

  with l from `pixelcnn.PixelCNN` (two causal streams, linearly gated resnet
  layers, blocks at 28-14-7-7-14-28, z through a dense gated layer to a
  28x28x1 map joined with the image). Under teacher forcing, `__call__(z, x)`
  gives every conditional in one pass, so -log d(x|z) (the distortion, Eq. 4)
  costs one network evaluation. Sampling is exact and sequential (`sample`).

  A pixel i has C channels (C = 1 in the paper). With the Bernoulli
  likelihood its C channels are independent given x_<i and z (C logits).
  With 'logistic_mixture' (8-bit images, x = v / 255) the network reads out
  the K (1 + 2C + C(C-1)/2) parameters of a discretized logistic mixture of
  pixel i given x_<i and z (`eight_bit_images`), whose channels depend on
  each other linearly within the pixel, as in PixelCNN++; it is sampled
  pixel by pixel by `draw_mixture`.

  Attributes:
    image_shape: (H, W, C); (28, 28, 1) for the paper, smaller in tests.
    features: channels of every internal layer (F.2: 64).
    resnets_per_block: gated resnet layers per block (F.2: 2).
    num_scales: resolutions of the down pass (F.2: 3, 28-14-7).
    likelihood: 'bernoulli' or 'logistic_mixture'.
    mixture_components: K of the mixture.
  """

  image_shape: tuple[int, int, int]
  features: int = 64
  resnets_per_block: int = 2
  num_scales: int = 3
  likelihood: str = 'bernoulli'
  mixture_components: int = 10
  autoregressive = True  # a class constant, not a module field

  def setup(self):
    channels = self.image_shape[-1]
    mixture = self.likelihood == 'logistic_mixture'
    self.network = pixelcnn.PixelCNN(
        features=self.features, resnets_per_block=self.resnets_per_block,
        num_scales=self.num_scales, image_shape=self.image_shape,
        outputs=(logistic_mixture.num_params(channels,
                                             self.mixture_components)
                 if mixture else channels))

  def __call__(self, z: jax.Array,
               x: Optional[jax.Array] = None) -> distrax.Distribution:
    """d(.|z) under teacher forcing on x: batch (B,), event (H, W, C).

    Args:
      z: [B, Z] latent codes.
      x: [B, H, W, C] float32 images in [0, 1]; required, since the
        conditional of pixel i is read at x_<i.
    """
    if x is None:
      raise ValueError(
          'the PixelCNN++ decoder is autoregressive: d(x|z) is defined under '
          'teacher forcing, so pass x; draw images with sample(z, num_decodes)')
    if self.likelihood == 'logistic_mixture':
      return eight_bit_images(self.network(x, z), self.image_shape[-1])
    return bernoulli_images(self.network(x, z))

  def sample(self, z: jax.Array, num_decodes: int = 1) -> jax.Array:
    """`num_decodes` exact samples x ~ d(x|z) per z (rng stream 'sample').

    One compiled `lax.fori_loop` over the H*W pixels for all num_decodes * B
    images (`pixelcnn.PixelCNN.sample`).

    Args:
      z: [B, Z] latent codes.
      num_decodes: images per z (the paper's 'mean of 5' uses 5).

    Returns:
      [num_decodes, B, H, W, C] float32 images in [0, 1].
    """
    batch = z.shape[0]
    z = jnp.tile(z, (num_decodes, 1))
    if self.likelihood == 'logistic_mixture':
      channels = self.image_shape[-1]
      gumbel_key, logistic_key = jax.random.split(self.make_rng('sample'))
      grid = (z.shape[0],) + tuple(self.image_shape[:2])
      noise = jnp.concatenate(
          [jax.random.gumbel(gumbel_key, grid + (self.mixture_components,)),
           jax.random.logistic(logistic_key, grid + (channels,))], -1)
      images = self.network.sample_from_noise(
          z, noise, functools.partial(draw_mixture, num_channels=channels))
    else:
      images = self.network.sample(z)
    return images.reshape((num_decodes, batch) + tuple(self.image_shape))
