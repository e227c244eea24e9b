"""Tests of rdvae/models/pixelcnn.py: causality by gradients, normalisation by
enumeration, and the exactness of the pixel-by-pixel sampler."""

import itertools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from rdvae.models import pixelcnn
from rdvae import validation


def _random_image(seed, shape):
  # From NumPy: jax.random.uniform compiles a program per shape.
  return jnp.asarray(np.random.default_rng(seed).uniform(size=shape) < 0.4,
                     jnp.float32)


def _init(net, batch=1, latent=6, seed=0):
  """Random parameters (numpy, N(0, 1/fan_in) kernels, N(0, 0.1^2) biases) and
  z ~ N(0, I) [batch, latent].

  `net.init` is avoided on purpose: compiling its threefry draws takes far
  longer than compiling the network itself.
  """
  x = jnp.zeros((batch,) + tuple(net.image_shape), jnp.float32)
  rng = np.random.default_rng(seed)
  z = jnp.asarray(rng.normal(size=(batch, latent)), jnp.float32)
  shapes = jax.eval_shape(net.init, jax.random.key(0), x, z)

  def draw(leaf):
    if len(leaf.shape) > 1:
      std = 1.0 / np.sqrt(np.prod(leaf.shape[:-1]))
    else:
      std = 0.1
    return jnp.asarray(rng.normal(0.0, std, leaf.shape), jnp.float32)

  return jax.tree.map(draw, shapes), z


def _all_images(height, width, channels=1):
  bits = np.array(list(itertools.product([0, 1],
                                         repeat=height * width * channels)),
                  np.float32)
  return jnp.asarray(bits.reshape(-1, height, width, channels))


def _log_prob(logits, x):
  """log d(x|z) = sum_i x_i log sigmoid(l_i) + (1 - x_i) log sigmoid(-l_i)."""
  terms = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits)
  return terms.sum(axis=(1, 2, 3))


# ----------------------------------------------------------------------------
# Causality: d l_i / d x_j = 0 exactly for every j >= i.


# Raster positions of the 28x28 image: corners, both row parities, both column
# parities and the 4x4 block boundaries of the 7x7 scale.
_POSITIONS = (0, 1, 2, 27, 28, 29, 55, 56, 57, 83, 111, 115, 300, 406, 407,
              433, 560, 700, 755, 782, 783)


def test_full_size_network_is_causal_and_has_no_blind_spot():
  """The paper's network (64 features, 28-14-7-7-14-28, two layers a block)."""
  net = pixelcnn.PixelCNN(image_shape=(28, 28, 1))
  params, z = _init(net, latent=64)
  x = _random_image(0, (28, 28, 1))
  positions = jnp.asarray(_POSITIONS)

  @jax.jit
  def gradients(params, x):
    _, vjp = jax.vjp(lambda x: net.apply(params, x[None], z).reshape(-1), x)
    return jax.vmap(lambda ct: vjp(ct)[0])(jax.nn.one_hot(positions, 784))

  grads = np.asarray(gradients(params, x)).reshape(len(_POSITIONS), 784)
  for k, i in enumerate(_POSITIONS):
    assert np.all(grads[k, i:] == 0.0), f'logit {i} sees pixels >= {i}'
    r, c = divmod(i, 28)
    # The causal neighbourhood of PixelCNN's blind spot: left, up-left, up,
    # up-right; all must be seen.
    neighbours = [(r, c - 1), (r - 1, c - 1), (r - 1, c), (r - 1, c + 1),
                  (r - 2, c + 2), (r - 1, c + 2)]
    for rr, cc in neighbours:
      if 0 <= rr < 28 and 0 <= cc < 28:
        assert grads[k, rr * 28 + cc] != 0.0, (i, (rr, cc))
  # Some logits see every earlier pixel; pixel 0 sees none; on odd rows the
  # row above is seen up to 8 columns to the right (the module docstring).
  for i in (300, 407):
    assert np.all(grads[_POSITIONS.index(i), :i] != 0.0)
  assert np.all(grads[0] == 0.0)
  for i in (28, 83, 755):
    r, c = divmod(i, 28)
    seen = np.nonzero(grads[_POSITIONS.index(i)].reshape(28, 28)[r - 1])[0]
    assert seen.max() == min(c + 8, 27), (i, seen)


