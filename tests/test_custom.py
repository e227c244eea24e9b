"""A user's own encoder, decoder and marginal (rdvae/models/custom.py): named
by 'package.module:factory' or passed as modules, held to docs/models.md by
a shape-only trace before any work; and the example of examples/ swept,
reported and read back."""

import csv
import os
import subprocess
import sys

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import mnist
from configs import toy
from examples import mlp_vae
import rdvae
from rdvae import validation
from rdvae.models import model as model_lib
from rdvae.training import programs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SHAPE = (28, 28, 1)


class _FlatDecoder(nn.Module):
  """Bernoulli pixels with the wrong event shape: (784,), not the image's."""

  @nn.compact
  def __call__(self, z, x=None):
    del x
    logits = nn.Dense(784)(z)
    return distrax.Independent(distrax.Bernoulli(logits=logits), 1)


class _ArrayDecoder(nn.Module):
  @nn.compact
  def __call__(self, z, x=None):
    del x
    return nn.Dense(784)(z).reshape((-1,) + IMAGE_SHAPE)


class _SmallMarginal(nn.Module):
  """N(0, I) over 3 dimensions, beside an encoder of 64."""

  def __call__(self, encoder=None):
    del encoder
    return distrax.MultivariateNormalDiag(jnp.zeros(3), jnp.ones(3))


