"""8-bit images end to end: CIFAR-10 through TFDS (tfds.testing.mock_data),
the splits passed as arrays, bits per dimension, and bad data refused with a
message naming the value and what was expected, before anything is written.
"""

import functools
import math
import os
import subprocess
import sys
import tempfile

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import cifar10
from configs import mnist
import rdvae
from rdvae import validation
from rdvae.data import sources
from rdvae.models.model import FAMILIES
from rdvae.runtime import parallel
from rdvae.training import loop as train
from rdvae.training import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (8, 8, 3)


def _images(seed, n, shape=SHAPE, high=256):
  return np.random.default_rng(seed).integers(0, high, (n,) + shape,
                                              dtype=np.uint8)


def _tiny(config, family='---'):
  """The smallest run of `family`: one step, a few evaluated images."""
  config.model.family = family
  config.model.latent_dim = 4
  config.model.mixture_components = 2
  config.model.flow_steps = 1
  config.model.made_hidden = 8
  config.model.made_layers = 1
  config.model.num_pseudo_inputs = 3
  config.model.pixelcnn_features = 4
  config.model.pixelcnn_resnets_per_block = 1
  config.model.pixelcnn_scales = 2
  config.train.num_steps = 1
  config.train.steps_per_dispatch = 1
  config.train.log_every = 1
  config.train.eval_every = 0
  config.train.checkpoint_every = 0
  config.eval.max_examples = 4
  config.eval.batch_size = 4
  config.eval.iwae_samples = 2
  config.eval.num_grid_images = 2
  config.eval.generative_samples = 0
  return config


# ---------------------------------------------------- CIFAR-10 through TFDS


def test_cifar10_on_mock_tfds_trains_and_reports_bits(tmp_path):
  """configs/cifar10.py end to end through TFDS on mock 32x32x3 images
  (random 0..255): one step of the simple family with the 8-bit mixture."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _tiny(cifar10.get_config('smoke'))
  workdir = str(tmp_path / 'run')
  with tfds.testing.mock_data(num_examples=8):
    results = train.train_and_eval(config, workdir)
  assert results['step'] == 1
  dims = 32 * 32 * 3
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    assert math.isfinite(results[key]), key
  # D, -ELBO and -IWAE per image over 3,072 subpixels, in bits.
  assert results['distortion_bpd'] == pytest.approx(
      results['distortion'] / (dims * math.log(2)), rel=1e-6)
  assert results['bpd'] == pytest.approx(
      -results['elbo'] / (dims * math.log(2)), rel=1e-6)
  assert results['iwae_bpd'] == pytest.approx(
      -results['iwae'] / (dims * math.log(2)), rel=1e-6)
  # An untrained model of uniform random pixels: near 8 bits each.
  assert 6.0 < results['distortion_bpd'] < 10.0


@pytest.mark.slow
@pytest.mark.parametrize('family', [f for f in FAMILIES
                                    if f not in ('---', '-+-')])
def test_cifar10_every_family_takes_a_step(family):
  """The twelve families on 8-bit colour images (`---` and `-+-` end to end
  in the tests around this one): the CIFAR-10 mock through the image task's
  data path, one gradient step of the ELBO on 4 images, finite and moving
  every part's parameters."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _tiny(cifar10.get_config('smoke'), family)
  config.model.pseudo_input_batch = 0
  with tfds.testing.mock_data(num_examples=8):
    dataset = tasks.IMAGE_TASK.load_data(config)
  assert dataset.image_shape == (32, 32, 3) and dataset.values == '8bit'
  model = tasks.IMAGE_TASK.create_model(config, dataset)
  x = jnp.asarray(dataset.train[:4], jnp.float32)
  keys = jax.random.split(jax.random.key(1), 4)
  params = model.init({'params': jax.random.key(0),
                       'sample': jax.random.key(2)}, x)['params']

  def loss(p):
    terms = parallel.apply_per_example(model, p, x, keys)
    return jnp.mean(terms.rate + terms.distortion)

  value, grads = jax.jit(jax.value_and_grad(loss))(params)
  assert np.isfinite(float(value))
  for part in ('encoder', 'decoder', 'marginal'):
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(
        grads.get(part, {}))]
    assert all(np.isfinite(norms)), part
    if part != 'marginal' or family[2] != '-':  # N(0, I) has no parameters
      assert sum(norms) > 0, part


