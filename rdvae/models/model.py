"""The model of a config: the paper's families, their keys and their checks.

Model families are the paper's tuple (encoder, decoder, marginal) written as a
3-character string, e.g. '---' (section 4): encoder in {-, +}, decoder in
{-, +}, marginal in {-, +, v}. Each letter maps to a `Component` in the
`ENCODERS`, `DECODERS` and `MARGINALS` registries; a new architecture is added
by registering its constructor there. `create_model` composes the parts into
an `RDModel` (rdvae/models/rdmodel.py: per-example rate and distortion).

Likelihood. The decoders' d(x|z) follows the data's values
(`dataset.values`, resolved): independent Bernoulli pixels for binary images,
the discretized logistic mixture of PixelCNN++ for 8-bit ones
(`logistic_mixture`, `model.mixture_components` logistics per pixel).
`model.likelihood` ('' by the data, 'bernoulli', 'logistic_mixture')
overrides the choice: the mixture also scores binary images (as the values 0
and 255); Bernoulli pixels cannot score 8-bit images, an error.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional

import flax.linen as nn
import ml_collections
from ml_collections import config_dict

from rdvae.models import custom
from rdvae.models import decoders
from rdvae.models import encoders
from rdvae.models import factories
from rdvae.models import pixelcnn
from rdvae.models import rdmodel
from rdvae import validation

RDModel = rdmodel.RDModel
analytic_rate = rdmodel.analytic_rate
LIKELIHOODS = ('bernoulli', 'logistic_mixture')
LIKELIHOOD_OF_VALUES = {'binary': 'bernoulli', '8bit': 'logistic_mixture'}
MAX_VALUE = {'binary': 1, '8bit': 255}
ENCODER_LETTERS = ('-', '+')
DECODER_LETTERS = ('-', '+')
MARGINAL_LETTERS = ('-', '+', 'v')
# The paper's twelve families, '---' (simple) to '++v'.
FAMILIES = tuple(e + d + m for e in ENCODER_LETTERS for d in DECODER_LETTERS
                 for m in MARGINAL_LETTERS)
ImageShape = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class Component:
  """One registered encoder, decoder or marginal.

  Attributes:
    create: builds the linen module from the whole config and the shape
      (H, W, C) of the data's images.
    image_shape_error: why the component cannot take images of a shape, as
      the end of a sentence naming it, or None when it can; None for a
      component that takes any shape.
    splits_over_devices: False for a part whose work per step does not
      shrink with a device's share of the batch (the VampPrior encodes all
      its pseudo-inputs on every device), so that a data-parallel layout
      repeats it on every device (`splits_over_devices`).
  """

  create: Callable[[ml_collections.ConfigDict, ImageShape], nn.Module]
  image_shape_error: Optional[Callable[[ImageShape], Optional[str]]] = None
  splits_over_devices: bool = True


ENCODERS: dict[str, Component] = {
    '-': Component(factories.simple_encoder, encoders.image_shape_error),
    '+': Component(factories.iaf_encoder, encoders.image_shape_error),
}
DECODERS: dict[str, Component] = {
    '-': Component(factories.simple_decoder, decoders.deconv_image_shape_error),
    # Any (H, W, C); `pixelcnn.validate` checks H and W against its scales.
    '+': Component(factories.pixelcnn_decoder),
}
MARGINALS: dict[str, Component] = {
    '-': Component(factories.standard_normal),
    '+': Component(factories.maf_marginal),
    'v': Component(factories.vamp_prior, splits_over_devices=False),
}


def splits_over_devices(config: ml_collections.ConfigDict,
                        components=()) -> bool:
  """Whether all the work of a training step of `config`'s model divides
  over the devices that share its batch (no part built from the family
  letters repeats work on each device; `components` names the parts the
  user replaced, taken to divide)."""
  family = _check_family(config)
  return all(registry[letter].splits_over_devices
             for _, letter, registry in _components(family, components))


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `model` section, at the paper's simple family."""
  return ml_collections.ConfigDict({
      'family': '---',
      'latent_dim': 64,
      # The flows of the '+' encoder (IAF) and '+' marginal (MAF), F.1 / F.3.
      'flow_steps': 4,
      'made_hidden': 640,
      'made_layers': 3,
      # The 'v' marginal (VampPrior): N pseudo-inputs (Tomczak & Welling).
      'num_pseudo_inputs': 500,
      # Pseudo-inputs per encoder call (the same values, another speed):
      # None for the backend's choice (rdvae/runtime/backends.py resolves it
      # before the model is built), 0 for all at once.
      'pseudo_input_batch': config_dict.placeholder(int),
      # The '+' decoder (PixelCNN++, F.2).
      **pixelcnn.default_config(),
      # A user's own modules ('package.module:factory'; '' the letter's).
      **custom.default_config(),
      # d(x|z) of the built-in decoders: '' by the data's values
      # ('bernoulli' for binary, 'logistic_mixture' for 8-bit), or either.
      'likelihood': '',
      # Logistics per pixel of the discretized logistic mixture (PixelCNN++
      # uses 10 on CIFAR-10).
      'mixture_components': 10,
  })


