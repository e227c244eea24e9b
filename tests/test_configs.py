"""Every config in configs/ (each variant) loads, is locked and validates;
so do every sweep's base config and points in configs/sweeps/."""

import importlib.util
import os
import re

import ml_collections
import pytest

from rdvae.training import tasks

from rdvae.training import programs

from rdvae import validation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO, 'configs')
SWEEP_DIR = os.path.join(CONFIG_DIR, 'sweeps')


def _load(name):
  spec = importlib.util.spec_from_file_location(
      f'configs_{name}', os.path.join(CONFIG_DIR, f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _cases():
  for filename in sorted(os.listdir(CONFIG_DIR)):
    if not filename.endswith('.py') or filename.startswith('_'):
      continue
    name = filename[:-3]
    variants = getattr(_load(name), 'VARIANTS', ('',))
    for variant in variants:
      yield pytest.param(name, variant, id=f'{name}:{variant}'.rstrip(':'))


def _validate(config):
  programs.validate(config)


@pytest.mark.parametrize('name, variant', list(_cases()))
def test_config_loads_and_validates(name, variant):
  module = _load(name)
  config = module.get_config(variant) if variant else module.get_config()
  assert isinstance(config, ml_collections.ConfigDict)
  _validate(config)


@pytest.mark.parametrize('name', sorted(
    f[:-3] for f in os.listdir(SWEEP_DIR)
    if f.endswith('.py') and not f.startswith('_')))
def test_sweep_base_config_and_points_validate(name):
  from rdvae.sweeps import sweep_file  # pylint: disable=g-import-not-at-top
  path = os.path.join(SWEEP_DIR, f'{name}.py')
  _validate(sweep_file.load(path).get_config())
  assert sweep_file.expand(path)  # validates every point's config


@pytest.mark.parametrize('name', sorted(
    f[:-3] for f in os.listdir(CONFIG_DIR) if f.endswith('.py')))
def test_config_file_opens_with_the_command_that_runs_it(name):
  with open(os.path.join(CONFIG_DIR, f'{name}.py')) as f:
    first = f.readline()
  assert re.match(r'^r?"""python -m experiments\.main --config=configs/'
                  rf'{name}\.py', first), first


@pytest.mark.parametrize('name', ['default', 'mnist', 'omniglot'])
def test_image_configs_are_locked(name):
  config = _load(name).get_config()
  with pytest.raises(AttributeError):
    config.train.batch_sise = 3  # a misspelt key is an error


def test_paper_defaults():
  config = _load('mnist').get_config()
  assert config.train.num_epochs == 200.0
  assert config.optim.learning_rate == 3e-4
  assert config.optim.hold_fraction == 0.5
  assert config.optim.final_fraction == 0.0
  assert config.optim.normalize_gradients
  assert config.model.family == '---'
  assert config.model.latent_dim == 64
  assert tasks.num_train_steps(config, 50000) == 200 * 781


def test_unknown_variant_raises():
  with pytest.raises(ValueError, match='variant'):
    _load('mnist').get_config('huge')


def test_omniglot_smoke_needs_no_files():
  config = _load('omniglot').get_config('smoke')
  programs.validate(config)
  config.dataset.source = 'npz'
  with pytest.raises(validation.ConfigError, match='dataset.path'):
    programs.validate(config)


def test_keys_without_effect_are_named_in_one_warning_line(capsys):
  config = _load('mnist').get_config('smoke')
  config.model.flow_steps = 8          # no IAF encoder or MAF marginal
  config.model.pixelcnn_features = 32  # no PixelCNN++ decoder
  config.dataset.tfds_data_dir = '/elsewhere'  # source 'npz'
  programs.validate(config)
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines == [
      "WARNING: config.dataset.tfds_data_dir='/elsewhere' has no effect: "
      "dataset.source='npz' does not read it",
      "WARNING: config.model.flow_steps=8 has no effect: model.family='---' "
      'has no IAF encoder or MAF marginal',
      "WARNING: config.model.pixelcnn_features=32 has no effect: "
      "model.family='---' has no PixelCNN++ decoder"]
  toy = _load('toy').get_config('smoke')
  toy.model.decoder_w_mean = 1.0
  programs.validate(toy)
  assert capsys.readouterr().err.strip() == (
      'WARNING: config.model.decoder_w_mean=1.0 has no effect: a tabular '
      "decoder has no bump weights (model.decoder='tabular')")
  programs.validate(_load('mnist').get_config('smoke'))  # defaults: silent
  assert not capsys.readouterr().err
