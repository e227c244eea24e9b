"""Per-example estimators of log p(x) and unit conversions.

The ELBO of one example (Eq. 6 at beta = 1) is

  ELBO(x) = -(D(x) + R(x)) = E_{e(z|x)}[log d(x|z) + log m(z) - log e(z|x)],

and the importance-weighted bound of Burda et al. (2015) tightens it with K
samples z_k ~ e(z|x) and weights w_k = d(x|z_k) m(z_k) / e(z_k|x):

  IWAE_K(x) = log (1/K) sum_k w_k  <=  log p(x),

with IWAE_1 = ELBO in expectation and IWAE_K increasing to log p(x) as K grows.
All quantities are per example, in nats, unless the name says `bits` or `bpd`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def iwae(log_weights: jax.Array) -> jax.Array:
  """The IWAE bound log (1/K) sum_k w_k from log-weights.

  Args:
    log_weights: [K, B] log w_k = log d(x|z_k) + log m(z_k) - log e(z_k|x),
      nats, for K samples of each of B examples.

  Returns:
    [B] log-mean-exp over the sample axis, computed stably
    (logsumexp_k log w_k - log K), in nats.
  """
  num_samples = log_weights.shape[0]
  return (jax.scipy.special.logsumexp(log_weights, axis=0)
          - jnp.log(jnp.asarray(num_samples, log_weights.dtype)))


def bits_per_dim(nats: jax.Array, num_dims: int) -> jax.Array:
  """Nats per example to bits per dimension: nats / (num_dims ln 2)."""
  return nats / (num_dims * math.log(2.0))


def nats_to_bits(nats: jax.Array) -> jax.Array:
  """Nats to bits: nats / ln 2."""
  return nats / math.log(2.0)
