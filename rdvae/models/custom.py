"""A user's own encoder, decoder or marginal in place of a family letter's.

A component is named in the config as `model.encoder`, `model.decoder` or
`model.marginal` = 'package.module:factory' (the one place a string names
code), or passed from Python as a linen module instance (`components=` of
`rdvae.train_and_eval` and `rdvae.load`). '' keeps the one of the family
letter. The factory is called as `factory(config, image_shape)`, like the
registered components of `model`; it raises ValueError, with the reason, for
an image shape its module cannot take. The protocol the modules obey is
docs/models.md; `check_model` holds a model to it by a shape-only trace
(`jax.eval_shape`) before any work, and names the component that breaks it.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable, Mapping, Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from rdvae import validation

PARTS = ('encoder', 'decoder', 'marginal')
# What each part returns, for the error messages.
EXPECTED = {
    'encoder': 'a distrax distribution over z with batch shape (B,) and '
               'event shape (Z,)',
    'decoder': 'a distrax distribution over x with batch shape (B,) and '
               'event shape the image shape',
    'marginal': 'a distrax distribution over z with batch shape () and the '
                "encoder's event shape (Z,)",
}
# The RDModel methods training and evaluation call, on example arguments.
METHODS = {
    '__call__': lambda model, x: model(x),
    'log_importance_weights': lambda model, x: model.log_importance_weights(
        x, 2),
    'latent_statistics': lambda model, x: model.latent_statistics(x),
    'reconstruct': lambda model, x: model.reconstruct(x, 1),
    'generate': lambda model, x: model.generate(x.shape[0], 1),
    'generative_pairs': lambda model, x: model.generative_pairs(x.shape[0]),
}
EXAMPLE_BATCH = 2


def default_config() -> dict[str, str]:
  """The `model` keys of the components: '' (the family letter's)."""
  return {part: '' for part in PARTS}


def import_factory(key: str, path: str) -> Callable:
  """The callable named by 'package.module:factory' (config key `key`).

  Raises:
    ConfigError: naming the value, for a malformed path, a module that does
      not import, a missing attribute or one that is not callable.
  """
  where = f'config.{key}={path!r}'
  module_name, sep, attribute = path.partition(':')
  if not sep or not module_name or not attribute:
    raise validation.ConfigError(
        f"{where} must be '' (the family's) or 'package.module:factory'")
  try:
    module = importlib.import_module(module_name)
  except Exception as e:  # pylint: disable=broad-except
    raise validation.ConfigError(
        f'{where}: module {module_name!r} does not import '
        f'({type(e).__name__}: {e})') from e
  factory = module
  for name in attribute.split('.'):
    factory = getattr(factory, name, None)
    if factory is None:
      raise validation.ConfigError(
          f'{where}: module {module_name!r} has no attribute {attribute!r}')
  if not callable(factory):
    raise validation.ConfigError(
        f'{where}: {attribute!r} is a {type(factory).__name__}, not a '
        'callable factory(config, image_shape) -> flax module')
  return factory


def check_components(components: Optional[Mapping[str, Any]]) -> dict:
  """`components` ({part: linen module}) checked: known parts, modules."""
  components = dict(components or {})
  for part, module in components.items():
    if part not in PARTS:
      raise ValueError(f'components has the key {part!r}; expected some of '
                       f'{PARTS}')
    if not isinstance(module, nn.Module):
      raise validation.ConfigError(
          f'components[{part!r}] is a {type(module).__name__}, not a flax '
          'linen module')
  return components


def user_factories(config: ml_collections.ConfigDict,
                   components: Optional[Mapping[str, Any]] = None
                   ) -> dict[str, tuple[str, Callable]]:
  """{part: (its name in messages, factory(config, image_shape))} of every
  part not built from the family letter: instances first, then the config's
  strings."""
  components = check_components(components)
  out = {}
  for part in PARTS:
    if part in components:
      module = components[part]
      out[part] = (f'components[{part!r}]={type(module).__name__}',
                   lambda c, s, m=module: m)
      continue
    path = config.model.get(part, '')  # '' in configs that predate it
    if not isinstance(path, str):
      raise validation.ConfigError(
          f"config.model.{part}={path!r} must be a string: '' or "
          "'package.module:factory'")
    if path:
      out[part] = (f'config.model.{part}={path!r}',
                   import_factory(f'model.{part}', path))
  return out


def build(name: str, factory: Callable, config: ml_collections.ConfigDict,
          image_shape: tuple[int, int, int]) -> nn.Module:
  """`factory(config, image_shape)`, which must be a linen module."""
  try:
    module = factory(config, image_shape)
  except ValueError as e:
    raise validation.ConfigError(
        f'{name} cannot take images of shape {tuple(image_shape)}: {e}'
    ) from e
  if not isinstance(module, nn.Module):
    raise validation.ConfigError(
        f'{name} returned a {type(module).__name__}, not a flax linen module')
  return module


def _check_output(name: str, part: str, out: Any, batch_shape: tuple,
                  event_shape: Optional[tuple]) -> None:
  if not isinstance(out, distrax.Distribution):
    what = (f'an array of shape {tuple(out.shape)}' if hasattr(out, 'shape')
            else f'a {type(out).__name__}')
    raise validation.ConfigError(
        f'{name} returned {what}; expected {EXPECTED[part]}')
  event = tuple(out.event_shape)
  shape_ok = (len(event) == 1 if event_shape is None
              else event == tuple(event_shape))
  if tuple(out.batch_shape) != batch_shape or not shape_ok:
    raise validation.ConfigError(
        f'{name} returned a distribution with batch shape '
        f'{tuple(out.batch_shape)} and event shape {event}; expected '
        f'{EXPECTED[part]} (B = {EXAMPLE_BATCH}'
        + ('' if event_shape is None else f', here {tuple(event_shape)}')
        + ')')


def _call(name: str, fn: Callable, *args) -> Any:
  try:
    return fn(*args)
  except validation.ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise validation.ConfigError(
        f'{name} fails on an example batch: {type(e).__name__}: {e}') from e


def _probe(names: Mapping[str, str], image_shape: tuple[int, int, int]):
  """The traced check of each part's output, in the order the model calls
  them (`RDModel.__call__`)."""

  def probe(model: nn.Module, x: jax.Array) -> jax.Array:
    e = _call(names['encoder'], model.encoder, x)
    _check_output(names['encoder'], 'encoder', e, (EXAMPLE_BATCH,), None)
    z, _ = _call(names['encoder'], lambda: e.sample_and_log_prob(
        seed=model.make_rng('sample')))
    m = _call(names['marginal'], model.marginal, model.encoder)
    _check_output(names['marginal'], 'marginal', m, (), e.event_shape)
    d = _call(names['decoder'], model.decoder, z, x)
    _check_output(names['decoder'], 'decoder', d, (EXAMPLE_BATCH,),
                  image_shape)
    if getattr(model.decoder, 'autoregressive', False) and not callable(
        getattr(model.decoder, 'sample', None)):
      raise validation.ConfigError(
          f'{names["decoder"]} is autoregressive but has no method '
          'sample(z, num_decodes) -> [num_decodes, B, *image_shape]')
    return jnp.zeros(())

  return probe


def check_model(model: nn.Module, image_shape: tuple[int, int, int],
                names: Mapping[str, str]) -> None:
  """Holds `model` (an `RDModel`) to the protocol of docs/models.md by a
  shape-only trace on an example batch of `EXAMPLE_BATCH` images.

  A model that passed is remembered (`_passed`): linen modules are frozen
  dataclasses, equal when their classes and fields are, so a model equal to
  one checked before (the points of a sweep, a config validated again where
  the run is built) is not traced again. A model with an unhashable field is
  traced every time; a failure is never remembered.

  Args:
    model: the RDModel to check.
    image_shape: (H, W, C) of the data's images.
    names: {part: its name in the messages}.

  Raises:
    ConfigError: naming the part, when a part's output is not a distribution
      of the expected shapes, or a part or a model method fails.
  """
  checked = (model, tuple(image_shape), tuple(sorted(names.items())))
  try:
    hash(checked)
  except TypeError:  # e.g. a module with an array field
    _trace_model(*checked)
    return
  _passed(checked)


@functools.lru_cache(maxsize=64)
def _passed(checked: tuple) -> bool:
  _trace_model(*checked)
  return True


def _trace_model(model: nn.Module, image_shape: tuple[int, int, int],
                 names: tuple[tuple[str, str], ...]) -> None:
  """`check_model`'s trace."""
  names = dict(names)
  x = jax.ShapeDtypeStruct((EXAMPLE_BATCH,) + tuple(image_shape), jnp.float32)
  key = jax.random.key(0)
  rngs = {'params': key, 'sample': key}
  try:
    variables = jax.eval_shape(
        lambda x: model.init(rngs, x, method=_probe(names, image_shape)), x)
  except validation.ConfigError as e:  # without the notes of JAX's trace
    raise validation.ConfigError(e.args[0]) from None
  every = ', '.join(names[p] for p in PARTS)
  for method, fn in METHODS.items():
    try:
      jax.eval_shape(lambda v, x, fn=fn: model.apply(
          v, x, rngs={'sample': key}, method=fn), variables, x)
    except Exception as e:  # pylint: disable=broad-except
      raise validation.ConfigError(
          f'the model of {every} fails in RDModel.{method}: '
          f'{type(e).__name__}: {e}') from e