def _warn_unused_keys(config: ml_collections.ConfigDict, family: str) -> None:
  """Warns about keys set for a component the family does not have."""
  defaults = default_config()
  if '+' not in (family[0], family[2]):
    validation.warn_no_effect(
        config, ('model.flow_steps', 'model.made_hidden', 'model.made_layers'),
        defaults, f'model.family={family!r} has no IAF encoder or MAF marginal')
  if family[1] != '+':
    validation.warn_no_effect(
        config, [f'model.{k}' for k in pixelcnn.default_config()], defaults,
        f'model.family={family!r} has no PixelCNN++ decoder')
  if family[2] != 'v':
    validation.warn_no_effect(
        config, ('model.num_pseudo_inputs',), defaults,
        f'model.family={family!r} has no VampPrior marginal')


def _check_family(config: ml_collections.ConfigDict) -> str:
  family = validation.get(config, 'model.family')
  allowed = (f'encoder in {ENCODER_LETTERS}, decoder in {DECODER_LETTERS}, '
             f'marginal in {MARGINAL_LETTERS}')
  if not isinstance(family, str) or len(family) != 3:
    raise validation.ConfigError(
        f'config.model.family={family!r} must be a 3-character string '
        f'(encoder, decoder, marginal) with {allowed}, e.g. "---"')
  parts = zip(('encoder', 'decoder', 'marginal'), family,
              (ENCODER_LETTERS, DECODER_LETTERS, MARGINAL_LETTERS))
  for position, (part, letter, letters) in enumerate(parts, start=1):
    if letter not in letters:
      raise validation.ConfigError(
          f'config.model.family={family!r}: position {position} ({part}) is '
          f'{letter!r}, not one of the allowed values {letters} ({allowed})')
  return family


def _components(family: str, user=()) -> tuple[tuple[str, str, dict], ...]:
  """(part, letter, registry) of the parts built from the family letters."""
  parts = (('encoder', family[0], ENCODERS), ('decoder', family[1], DECODERS),
           ('marginal', family[2], MARGINALS))
  return tuple(p for p in parts if p[0] not in user)


def _check_image_shape(family: str, image_shape, user) -> ImageShape:
  shape = tuple(image_shape)
  if len(shape) != 3 or not all(isinstance(n, int) and n > 0 for n in shape):
    raise validation.ConfigError(
        f'config.model.family={family!r}: the images have shape {shape}, not '
        '(height, width, channels) (check config.dataset.name)')
  for part, letter, registry in _components(family, user):
    check = registry[letter].image_shape_error
    reason = check(shape) if check is not None else None
    if reason is not None:
      raise validation.ConfigError(
          f'config.model.family={family!r}: the {letter!r} {part} {reason} '
          f'(check config.dataset.name)')
  return shape


def _check_keys(config: ml_collections.ConfigDict, image_shape: ImageShape,
                family_parts: dict[str, str]) -> None:
  """The keys of the parts built from the family letters."""
  if family_parts.get('decoder') == '+':
    pixelcnn.validate(config, image_shape)
  if '+' in (family_parts.get('encoder'), family_parts.get('marginal')):
    for key in ('model.flow_steps', 'model.made_hidden', 'model.made_layers'):
      validation.check_positive_int(config, key)
  if family_parts.get('marginal') == 'v':
    validation.check_positive_int(config, 'model.num_pseudo_inputs')
    if config.model.get('pseudo_input_batch') is not None:
      validation.check_positive_int(config, 'model.pseudo_input_batch',
                                    allow_zero=True)


def likelihood(config: ml_collections.ConfigDict, values: str) -> str:
  """`model.likelihood` for data of `values` ('binary' | '8bit'), '' resolved.

  The mixture scores binary images too, as the 8-bit values 0 and 255 (a
  distribution over 256 levels of which the data use two).

  Raises:
    ConfigError: an unknown likelihood, or Bernoulli pixels on 8-bit images.
  """
  chosen = config.model.get('likelihood', '')
  if chosen not in ('',) + LIKELIHOODS:
    raise validation.ConfigError(
        f'config.model.likelihood={chosen!r} is not one of the allowed values '
        f"{('',) + LIKELIHOODS} ('' chooses by the data's values)")
  resolved = chosen or LIKELIHOOD_OF_VALUES[values]
  if resolved == 'bernoulli' and values != 'binary':
    raise validation.ConfigError(
        f'config.model.likelihood={chosen!r} models binary pixels (0 and 1), '
        f"but the data are {values} (dataset.values); use '' or "
        "'logistic_mixture', or binarize the data")
  return resolved


