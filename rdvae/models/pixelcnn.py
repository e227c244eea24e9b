"""The PixelCNN++ network of the (+) decoder d(x|z): causal logits and sampling.

Appendix F.2 of the paper, with Salimans et al. (2017, "PixelCNN++") wherever
F.2 is silent. The decoder factorises over pixels in raster order,

  d(x|z) = prod_i Bernoulli(x_i; sigmoid(l_i(x_<i, z))),     i = r W + c,

so its distortion -log d(x|z) (Eq. 4) is one teacher-forced pass and its
samples are drawn pixel by pixel. The logit l_i sees only pixels j < i: that
is the one property the architecture exists to guarantee (tested by gradients
in tests/test_pixelcnn.py).

Architecture (choices where F.2 is silent are marked *):

- Input. x in [0, 1] ({0, 1}, or v / 255 for 8-bit values v, whose outputs
  then parameterize a discretized logistic mixture per pixel, `decoders`) is
  mapped to 2x - 1 in [-1, 1] (* no channel of ones, as PixelCNN++ has). A
  pixel is all C channels of a position (C = 1 in the paper), seen whole at
  j < i and not at all at i, as in PixelCNN++. z [Z] goes through a dense
  linearly gated layer to an [H, W, 1] "z-map" joined with the image: F.2's
  [H, W, 2] input ([H, W, C + 1]). The first layer of each stream is linear
  in it: the image through causally shifted kernels, the z-map through an
  unshifted 3x3 kernel (* the z-map carries no information about x, so every
  pixel may see all of it), computed as the sum of the two convolutions.
- Two streams, as in PixelCNN++: `u` ("down") sees the rows above the pixel,
  through down-shifted [2, 3] convolutions; `ul` ("down-right") sees the rows
  above and the pixels to the left, through down-right-shifted [2, 2]
  convolutions plus `u`. Together there is no blind spot: every logit sees
  its whole causal neighbourhood (left, up-left, up, up-right). The receptive
  field is still bounded by depth, as in PixelCNN++: at 28x28 most logits see
  every earlier pixel, but on an odd row 2i + 1 the row just above is seen
  only up to 8 columns to the right (the lower resolutions carry rows < 2i
  only, so row 2i reaches row 2i + 1 through full-resolution layers alone).
- Linearly gated activations h = (W1 a + b1) * sigmoid(W2 a + b2)
  (`nets.gated_activation`) replace PixelCNN++'s concat_elu, as F.2 says.
  Gated resnet layer (* PixelCNN++'s layer with each "nonlinearity, conv" pair
  replaced by a gated conv):
    h = gate(conv(x) + dense(shortcut))      (shortcut term only if given)
    y = x + gate(conv(h))                    (second conv initialised x0.1)
- A U-net of `2 * num_scales` blocks of `resnets_per_block` gated resnet
  layers each: sizes 28-14-7 down, 7-14-28 up (F.2: six blocks of two layers,
  64 features). Each up-pass layer receives the output of its mirror down-pass
  layer as a shortcut (`u` gets the `u` of the same size; `ul` gets `u` and the
  mirror `ul`, concatenated, as in PixelCNN++). * PixelCNN++ uses
  nr_resnet + 1 layers in its last two up blocks to also consume the
  downsampling outputs; F.2 says two layers in every block, so we do not.
- Downsampling and upsampling: PixelCNN++'s strided causal convolutions and
  causal transposed convolutions (`pixelcnn_layers`, which says how each is
  computed and why the order is kept).
- Output: the last `ul` [H, W, 64] through a 1x1 convolution to one Bernoulli
  logit per pixel (F.2), or P outputs per pixel. * z enters only through the input.
- * No weight normalisation, dropout or data-dependent initialisation.

Sampling (`PixelCNN.sample`) is exact: a `lax.fori_loop` over the H*W
positions draws pixel i from its Bernoulli given the pixels already drawn.
Pixel i is 1 when logistic noise n_i < l_i, which has probability
sigmoid(l_i); the noise of all pixels is drawn up front, so a test can
recompute every decision. Because the network is causal, every activation in
the rows above the current one is final once those rows are drawn, so a step
recomputes only the current row of each layer and reads the rows above from
caches (the idea of Ramachandran et al. (2017), "Fast generation for
convolutional autoregressive models"); the `u` stream, which sees only rows
above, is computed once per image row. At 28x28 a step then costs about 1/40
of a full pass instead of a full pass.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rdvae.models import nets
from rdvae.models import pixelcnn_layers
from rdvae import validation

# ----------------------------------------------------------------------------
# The network.


class PixelCNN(nn.Module):
  """Conditional PixelCNN++ of F.2: (x, z) -> outputs [B, H, W, P], the
  Bernoulli logits (P = 1) or a mixture's parameters of each pixel.

  Attributes:
    image_shape: (H, W, C) of the images ((28, 28, 1) in the paper; tests
      use tiny ones).
    outputs: P, the readout's channels.
    features: channels of every internal layer (F.2: 64).
    resnets_per_block: gated resnet layers per block (F.2: 2).
    num_scales: resolutions of the down pass (F.2: 3, i.e. 28-14-7); the up
      pass mirrors them, so there are 2 * num_scales blocks. H and W must be
      divisible by 2^(num_scales - 1).
  """

  image_shape: tuple[int, int, int]
  features: int = 64
  resnets_per_block: int = 2
  num_scales: int = 3
  outputs: int = 1

  def setup(self):
    height, width, _ = self.image_shape
    factor = 2 ** (self.num_scales - 1)
    if height % factor or width % factor:
      raise ValueError(
          f'image_shape {self.image_shape} must have H and W divisible by '
          f'2^(num_scales - 1) = {factor}')
    f = self.features
    self.z_map = nets.GatedDense(height * width)
    self.z_to_u = nn.Conv(f, (3, 3), padding='SAME')
    self.z_to_ul = nn.Conv(f, (3, 3), padding='SAME')
    self.x_to_u = pixelcnn_layers.CausalConv(f, 'down', (2, 3))
    self.x_to_ul_above = pixelcnn_layers.CausalConv(f, 'down', (1, 3))
    self.x_to_ul_left = pixelcnn_layers.CausalConv(f, 'down_right', (2, 1))
    n = self.num_scales * self.resnets_per_block
    self.down_u = [pixelcnn_layers.GatedResnet('down') for _ in range(n)]
    self.down_ul = [pixelcnn_layers.GatedResnet('down_right') for _ in range(n)]
    self.up_u = [pixelcnn_layers.GatedResnet('down') for _ in range(n)]
    self.up_ul = [pixelcnn_layers.GatedResnet('down_right') for _ in range(n)]
    s = self.num_scales - 1
    self.downsample_u = [pixelcnn_layers.CausalConv(f, 'down', (2, 3), 2) for _ in range(s)]
    self.downsample_ul = [pixelcnn_layers.CausalConv(f, 'down_right', (2, 2), 2)
                          for _ in range(s)]
    self.upsample_u = [pixelcnn_layers.CausalUpsample(f, 'down') for _ in range(s)]
    self.upsample_ul = [pixelcnn_layers.CausalUpsample(f, 'down_right') for _ in range(s)]
    self.to_logits = nn.Conv(self.outputs, (1, 1))

  def __call__(self, x: jax.Array, z: jax.Array) -> jax.Array:
    """Teacher-forced logits: l[b, r, c] depends on x[b] only before (r, c).

    Args:
      x: [B, h, W, C] float32 in [0, 1]. h may be less than H (the top h rows
        of the image, h divisible by 2^(num_scales - 1)); the logits of those
        rows are then the same as on the full image.
      z: [B, Z] latent codes.

    Returns:
      [B, h, W, P] outputs at every pixel i, functions of x_<i and z (P = 1:
      the logit of d(x_i = 1 | x_<i, z)).
    """
    return self._network(2.0 * x - 1.0, self._z_features(z))

  def _z_features(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The z-map's contributions to the first layer of u and ul, full size."""
    height, width, _ = self.image_shape
    z_map = self.z_map(z).reshape(z.shape[0], height, width, 1)  # [B, H, W, 1]
    return self.z_to_u(z_map), self.z_to_ul(z_map)

  def _network(self, image: jax.Array,
               z_features: tuple[jax.Array, jax.Array]) -> jax.Array:
    height = image.shape[1]
    z_u, z_ul = (f[:, :height] for f in z_features)
    u = pixelcnn_layers.down_shift(self.x_to_u(image)) + z_u
    ul = (pixelcnn_layers.down_shift(self.x_to_ul_above(image))
          + pixelcnn_layers.right_shift(self.x_to_ul_left(image)) + z_ul)
    r = self.resnets_per_block
    skips_u, skips_ul = [], []
    for scale in range(self.num_scales):
      if scale > 0:
        u = self.downsample_u[scale - 1](u)
        ul = self.downsample_ul[scale - 1](ul)
      for k in range(scale * r, (scale + 1) * r):
        u = self.down_u[k](u)
        ul = self.down_ul[k](ul, u)
        skips_u.append(u)
        skips_ul.append(ul)
    for scale in reversed(range(self.num_scales)):
      for k in range(scale * r, (scale + 1) * r):
        u = self.up_u[k](u, skips_u.pop())
        ul = self.up_ul[k](ul, jnp.concatenate([u, skips_ul.pop()], -1))
      if scale > 0:
        u = self.upsample_u[scale - 1](u)
        ul = self.upsample_ul[scale - 1](ul)
    return self.to_logits(ul)

  def sample(self, z: jax.Array) -> jax.Array:
    """Exact samples x ~ d(x|z) (rng stream 'sample'): `sample_from_noise`
    with logistic noise [B, H, W, C]; repeat z for several images per z.
    z [B, Z] -> [B, H, W, C] float32 images in {0, 1} (C logits a pixel).
    """
    noise = jax.random.logistic(self.make_rng('sample'),
                                (z.shape[0], *self.image_shape))
    return self.sample_from_noise(z, noise)

  def sample_from_noise(self, z: jax.Array, noise: jax.Array,
                        draw=None) -> jax.Array:
    """The sampler with its noise given: x_i = [n_i < l_i(x_<i, z)], or
    x_i = draw(outputs_i [B, P], n_i [B, ...]) (e.g. a mixture's draw).

    With n_i standard logistic, P(n_i < l) = sigmoid(l), so pixel i is 1 with
    the model's probability d(x_i = 1 | x_<i, z). One `lax.fori_loop` over the
    H*W raster positions. Step i = (r, c) needs only row r of the last layer,
    and by causality every activation in rows above r is already final, so
    each step recomputes only the current row of every layer (row r >> s at
    scale s), reading the rows above from caches filled by earlier steps. The
    `u` stream sees only rows above r, so its rows are computed once per row
    (at c = 0, under `lax.cond`) and reused for the other columns. The logits
    are those of the full network (tested against teacher forcing).

    Args:
      z: [B, Z] latent codes.
      noise: [B, H, W, ...]: standard logistic noise [B, H, W, C] by default.
      draw: pixel values [B, C] from outputs [B, P] and noise [B, ...].

    Returns:
      [B, H, W, C] float32 images in {0, 1} (in [0, 1] with `draw`).
    """
    height, width, channels = self.image_shape
    draw = draw or (lambda logit, n: (n < logit).astype(jnp.float32))
    batch = z.shape[0]
    z_u, z_ul = self._z_features(z)
    canvas = jnp.zeros((batch, height, width, channels), jnp.float32)
    caches = self._empty_caches(batch)
    u_rows, caches = self._u_rows(canvas, z_u, caches, jnp.int32(0))

    def body(i, state):
      canvas, caches, u_rows = state
      r, c = i // width, i % width
      u_rows, caches = jax.lax.cond(
          c == 0, lambda: self._u_rows(canvas, z_u, caches, r),
          lambda: (u_rows, caches))
      row, caches = self._ul_row(canvas, z_ul, caches, r, u_rows)
      logit = jax.lax.dynamic_index_in_dim(row, c, 1, keepdims=False)
      pixel = draw(logit, noise[:, r, c])  # [B, C]
      return canvas.at[:, r, c].set(pixel), caches, u_rows

    canvas, _, _ = jax.lax.fori_loop(0, height * width, body,
                                     (canvas, caches, u_rows))
    return canvas

  # Row mode. A cache holds one activation of scale s as [B, H_s + 1, W_s, C]:
  # index q + 1 is row q, index 0 the zero row above the image.

  def _cache_names(self) -> list[tuple[str, int]]:
    """(name, scale) of every activation whose rows above are read."""
    names = []
    r = self.resnets_per_block
    for stream in ('u', 'ul'):
      for k in range(self.num_scales * r):
        for part in ('x', 'h'):
          names.append((f'down_{stream}{k}_{part}', k // r))
          names.append((f'up_{stream}{k}_{part}', k // r))
      for s in range(1, self.num_scales):
        names.append((f'downsample_{stream}{s}', s - 1))
    return names

  def _empty_caches(self, batch: int) -> dict[str, jax.Array]:
    height, width, _ = self.image_shape
    return {name: jnp.zeros((batch, (height >> s) + 1, width >> s,
                             self.features), jnp.float32)
            for name, s in self._cache_names()}

  def _network_row(self, canvas: jax.Array,
                   z_features: tuple[jax.Array, jax.Array],
                   caches: dict[str, jax.Array], r: jax.Array
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Outputs of row r [B, W, P] from the canvas and the caches of rows < r.

    Computes the same values as `__call__` restricted to row r >> s at each
    scale s, and writes those rows into the caches.
    """
    u_rows, caches = self._u_rows(canvas, z_features[0], caches, r)
    return self._ul_row(canvas, z_features[1], caches, r, u_rows)

  def _row_ops(self, caches: dict[str, jax.Array]):
    """(window, write, resnet) closures over a (copied) dict of caches."""

    def window(name, q, rows):
      """Rows q - rows + 1 .. q of a cached activation."""
      return jax.lax.dynamic_slice_in_dim(caches[name], q + 2 - rows, rows, 1)

    def write(name, q, row):
      caches[name] = jax.lax.dynamic_update_slice_in_dim(caches[name], row,
                                                         q + 1, 1)

    def resnet(module, name, x_row, q, shortcut=None):
      write(f'{name}_x', q, x_row)
      y, h = module(window(f'{name}_x', q, 2), shortcut,
                    h_above=window(f'{name}_h', q - 1, 1))
      write(f'{name}_h', q, h)
      return y

    return window, write, resnet

  @staticmethod
  def _image_rows(canvas: jax.Array, r: jax.Array) -> jax.Array:
    """Image rows r - 2 .. r in [-1, 1]; rows above the image are zeros."""
    image = jnp.pad(2.0 * canvas - 1.0, ((0, 0), (2, 0), (0, 0), (0, 0)))
    return jax.lax.dynamic_slice_in_dim(image, r, 3, 1)

  def _u_rows(self, canvas: jax.Array, z_u: jax.Array,
              caches: dict[str, jax.Array], r: jax.Array
              ) -> tuple[tuple[list[jax.Array], list[jax.Array]],
                         dict[str, jax.Array]]:
    """Row r >> s of every `u` resnet output: (down outputs, up outputs).

    Depends on image rows < r only.
    """
    caches = dict(caches)
    window, write, resnet = self._row_ops(caches)
    image = self._image_rows(canvas, r)
    # `down_shift` feeds row 0 zeros, not the convolution's bias.
    above = (r > 0).astype(jnp.float32)
    u = (above * self.x_to_u(image[:, :2], pad_top=False)
         + jax.lax.dynamic_slice_in_dim(z_u, r, 1, 1))
    per_block = self.resnets_per_block
    downs, ups = [], []
    for scale in range(self.num_scales):
      q = r >> scale
      if scale > 0:
        write(f'downsample_u{scale}', r >> (scale - 1), u)
        # Rows 2q - 1, 2q of the scale above: final or just computed.
        u = self.downsample_u[scale - 1](
            window(f'downsample_u{scale}', 2 * q, 2), pad_top=False)
      for k in range(scale * per_block, (scale + 1) * per_block):
        u = resnet(self.down_u[k], f'down_u{k}', u, q)
        downs.append(u)
    skips = list(downs)
    for scale in reversed(range(self.num_scales)):
      q = r >> scale
      for k in range(scale * per_block, (scale + 1) * per_block):
        u = resnet(self.up_u[k], f'up_u{k}', u, q, skips.pop())
        ups.append(u)
      if scale > 0:
        # Upsampled row 2q + p reads row q only: take phase p of the pair.
        phase = (r >> (scale - 1)) % 2
        u = jax.lax.dynamic_slice_in_dim(self.upsample_u[scale - 1](u),
                                         phase, 1, 1)
    return (downs, ups), caches

  def _ul_row(self, canvas: jax.Array, z_ul: jax.Array,
              caches: dict[str, jax.Array], r: jax.Array,
              u_rows: tuple[list[jax.Array], list[jax.Array]]
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Outputs of row r [B, W, P]: the `ul` stream given the `u` rows."""
    caches = dict(caches)
    window, write, resnet = self._row_ops(caches)
    downs, ups = list(u_rows[0]), list(u_rows[1])
    image = self._image_rows(canvas, r)
    above = (r > 0).astype(jnp.float32)
    ul = (above * self.x_to_ul_above(image[:, 1:2], pad_top=False)
          + pixelcnn_layers.right_shift(self.x_to_ul_left(image[:, 1:], pad_top=False))
          + jax.lax.dynamic_slice_in_dim(z_ul, r, 1, 1))
    per_block = self.resnets_per_block
    skips = []
    for scale in range(self.num_scales):
      q = r >> scale
      if scale > 0:
        write(f'downsample_ul{scale}', r >> (scale - 1), ul)
        ul = self.downsample_ul[scale - 1](
            window(f'downsample_ul{scale}', 2 * q, 2), pad_top=False)
      for k in range(scale * per_block, (scale + 1) * per_block):
        ul = resnet(self.down_ul[k], f'down_ul{k}', ul, q, downs[k])
        skips.append(ul)
    for scale in reversed(range(self.num_scales)):
      q = r >> scale
      for k in range(scale * per_block, (scale + 1) * per_block):
        u = ups.pop(0)
        ul = resnet(self.up_ul[k], f'up_ul{k}', ul, q,
                    jnp.concatenate([u, skips.pop()], -1))
      if scale > 0:
        phase = (r >> (scale - 1)) % 2
        ul = jax.lax.dynamic_slice_in_dim(self.upsample_ul[scale - 1](ul),
                                          phase, 1, 1)
    return self.to_logits(ul)[:, 0], caches


# ----------------------------------------------------------------------------
# Config.

def validate(config: ml_collections.ConfigDict,
             image_shape: tuple[int, int, int]) -> None:
  """Checks the PixelCNN keys for images of `image_shape`, naming them."""
  validation.check_positive_int(config, 'model.pixelcnn_features')
  validation.check_positive_int(config, 'model.pixelcnn_resnets_per_block')
  scales = validation.check_positive_int(config, 'model.pixelcnn_scales')
  height, width = image_shape[:2]
  if height % 2 ** (scales - 1) or width % 2 ** (scales - 1):
    allowed = [s for s in range(1, scales)
               if not (height % 2 ** (s - 1) or width % 2 ** (s - 1))]
    raise validation.ConfigError(
        f'config.model.pixelcnn_scales={scales!r} must leave the '
        f'{height}x{width} image divisible by 2^(scales - 1); allowed values '
        f'are {", ".join(map(str, allowed))}')


def default_config() -> ml_collections.ConfigDict:
  """The PixelCNN keys of the `model` section at F.2's sizes: features,
  gated resnet layers per block, resolutions of the down pass (28-14-7)."""
  return ml_collections.ConfigDict({
      'pixelcnn_features': 64,
      'pixelcnn_resnets_per_block': 2,
      'pixelcnn_scales': 3,
  })
