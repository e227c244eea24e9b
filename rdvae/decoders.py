"""Decoders d(x|z): linen modules mapping latents to distributions over images.

Contract: `decoder(z, x=None)` with z [B, Z] returns a distrax distribution
over images with batch shape (B,) and event shape (28, 28, 1): a
`distrax.Independent` of per-pixel Bernoulli logits. `x` is read only by
autoregressive decoders (teacher forcing); the simple decoder ignores it.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae import nets

IMAGE_SHAPE = (28, 28, 1)

# F.2: Deconv (depth, kernel, stride, padding), each with a gated activation.
TORSO_LAYERS = ((64, 7, 1, 'VALID'), (64, 5, 1, 'SAME'), (64, 5, 2, 'SAME'),
                (32, 5, 1, 'SAME'), (32, 5, 2, 'SAME'), (32, 4, 1, 'SAME'))


def bernoulli_images(logits: jax.Array) -> distrax.Independent:
  """Independent Bernoulli pixels: log d(x|z) = sum_pixels x l - softplus(l).

  Args:
    logits: [B, 28, 28, 1].

  Returns:
    Distribution with batch (B,) and event (28, 28, 1); samples are float32.
  """
  return distrax.Independent(
      distrax.Bernoulli(logits=logits, dtype=jnp.float32),
      reinterpreted_batch_ndims=3)


class DeconvDecoder(nn.Module):
  """The simple decoder `(-)` of F.2: z -> Bernoulli logits of 28x28x1 pixels.

  z [B, Z] is read as a (1, 1, Z) image, passed through six gated transposed
  convolutions (64,7,1,valid) 1->7, (64,5,1,same), (64,5,2,same) 7->14,
  (32,5,1,same), (32,5,2,same) 14->28, (32,4,1,same), then a linear
  convolution (1,5,1,same) to the logits l, and

    d(x|z) = prod_pixels Bernoulli(x; sigmoid(l)).

  The parameters of each transposed convolution are those of
  `nn.ConvTranspose(2 C, (k, k), (s, s), padding)`; with `fast` the layers are
  computed in the exact stride-1 form of `nets.conv_transpose` (the first
  layer as a dense layer to 7*7*128, stride-2 layers as a stride-1
  convolution to 4x the channels plus depth-to-space). `fast=False` uses
  `jax.lax.conv_transpose`, as `nn.ConvTranspose` does; both compute the same
  function of the same parameters.

  Attributes:
    fast: use the stride-1 forms (default) or `lax.conv_transpose`.
  """

  fast: bool = True

  def setup(self):
    self.layers = [nets.GatedDeconv(c, k, s, p, fast=self.fast)
                   for c, k, s, p in TORSO_LAYERS]
    self.readout = nn.Conv(1, (5, 5), padding='SAME')

  def logits(self, z: jax.Array) -> jax.Array:
    """Bernoulli logits [B, 28, 28, 1] of latents z [B, Z]."""
    h = z.reshape(z.shape[0], 1, 1, z.shape[-1])
    for layer in self.layers:
      h = layer(h)
    return self.readout(h)

  def __call__(self, z: jax.Array,
               x: Optional[jax.Array] = None) -> distrax.Independent:
    del x  # not autoregressive
    return bernoulli_images(self.logits(z))
