"""Tests of rdvae.decoders: the simple deconvolutional decoder of F.2."""

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae.models import decoders
from rdvae.models import logistic_mixture
from rdvae.models import nets

BATCH = 3
IMAGE_SHAPE = (28, 28, 1)  # binarized MNIST, the paper's images


@pytest.fixture(scope='module')
def latents():
  return jax.random.normal(jax.random.key(0), (BATCH, 64))


@pytest.fixture(scope='module')
def decoder_and_params(latents):
  decoder = decoders.DeconvDecoder(image_shape=IMAGE_SHAPE)
  params = jax.jit(decoder.init)(jax.random.key(1), latents)['params']
  # Non-zero biases so that the bias placement is checked too.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: (jax.random.normal(jax.random.key(len(str(path))),
                                         p.shape) * 0.1
                       if path[-1].key == 'bias' else p), params)
  return decoder, params


def test_deconv_image_shape_follows_the_layers():
  assert decoders.deconv_image_shape() == IMAGE_SHAPE  # 1-7-7-14-14-28-28
  assert decoders.deconv_image_shape_error(IMAGE_SHAPE) is None
  assert decoders.deconv_image_shape_error((32, 32, 3)) is None
  assert decoders.torso_layers((32, 24, 3))[0] == (64, (8, 6), 1, 'VALID')
  error = decoders.deconv_image_shape_error((30, 32, 1))
  assert 'divisible by 4' in error and 'not (30, 32, 1)' in error


def test_deconv_decoder_refuses_another_image_shape(latents):
  decoder = decoders.DeconvDecoder(image_shape=(30, 32, 1))
  with pytest.raises(ValueError, match=r'divisible by 4 .*, not \(30, 32, 1\)'):
    jax.eval_shape(decoder.init, jax.random.key(1), latents)


@pytest.mark.parametrize('shape', [(32, 32, 3), (8, 12, 1)])
def test_eight_bit_decoder_is_the_mixture_of_its_readout(latents, shape):
  """The 8-bit decoder draws H x W x C images: its readout, computed as F.2
  with flax's layers, holds K (1 + 2C + C(C-1)/2) mixture parameters per
  pixel, and log d(x|z) at x = v / 255 is the mixture's log p(v)."""
  k = 2
  decoder = decoders.DeconvDecoder(image_shape=shape, fast=True,
                                   likelihood='logistic_mixture',
                                   mixture_components=k)
  params = jax.jit(decoder.init)(jax.random.key(1), latents)['params']
  outputs = decoder.apply({'params': params}, latents,
                          method=decoders.DeconvDecoder.logits)
  c = shape[-1]
  assert outputs.shape == (BATCH,) + shape[:2] + (k * (1 + 2 * c + c * (c - 1) // 2),)
  np.testing.assert_allclose(
      outputs, _reference_logits(params, latents, shape, outputs.shape[-1]),
      rtol=2e-4, atol=2e-5)
  values = jax.random.randint(jax.random.key(2), (BATCH,) + shape, 0, 256)
  d = decoder.apply({'params': params}, latents)
  assert d.event_shape == shape and d.batch_shape == (BATCH,)
  expected = logistic_mixture.DiscretizedLogisticMixture.from_params(
      outputs, c).log_prob(values)
  np.testing.assert_allclose(d.log_prob(values / 255.0), expected, rtol=1e-6)
  sample = d.sample(seed=jax.random.key(3))
  np.testing.assert_allclose(sample * 255.0, np.round(sample * 255.0),
                             atol=1e-4)
  assert float(sample.min()) >= 0.0 and float(sample.max()) <= 1.0


def _reference_logits(params, z, shape=IMAGE_SHAPE, outputs=1):
  """F.2 written with flax's nn.ConvTranspose / nn.Conv on the same
  parameters, the first kernel (H/4, W/4)."""
  h = z.reshape(z.shape[0], 1, 1, -1)
  for i, (c, k, s, p) in enumerate(decoders.TORSO_LAYERS):
    k = (shape[0] // 4, shape[1] // 4) if i == 0 else (k, k)
    layer = nn.ConvTranspose(2 * c, k, (s, s), p)
    h = nets.gated_activation(layer.apply({'params': params[f'layers_{i}']}, h))
  return nn.Conv(outputs, (5, 5), padding='SAME').apply(
      {'params': params['readout']}, h)


def test_parameter_count_matches_f2(decoder_and_params):
  _, params = decoder_and_params
  count = sum(p.size for p in jax.tree_util.tree_leaves(params))
  # (7*7*64+1)*128 + 2*(5*5*64+1)*128 + (5*5*64+1)*64 + (5*5*32+1)*64
  # + (4*4*32+1)*64 + (5*5*32+1)*1
  assert count == 998_753


@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'lax'])
def test_logits_match_flax_conv_transpose_stack(decoder_and_params, latents,
                                                fast):
  _, params = decoder_and_params
  decoder = decoders.DeconvDecoder(image_shape=IMAGE_SHAPE, fast=fast)
  logits = decoder.apply({'params': params}, latents,
                         method=decoders.DeconvDecoder.logits)
  assert logits.shape == (BATCH, 28, 28, 1)
  np.testing.assert_allclose(logits, _reference_logits(params, latents),
                             rtol=1e-4, atol=1e-4)


def test_log_prob_is_sum_of_pixel_bernoullis(decoder_and_params, latents):
  decoder, params = decoder_and_params
  d = decoder.apply({'params': params}, latents)
  assert isinstance(d, distrax.Independent)
  assert d.batch_shape == (BATCH,) and d.event_shape == (28, 28, 1)
  logits = decoder.apply({'params': params}, latents,
                         method=decoders.DeconvDecoder.logits)
  x = (jax.random.uniform(jax.random.key(2), (BATCH, 28, 28, 1)) < 0.5
       ).astype(jnp.float32)
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  by_hand = np.sum(np.where(np.asarray(x) == 1, np.log(p), np.log1p(-p)),
                   axis=(1, 2, 3))
  np.testing.assert_allclose(d.log_prob(x), by_hand, rtol=1e-5)
  np.testing.assert_allclose(d.mean(), p, rtol=1e-5, atol=1e-6)


def test_samples_are_binary_images(decoder_and_params, latents):
  decoder, params = decoder_and_params
  d = decoder.apply({'params': params}, latents, latents[:, :0])  # x ignored
  samples = d.sample(seed=jax.random.key(3), sample_shape=(2,))
  assert samples.shape == (2, BATCH, 28, 28, 1)
  assert samples.dtype == jnp.float32
  assert set(np.unique(samples)) <= {0.0, 1.0}


# ----------------------------------------------------------------------------
# The PixelCNN++ decoder (+). Its network (causality, normalisation, the exact
# sampler) is tested in test_pixelcnn.py; here the decoder contract and the
# model's sampling path, on small images.

PIXELCNN_SHAPE = (8, 6, 1)


def _pixelcnn_decoder_and_params():
  """A small PixelCNNDecoder with numpy N(0, 1/fan_in) kernels, N(0, 0.01)
  biases (`init` compiles its threefry draws far slower than the network)."""
  decoder = decoders.PixelCNNDecoder(features=6, resnets_per_block=1,
                                     num_scales=2, image_shape=PIXELCNN_SHAPE)
  z = jax.random.normal(jax.random.key(4), (BATCH, 5))
  x = jnp.zeros((BATCH,) + PIXELCNN_SHAPE)
  shapes = jax.eval_shape(decoder.init, jax.random.key(0), z, x)
  rng = np.random.default_rng(5)
  params = jax.tree.map(
      lambda s: jnp.asarray(rng.normal(0.0, (
          1.0 / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.1),
                                       s.shape), jnp.float32), shapes)
  return decoder, params, z


def _pixelcnn_images(seed, batch=BATCH):
  return (jax.random.uniform(jax.random.key(seed), (batch,) + PIXELCNN_SHAPE)
          < 0.4).astype(jnp.float32)


def test_pixelcnn_log_prob_is_sum_of_teacher_forced_bernoullis():
  decoder, params, z = _pixelcnn_decoder_and_params()
  x = _pixelcnn_images(6)
  d = jax.jit(decoder.apply)(params, z, x)
  assert isinstance(d, distrax.Independent)
  assert d.batch_shape == (BATCH,) and d.event_shape == PIXELCNN_SHAPE
  logits = jax.jit(lambda p, x, z: decoder.apply(
      p, x, z, method=lambda m, x, z: m.network(x, z)))(params, x, z)
  p = 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float64)))
  by_hand = np.sum(np.where(np.asarray(x) == 1, np.log(p), np.log1p(-p)),
                   axis=(1, 2, 3))
  np.testing.assert_allclose(d.log_prob(x), by_hand, rtol=1e-5)


