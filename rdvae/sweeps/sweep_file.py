"""A sweep file's points: loading it, naming each point and building its config.

A sweep file defines `get_config()` (the base config) and `get_sweep()` (a
list of {dotted key: value} overrides, one dict per point). `expand` applies
each point's overrides to a copy of the base config, names the point from
them (`point_name`) and validates its config before any work, so a bad
point stops the whole sweep with a message naming it.

Point names (`point_name`): `label=value` pairs joined by ',' in the point's
key order, the label being the last part of the dotted key ('model.family'
-> 'family'), or the whole key where two of the point's keys end alike.
Floats print as Python's shortest repr without a trailing '.0' (0.15, 1,
1e-05), tuples join their items with '_', and any character other than
letters, digits and '+-._' is %-escaped, so '=' and ',' only separate. The
point with no overrides is 'base'. E.g. {'model.family': '-+v',
'objective.beta': 0.15} -> 'family=-+v,beta=0.15'. Two points with the same
name, or with the same config, are an error.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import types
import urllib.parse
from typing import Any, Mapping, Optional, Sequence, Union

import ml_collections

from rdvae import validation
from rdvae.files import run_files


MAX_NAME_LENGTH = 200


class SweepError(validation.ConfigError):
  """A sweep file or point is invalid; the message names the point and key."""


@dataclasses.dataclass(frozen=True)
class SweepPoint:
  """One point of a sweep file: its name, overrides and full (validated)
  config."""

  name: str
  overrides: dict[str, Any]
  config: ml_collections.ConfigDict


def load(sweep: Union[str, types.ModuleType]) -> types.ModuleType:
  """The sweep module: `sweep` itself, or the file at path `sweep`."""
  if isinstance(sweep, types.ModuleType):
    module = sweep
  else:
    if not os.path.isfile(sweep):
      raise SweepError(f'sweep file {sweep!r} does not exist')
    name = 'rdvae_sweep_' + os.path.splitext(os.path.basename(sweep))[0]
    spec = importlib.util.spec_from_file_location(name, sweep)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
  for function in ('get_config', 'get_sweep'):
    if not callable(getattr(module, function, None)):
      raise SweepError(f'sweep {module.__name__!r} ({sweep!r}) has no '
                       f'{function}() function')
  return module


def _format_value(value: Any) -> str:
  if isinstance(value, (bool, int, str)) or value is None:
    return str(value)
  if isinstance(value, float):
    text = repr(value)
    return text[:-2] if text.endswith('.0') else text
  if isinstance(value, (tuple, list)):
    return '_'.join(_format_value(v) for v in value)
  raise SweepError(f'value {value!r} of type {type(value).__name__} cannot be '
                   'swept; use numbers, strings, booleans or tuples of them')


def point_name(overrides: Mapping[str, Any]) -> str:
  """The point's directory name (see the module doc), e.g.
  {'model.family': '-+v', 'objective.beta': 0.15} -> 'family=-+v,beta=0.15'."""
  if not overrides:
    return 'base'
  shorts = [key.rsplit('.', 1)[-1] for key in overrides]
  parts = []
  for (key, value), short in zip(overrides.items(), shorts):
    label = short if shorts.count(short) == 1 else key
    text = urllib.parse.quote(_format_value(value), safe='+-._')
    parts.append(f'{label}={text}')
  return ','.join(parts)


def _leaf_parent(config: ml_collections.ConfigDict, key: str):
  parent_key, _, leaf = key.rpartition('.')
  parent = validation.get(config, parent_key) if parent_key else config
  if not isinstance(parent, ml_collections.ConfigDict) or leaf not in parent:
    raise validation.ConfigError(f'config key {key!r} is missing')
  if isinstance(parent[leaf], ml_collections.ConfigDict):
    raise validation.ConfigError(
        f'config key {key!r} is a section; override its keys one by one')
  return parent, leaf


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Mapping[str, Any], where: str
                    ) -> ml_collections.ConfigDict:
  """A copy of `config` with `overrides` ({dotted key: value}) set.

  Raises:
    SweepError naming `where` (the point), the key and the value, for a key
    that is missing or a section, or a value of the wrong type.
  """
  config = copy.deepcopy(config)
  for key, value in overrides.items():
    if not isinstance(key, str) or not key:
      raise SweepError(f'{where}: key {key!r} must be a dotted config key')
    try:
      parent, leaf = _leaf_parent(config, key)
      parent[leaf] = value
    except validation.ConfigError as e:
      raise SweepError(f'{where}: {e}') from None
    except (TypeError, ValueError, AttributeError, KeyError) as e:
      raise SweepError(
          f'{where}: config.{key}={value!r} has the wrong type for the key '
          f'(now {parent[leaf]!r}): {e}') from None
  return config


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Validates a config as `rdvae.train_and_eval` does (any task)."""
  from rdvae.training import programs  # pylint: disable=g-import-not-at-top
  programs.validate(config)


def expand(sweep: Union[str, types.ModuleType],
           overrides: Optional[Mapping[str, Any]] = None) -> list[SweepPoint]:
  """The sweep's points, each named and with its config validated.

  Args:
    sweep: a sweep module or the path of a sweep file.
    overrides: {dotted key: value} applied to the base config of every point
      (before the point's own overrides), e.g. a shorter budget.

  Raises:
    SweepError (a ConfigError) naming the point and the key, before any work.
  """
  module = load(sweep)
  base = module.get_config()
  if not isinstance(base, ml_collections.ConfigDict):
    raise SweepError(f'{module.__name__}.get_config() returned '
                     f'{type(base).__name__}, expected a ConfigDict')
  base = apply_overrides(base, dict(overrides or {}), 'base config override')
  raw = module.get_sweep()
  if not isinstance(raw, (list, tuple)) or not raw:
    raise SweepError(f'{module.__name__}.get_sweep() must return a non-empty '
                     f'list of dicts, got {raw!r}'[:300])
  points, names, configs = [], {}, {}
  for index, point in enumerate(raw):
    if not isinstance(point, Mapping):
      raise SweepError(f'sweep point {index} is {point!r}, expected a dict '
                       'from dotted config keys to values')
    point = dict(point)
    name = point_name(point)
    where = f'sweep point {index} ({name})'
    if len(name) > MAX_NAME_LENGTH:
      raise SweepError(f'{where}: the name is longer than {MAX_NAME_LENGTH} '
                       'characters; sweep fewer keys per point')
    if name in names:
      raise SweepError(
          f'sweep points {names[name]} and {index} have the same name {name!r}'
          f' (overrides {raw[names[name]]!r} and {point!r})')
    names[name] = index
    config = apply_overrides(base, point, where)
    try:
      validate_config(config)
    except validation.ConfigError as e:
      raise SweepError(f'{where}: {e}') from None
    key = json.dumps(run_files.config_to_dict(config), sort_keys=True)
    if key in configs:
      raise SweepError(f'sweep points {configs[key]!r} and {name!r} have the '
                       'same config')
    configs[key] = name
    points.append(SweepPoint(name=name, overrides=point, config=config))
  return points


def training_hours(points: Sequence[Mapping[str, Any]], images_per_run: int,
                   images_per_second: Mapping[str, float]) -> float:
  """Hours to train every point of a sweep, one after another: each point
  trains `images_per_run` images at the rate of its family
  (`images_per_second[point['model.family']]`). For a sweep file's stated
  compute (e.g. configs/sweeps/mnist_rd.py's `estimated_hours`)."""
  return sum(images_per_run / images_per_second[p['model.family']]
             for p in points) / 3600