def for_values(config: ml_collections.ConfigDict,
               values: str) -> ml_collections.ConfigDict:
  """A copy of `config` whose `model.likelihood` is resolved for the data
  (`likelihood`): what the factories read."""
  resolved = likelihood(config, values)
  if config.model.get('likelihood') == resolved:
    return config
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.likelihood = resolved
    config.model.mixture_components = config.model.get(
        'mixture_components', default_config().mixture_components)
  return config


def _check_likelihood(config, user, values: str) -> None:
  resolved = likelihood(config, values)
  if resolved == 'logistic_mixture' and 'decoder' not in user:
    validation.check_positive_int(config, 'model.mixture_components')


def _assemble(config, image_shape: ImageShape, family: str,
              user: dict, values: str = 'binary') -> RDModel:
  built = {part: registry[letter].create(config, image_shape)
           for part, letter, registry in _components(family, user)}
  built.update({part: custom.build(name, factory, config, image_shape)
                for part, (name, factory) in user.items()})
  return RDModel(**built, max_value=MAX_VALUE[values])


def validate(config: ml_collections.ConfigDict, image_shape,
             components: Optional[Mapping[str, nn.Module]] = None,
             values: Optional[str] = None) -> dict:
  """Checks `config.model` for images of `image_shape`, naming the bad key.

  Args:
    config: the whole experiment config (reads `model.*`).
    image_shape: (H, W, C) of the data's images (`Dataset.image_shape`);
      None before the data is read: the checks that need it wait.
    components: {part: linen module} in place of the config's (`custom`).
    values: the data's values, 'binary' or '8bit' (`Dataset.values`); None
      before the data is read.

  Returns:
    {part: (name, factory)} of the parts not built from the family letters
    (`custom.user_factories`).

  Raises:
    ConfigError: for a family string of the wrong length or with an unknown
      letter, a letter whose module is not available yet, a latent_dim that is
      not a positive integer, an image shape a component cannot take, a
      likelihood that cannot score the data, or a user's component that
      breaks the protocol (docs/models.md).
  """
  family = _check_family(config)
  validation.check_positive_int(config, 'model.latent_dim')
  user = custom.user_factories(config, components)
  for part, letter, registry in _components(family, user):
    if letter not in registry:
      raise validation.ConfigError(
          f'config.model.family={family!r}: the {letter!r} {part} is not '
          f'available yet (available {part}s: {tuple(registry)})')
  if values is not None:
    _check_likelihood(config, user, values)
    config = for_values(config, values)
  if image_shape is None:
    return user
  image_shape = _check_image_shape(family, image_shape, user)
  _check_keys(config, image_shape,
              {part: letter for part, letter, _ in _components(family, user)})
  if not user:  # a user's factory may read any key
    _warn_unused_keys(config, family)
  if user:
    traced = config
    if config.model.get('pseudo_input_batch') is None:  # all at once
      traced = config.copy_and_resolve_references()
      with traced.unlocked():
        traced.model.pseudo_input_batch = 0
    names = {part: f'the {family!r} family\'s {part}' for part in custom.PARTS}
    names.update({part: name for part, (name, _) in user.items()})
    custom.check_model(_assemble(traced, image_shape, family, user,
                                 values or 'binary'), image_shape, names)
  return user


def create_model(config: ml_collections.ConfigDict, image_shape,
                 components: Optional[Mapping[str, nn.Module]] = None,
                 values: str = 'binary') -> RDModel:
  """Builds the `RDModel` of `config.model` (validated first): each part
  from `components`, else `model.<part>` ('package.module:factory'), else
  the family letter.

  Args:
    config: the experiment config with the backend's settings resolved
      (`rdvae.runtime.backends.resolved_config`: a VampPrior needs a number
      for `model.pseudo_input_batch`).
    image_shape: (H, W, C) of the data's images (`Dataset.image_shape`).
    components: {'encoder' | 'decoder' | 'marginal': linen module}.
    values: the data's values, 'binary' or '8bit' (`Dataset.values`): the
      likelihood (`likelihood`) and the model's `max_value` (1 or 255).
  """
  user = validate(config, image_shape, components, values)
  return _assemble(for_values(config, values), tuple(image_shape),
                   config.model.family, user, values)
