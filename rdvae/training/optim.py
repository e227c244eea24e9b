"""The optimizer of Appendix F.4: Adam on block-normalized gradients, with a
learning rate held constant and then decayed linearly to zero (or along a
cosine).

Normalized gradients (Yu et al., 2017, "Block-normalized gradient method"):
before Adam sees them, the gradient of every parameter tensor (every leaf of
the params pytree: each kernel and each bias separately) is divided by its own
L2 norm,

  g_b  <-  g_b / (||g_b||_2 + eps)        for every block b,

so each block's update direction is kept and its scale is set by the learning
rate and Adam's second-moment estimate alone. The normalization happens after
the gradient has been averaged over the data-parallel devices, so it sees the
gradient of the global batch.

The learning rate schedule (F.4: 3e-4 for the first 100 of 200 epochs, then
linearly towards 0 at the 200th):

  lr(t) = lr0                                   t <  h T
  lr(t) = lr0 (1 - (1 - f) (t - hT) / (T - hT))  t >= h T

with T the number of training steps, h = `optim.hold_fraction` (0.5) and f =
`optim.final_fraction` (0: the rate reaches 0 at step T). With
`optim.schedule = 'cosine'` the decay after the hold follows a cosine
(Loshchilov & Hutter, 2017) instead of a line,

  lr(t) = lr0 ((1 - f) (1 + cos(pi min(t - hT, T - hT) / (T - hT))) / 2 + f)

which the toy uses (h = 0) so that a target rate settles on its kink at
R = sigma instead of hopping across it. A constant rate is h = 1.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from rdvae import validation


class NormalizeGradientsState(NamedTuple):
  """Stateless; a named empty tuple so the transformation is a pytree node."""


def normalize_gradients(eps: float = 1e-8) -> optax.GradientTransformation:
  """Divides each leaf of the update pytree by its own L2 norm.

  Args:
    eps: added to the norm so an all-zero gradient block stays zero.

  Returns:
    An optax transformation mapping g_b to g_b / (||g_b||_2 + eps) per leaf.
  """

  def init_fn(params):
    del params
    return NormalizeGradientsState()

  def update_fn(updates, state, params=None):
    del params
    updates = jax.tree.map(
        lambda g: g / (jnp.sqrt(jnp.sum(jnp.square(g))) + eps), updates)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


SCHEDULES = ('linear', 'cosine')
# The config keys whose values the step reads as arrays (`numbers`): runs
# that differ only in them share one program, and train as one population.
NUMBER_KEYS = ('learning_rate', 'hold_fraction', 'final_fraction', 'eps',
               'normalize_eps')


def learning_rate_at(step, learning_rate, hold_steps, decay_steps,
                     final_fraction, schedule: str = 'linear'):
  """lr(t) of the schedule (module doc), from numbers or arrays.

  Args:
    step: t, 0-based (the update at step t uses lr(t)).
    learning_rate: lr0.
    hold_steps: h T, the steps held at lr0.
    decay_steps: T - h T (at least 1), the steps of the decay.
    final_fraction: f, the rate at step T as a fraction of lr0.
    schedule: the decay's shape, 'linear' or 'cosine' (SCHEDULES).
  """
  t = jnp.asarray(step, jnp.float32)
  if schedule == 'cosine':
    elapsed = jnp.minimum(jnp.maximum(t - hold_steps, 0.0), decay_steps)
    # Times the reciprocal rather than divided: the form XLA gives a division
    # by a constant, so a schedule whose numbers are arrays computes bitwise
    # what one compiled with them as constants does.
    cosine = 0.5 * (1 + jnp.cos(elapsed * (jnp.pi / decay_steps)))
    return learning_rate * ((1 - final_fraction) * cosine + final_fraction)
  fraction = jnp.clip((t - hold_steps) / decay_steps, 0.0, 1.0)
  return learning_rate * (1.0 - (1.0 - final_fraction) * fraction)


def schedule_steps(num_steps: int, hold_fraction: float) -> tuple[int, int]:
  """(hold_steps, decay_steps) of a run of `num_steps` steps."""
  hold = int(round(hold_fraction * num_steps))
  return hold, max(num_steps - hold, 1)


def make_learning_rate_schedule(learning_rate: float, num_steps: int,
                                hold_fraction: float = 0.5,
                                final_fraction: float = 0.0,
                                schedule: str = 'linear') -> optax.Schedule:
  """lr0 for the first `hold_fraction` of `num_steps`, then the decay.

  Args:
    learning_rate: lr0, the initial rate.
    num_steps: T, the total number of training steps.
    hold_fraction: h in [0, 1], the fraction of training at lr0.
    final_fraction: f in [0, 1], the rate at step T as a fraction of lr0.
    schedule: 'linear' or 'cosine'.

  Returns:
    A schedule `step -> lr` (step 0-based; the update at step t uses lr(t)).
  """
  hold, decay = schedule_steps(num_steps, hold_fraction)
  return functools.partial(_compiled_learning_rate, learning_rate=learning_rate,
                           hold_steps=hold, decay_steps=decay,
                           final_fraction=final_fraction, schedule=schedule)


# The host reads the schedule at every log step of every run: compiled once
# per schedule shape rather than run op by op.
_compiled_learning_rate = jax.jit(learning_rate_at, static_argnames='schedule')


def _adam_on_normalized_gradients(
    learning_rate, hold_steps, decay_steps, final_fraction, eps,
    normalize_eps, normalize: bool, b1: float,
    b2: float, shape: str) -> optax.GradientTransformation:
  """The chain of `create_optimizer`, its numbers given as they come."""
  schedule = functools.partial(learning_rate_at, learning_rate=learning_rate,
                               hold_steps=hold_steps, decay_steps=decay_steps,
                               final_fraction=final_fraction, schedule=shape)
  parts = [normalize_gradients(normalize_eps)] if normalize else []
  parts += [optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
            optax.scale_by_learning_rate(schedule)]
  return optax.chain(*parts)


def numbers(config: ml_collections.ConfigDict,
            num_steps: int) -> dict[str, float]:
  """The optimizer's numbers for a run of `num_steps` steps, by name."""
  c = config.optim
  hold, decay = schedule_steps(num_steps, c.hold_fraction)
  return {'learning_rate': float(c.learning_rate), 'hold_steps': float(hold),
          'decay_steps': float(decay),
          'final_fraction': float(c.final_fraction), 'eps': float(c.eps),
          'normalize_eps': float(c.normalize_eps)}