def test_pixelcnn_decoder_needs_x():
  decoder, params, z = _pixelcnn_decoder_and_params()
  with pytest.raises(ValueError, match='teacher forcing'):
    decoder.apply(params, z)


def test_pixelcnn_family_samples_through_rd_model():
  """RDModel with the PixelCNN++ decoder: finite RDTerms whose distortion is
  the teacher-forced -log d(x|z); reconstructions are binary images, and their
  mean is the average teacher-forced probability over the draws."""
  from rdvae.models import marginals  # pylint: disable=g-import-not-at-top
  from rdvae.models import model

  class DenseEncoder(nn.Module):
    @nn.compact
    def __call__(self, x):
      h = x.reshape(x.shape[0], -1)
      return distrax.MultivariateNormalDiag(
          nn.Dense(5)(h), jax.nn.softplus(nn.Dense(5)(h)) + 1e-3)

  decoder, decoder_params, _ = _pixelcnn_decoder_and_params()
  rd_model = model.RDModel(DenseEncoder(), decoder,
                           marginals.StandardNormal(latent_dim=5))
  x = _pixelcnn_images(7)
  shapes = jax.eval_shape(
      lambda: rd_model.init({'params': jax.random.key(0),
                             'sample': jax.random.key(1)}, x))
  rng = np.random.default_rng(8)
  variables = jax.tree.map(
      lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), jnp.float32),
      shapes)
  variables['params']['decoder'] = decoder_params['params']
  rngs = {'sample': jax.random.key(9)}
  terms = jax.jit(lambda v, x: rd_model.apply(v, x, rngs=rngs))(variables, x)
  assert np.all(np.isfinite(terms.rate)) and np.all(np.isfinite(terms.distortion))
  assert np.all(np.asarray(terms.distortion) > 0)

  samples, mean = jax.jit(lambda v, x: rd_model.apply(
      v, x, 4, rngs=rngs, method=model.RDModel.reconstruct))(variables, x)
  assert samples.shape == (4, BATCH) + PIXELCNN_SHAPE
  assert set(np.unique(samples)) <= {0.0, 1.0}

  @jax.jit
  def teacher_forced_mean(variables, x, samples):
    z = rd_model.apply(variables, x, rngs=rngs,
                       method=lambda m, x: m.encoder(x).sample(
                           seed=m.make_rng('sample')))
    probs = jax.vmap(lambda s: decoder.apply(decoder_params, z, s).mean())(
        samples)
    return probs.mean(axis=0)

  np.testing.assert_allclose(mean, teacher_forced_mean(variables, x, samples),
                             atol=1e-5)