class _BrokenEncoder(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(4)(x.reshape(x.shape[0], 3, -1))  # 784 is not 3 k


def flat_decoder(config, image_shape):
  del config, image_shape
  return _FlatDecoder()


def array_decoder(config, image_shape):
  del config, image_shape
  return _ArrayDecoder()


def small_marginal(config, image_shape):
  del config, image_shape
  return _SmallMarginal()


def broken_encoder(config, image_shape):
  del config, image_shape
  return _BrokenEncoder()


def not_a_module(config, image_shape):
  del config, image_shape
  return 'decoder'


def color_only(config, image_shape):
  if image_shape[-1] != 3:
    raise ValueError('takes RGB images, (H, W, 3)')
  return mlp_vae.decoder(config, image_shape)


NOT_CALLABLE = 3


def _config(**parts):
  config = mnist.get_config('smoke')
  for part, path in parts.items():
    config.model[part] = path
  return config


@pytest.mark.parametrize('parts, pattern', [
    ({'decoder': 'no_such_module:decoder'},
     r"config\.model\.decoder='no_such_module:decoder': module "
     r"'no_such_module' does not import"),
    ({'encoder': 'examples.mlp_vae'},
     r"config\.model\.encoder='examples.mlp_vae' must be '' .* "
     r"'package\.module:factory'"),
    ({'decoder': 'examples.mlp_vae:nothing'}, r"has no attribute 'nothing'"),
    ({'marginal': 'test_custom:NOT_CALLABLE'},
     r"'NOT_CALLABLE' is a int, not a callable factory"),
    ({'decoder': 'test_custom:not_a_module'},
     r'returned a str, not a flax linen module'),
    ({'decoder': 'test_custom:color_only'},
     r"config\.model\.decoder='test_custom:color_only' cannot take images of "
     r'shape \(28, 28, 1\): takes RGB'),
    ({'decoder': 'test_custom:array_decoder'},
     r"config\.model\.decoder='test_custom:array_decoder' returned an "
     r'array of shape \(2, 28, 28, 1\); expected a distrax distribution '
     r'over x'),
    ({'decoder': 'test_custom:flat_decoder'},
     r'event shape \(784,\); expected .* event shape the image shape .*'
     r'here \(28, 28, 1\)'),
    ({'marginal': 'test_custom:small_marginal'},
     r"config\.model\.marginal='test_custom:small_marginal' returned a "
     r'distribution with batch shape \(\) and event shape \(3,\)'),
    ({'encoder': 'test_custom:broken_encoder'},
     r"config\.model\.encoder='test_custom:broken_encoder' fails on an "
     r'example batch'),
], ids=['no_module', 'no_colon', 'no_attribute', 'not_callable',
        'not_a_module', 'image_shape', 'not_a_distribution', 'event_shape',
        'marginal_event', 'encoder_fails'])
def test_bad_components_fail_validation(parts, pattern):
  with pytest.raises(validation.ConfigError, match=pattern):
    programs.validate(_config(**parts))


def test_bad_component_instances():
  config = _config()
  with pytest.raises(validation.ConfigError, match=r"components\['decoder'\] "
                     'is a int, not a flax linen module'):
    model_lib.create_model(config, IMAGE_SHAPE, {'decoder': 3})
  with pytest.raises(ValueError, match="key 'prior'"):
    model_lib.create_model(config, IMAGE_SHAPE, {'prior': _SmallMarginal()})
  with pytest.raises(validation.ConfigError, match=r"components\['marginal'\]"
                     '=_SmallMarginal returned a distribution'):
    model_lib.create_model(config, IMAGE_SHAPE,
                           {'marginal': _SmallMarginal()})


def test_bad_passed_module_fails_before_anything_is_written(tmp_path):
  workdir = str(tmp_path / 'run')
  with pytest.raises(validation.ConfigError,
                     match=r"components\['decoder'\]=_FlatDecoder returned"):
    rdvae.train_and_eval(mnist.get_config('smoke'), workdir,
                         {'decoder': _FlatDecoder()})
  assert not os.path.exists(workdir)


def test_the_toy_refuses_components(tmp_path):
  with pytest.raises(validation.ConfigError, match="the toy's model is a "
                     r"table.*\['encoder'\]"):
    rdvae.train_and_eval(toy.get_config(), str(tmp_path / 'run'),
                         {'encoder': mlp_vae.Encoder(latent_dim=2)})


class _CountingDecoder(nn.Module):
  """Bernoulli pixels that count how often they are traced (`TRACES`)."""
  marker: int = 0

  @nn.compact
  def __call__(self, z, x=None):
    del x
    TRACES[self.marker] = TRACES.get(self.marker, 0) + 1
    logits = nn.Dense(784)(z).reshape((-1,) + IMAGE_SHAPE)
    return distrax.Independent(distrax.Bernoulli(logits=logits), 3)


TRACES = {}


def test_a_model_that_passed_is_not_traced_again():
  """`custom.check_model` remembers a model that passed: an equal model
  (built anew from an equal module) is not traced again, another one is."""
  config = _config()
  for marker in (1, 1, 2):
    model_lib.create_model(config, IMAGE_SHAPE,
                           {'decoder': _CountingDecoder(marker=marker)})
  # The check traces the decoder in its probe and in every model method that
  # decodes; equal models share one check.
  assert TRACES[1] == TRACES[2] > 1
  model_lib.validate(config, IMAGE_SHAPE, {'decoder': _CountingDecoder(1)})
  assert TRACES[1] == TRACES[2]


def test_a_model_that_failed_is_checked_again():
  for _ in range(2):
    with pytest.raises(validation.ConfigError, match='_FlatDecoder returned'):
      model_lib.validate(_config(), IMAGE_SHAPE, {'decoder': _FlatDecoder()})


def test_named_and_passed_components_build_the_model():
  config = mlp_vae.get_config('smoke')
  programs.validate(config)
  named = model_lib.create_model(config, IMAGE_SHAPE)
  assert isinstance(named.encoder, mlp_vae.Encoder)
  assert isinstance(named.decoder, mlp_vae.Decoder)
  decoder = mlp_vae.Decoder(image_shape=IMAGE_SHAPE)
  passed = model_lib.create_model(mnist.get_config('smoke'), IMAGE_SHAPE,
                                   {'decoder': decoder})
  assert passed.decoder is decoder
  assert type(passed.encoder).__name__ == 'GaussianEncoder'  # the family's
  x = jnp.zeros((2,) + IMAGE_SHAPE)
  variables = passed.init({'params': jax.random.key(0),
                           'sample': jax.random.key(1)}, x)
  terms = passed.apply(variables, x, rngs={'sample': jax.random.key(2)})
  assert terms.rate.shape == terms.distortion.shape == (2,)


@pytest.mark.slow
def test_example_sweep_trains_and_reports(tmp_path):
  """examples/mlp_rd.py at a tiny budget: 3 betas, summary.csv, the report,
  and the frontier in order: R falls and D rises as beta grows."""
  workdir = str(tmp_path / 'mlp_rd')
  budget = ['--config.train.num_steps=60', '--config.train.log_every=20',
            '--config.eval.max_examples=100', '--config.eval.iwae_samples=2',
            '--config.eval.generative_samples=10',
            '--config.eval.num_grid_images=4']
  for command in (['experiments.sweep', '--sweep=examples/mlp_rd.py',
                   f'--workdir={workdir}', '--jax_platforms=cpu',
                   '--workers=1'] + budget,
                  ['experiments.report', f'--workdir={workdir}']):
    out = subprocess.run([sys.executable, '-m'] + command, cwd=REPO,
                         capture_output=True, text=True, timeout=600,
                         check=False)
    assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, 'summary.csv')) as f:
    rows = sorted(csv.DictReader(f), key=lambda r: float(r['objective.beta']))
  assert [r['status'] for r in rows] == ['done'] * 3
  rates = [float(r['rate']) for r in rows]
  distortions = [float(r['distortion']) for r in rows]
  assert rates == sorted(rates, reverse=True), rates
  assert distortions == sorted(distortions), distortions
  report = os.path.join(workdir, 'report')
  for name in ('rd_plane.png', 'report.md', 'points.csv'):
    assert os.path.isfile(os.path.join(report, name)), name
  with open(os.path.join(report, 'frontier.csv')) as f:
    frontier = {r['name'] for r in csv.DictReader(f)}
  assert frontier == {'beta=0.1', 'beta=1', 'beta=10'}
