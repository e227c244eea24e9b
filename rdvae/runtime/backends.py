"""Training-loop settings that depend on the backend: `train.scan_unroll` =
None and `train.steps_per_dispatch` = 0 (the defaults, meaning 'auto') take
the backend's values here.

Why they differ: `steps_per_dispatch` steps run inside one `lax.scan` per host
call (a layout's `train_loop`, `runtime.parallel`).
- XLA:CPU runs convolutions inside a rolled loop many times slower than in
  straight-line code, so on the CPU the scan is unrolled; unrolled code
  compiles in time proportional to its length, so the CPU dispatches few
  steps per call (the host's dispatch costs little next to a CPU step).
- On GPU/TPU a rolled scan compiles one step body whatever its length and
  runs at full speed, and a step takes milliseconds, so many steps go into one
  dispatch to keep the device busy while the host logs.

The VampPrior's pseudo-inputs per encoder call, `model.pseudo_input_batch`
= None (auto), are resolved here too.

The resolved values are a pure function of (config, backend name): the run
logs them and writes them to results.json; config.json keeps what the user
asked (None / 0), so the same config resumes on any backend.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import ml_collections

from rdvae import validation

# 'auto': the config values that ask for the backend's choice.
AUTO_UNROLL = None
AUTO_STEPS = 0

# What each backend wants; see the module doc.
_CPU = {'scan_unroll': True, 'steps_per_dispatch': 2}
_ACCELERATOR = {'scan_unroll': False, 'steps_per_dispatch': 100}
_BY_BACKEND = {'cpu': _CPU, 'gpu': _ACCELERATOR, 'cuda': _ACCELERATOR,
               'rocm': _ACCELERATOR, 'tpu': _ACCELERATOR}

# Pseudo-inputs per encoder call of the VampPrior (rdvae/models/marginals.py): on
# the CPU in batches of 64 (XLA:CPU's kernel gradient of a convolution over
# a batch of 500 runs at a fraction of its rate over 64), elsewhere all at
# once (0).
_PSEUDO_INPUT_BATCH = {'cpu': 64}

# The step counts that must be multiples of train.steps_per_dispatch (0 = off,
# except log_every, which must be > 0).
EVERY_KEYS = ('train.log_every', 'train.eval_every', 'train.checkpoint_every')


def defaults_for_backend(backend: str) -> dict[str, Any]:
  """{'scan_unroll': bool, 'steps_per_dispatch': int} preferred by `backend`.

  Args:
    backend: a JAX backend name ('cpu', 'gpu', 'cuda', 'rocm', 'tpu'), as
      `jax.default_backend()` returns it.
  """
  if backend not in _BY_BACKEND:
    raise ValueError(f'unknown backend {backend!r}; expected one of '
                     f'{tuple(_BY_BACKEND)}')
  return dict(_BY_BACKEND[backend])


def pseudo_input_batch(backend: str) -> int:
  """The VampPrior's pseudo-inputs per encoder call on `backend` (0: all).

  Args:
    backend: a JAX backend name, as for `defaults_for_backend`.
  """
  defaults_for_backend(backend)  # names an unknown backend
  return _PSEUDO_INPUT_BATCH.get(backend, 0)


def auto_steps_per_dispatch(preferred: int, every: list[int]) -> int:
  """The largest divisor of every nonzero count in `every` that is at most
  `preferred`, so log/eval/checkpoint steps stay dispatch boundaries (1 at
  worst)."""
  g = 0
  for n in every:
    g = math.gcd(g, n)
  if g == 0:
    return preferred
  return max(d for d in range(1, min(preferred, g) + 1) if g % d == 0)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks train.steps_per_dispatch, train.scan_unroll and the counts that
  must be multiples of an explicit steps_per_dispatch."""
  dispatch = validation.check_positive_int(
      config, 'train.steps_per_dispatch', allow_zero=True)
  dispatch = dispatch or 1  # 'auto' divides the counts by construction
  for key in EVERY_KEYS:
    value = validation.check_positive_int(config, key,
                                          allow_zero=key != 'train.log_every')
    if value % dispatch:
      raise validation.ConfigError(
          f'config.{key}={value} must be a multiple of '
          f'train.steps_per_dispatch={dispatch} (or set steps_per_dispatch '
          f'to {AUTO_STEPS} for the backend\'s choice)')
  unroll = validation.get(config, 'train.scan_unroll')
  if not isinstance(unroll, bool) and unroll is not AUTO_UNROLL:
    raise validation.ConfigError(
        f'config.train.scan_unroll={unroll!r} must be True, False or None '
        '(the backend\'s choice)')


def resolve(config: ml_collections.ConfigDict, backend: str) -> dict[str, Any]:
  """The train settings `config` gets on `backend`.

  Returns:
    {'backend': name, 'scan_unroll': bool, 'steps_per_dispatch': int,
     'auto': [the keys left to the backend]}, plus 'pseudo_input_batch'
    (int, 0 = all at once) when the config has model.pseudo_input_batch
    (the image models; it matters to the VampPrior only).
  """
  validate(config)
  wanted = defaults_for_backend(backend)
  c = config.train
  out: dict[str, Any] = {'backend': backend, 'auto': []}
  if c.scan_unroll is AUTO_UNROLL:
    out['scan_unroll'] = wanted['scan_unroll']
    out['auto'].append('scan_unroll')
  else:
    out['scan_unroll'] = c.scan_unroll
  if c.steps_per_dispatch == AUTO_STEPS:
    every = [validation.get(config, k) for k in EVERY_KEYS]
    out['steps_per_dispatch'] = auto_steps_per_dispatch(
        wanted['steps_per_dispatch'], [n for n in every if n])
    out['auto'].append('steps_per_dispatch')
  else:
    out['steps_per_dispatch'] = c.steps_per_dispatch
  if 'model' in config and 'pseudo_input_batch' in config.model:
    if config.model.pseudo_input_batch is None:
      out['pseudo_input_batch'] = pseudo_input_batch(backend)
      out['auto'].append('pseudo_input_batch')
    else:
      out['pseudo_input_batch'] = validation.check_positive_int(
          config, 'model.pseudo_input_batch', allow_zero=True)
  return out


def resolved_config(config: ml_collections.ConfigDict, backend: str
                    ) -> tuple[ml_collections.ConfigDict, dict[str, Any]]:
  """A copy of `config` with the 'auto' train settings filled in for
  `backend`, and `resolve`'s summary."""
  chosen = resolve(config, backend)
  config = copy.deepcopy(config)
  config.train.scan_unroll = chosen['scan_unroll']
  config.train.steps_per_dispatch = chosen['steps_per_dispatch']
  if 'pseudo_input_batch' in chosen:
    config.model.pseudo_input_batch = chosen['pseudo_input_batch']
  return config, chosen


def describe(chosen: dict[str, Any]) -> str:
  """One log line for `resolve`'s summary."""
  auto = ', '.join(chosen['auto']) or 'none'
  line = (f'backend {chosen["backend"]}: train.scan_unroll='
          f'{chosen["scan_unroll"]} train.steps_per_dispatch='
          f'{chosen["steps_per_dispatch"]}')
  if 'pseudo_input_batch' in chosen:
    line += f' model.pseudo_input_batch={chosen["pseudo_input_batch"]}'
  return f'{line} (auto: {auto})'