@pytest.mark.parametrize('scales, resnets, size', [
    ('one_scale', 1, (6, 5)),
    ('two_scales', 2, (8, 6)),
    ('three_scales', 1, (12, 8)),
])
def test_jacobian_is_strictly_lower_triangular(scales, resnets, size):
  """All positions of small networks: J[i, j] = d l_i / d x_j, J = 0 on and
  above the diagonal, and every l_i (i > 0) depends on some x_j, j < i."""
  num_scales = {'one_scale': 1, 'two_scales': 2, 'three_scales': 3}[scales]
  height, width = size
  net = pixelcnn.PixelCNN(features=4, resnets_per_block=resnets,
                          num_scales=num_scales, image_shape=(height, width, 1))
  params, z = _init(net)
  x = _random_image(2, (height, width, 1))
  jacobian = jax.jit(jax.jacrev(
      lambda x, params: net.apply(params, x[None], z).reshape(-1)))(x, params)
  jacobian = np.asarray(jacobian).reshape(height * width, height * width)
  assert np.all(np.triu(jacobian) == 0.0)
  assert np.all(np.any(jacobian[1:] != 0.0, axis=1))
  # Pixel 1 sees pixel 0, and the first pixel of row 1 sees the one above.
  assert jacobian[1, 0] != 0.0 and jacobian[width, 0] != 0.0


def test_colour_outputs_see_every_channel_of_earlier_pixels_only():
  """Colour images (C = 3, P = 2 outputs a pixel): d o_{i,p} / d x_{j,c} = 0
  for every j >= i, every channel c and output p, so a pixel's outputs never
  see its own channels (the mixture orders those); and the outputs of the
  pixels that see pixel 0 (its right neighbour and the one below) depend on
  each of its three channels."""
  height, width, channels, outputs = 4, 4, 3, 2
  net = pixelcnn.PixelCNN(features=4, resnets_per_block=1, num_scales=2,
                          image_shape=(height, width, channels),
                          outputs=outputs)
  params, z = _init(net)
  x = jnp.asarray(np.random.default_rng(11).uniform(
      size=(height, width, channels)), jnp.float32)
  jacobian = jax.jit(jax.jacrev(
      lambda x, params: net.apply(params, x[None], z).reshape(-1)))(x, params)
  n = height * width
  jacobian = np.asarray(jacobian).reshape(n, outputs, n, channels)
  for i in range(n):
    assert np.all(jacobian[i, :, i:] == 0.0), f'outputs {i} see pixels >= {i}'
  for i in (1, width):
    assert np.all(np.abs(jacobian[i, :, 0]).min(axis=0) > 0.0), i
  assert np.all(np.any(jacobian[1:].reshape(n - 1, -1) != 0.0, axis=1))


def test_every_pixel_sees_z():
  """The z-map is seen unshifted: even l_0, which sees no pixel, depends on z."""
  net = pixelcnn.PixelCNN(features=4, num_scales=2, image_shape=(4, 4, 1))
  params, z = _init(net)
  x = _random_image(3, (1, 4, 4, 1))
  jacobian = jax.jit(jax.jacfwd(
      lambda z, params: net.apply(params, x, z).reshape(-1)))(z, params)
  assert np.all(np.any(np.asarray(jacobian).reshape(16, -1) != 0.0, axis=1))


# ----------------------------------------------------------------------------
# Normalisation and sampling.


