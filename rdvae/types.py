"""Shared types: array aliases, the per-example rate/distortion terms and
the train state."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

import flax
import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Batch = Mapping[str, Array]
Metrics = dict[str, Array]


class RDTerms(NamedTuple):
  """Per-example rate and distortion of one batch, in nats.

  The model returns these; no batch reduction happens inside a model.

  Attributes:
    rate: [B] `log e(z|x) - log m(z)` at the sampled z (the integrand of the
      rate R, Eq. 5). Its expectation over z ~ e(z|x) is KL(e(z|x) || m(z)).
    distortion: [B] `-log d(x|z)` at the sampled z (the integrand of the
      distortion D, Eq. 4).
    analytic_rate: [B] the closed-form KL(e(z|x) || m(z)) where one exists
      (diagonal Gaussian encoder and marginal), otherwise None. Reported beside
      the sampled rate; never used in place of it unless a config asks.
  """

  rate: Array
  distortion: Array
  analytic_rate: Optional[Array] = None


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue bit for bit.

  Attributes:
    step: int32 scalar, the number of updates applied so far.
    params: the model's parameter pytree.
    opt_state: the optax state of `params`.
    objective_state: the objective's numbers (`objectives.Hyperparameters`:
      beta, sigma, ...) and its Lagrange multiplier; members of a vmapped
      population can differ in any of them.
    rng: uint32 [2] raw key data (`jax.random.key_data`), so checkpoints and
      device transfers see a plain array; wrapped by `jax.random.wrap_key_data`
      where keys are drawn.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  objective_state: Any  # objectives.ObjectiveState
  rng: jax.Array