class Settings(NamedTuple):
  """What shapes the optimizer's program (hashable): runs with equal settings
  share one compiled step, whatever their numbers (`numbers`)."""

  normalize_gradients: bool
  b1: float
  b2: float
  schedule: str


def settings(config: ml_collections.ConfigDict) -> Settings:
  """The `Settings` of `config.optim`."""
  c = config.optim
  return Settings(bool(c.normalize_gradients), float(c.b1), float(c.b2),
                  str(c.schedule))


def create_optimizer(config: ml_collections.ConfigDict,
                     num_steps: int) -> optax.GradientTransformation:
  """Adam on block-normalized gradients under the F.4 schedule.

  Reads `config.optim`: learning_rate, schedule, hold_fraction,
  final_fraction, normalize_gradients (bool), normalize_eps, b1, b2, eps.

  Numbers as arrays (as the objective's, rdvae/objectives/losses.py): the
  learning rate, the schedule's step counts (from `num_steps`), Adam's eps
  and the normalization's eps (`numbers`) are float32 scalars of the
  optimizer state (`optax.inject_hyperparams`); `init` writes them and
  `update` reads them from the state it is given, never from this object.
  Runs that differ only in them (a budget, a learning rate) share one
  compiled training step: an optimizer built for one run updates another
  run's state by that run's numbers, and `set_numbers` puts a run's numbers
  into a state initialised by another. `Settings` (normalize_gradients, the
  schedule's shape, Adam's b1 and b2) shape the program: optax takes 1 - b1
  and 1 - b2 in double precision from Python numbers, while float32 arrays
  would put 1 - 0.999 off by 1.3e-5. Equal settings and numbers return the
  same object, so jitted functions that take it as a static argument compile
  once.

  Args:
    config: the experiment config.
    num_steps: the total number of training steps T.
  """
  validate(config)
  return create_optimizer_of(settings(config),
                             tuple(numbers(config, num_steps).items()))


@functools.lru_cache(maxsize=64)
def create_optimizer_of(
    shape: Settings,
    items: tuple[tuple[str, float], ...] = ()) -> optax.GradientTransformation:
  """The optimizer of `shape` with the numbers `items` (default: the
  defaults' numbers for a run of one step, which `set_numbers` replaces)."""
  items = dict(items or numbers(ml_collections.ConfigDict(
      {'optim': default_config()}), 1))
  factory = functools.partial(_adam_on_normalized_gradients,
                              normalize=shape.normalize_gradients, b1=shape.b1,
                              b2=shape.b2, shape=shape.schedule)
  return optax.inject_hyperparams(factory, static_args=('b1', 'b2', 'shape'),
                                  hyperparam_dtype=jnp.float32)(**items)


def set_numbers(opt_state: optax.OptState, config: ml_collections.ConfigDict,
                num_steps: int) -> optax.OptState:
  """`opt_state` of `create_optimizer` with the numbers of `config` and T."""
  hyperparams = dict(opt_state.hyperparams)
  for name, value in numbers(config, num_steps).items():
    hyperparams[name] = jnp.asarray(value, jnp.float32)
  return opt_state._replace(hyperparams=hyperparams)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks `config.optim`, naming the bad key and value.

  As the objective's keys (rdvae/objectives/losses.py), a key set away from
  its default where it has no effect is refused: `normalize_eps` without
  `normalize_gradients`.
  """
  validation.check_number(config, 'optim.learning_rate', strictly_positive=True)
  validation.check_choice(config, 'optim.schedule', SCHEDULES)
  validation.check_number(config, 'optim.hold_fraction', minimum=0.0,
                          maximum=1.0)
  validation.check_number(config, 'optim.final_fraction', minimum=0.0,
                          maximum=1.0)
  flag = validation.get(config, 'optim.normalize_gradients')
  if not isinstance(flag, bool):
    raise validation.ConfigError(
        f'config.optim.normalize_gradients={flag!r} must be True or False')
  normalize_eps = validation.check_number(config, 'optim.normalize_eps',
                                          minimum=0.0)
  default = default_config().normalize_eps
  if not flag and normalize_eps != default:
    raise validation.ConfigError(
        f'config.optim.normalize_eps={normalize_eps!r} has no effect with '
        'optim.normalize_gradients=False; use optim.normalize_gradients=True, '
        f'or leave optim.normalize_eps at its default {default!r}')
  validation.check_number(config, 'optim.b1', minimum=0.0, maximum=1.0)
  validation.check_number(config, 'optim.b2', minimum=0.0, maximum=1.0)
  validation.check_number(config, 'optim.eps', minimum=0.0)


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `optim` section, at the paper's values (F.4)."""
  return ml_collections.ConfigDict({
      'learning_rate': 3e-4,
      'schedule': 'linear',
      'hold_fraction': 0.5,
      'final_fraction': 0.0,
      'normalize_gradients': True,
      'normalize_eps': 1e-8,
      'b1': 0.9,
      'b2': 0.999,
      'eps': 1e-8,
  })
