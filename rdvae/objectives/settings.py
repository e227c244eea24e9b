"""The `objective` section of a config: its keys and defaults, the checks
that name a bad or ineffective key, and the objective and numbers built from
it (`losses`).
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from rdvae import validation
from rdvae.objectives import losses


# The kinds under which each key of the `objective` section acts. Under any
# other kind the key has no effect, and a value other than its default is
# refused (`validate`).
APPLIES_TO = {
    'beta': ('beta_vae',),
    'beta_schedule': losses.BETA_WEIGHTED,
    'beta_start': losses.BETA_WEIGHTED,
    'anneal_steps': losses.BETA_WEIGHTED,
    'rate': losses.RATE_TARGETED,
    'rate_schedule': losses.RATE_TARGETED,
    'rate_anneal_steps': losses.RATE_TARGETED,
    'distortion': losses.DISTORTION_TARGETED,
    'multiplier_init': losses.CONSTRAINED,
    'multiplier_lr': losses.CONSTRAINED,
    'constraint_decay': losses.CONSTRAINED,
    'penalty': losses.CONSTRAINED,
}


# The keys that act only under the 'linear' value of a schedule key.
LINEAR_ONLY = {
    'beta_start': 'beta_schedule',
    'anneal_steps': 'beta_schedule',
    'rate_anneal_steps': 'rate_schedule',
}


def validate(config: ml_collections.ConfigDict,
             data_entropy: Optional[float] = None) -> None:
  """Checks `config.objective`, naming the bad key and value.

  Besides each key's range, a key set away from its default where it has no
  effect (`APPLIES_TO`, `LINEAR_ONLY`) is refused: e.g. `beta` with the ELBO,
  whose beta is 1.

  Args:
    config: the whole experiment config (reads `objective.*`).
    data_entropy: H of the data in nats where it is known; a target or
      constrained rate above it is unreachable (R >= I <= H at D = 0).
  """
  kind = validation.check_choice(config, 'objective.kind', losses.KINDS)
  validation.check_number(config, 'objective.beta', minimum=0.0)
  validation.check_choice(config, 'objective.beta_schedule', losses.ANNEAL_SCHEDULES)
  validation.check_number(config, 'objective.beta_start', minimum=0.0)
  validation.check_positive_int(config, 'objective.anneal_steps')
  validation.check_choice(config, 'objective.rate_schedule', losses.ANNEAL_SCHEDULES)
  validation.check_positive_int(config, 'objective.rate_anneal_steps')
  validation.check_number(config, 'objective.multiplier_lr', minimum=0.0)
  validation.check_number(config, 'objective.constraint_decay', minimum=0.0)
  if not config.objective.constraint_decay < 1.0:
    raise validation.ConfigError(
        f'config.objective.constraint_decay='
        f'{config.objective.constraint_decay!r} must be < 1')
  validation.check_number(config, 'objective.penalty', minimum=0.0)
  validation.check_number(config, 'objective.multiplier_init',
                          strictly_positive=True)
  sigma = validation.check_number(config, 'objective.rate', minimum=0.0)
  delta = validation.check_number(config, 'objective.distortion', minimum=0.0)
  # The constraint is measured relative to its target, so the target must be
  # positive (R = 0 exactly needs lambda -> infinity anyway).
  if kind == 'rate_constraint' and not sigma > 0:
    raise validation.ConfigError(
        f'config.objective.rate={sigma!r} must be > 0 for the rate '
        'constraint (use target_rate for a rate of 0)')
  if kind == 'distortion_constraint' and not delta > 0:
    raise validation.ConfigError(
        f'config.objective.distortion={delta!r} must be > 0 for the '
        'distortion constraint (use target_distortion for 0)')
  if (kind in losses.RATE_TARGETED and data_entropy is not None
      and sigma > data_entropy):
    raise validation.ConfigError(
        f'config.objective.rate={sigma!r} is above the data entropy '
        f'H={data_entropy:.6f} nats; a rate target must lie in [0, H]')
  _check_keys_act(config.objective)


def _check_keys_act(section: ml_collections.ConfigDict) -> None:
  """Refuses a key set away from its default where it has no effect: under a
  kind outside its `APPLIES_TO`, or under the constant schedule where it
  acts only under the linear one (`LINEAR_ONLY`)."""
  defaults = default_config()
  kind = section.kind
  for key, kinds in APPLIES_TO.items():
    value, default = section[key], defaults[key]
    if value == default:
      continue
    keep = f'or leave objective.{key} at its default {default!r}'
    if kind not in kinds:
      note = ' (beta is 1)' if key == 'beta' and kind == 'elbo' else ''
      use = (f'objective.kind={kinds[0]!r}' if len(kinds) == 1
             else f'an objective.kind in {kinds}')
      raise validation.ConfigError(
          f'config.objective.{key}={value!r} has no effect with '
          f'objective.kind={kind!r}{note}; use {use}, {keep}')
    schedule = LINEAR_ONLY.get(key)
    if schedule is not None and section[schedule] != 'linear':
      raise validation.ConfigError(
          f'config.objective.{key}={value!r} has no effect with '
          f'objective.{schedule}={section[schedule]!r}; use '
          f"objective.{schedule}='linear', {keep}")


def create_objective(config: ml_collections.ConfigDict) -> losses.Objective:
  """The static part of `config.objective` (validated first)."""
  validate(config)
  c = config.objective
  return losses.Objective(kind=c.kind, beta_schedule=c.beta_schedule,
                   rate_schedule=c.rate_schedule)


def create_hyperparameters(config: ml_collections.ConfigDict
                           ) -> losses.Hyperparameters:
  """The numbers of `config.objective` as float32 arrays (validated first)."""
  validate(config)
  return losses.hyperparameters(**{k: float(config.objective[k])
                            for k in losses.Hyperparameters._fields})


def create_state(config: ml_collections.ConfigDict) -> losses.ObjectiveState:
  """The objective state at step 0 for `config.objective`."""
  return losses.init_state(create_hyperparameters(config))


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `objective` section, at the ELBO."""
  return ml_collections.ConfigDict({
      'kind': 'elbo',
      'beta_schedule': 'constant',
      'rate_schedule': 'constant',
      **losses.DEFAULTS,
  })
