"""Shared types: array aliases and the per-example rate/distortion terms."""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

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