@pytest.mark.slow
def test_cifar10_pixelcnn_decoder_trains_and_samples(tmp_path):
  """The colour PixelCNN++ decoder end to end on mock CIFAR-10: one step of
  `-+-` with the 10K-parameter mixture per pixel (channels dependent within
  the pixel), evaluated, its samples drawn pixel by pixel into the grid of
  samples; near 8 bits per subpixel untrained."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _tiny(cifar10.get_config('smoke'), '-+-')
  workdir = str(tmp_path / 'run')
  with tfds.testing.mock_data(num_examples=8):
    results = train.train_and_eval(config, workdir)
  assert results['step'] == 1
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    assert math.isfinite(results[key]), key
  assert 6.0 < results['distortion_bpd'] < 10.0
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from rdvae.files import metric_files  # pylint: disable=g-import-not-at-top
  grid = metric_files.latest_grid(workdir)
  assert grid is not None, os.listdir(workdir)
  with Image.open(grid) as image:
    assert image.mode == 'RGB'


# ------------------------------------------------------ bits per dimension


class UniformDecoder(nn.Module):
  """d(x|z) uniform over the 256 values of every subpixel (x = v / 255)."""

  image_shape: tuple

  @nn.compact
  def __call__(self, z, x=None):
    del x
    logits = jnp.zeros((z.shape[0],) + tuple(self.image_shape) + (256,))
    # A learned offset that cancels in the softmax: the decoder has a
    # parameter (Adam needs one) and stays exactly uniform.
    logits = logits + self.param('offset', nn.initializers.zeros, ())
    return UnitValues(distrax.Independent(distrax.Categorical(logits=logits),
                                          reinterpreted_batch_ndims=3))


class UnitValues(distrax.Distribution):
  """A distribution over values 0..255 read at x = v / 255."""

  def __init__(self, values):
    super().__init__()
    self.values = values

  @property
  def event_shape(self):
    return self.values.event_shape

  @property
  def batch_shape(self):
    return self.values.batch_shape

  def log_prob(self, value):
    return self.values.log_prob(jnp.round(value * 255).astype(jnp.int32))

  def _sample_n(self, key, n):
    return self.values.sample(seed=key, sample_shape=n) / 255.0

  def mean(self):
    return jnp.full(self.batch_shape + self.event_shape, 0.5)


def test_uniform_decoder_reports_eight_bits_per_dimension(tmp_path):
  """D of a uniform d(x|z) is H W C ln 256 nats per image: 8 bits per
  dimension exactly, whatever the images; the data passed as arrays."""
  config = _tiny(mnist.get_config('smoke'))
  data = (_images(0, 8), _images(1, 4), _images(2, 4))
  results = train.train_and_eval(
      config, str(tmp_path / 'run'), data=data,
      components={'decoder': UniformDecoder(SHAPE)})
  assert results['distortion'] == pytest.approx(
      np.prod(SHAPE) * math.log(256), rel=1e-6)
  assert results['distortion_bpd'] == pytest.approx(8.0, abs=1e-5)
  assert results['test/distortion_bpd'] == pytest.approx(8.0, abs=1e-5)
  # The run loads with the same arrays: its R and D on the measured subset.
  model = rdvae.load(str(tmp_path / 'run'), data=data,
                     components={'decoder': UniformDecoder(SHAPE)})
  assert model.dataset.values == '8bit' and model.model.max_value == 255
  rate, distortion = model.rate_distortion(model.eval_subset('test'))
  assert float(np.mean(rate)) == pytest.approx(results['rate'], abs=1e-5)
  np.testing.assert_allclose(distortion, np.prod(SHAPE) * math.log(256),
                             rtol=1e-6)


def test_values_auto_and_declared():
  config = mnist.get_config('smoke')
  config.dataset.source = 'arrays'
  binary = tuple(_images(i, 3, high=2) for i in range(3))
  eight = tuple(_images(i, 3) for i in range(3))
  assert sources.create_dataset(config, binary).values == 'binary'
  assert sources.create_dataset(config, eight).values == '8bit'
  config.dataset.values = '8bit'
  dataset = sources.create_dataset(config, binary)
  assert dataset.values == '8bit' and dataset.max_value == 255
  assert dataset.image_shape == SHAPE


# ------------------------------------------------------------ bad data


def _bad(case):
  """(data= splits, config changes, the words the message must hold)."""
  good = [_images(0, 8), _images(1, 4), _images(2, 4)]
  if case == 'mixed_shapes':
    good[2] = _images(2, 4, (8, 12, 3))
    return good, {}, ('different shapes', "test (8, 12, 3)",
                      'train (8, 8, 3)')
  if case == 'dtype':
    good[0] = good[0].astype(np.float32)
    return good, {}, ("split 'train' has dtype float32", 'expected uint8')
  if case == 'range':
    return good, {'dataset.values': 'binary'}, (
        "split 'train' holds values [2, 3, 4, 5, 6] besides 0 and 1",
        "config.dataset.values='binary'")
  if case == 'missing':
    return {'train': good[0], 'test': good[2]}, {}, (
        "split 'validation' is missing", 'expected uint8 images')
  if case == 'empty':
    good[1] = good[1][:0]
    return good, {}, ("split 'validation' is empty", '(0, 8, 8, 3)')
  if case == 'size':
    return [_images(i, 4, (10, 8, 1)) for i in range(3)], {}, (
        "config.model.family='---'", 'divisible by 4', '(10, 8, 1)')
  if case == 'likelihood':
    return good, {'model.likelihood': 'bernoulli'}, (
        "config.model.likelihood='bernoulli' models binary pixels",
        'the data are 8bit')
  raise ValueError(case)


CASES = ('mixed_shapes', 'dtype', 'range', 'missing', 'empty', 'size',
         'likelihood')


@pytest.mark.parametrize('case', CASES)
def test_bad_data_is_refused_before_anything_is_written(case, tmp_path):
  data, changes, needles = _bad(case)
  config = mnist.get_config('smoke')
  for key, value in changes.items():
    section, name = key.split('.')
    config[section][name] = value
  workdir = str(tmp_path / 'run')
  with pytest.raises(validation.ConfigError) as info:
    train.train_and_eval(config, workdir, data=data)
  for needle in needles:
    assert needle in str(info.value), (needle, str(info.value))
  assert not os.path.exists(workdir)


def _write_npz(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


@pytest.mark.parametrize('case', ['dtype', 'rank', 'missing', 'empty'])
def test_bad_npz_is_refused(case, tmp_path):
  arrays = {'train': _images(0, 8), 'valid': _images(1, 4),
            'test': _images(2, 4)}
  if case == 'dtype':
    arrays['valid'] = arrays['valid'].astype(np.int64)
    needles = ("array 'valid'", 'has dtype int64, not uint8')
  elif case == 'rank':
    arrays['train'] = arrays['train'].reshape(-1)
    needles = ("array 'train'", 'has shape (1536,), neither images nor '
               'packed bits')
  elif case == 'missing':
    del arrays['test']
    needles = ("lacks the arrays ['test']",)
  else:
    arrays['test'] = arrays['test'][:0]
    needles = ("array 'test'", 'is empty (shape (0, 8, 8, 3))')
  path = _write_npz(tmp_path / 'images.npz', **arrays)
  config = mnist.get_config('smoke')
  config.dataset.path = path
  config.dataset.name = 'mine'
  workdir = str(tmp_path / 'run')
  with pytest.raises(validation.ConfigError) as info:
    train.train_and_eval(config, workdir)
  for needle in needles + (path, 'expected keys train, valid, test'):
    assert needle in str(info.value), (needle, str(info.value))
  assert not os.path.exists(workdir)


def test_npz_of_eight_bit_images_loads():
  """An .npz of (N, H, W) uint8 images: a channel axis added, 8-bit."""
  config = mnist.get_config('smoke')
  config.dataset.name = 'mine'
  with tempfile.TemporaryDirectory() as directory:
    images = [_images(i, 3 + i, (8, 12)) for i in range(3)]
    config.dataset.path = _write_npz(
        os.path.join(directory, 'grey.npz'), train=images[0],
        valid=images[1], test=images[2])
    assert sources.declared(config) == ((8, 12, 1), None)
    dataset = sources.create_dataset(config)
  assert dataset.values == '8bit' and dataset.image_shape == (8, 12, 1)
  np.testing.assert_array_equal(dataset.validation[..., 0], images[1])


def test_bad_npz_through_the_command_line(tmp_path):
  """`python -m experiments.main` on a bad .npz of images: status 2, the
  message alone, nothing written."""
  arrays = {'train': _images(0, 8), 'valid': _images(1, 4),
            'test': _images(2, 4)}
  arrays['test'] = _images(2, 4, (8, 12, 3))
  needles = ('hold images of different shapes', "'test': (8, 12, 3)")
  path = _write_npz(tmp_path / 'images.npz', **arrays)
  workdir = str(tmp_path / 'run')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.main',
       '--config=configs/mnist.py:smoke', f'--workdir={workdir}',
       f'--config.dataset.path={path}', '--config.dataset.name=mine',
       '--jax_platforms=cpu'], capture_output=True, text=True, cwd=REPO,
      timeout=300, check=False)
  assert proc.returncode == 2, proc.stderr
  for needle in needles + (path,):
    assert needle in proc.stderr, (needle, proc.stderr)
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(workdir)


def test_colour_images_tile_into_a_colour_grid(tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from rdvae.files import metric_files  # pylint: disable=g-import-not-at-top
  tiles = np.random.default_rng(0).random((2, 2, 4, 4, 3)).astype(np.float32)
  grid = metric_files.image_grid([[tiles[0], tiles[1]]], pad=1)
  assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3)
  np.testing.assert_array_equal(grid[6:10, 6:10], tiles[1, 1])  # row 1, col 1
  assert grid[0, 0].tolist() == [0.5, 0.5, 0.5]
  path = str(tmp_path / 'grid.png')
  metric_files.write_png(path, grid, [(5, 'x')])
  with Image.open(path) as image:
    assert image.mode == 'RGB'
    assert image.size == (11, 11 + metric_files.GRID_HEADER)


# ------------------------------------------------- 8-bit PixelCNN++ (grey)


def test_grey_mixture_draw_follows_the_mixture():
  """`draw_mixture` with Gumbel and logistic noise draws v with the
  mixture's probabilities: over 20,000 draws the empirical CDF is within
  0.015 of the CDF of exp(log p(v)) at every v (Kolmogorov's bound at
  p = 1e-3 is 1.95 / sqrt(n) = 0.0138; a sampler off by one bin is off by
  up to 0.05 here)."""
  from rdvae.models import decoders  # pylint: disable=g-import-not-at-top
  from rdvae.models import logistic_mixture  # pylint: disable=g-import-not-at-top
  k, n = 3, 20000
  outputs = jnp.array([0.3, -1.0, 0.5,      # logits
                       -0.6, 0.2, 0.95,     # means (0.95: mass in bin 255)
                       -2.0, -3.5, -4.0])   # log-scales
  probs = np.exp(np.asarray(
      logistic_mixture.DiscretizedLogisticMixture.from_params(
          outputs[None, None], 1).log_prob_per_pixel(
              jnp.arange(256.0)[:, None, None])[:, 0]))
  assert abs(probs.sum() - 1.0) < 1e-5
  key_g, key_l = jax.random.split(jax.random.key(0))
  noise = jnp.concatenate([jax.random.gumbel(key_g, (n, k)),
                           jax.random.logistic(key_l, (n, 1))], -1)
  x = decoders.draw_mixture(jnp.tile(outputs, (n, 1)), noise, 1)
  v = np.round(np.asarray(x[:, 0]) * 255).astype(int)
  counts = np.bincount(v, minlength=256) / n
  assert np.abs(np.cumsum(counts) - np.cumsum(probs)).max() < 0.015
  assert probs[255] > 0.03 and counts[255] > 0.03  # the upper tail


def test_colour_mixture_draw_follows_the_mixture():
  """Two dependent channels (alpha = tanh(1.5) = 0.91 in one component,
  -0.76 in the other): `draw_mixture` over 20,000 pixels against the exact
  joint of all 256^2 values (enumerated by log_prob_per_pixel, summing to
  1). The marginal CDF of each channel and the CDF of v_1 - v_0 are within
  0.015 of exact (Kolmogorov's bound at p = 1e-3 is 0.0138); a sampler that
  ignored the dependence moves the CDF of v_1 - v_0 by far more (0.35)."""
  from rdvae.models import decoders  # pylint: disable=g-import-not-at-top
  from rdvae.models import logistic_mixture  # pylint: disable=g-import-not-at-top
  k, n = 2, 20000
  outputs = jnp.array([0.4, -0.2,           # logits
                       -0.5, 0.3,           # means of channel 0
                       0.1, -0.4,           # means of channel 1
                       -2.0, -2.5,          # log-scales of channel 0
                       -3.0, -2.8,          # log-scales of channel 1
                       1.5, -1.0])          # coefficients alpha_{1,0}
  assert outputs.shape[0] == logistic_mixture.num_params(2, k)
  v0, v1 = np.meshgrid(np.arange(256.0), np.arange(256.0), indexing='ij')
  values = jnp.asarray(np.stack([v0, v1], -1).reshape(-1, 1, 1, 2))
  mixture = logistic_mixture.DiscretizedLogisticMixture.from_params(
      outputs[None, None], 2)
  joint = np.exp(np.asarray(mixture.log_prob_per_pixel(values),
                            np.float64)).reshape(256, 256)
  assert abs(joint.sum() - 1.0) < 1e-4
  key_g, key_l = jax.random.split(jax.random.key(3))
  noise = jnp.concatenate([jax.random.gumbel(key_g, (n, k)),
                           jax.random.logistic(key_l, (n, 2))], -1)
  x = decoders.draw_mixture(jnp.tile(outputs, (n, 1)), noise, 2)
  v = np.round(np.asarray(x) * 255).astype(int)
  np.testing.assert_allclose(np.asarray(x) * 255, v, atol=1e-3)

  def cdf_gap(drawn, exact):
    counts = np.bincount(drawn, minlength=exact.size) / n
    return np.abs(np.cumsum(counts) - np.cumsum(exact)).max()

  assert cdf_gap(v[:, 0], joint.sum(1)) < 0.015
  assert cdf_gap(v[:, 1], joint.sum(0)) < 0.015
  difference = np.zeros(511)
  np.add.at(difference, (v1 - v0).astype(int).ravel() + 255, joint.ravel())
  assert cdf_gap(v[:, 1] - v[:, 0] + 255, difference) < 0.015
  independent = np.zeros(511)
  np.add.at(independent, (v1 - v0).astype(int).ravel() + 255,
            np.outer(joint.sum(1), joint.sum(0)).ravel())
  assert np.abs(np.cumsum(independent) - np.cumsum(difference)).max() > 0.1


@pytest.mark.slow  # compiling the row-by-row sampler
@pytest.mark.parametrize('channels', [1, 3], ids=['grey', 'colour'])
def test_pixelcnn_eight_bit_samples_are_its_teacher_forced_draws(channels):
  """An 8-bit PixelCNN++ decoder: each sampled pixel (all its channels) is
  the draw, with the same noise, from the mixture that teacher forcing on
  the sampled image gives at that pixel, so samples follow the log_prob it
  scores."""
  from rdvae.models import decoders  # pylint: disable=g-import-not-at-top
  from rdvae.models import logistic_mixture  # pylint: disable=g-import-not-at-top
  shape, k = (4, 4, channels), 2
  pixel_cnn = decoders.PixelCNNDecoder(
      image_shape=shape, features=8, resnets_per_block=1, num_scales=2,
      likelihood='logistic_mixture', mixture_components=k)
  z = jax.random.normal(jax.random.key(0), (3, 5))
  x0 = jnp.zeros((3,) + shape)
  params = jax.jit(pixel_cnn.init)(jax.random.key(1), z, x0)['params']
  noise = jnp.concatenate(
      [jax.random.gumbel(jax.random.key(2), (3, 4, 4, k)),
       jax.random.logistic(jax.random.key(3), (3, 4, 4, channels))], -1)
  draw = functools.partial(decoders.draw_mixture, num_channels=channels)

  def sample(module):
    return module.network.sample_from_noise(z, noise, draw)

  def outputs(module, x):
    return module.network(x, z)

  x = jax.jit(lambda p: pixel_cnn.apply({'params': p}, method=sample))(params)
  assert x.shape == (3,) + shape
  levels = np.asarray(x) * 255
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
  assert len(np.unique(np.round(levels))) > 4  # not a constant image
  forced = jax.jit(lambda p, x: pixel_cnn.apply({'params': p}, x,
                                                method=outputs))(params, x)
  per_pixel = logistic_mixture.num_params(channels, k)
  assert forced.shape[-1] == per_pixel
  redrawn = draw(forced.reshape(-1, per_pixel),
                 noise.reshape(-1, k + channels))
  np.testing.assert_array_equal(np.asarray(redrawn).reshape(x.shape),
                                np.asarray(x))
  log_d = pixel_cnn.apply({'params': params}, z, x).log_prob(x)
  expected = logistic_mixture.DiscretizedLogisticMixture.from_params(
      forced, channels).log_prob(jnp.round(x * 255))
  np.testing.assert_allclose(log_d, expected, rtol=1e-6)
