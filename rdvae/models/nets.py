"""Shared linen building blocks: linearly gated layers and fast exact deconvolutions.

Every layer of the paper's MNIST models uses the linearly gated activation of
Dauphin et al. (2017) (Appendix F; F writes `b2` twice, a typo):

  h(x) = (W1 x + b1) * sigmoid(W2 x + b2).

We compute both halves with one dense/conv layer of 2C outputs and split the
result, `gated_activation`: the same function with one matmul.

Transposed convolutions ("deconvolutions", F.2) are computed *exactly* in a form
that XLA:CPU runs fast. `jax.lax.conv_transpose` lowers a stride-s transposed
convolution to a convolution over an input dilated by s (zeros between pixels),
which XLA:CPU runs far slower than a dense convolution (the whole model in
both forms: `python benchmarks/train_throughput.py --reference`). The same
linear map is, for each output phase r (o = s q + r), a stride-1 correlation of
the undilated input with the kernel taps whose dilated positions land on input
pixels. Stacking the s*s phases as output channels gives one stride-1
convolution with s*s*C outputs followed by depth-to-space (the "sub-pixel"
form; `convert_conv_transpose_kernel` maps a `flax.linen.ConvTranspose` kernel
to it, zero taps included). `conv_transpose` runs each phase as its own
stride-1 convolution with only its taps (no zero taps) and interleaves the
results; a transposed convolution on a 1x1 input (F.2's first layer) is a
dense layer. Both equal `jax.lax.conv_transpose` to float32 round-off
(tested).

F.1's last convolution (7x7 'VALID' on a 7x7 map) is likewise computed as
the dense layer it is (`conv`).

The modules keep the *original* parameters (`kernel` of `nn.Conv` /
`nn.ConvTranspose` shape and initialisation) and convert them inside the
forward pass (gathers of their taps, a few hundred thousand weights), so the
trained function family is exactly the paper's layer, not the larger family a
free sub-pixel kernel (36 taps per input pixel where the 5x5 stride-2 layer
has 25) would span.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def gated_activation(h: jax.Array) -> jax.Array:
  """Splits the last axis [..., 2C] in halves (a, b) and returns a * sigmoid(b)."""
  a, b = jnp.split(h, 2, axis=-1)
  return a * jax.nn.sigmoid(b)


def _pair(value: Union[int, Sequence[int]]) -> tuple[int, int]:
  if isinstance(value, int):
    return (value, value)
  return tuple(int(v) for v in value)


# ----------------------------------------------------------------------------
# Index bookkeeping (numpy, at trace time).


def conv_transpose_padding(kernel_size: int, stride: int,
                           padding: str) -> tuple[int, int]:
  """The (before, after) padding of the dilated input in `lax.conv_transpose`."""
  k, s = kernel_size, stride
  if padding == 'SAME':
    pad_len = k + s - 2
    before = k - 1 if s > k - 1 else int(np.ceil(pad_len / 2))
  elif padding == 'VALID':
    pad_len = k + s - 2 + max(k - s, 0)
    before = k - 1
  else:
    raise ValueError(f'padding {padding!r} is not one of SAME, VALID')
  return before, pad_len - before


def conv_transpose_output_size(size: int, kernel_size: int, stride: int,
                               padding: str) -> int:
  before, after = conv_transpose_padding(kernel_size, stride, padding)
  return (size - 1) * stride + 1 + before + after - kernel_size + 1


@functools.lru_cache(maxsize=None)
def _transpose_taps(kernel_size: int, stride: int,
                    before: int) -> tuple[int, np.ndarray]:
  """Tap table of one axis of a transposed convolution in sub-pixel form.

  With the dilated input padded by `before`, output o = s q + r reads tap t at
  input pixel i = q + d where d = (r + t - before) / s when that is an integer.
  Returns (d_min, table) with table[d - d_min, r] = t, or `kernel_size` (a zero
  tap) where no tap of phase r lands at offset d.
  """
  k, s = kernel_size, stride
  offsets = {(r + t - before) // s for r in range(s) for t in range(k)
             if (r + t - before) % s == 0}
  d_min, d_max = min(offsets), max(offsets)
  table = np.full((d_max - d_min + 1, s), k, np.int32)
  for r in range(s):
    for t in range(k):
      if (r + t - before) % s == 0:
        table[(r + t - before) // s - d_min, r] = t
  return d_min, table


def _gather_taps(kernel: jax.Array, table_h: np.ndarray,
                 table_w: np.ndarray) -> jax.Array:
  """kernel [kh, kw, I, O] -> [span_h, s_h, span_w, s_w, I, O] by tap tables."""
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))  # zero tap last
  return padded[table_h[:, :, None, None], table_w[None, None, :, :]]


# ----------------------------------------------------------------------------
# Depth to space.


def depth_to_space(x: jax.Array, strides: Sequence[int]) -> jax.Array:
  """[B, H, W, sh*sw*C] with channels ordered (rh, rw, c) -> [B, H sh, W sw, C]."""
  sh, sw = strides
  b, h, w, c = x.shape
  c //= sh * sw
  x = x.reshape(b, h, w, sh, sw, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * sh, w * sw, c)


# ----------------------------------------------------------------------------
# Transposed convolution.


def convert_conv_transpose_kernel(kernel: jax.Array, strides: Sequence[int],
                                  padding: str,
                                  transpose_kernel: bool = False
                                  ) -> tuple[jax.Array, tuple[int, int]]:
  """Maps a transposed-convolution kernel to its stride-1 sub-pixel kernel.

  `jax.lax.conv_transpose(x, kernel, strides, padding, transpose_kernel)`
  (what `flax.linen.ConvTranspose` computes, before its bias) equals
  `depth_to_space(conv(x, K), strides)`, cropped to the output size, where K is
  the returned kernel and conv a stride-1 correlation with padding
  (-d_min, *) on each axis.

  Args:
    kernel: [kh, kw, I, O], or [kh, kw, O, I] when `transpose_kernel` (the
      TensorFlow `conv2d_transpose` convention: the gradient of a convolution
      with that kernel, i.e. spatially flipped and I/O swapped).
    strides: (sh, sw).
    padding: 'SAME' or 'VALID', as for the transposed convolution.
    transpose_kernel: as in `jax.lax.conv_transpose`.

  Returns:
    (K [span_h, span_w, I, sh*sw*O] with output channels ordered (rh, rw, o),
     (d_min_h, d_min_w)).
  """
  if transpose_kernel:
    kernel = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
  kh, kw, cin, cout = kernel.shape
  sh, sw = _pair(strides)
  dh, table_h = _transpose_taps(kh, sh, conv_transpose_padding(kh, sh, padding)[0])
  dw, table_w = _transpose_taps(kw, sw, conv_transpose_padding(kw, sw, padding)[0])
  taps = _gather_taps(kernel, table_h, table_w)  # [Ph, sh, Pw, sw, I, O]
  taps = taps.transpose(0, 2, 4, 1, 3, 5)
  return taps.reshape(table_h.shape[0], table_w.shape[0], cin,
                      sh * sw * cout), (dh, dw)


def phase_taps(kernel_size: int, stride: int,
               padding: str) -> tuple[tuple[np.ndarray, int], ...]:
  """Per output phase r of one axis: (taps t in increasing order, offset of the first).

  Phase r of a transposed convolution reads tap t at input offset
  d = (r + t - before) / s; its taps are every s-th tap, at consecutive
  offsets. A phase with no taps gets an empty array.
  """
  before = conv_transpose_padding(kernel_size, stride, padding)[0]
  result = []
  for r in range(stride):
    taps = np.array([t for t in range(kernel_size)
                     if (r + t - before) % stride == 0], np.int32)
    first = (r + int(taps[0]) - before) // stride if taps.size else 0
    result.append((taps, first))
  return tuple(result)


def conv_transpose(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
                   padding: str, transpose_kernel: bool = False) -> jax.Array:
  """`jax.lax.conv_transpose` (NHWC, HWIO) computed without input dilation.

  Output o = s q + r of phase r is a stride-1 correlation of the undilated
  input with the phase's own taps (`phase_taps`): for (5, 2, 'SAME') the four
  phases use 2x2, 2x3, 3x2 and 3x3 sub-kernels, 25 taps in all, exactly the
  work of the transposed convolution, where one stride-1 convolution with
  the zero-padded sub-pixel kernel of `convert_conv_transpose_kernel` would
  use 36. The phase outputs are interleaved (depth-to-space). On a 1x1 input
  the map is a dense layer,
  y[o] = x kernel[before - o], read from the sub-pixel kernel.

  Args:
    x: [B, H, W, I].
    kernel: [kh, kw, I, O] ([kh, kw, O, I] when `transpose_kernel`).
    strides, padding, transpose_kernel: as in `jax.lax.conv_transpose`.

  Returns:
    [B, H', W', O], the same values as `jax.lax.conv_transpose`.
  """
  sh, sw = _pair(strides)
  b, h, w, _ = x.shape
  kh, kw = kernel.shape[:2]
  out_h = conv_transpose_output_size(h, kh, sh, padding)
  out_w = conv_transpose_output_size(w, kw, sw, padding)
  qh, qw = -(-out_h // sh), -(-out_w // sw)  # output positions per phase
  if h == 1 and w == 1:
    sub, (dh, dw) = convert_conv_transpose_kernel(kernel, (sh, sw), padding,
                                                  transpose_kernel)
    span_h, span_w = sub.shape[:2]
    # Only offset d = -q reads the single pixel: a dense layer.
    rows = -np.arange(qh) - dh
    cols = -np.arange(qw) - dw
    ok_h = (rows >= 0) & (rows < span_h)
    ok_w = (cols >= 0) & (cols < span_w)
    dense = sub[np.clip(rows, 0, span_h - 1)[:, None],
                np.clip(cols, 0, span_w - 1)[None, :]]  # [qh, qw, I, sh sw O]
    dense = dense * jnp.asarray(ok_h[:, None] & ok_w[None, :],
                                dense.dtype)[:, :, None, None]
    dense = dense.transpose(2, 0, 1, 3).reshape(sub.shape[2], -1)
    y = (x.reshape(b, -1) @ dense).reshape(b, qh, qw, -1)
    y = depth_to_space(y, (sh, sw))
    return y[:, :out_h, :out_w]
  if transpose_kernel:
    kernel = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)
  cout = kernel.shape[-1]
  rows = []
  for taps_h, first_h in phase_taps(kh, sh, padding):
    row = []
    for taps_w, first_w in phase_taps(kw, sw, padding):
      if not (taps_h.size and taps_w.size):
        row.append(jnp.zeros((b, qh, qw, cout), x.dtype))
        continue
      sub = kernel[taps_h][:, taps_w]
      # Output q reads inputs q + first .. q + first + taps - 1; lax pads
      # (negative padding crops) so that exactly q = 0 .. Q - 1 come out.
      pads = ((-first_h, qh - 1 + first_h + taps_h.size - h),
              (-first_w, qw - 1 + first_w + taps_w.size - w))
      row.append(jax.lax.conv_general_dilated(
          x, sub, (1, 1), pads, dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
    rows.append(jnp.stack(row, axis=3))  # [B, Qh, Qw, sw, O]
  y = jnp.stack(rows, axis=2)  # [B, Qh, sh, Qw, sw, O]
  y = y.reshape(b, qh * sh, qw * sw, cout)
  return y[:, :out_h, :out_w]


# ----------------------------------------------------------------------------
# Strided convolution.


def conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
         padding: str = 'SAME') -> jax.Array:
  """`nn.Conv`'s correlation (NHWC, HWIO, no bias) in the form XLA:CPU runs fastest.

  A 'VALID' convolution whose kernel covers the whole input (F.1's last
  layer, 7x7 on 7x7) is computed as the dense layer it is: as a
  convolution, its input gradient is a 7x7 convolution over a padded 1x1
  map, which XLA:CPU runs slowly. Everything else, strided layers included,
  goes to `lax.conv_general_dilated`.

  Args:
    x: [B, H, W, I].
    kernel: [kh, kw, I, O].
    strides: (sh, sw).
    padding: 'SAME' or 'VALID', with the `nn.Conv` meaning.

  Returns:
    [B, H', W', O], the same values as `jax.lax.conv_general_dilated`.
  """
  b, h, w, _ = x.shape
  if padding == 'VALID' and tuple(kernel.shape[:2]) == (h, w):
    y = x.reshape(b, -1) @ kernel.reshape(-1, kernel.shape[-1])
    return y.reshape(b, 1, 1, -1)
  return jax.lax.conv_general_dilated(
      x, kernel, _pair(strides), padding,
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def windowed_conv(x: jax.Array, kernel: jax.Array,
                  padding: Sequence[tuple[int, int]]) -> jax.Array:
  """A stride-1 correlation with explicit padding, as one matrix product.

    y[b, r, c, o] = sum_{i, j, k} x_pad[b, r + i, c + j, k] kernel[i, j, k, o]

  computed as [B, H, W, kh kw I] windows (the kh kw shifted slices of the
  padded input side by side) times the kernel as a [kh kw I, O] matrix;
  the values are those of `lax.conv_general_dilated` up to the order of the
  sums. With PixelCNN++'s small causal kernels (2x3 and 2x2, 64 -> 128
  channels) in this form, XLA:CPU trains the whole `-+-` family faster and
  samples the decoder faster, and compiles slower: `python
  benchmarks/family_throughput.py --families=-+-@lax,-+-,-+-@lax,-+-` and
  `python benchmarks/pixelcnn_sampling.py --causal_conv=lax,windowed` time
  both forms (BUILD.md).

  Args:
    x: [B, H, W, I].
    kernel: [kh, kw, I, O].
    padding: ((top, bottom), (left, right)).

  Returns:
    [B, H + top + bottom - kh + 1, W + left + right - kw + 1, O].
  """
  kh, kw, channels, features = kernel.shape
  (top, bottom), (left, right) = padding
  x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  windows = jnp.concatenate(
      [x[:, i:i + h, j:j + w] for i in range(kh) for j in range(kw)], axis=-1)
  return windows @ kernel.reshape(kh * kw * channels, features)


# ----------------------------------------------------------------------------
# Gated layers.


class GatedDense(nn.Module):
  """h = (W1 x + b1) * sigmoid(W2 x + b2), one `nn.Dense` of 2 * features."""

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return gated_activation(nn.Dense(2 * self.features)(x))


class _GatedLinearMap(nn.Module):
  """A linear map with `kernel` [k, k, I, 2C] and `bias` [2C] (the shapes and
  initialisers of `nn.Conv` / `nn.ConvTranspose` with 2C features), then the
  gated activation a * sigmoid(b). Subclasses say which map `_linear` is."""

  features: int
  kernel_size: Union[int, tuple[int, int]]  # k for k x k, or (kh, kw)
  strides: int = 1
  padding: str = 'SAME'
  fast: bool = True

  def _linear(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = _pair(self.kernel_size)
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (kh, kw, x.shape[-1], 2 * self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (2 * self.features,),
                      jnp.float32)
    return gated_activation(self._linear(x, kernel) + bias)


class GatedConv(_GatedLinearMap):
  """Gated `nn.Conv` layer: Conv(2C) then a * sigmoid(b) (F.1).

  Parameters `kernel` [k, k, I, 2C] and `bias` [2C] have the shapes and
  initialisers of `nn.Conv(2 * features, ...)`. With `fast` the layer is
  computed by `conv` (a convolution covering its whole input as a dense
  layer), otherwise by `lax.conv_general_dilated`; the same values.
  """

  def _linear(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    s = (self.strides, self.strides)
    if self.fast:
      return conv(x, kernel, s, self.padding)
    return jax.lax.conv_general_dilated(
        x, kernel, s, self.padding, dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


class GatedDeconv(_GatedLinearMap):
  """Gated transposed convolution: ConvTranspose(2C) then a * sigmoid(b) (F.2).

  Parameters `kernel` [k, k, I, 2C] and `bias` [2C] are those of
  `nn.ConvTranspose(2 * features, (k, k), strides, padding)` (default
  `transpose_kernel=False`). With `fast` the layer is computed by
  `conv_transpose` (sub-pixel form, or dense on a 1x1 input); otherwise by
  `jax.lax.conv_transpose` exactly as `nn.ConvTranspose` does. Both give the
  same values for the same parameters.
  """

  def _linear(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    s = (self.strides, self.strides)
    if self.fast:
      return conv_transpose(x, kernel, s, self.padding)
    return jax.lax.conv_transpose(x, kernel, s, self.padding,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
