"""A trained model used from Python (rdvae/runs/trained.py): `rdvae.load` of
the smoke run reproduces its results.json, and every family encodes,
decodes, reconstructs and samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rdvae
import reference_run
from configs import mnist
from examples import mlp_vae
from rdvae.data import sources
from rdvae.files import run_files
from rdvae.models import model as model_lib
from rdvae.runs import trained as trained_lib

IMAGE_SHAPE = sources.IMAGE_SHAPE


@pytest.fixture(scope='module')
def smoke_model(whole_smoke_run):
  return rdvae.load(whole_smoke_run)


@pytest.mark.xdist_group(reference_run.GROUP)
def test_measures_equal_the_runs_results(whole_smoke_run, smoke_model):
  """On the run's evaluation subset with its key: R, D and the IWAE bound
  (same K) are the per-example terms of results.json's means."""
  results = run_files.read_results(whole_smoke_run)
  assert smoke_model.step == results['step'] == 10
  for split, prefix in (('test', ''), ('validation', 'validation/')):
    x = smoke_model.eval_subset(split)
    assert len(x) == results['eval_subset']['max_examples']
    rate, distortion = smoke_model.rate_distortion(x)
    iwae = smoke_model.log_likelihood(x)
    for name, values in (('rate', rate), ('distortion', distortion),
                         ('iwae', iwae)):
      assert values.shape == (len(x),)
      np.testing.assert_allclose(values.mean(), results[prefix + name],
                                 rtol=1e-5, err_msg=f'{split} {name}')
  other, _ = smoke_model.rate_distortion(x, jax.random.key(7))
  assert not np.allclose(other, rate)


@pytest.mark.xdist_group(reference_run.GROUP)
def test_best_parameters_load(whole_smoke_run):
  best = rdvae.load(whole_smoke_run, params='best')
  assert best.step in (6, 10)
  with pytest.raises(ValueError, match='params'):
    rdvae.load(whole_smoke_run, params='first')


def test_no_run_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='holds no run'):
    rdvae.load(str(tmp_path))


def _tiny(family):
  """configs/mnist.py:smoke for `family` with every width cut (as
  tests/family_check.py's tiny_config), evaluation batches of 4."""
  config = mnist.get_config('smoke')
  m = config.model
  m.family, m.latent_dim, m.flow_steps = family, 4, 2
  m.made_hidden, m.made_layers = 8, 2
  m.num_pseudo_inputs, m.pseudo_input_batch = 3, 0
  m.pixelcnn_features, m.pixelcnn_resnets_per_block = 4, 1
  m.pixelcnn_scales = 2
  config.eval.batch_size = 4
  return config


def _untrained(config, components=None):
  model = model_lib.create_model(config, IMAGE_SHAPE, components)
  x = jnp.zeros((1,) + IMAGE_SHAPE)
  params = jax.jit(model.init)({'params': jax.random.key(0),
                                'sample': jax.random.key(1)}, x)['params']
  return trained_lib.TrainedModel(config, model, params, None, 0,
                                  jax.random.key_data(jax.random.key(2)))


def _binary_images(n):
  return np.asarray(jax.random.bernoulli(jax.random.key(3), 0.3,
                                         (n,) + IMAGE_SHAPE), np.float32)


# One family per built-in part (encoder - +, decoder - +, marginal - + v)
# by default; the other nine with the slow tests.
COVERING = ('---', '+-+', '-+v')


@pytest.mark.parametrize('family', [
    f if f in COVERING else pytest.param(f, marks=pytest.mark.slow)
    for f in model_lib.FAMILIES])
def test_every_family_encodes_decodes_and_samples(family):
  """Shapes, binary images, finite values; each method's draws are fixed by
  the example's position (the first 3 of 5 equal those of the first 3), and
  reconstruct and sample are decode of encode and of m(z)'s draws."""
  tm = _untrained(_tiny(family))
  x = _binary_images(5)
  key = jax.random.key(4)
  k1, k2 = jax.random.split(key)
  z = tm.encode(x, k1, sample=True)
  assert z.shape == (5, 4) and np.all(np.isfinite(z))
  np.testing.assert_array_equal(tm.encode(x[:3], k1, sample=True), z[:3])
  e = tm.encode(x)
  assert e.batch_shape == (5,) and e.event_shape == (4,)
  assert np.all(np.isfinite(e.log_prob(z)))
  images = tm.decode(z, k2)
  assert images.shape == (5,) + IMAGE_SHAPE
  assert set(np.unique(images)) <= {0.0, 1.0}
  np.testing.assert_array_equal(tm.decode(z[:3], k2), images[:3])
  np.testing.assert_array_equal(tm.reconstruct(x, key), images)
  latents = tm.sample_latent(5, k1)
  assert latents.shape == (5, 4) and np.all(np.isfinite(latents))
  np.testing.assert_array_equal(tm.sample(5, key), tm.decode(latents, k2))


@pytest.mark.slow
def test_run_with_passed_modules_trains_and_loads(tmp_path):
  """`components=` through train_and_eval and load: the loaded model is the
  passed modules' and reproduces its results; reconstructions are images."""
  components = {'encoder': mlp_vae.Encoder(latent_dim=64),
                'decoder': mlp_vae.Decoder(image_shape=IMAGE_SHAPE)}
  workdir = str(tmp_path / 'run')
  results = rdvae.train_and_eval(mnist.get_config('smoke'), workdir,
                                 components)
  tm = rdvae.load(workdir, components=components)
  assert isinstance(tm.model.decoder, mlp_vae.Decoder)
  x = tm.eval_subset('test')
  rate, distortion = tm.rate_distortion(x)
  np.testing.assert_allclose(rate.mean(), results['rate'], rtol=1e-5)
  np.testing.assert_allclose(distortion.mean(), results['distortion'],
                             rtol=1e-5)
  recon = tm.reconstruct(x[:3], jax.random.key(5))
  assert recon.shape == (3,) + IMAGE_SHAPE
  assert set(np.unique(recon)) <= {0.0, 1.0}