@pytest.mark.parametrize('name, num_scales, size', [
    ('2x2_two_scales', 2, (2, 2)),
    ('3x3_one_scale', 1, (3, 3)),
    ('4x4_three_scales', 3, (4, 4)),
])
def test_probabilities_sum_to_one_by_enumeration(name, num_scales, size):
  """sum_x d(x|z) = 1 over all 2^(HW) images: the teacher-forced product of
  conditionals is a distribution only if l_i ignores x_j, j >= i."""
  del name
  height, width = size
  net = pixelcnn.PixelCNN(features=6, num_scales=num_scales,
                          image_shape=(height, width, 1))
  params, z = _init(net)
  images = _all_images(height, width)                     # [2^HW, H, W, 1]
  z = jnp.broadcast_to(z, (images.shape[0], z.shape[1]))
  log_probs = _log_prob(jax.jit(net.apply)(params, images, z), images)
  total = jnp.exp(jax.scipy.special.logsumexp(log_probs))
  np.testing.assert_allclose(float(total), 1.0, atol=1e-5)
  assert float(jnp.exp(log_probs.max())) < 0.5  # not a trivial point mass


def test_colour_bernoulli_probabilities_sum_to_one_by_enumeration():
  """Binary colour images (2x2x2, C Bernoulli logits a pixel, the channels of
  a pixel independent given the pixels before it): the 2^8 probabilities of
  the teacher-forced product sum to 1."""
  net = pixelcnn.PixelCNN(features=6, num_scales=2, image_shape=(2, 2, 2),
                          outputs=2)
  params, z = _init(net)
  images = _all_images(2, 2, 2)                           # [256, 2, 2, 2]
  z = jnp.broadcast_to(z, (images.shape[0], z.shape[1]))
  log_probs = _log_prob(jax.jit(net.apply)(params, images, z), images)
  total = jnp.exp(jax.scipy.special.logsumexp(log_probs))
  np.testing.assert_allclose(float(total), 1.0, atol=1e-5)
  assert float(jnp.exp(log_probs.max())) < 0.5


def test_sampler_frequencies_match_enumerated_probabilities():
  """2x2 images: frequencies of 40,000 samples from one z against d(x|z)."""
  net = pixelcnn.PixelCNN(features=6, num_scales=2, image_shape=(2, 2, 1))
  params, z = _init(net, batch=1, seed=4)
  # Larger output weights make the 16 probabilities clearly unequal.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: 8.0 * p if 'to_logits' in jax.tree_util.keystr(path)
      else p, params)
  images = _all_images(2, 2)
  probs = np.exp(np.asarray(_log_prob(jax.jit(net.apply)(
      params, images, jnp.broadcast_to(z, (16, z.shape[1]))), images)))
  n = 40_000
  samples = jax.jit(lambda p, z, key: net.apply(
      p, z, method=net.sample, rngs={'sample': key}))(
          params, jnp.repeat(z, n, axis=0), jax.random.key(5))
  codes = np.asarray(samples).reshape(n, 4) @ (2 ** np.arange(3, -1, -1))
  freqs = np.bincount(codes.astype(int), minlength=16) / n
  assert probs.max() > 2 * probs.min()
  np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-5)
  # Five binomial standard errors per image.
  np.testing.assert_array_less(np.abs(freqs - probs),
                               5 * np.sqrt(probs * (1 - probs) / n) + 1e-4)


def test_each_sampled_pixel_follows_its_teacher_forced_logit():
  """x = sample_from_noise(z, n) satisfies x_i = [n_i < l_i(x)] at every pixel,
  with l the teacher-forced logits of the finished sample: the sampler draws
  each pixel from the model's conditional. 8x8 with three scales (8-4-2)."""
  net = pixelcnn.PixelCNN(features=6, resnets_per_block=1, num_scales=3,
                          image_shape=(8, 8, 1))
  params, z = _init(net, batch=64, seed=6)
  noise = jax.random.logistic(jax.random.key(7), (64, 8, 8, 1))
  samples = jax.jit(lambda p, z, n: net.apply(
      p, z, n, method=net.sample_from_noise))(params, z, noise)
  logits = jax.jit(net.apply)(params, samples, z)
  decided = np.abs(np.asarray(noise - logits)) > 1e-4
  np.testing.assert_array_equal(np.asarray(samples)[decided],
                                np.asarray(noise < logits)[decided])
  assert decided.mean() > 0.99
  assert 0.05 < float(samples.mean()) < 0.95


