"""The AIS settings (`rdvae.runs.ais_workdir.Settings`) as absl flags, for
`experiments.ais` and `experiments.ais_check`."""

from __future__ import annotations

import dataclasses
from typing import Callable

from absl import flags

from rdvae.evaluation import measures
from rdvae.runs import ais_workdir

_HELP = {
    'examples': 'Test images (a seeded random subset; 0: all).',
    'chains': 'AIS chains per image.',
    'steps': 'Annealing steps (intermediate distributions).',
    'beta_max': 'The last beta of the schedule (>= 1; BDMC stops at 1).',
    'bdmc_examples': 'Images simulated from the model for BDMC (0: no BDMC).',
    'params': 'Checkpoint: the last, or the best by validation ELBO.',
    'seed': 'Seed of the image subset and of the chains.',
    'leapfrog_steps': 'Leapfrog steps per HMC transition.',
    'chunk': 'Images per compiled call (memory, progress).',
    'pilot_steps': 'Transitions of the pilot run that fixes the step sizes '
                   '(default: steps / 10, at least 20; 0: adapt on the '
                   'chains).',
}


def define(names=tuple(_HELP), **defaults) -> Callable[[], ais_workdir.Settings]:
  """Defines a flag for each Settings field in `names` (its default from
  `defaults`, else the Settings default); returns a function that reads
  them into Settings (the fields not in `names` at their defaults)."""
  base = dataclasses.replace(ais_workdir.Settings(), **defaults)
  holders = {}
  for name in names:
    value = getattr(base, name)
    if name == 'params':
      holders[name] = flags.DEFINE_enum(name, value, list(measures.PARAMS),
                                        _HELP[name])
    elif name == 'beta_max':
      holders[name] = flags.DEFINE_float(name, value, _HELP[name])
    else:
      holders[name] = flags.DEFINE_integer(name, value, _HELP[name])

  def settings() -> ais_workdir.Settings:
    return dataclasses.replace(
        base, **{name: holder.value for name, holder in holders.items()})

  return settings
