"""Config checks that run before any work and name the bad key and value."""

from __future__ import annotations

import math
import sys
from typing import Any, Iterable

import ml_collections


class ConfigError(ValueError):
  """A config value is invalid; the message names the key and what was expected."""


def get(config: ml_collections.ConfigDict, key: str) -> Any:
  """Reads a dotted key, raising ConfigError when it is missing."""
  node = config
  for part in key.split('.'):
    try:
      node = node[part]
    except (KeyError, AttributeError, TypeError):
      raise ConfigError(f'config key {key!r} is missing') from None
  return node


def check_choice(config, key: str, allowed: Iterable[str]) -> str:
  value = get(config, key)
  allowed = tuple(allowed)
  if value not in allowed:
    raise ConfigError(
        f'config.{key}={value!r} is not one of the allowed values {allowed}')
  return value


def check_number(config, key: str, *, minimum: float | None = None,
                 strictly_positive: bool = False,
                 maximum: float | None = None) -> float:
  """Checks a finite real number against optional bounds and returns it
  (inf and nan are refused: no key means anything by them)."""
  value = get(config, key)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f'config.{key}={value!r} must be a number')
  if not math.isfinite(value):
    raise ConfigError(f'config.{key}={value!r} must be a finite number')
  if strictly_positive and not value > 0:
    raise ConfigError(f'config.{key}={value!r} must be > 0')
  if minimum is not None and not value >= minimum:
    raise ConfigError(f'config.{key}={value!r} must be >= {minimum}')
  if maximum is not None and not value <= maximum:
    raise ConfigError(f'config.{key}={value!r} must be <= {maximum}')
  return value


def check_positive_int(config, key: str, *, allow_zero: bool = False) -> int:
  value = get(config, key)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f'config.{key}={value!r} must be an integer')
  if value < 0 or (value == 0 and not allow_zero):
    bound = '>= 0' if allow_zero else '> 0'
    raise ConfigError(f'config.{key}={value!r} must be {bound}')
  return value


def check_all_finite(config: ml_collections.ConfigDict, prefix: str = ''
                     ) -> None:
  """Refuses inf and nan in any key, also one no other check reads (config.json
  could not hold them as numbers, and no key means anything by them)."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      check_all_finite(value, f'{prefix}{key}.')
    elif isinstance(value, float) and not math.isfinite(value):
      raise ConfigError(f'config.{prefix}{key}={value!r} must be a finite '
                        'number')


def warn_no_effect(config: ml_collections.ConfigDict, keys, defaults,
                   why: str) -> list[str]:
  """One warning line (stderr) for each of `keys` (section.name) whose value
  differs from `defaults` (the section's default_config) although `why`
  leaves it without effect; returns the keys it warned about."""
  warned = []
  for key in keys:
    name = key.partition('.')[2]
    value = get(config, key)
    if name in defaults and value != defaults[name]:
      print(f'WARNING: config.{key}={value!r} has no effect: {why}',
            file=sys.stderr, flush=True)
      warned.append(key)
  return warned
