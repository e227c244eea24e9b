"""The optimizer of Appendix F.4: Adam on block-normalized gradients, with a
learning rate held constant and then decayed linearly to zero.

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
`optim.final_fraction` (0: the rate reaches 0 at step T).
"""

from __future__ import annotations

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


def make_learning_rate_schedule(learning_rate: float, num_steps: int,
                                hold_fraction: float = 0.5,
                                final_fraction: float = 0.0) -> optax.Schedule:
  """lr0 for the first `hold_fraction` of `num_steps`, then linear decay.

  Args:
    learning_rate: lr0, the initial rate.
    num_steps: T, the total number of training steps.
    hold_fraction: h in [0, 1], the fraction of training at lr0.
    final_fraction: f in [0, 1], the rate at step T as a fraction of lr0.

  Returns:
    A schedule `step -> lr` (step 0-based; the update at step t uses lr(t)).
  """
  hold = int(round(hold_fraction * num_steps))
  decay = max(num_steps - hold, 1)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    fraction = jnp.clip((t - hold) / decay, 0.0, 1.0)
    return learning_rate * (1.0 - (1.0 - final_fraction) * fraction)

  return schedule


def create_optimizer(config: ml_collections.ConfigDict,
                     num_steps: int) -> optax.GradientTransformation:
  """Adam on block-normalized gradients under the F.4 schedule.

  Reads `config.optim`: learning_rate, hold_fraction, final_fraction,
  normalize_gradients (bool), normalize_eps, b1, b2, eps.

  Args:
    config: the experiment config.
    num_steps: the total number of training steps T.
  """
  validate(config)
  c = config.optim
  schedule = make_learning_rate_schedule(c.learning_rate, num_steps,
                                         c.hold_fraction, c.final_fraction)
  parts = []
  if c.normalize_gradients:
    parts.append(normalize_gradients(c.normalize_eps))
  parts += [optax.scale_by_adam(b1=c.b1, b2=c.b2, eps=c.eps),
            optax.scale_by_learning_rate(schedule)]
  return optax.chain(*parts)


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks `config.optim`, naming the bad key and value."""
  validation.check_number(config, 'optim.learning_rate', strictly_positive=True)
  validation.check_number(config, 'optim.hold_fraction', minimum=0.0,
                          maximum=1.0)
  validation.check_number(config, 'optim.final_fraction', minimum=0.0,
                          maximum=1.0)
  flag = validation.get(config, 'optim.normalize_gradients')
  if not isinstance(flag, bool):
    raise validation.ConfigError(
        f'config.optim.normalize_gradients={flag!r} must be True or False')
  validation.check_number(config, 'optim.normalize_eps', minimum=0.0)
  validation.check_number(config, 'optim.b1', minimum=0.0, maximum=1.0)
  validation.check_number(config, 'optim.b2', minimum=0.0, maximum=1.0)
  validation.check_number(config, 'optim.eps', minimum=0.0)


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `optim` section, at the paper's values (F.4)."""
  return ml_collections.ConfigDict({
      'learning_rate': 3e-4,
      'hold_fraction': 0.5,
      'final_fraction': 0.0,
      'normalize_gradients': True,
      'normalize_eps': 1e-8,
      'b1': 0.9,
      'b2': 0.999,
      'eps': 1e-8,
  })