@pytest.mark.parametrize('name, num_scales, size, features', [
    ('one_scale', 1, (3, 4), 6),
    ('three_scales', 3, (8, 12), 6),
    ('paper_size', 3, (28, 28), 64),
])
def test_row_by_row_network_equals_full_network(name, num_scales, size,
                                                features):
  """The sampler's row mode (each row from the caches of the rows above)
  gives the full network's logits, row by row, on a fixed image."""
  del name
  height, width = size
  net = pixelcnn.PixelCNN(features=features, num_scales=num_scales,
                          image_shape=(height, width, 1))
  params, z = _init(net, batch=3, seed=9)
  x = _random_image(10, (3, height, width, 1))

  def rows(module, x, z):
    z_features = module._z_features(z)
    caches = module._empty_caches(x.shape[0])

    def body(caches, r):
      row, caches = module._network_row(x, z_features, caches, r)
      return caches, row

    _, logits = jax.lax.scan(body, caches, jnp.arange(height))
    return jnp.moveaxis(logits, 0, 1)  # [B, H, W, 1]

  by_rows = jax.jit(lambda p, x, z: net.apply(p, x, z, method=rows))(
      params, x, z)
  full = jax.jit(net.apply)(params, x, z)
  np.testing.assert_allclose(by_rows, full, rtol=1e-5, atol=1e-5)


def test_top_crop_gives_the_same_logits():
  """Causality at the level of whole rows: the top h rows alone give the same
  logits for those rows (what the sampler's crops rely on)."""
  net = pixelcnn.PixelCNN(features=6, resnets_per_block=1, num_scales=3,
                          image_shape=(8, 8, 1))
  params, z = _init(net, batch=2)
  x = _random_image(8, (2, 8, 8, 1))
  apply = jax.jit(net.apply)
  full = apply(params, x, z)
  for height in (4,):
    np.testing.assert_allclose(apply(params, x[:, :height], z),
                               full[:, :height], atol=1e-6)


# ----------------------------------------------------------------------------
# Config.


def _config(**model):
  config = ml_collections.ConfigDict({'model': pixelcnn.default_config()})
  config.model.update(model)
  return config


def test_the_model_builds_the_paper_network_from_the_defaults():
  from rdvae.models import model  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({'model': model.default_config()})
  config.model.family = '-+-'
  decoder = model.create_model(config, (28, 28, 1)).decoder
  assert (decoder.features, decoder.resnets_per_block,
          decoder.num_scales) == (64, 2, 3)
  assert decoder.image_shape == (28, 28, 1)
  assert dict(pixelcnn.default_config()) == {
      k: config.model[k] for k in pixelcnn.default_config()}


@pytest.mark.parametrize('key, value', [
    ('pixelcnn_features', 0),
    ('pixelcnn_features', -3),
    ('pixelcnn_resnets_per_block', -1),
    ('pixelcnn_scales', 4),
    ('pixelcnn_scales', 0),
])
def test_validate_names_the_bad_key(key, value):
  with pytest.raises(validation.ConfigError, match=f'model.{key}'):
    pixelcnn.validate(_config(**{key: value}), (28, 28, 1))


@pytest.mark.parametrize('shape, scales, allowed', [
    ((28, 28, 1), 4, '1, 2, 3'), ((26, 26, 1), 3, '1, 2'),
    ((12, 6, 1), 3, '1, 2')])
def test_validate_reads_the_image_size(shape, scales, allowed):
  pixelcnn.validate(_config(pixelcnn_scales=scales - 1), shape)
  with pytest.raises(validation.ConfigError,
                     match=f'{shape[0]}x{shape[1]} image .* are {allowed}$'):
    pixelcnn.validate(_config(pixelcnn_scales=scales), shape)


def test_indivisible_image_shape_is_rejected():
  net = pixelcnn.PixelCNN(features=4, num_scales=3, image_shape=(6, 8, 1))
  with pytest.raises(ValueError, match='divisible'):
    net.init(jax.random.key(0), jnp.zeros((1, 6, 8, 1)), jnp.zeros((1, 2)))
