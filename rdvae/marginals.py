"""Marginals m(z): linen modules returning the variational marginal over z.

Contract: `marginal(encoder)` returns a distrax distribution with event shape
(Z,) and batch shape (). The encoder is passed because the VampPrior
m(z) = sum_i w_i e(z|phi_i) (F.3) evaluates it at learned pseudo-inputs; other
marginals ignore it.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax.numpy as jnp


class StandardNormal(nn.Module):
  """The simple marginal `(-)` of F.3: m(z) = N(z; 0, I), fixed, no parameters.

  log m(z) = -Z/2 log(2 pi) - |z|^2 / 2.

  Attributes:
    latent_dim: Z (64 in the paper).
  """

  latent_dim: int = 64

  def __call__(self, encoder: Optional[nn.Module] = None
               ) -> distrax.MultivariateNormalDiag:
    del encoder  # fixed marginal
    return distrax.MultivariateNormalDiag(
        loc=jnp.zeros((self.latent_dim,), jnp.float32),
        scale_diag=jnp.ones((self.latent_dim,), jnp.float32))
