"""The causal layers of PixelCNN++: shifts, masked convolutions, the
up-sampling and the gated resnet block (Salimans et al., 2017).

A convolution is causal when the output at pixel (i, j) sees only pixels
above row i, or in row i left of column j: the `down` stream pads above, the
`down_right` stream above and to the left (`_causal_padding`), and
`down_shift` / `right_shift` move a stream one row or column so that a pixel
never sees itself.

Downsampling: PixelCNN++'s strided causal convolutions, [2, 3] (`u`) and
[2, 2] (`ul`), stride 2, padded top/left as for the stride-1 ones; computed by
`nets.conv` (a strided `lax.conv_general_dilated`). The stride-1 ones are one
matrix product over shifted windows (`nets.windowed_conv`). Upsampling:
PixelCNN++'s causal transposed convolutions, [2, 3] and [2, 2], stride 2,
cropped as in PixelCNN++; computed by `nets.conv_transpose` (stride-1
convolution + depth-to-space, same values, no input dilation). Low-resolution
row i of `u` sees image rows < 2i; position (i, j) of `ul` sees pixels before
(2i, 2j); upsampling maps them to rows 2i, 2i + 1 and columns 2j, 2j + 1,
which keeps the order.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae.models import nets


def down_shift(x: jax.Array) -> jax.Array:
  """[B, H, W, C] moved one row down; the top row becomes zeros."""
  return jnp.pad(x, ((0, 0), (1, 0), (0, 0), (0, 0)))[:, :-1]


def right_shift(x: jax.Array) -> jax.Array:
  """[B, H, W, C] moved one column right; the left column becomes zeros."""
  return jnp.pad(x, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]


def _causal_padding(kind: str, kernel_size: Sequence[int]
                    ) -> tuple[tuple[int, int], tuple[int, int]]:
  """Top/left padding that makes output (r, c) read rows <= r (and cols <= c).

  'down': kernel [kh, kw] covers rows r-kh+1..r, columns c-(kw-1)/2..c+(kw-1)/2.
  'down_right': kernel [kh, kw] covers rows r-kh+1..r, columns c-kw+1..c.
  """
  kh, kw = kernel_size
  if kind == 'down':
    return ((kh - 1, 0), ((kw - 1) // 2, (kw - 1) // 2))
  if kind == 'down_right':
    return ((kh - 1, 0), (kw - 1, 0))
  raise ValueError(f'causal conv kind {kind!r} is not one of down, down_right')


class CausalConv(nn.Module):
  """A convolution whose output (r, c) reads only inputs up/left of (r, c).

  At stride 1 it is computed as one matrix product over the kernel's shifted
  windows (`nets.windowed_conv`: the same values as
  `lax.conv_general_dilated`, faster on XLA:CPU; BUILD.md). With stride 2
  it is PixelCNN++'s causal downsampling (`nets.conv`).
  Note that the output still includes its own position (r, c); the shifts
  (`down_shift`, `right_shift`) of the first layer make the streams strict.

  Called with `pad_top=False` the rows are not padded: a window of kh input
  rows (kh - 1 above the target and the target) gives the one output row the
  sampler needs.
  """

  features: int
  kind: str                     # 'down' or 'down_right'
  kernel_size: tuple[int, int] = (2, 3)
  strides: int = 1
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array, pad_top: bool = True) -> jax.Array:
    pads = _causal_padding(self.kind, self.kernel_size)
    if not pad_top:
      pads = ((0, 0), pads[1])
    kernel = self.param(
        'kernel',
        nn.initializers.variance_scaling(self.init_scale, 'fan_in',
                                         'truncated_normal'),
        (*self.kernel_size, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,),
                      jnp.float32)
    if self.strides == 1:
      y = nets.windowed_conv(x, kernel, pads)
    else:
      x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
      y = nets.conv(x, kernel, (self.strides, self.strides), 'VALID')
    return y + bias


class CausalUpsample(nn.Module):
  """PixelCNN++'s causal stride-2 transposed convolution, H x W -> 2H x 2W.

  'down' ([2, 3] kernel): output (r, c) reads input row r // 2 only, so a `u`
  map that sees image rows < 2i at row i still sees rows < r.
  'down_right' ([2, 2] kernel): output (r, c) reads input (r // 2, c // 2).
  Computed by `nets.conv_transpose` and cropped as PixelCNN++ crops
  (`down_shifted_deconv2d`, `down_right_shifted_deconv2d`).
  """

  features: int
  kind: str

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel_size = (2, 3) if self.kind == 'down' else (2, 2)
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (*kernel_size, x.shape[-1], self.features),
                        jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,),
                      jnp.float32)
    _, h, w, _ = x.shape
    y = nets.conv_transpose(x, kernel, (2, 2), 'VALID')  # [B, 2h, 2w + kw-2, F]
    left = (kernel_size[1] - 1) // 2 if self.kind == 'down' else 0
    return y[:, :2 * h, left:left + 2 * w] + bias


class GatedResnet(nn.Module):
  """PixelCNN++'s gated resnet layer with linearly gated activations.

    h = gate(conv(x) + dense(shortcut)),   y = x + gate(conv(h)),

  gate(a) = a_1 * sigmoid(a_2) over the two channel halves; both convolutions
  are causal of the stream's kind; `dense` is a 1x1 convolution ("nin").

  Row mode (the sampler): given `h_above`, the row of h above the target row
  [B, 1, W, C], x is the window of its two rows [B, 2, W, C] (above, target)
  and shortcut the target row; returns (y, h) of the target row.
  """

  kind: str                     # 'down' ([2, 3] kernels) or 'down_right' ([2, 2])

  @nn.compact
  def __call__(self, x: jax.Array, shortcut: Optional[jax.Array] = None,
               h_above: Optional[jax.Array] = None):
    features = x.shape[-1]
    kernel_size = (2, 3) if self.kind == 'down' else (2, 2)
    full = h_above is None
    h = CausalConv(2 * features, self.kind, kernel_size)(x, pad_top=full)
    if shortcut is not None:
      h = h + nn.Dense(2 * features, use_bias=False)(shortcut)
    h = nets.gated_activation(h)
    window = h if full else jnp.concatenate([h_above, h], axis=1)
    y = CausalConv(2 * features, self.kind, kernel_size, init_scale=0.1)(
        window, pad_top=full)
    y = nets.gated_activation(y)
    if full:
      return x + y
    return x[:, -1:] + y, h
