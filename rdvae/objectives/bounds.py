"""Per-example estimators of log p(x) and unit conversions.

The ELBO of one example (Eq. 6 at beta = 1) is

  ELBO(x) = -(D(x) + R(x)) = E_{e(z|x)}[log d(x|z) + log m(z) - log e(z|x)],

and the importance-weighted bound of Burda et al. (2015) tightens it with K
samples z_k ~ e(z|x) and weights w_k = d(x|z_k) m(z_k) / e(z_k|x):

  IWAE_K(x) = log (1/K) sum_k w_k  <=  log p(x),

with IWAE_1 = ELBO in expectation and IWAE_K increasing to log p(x) as K grows.
All quantities are per example, in nats, unless the name says `bits` or `bpd`.

The generative bounds of Appendix C are Monte Carlo means over pairs drawn
from the generative model, z ~ m(z), x ~ d(x|z) (not over the data):

  E = E_{m(z) d(x|z)}[log e(z|x) - log m(z)]  <=  I_d(X; Z)     (Eq. 9)
  G = E_{m(z) d(x|z)}[log d(x|z) - log q(x)]  >=  I_d(X; Z)     (Eq. 10)

so E <= I_d <= G (Eq. 11); `generative_lower_terms` and
`generative_upper_terms` are the integrands, one per sampled pair.

Active units (Burda et al., 2016): A_u = Cov_x(E_{e(z|x)}[z_u]), the variance
over the data of the encoder's mean of dimension u; the unit is active when
A_u > 0.01. `merge_moments` combines per-batch (count, mean, M2) exactly, so
the variance over a split is computed in one pass over its batches.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. (2016)


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


def generative_lower_terms(log_e: jax.Array, log_m: jax.Array) -> jax.Array:
  """The integrand of E (Eq. 9): log e(z|x) - log m(z) per generated pair.

  For pairs z ~ m(z), x ~ d(x|z) the mean is an unbiased estimate of
  E = E_{m d}[log e(z|x) / m(z)] <= I_d(X; Z): the encoder plays the
  variational posterior of the generative joint m(z) d(x|z), and
  I_d - E = E_{g(x)}[KL(p_d(z|x) || e(z|x))] >= 0.
  """
  return log_e - log_m


def generative_upper_terms(log_d: jax.Array, log_q: jax.Array) -> jax.Array:
  """The integrand of G (Eq. 10): log d(x|z) - log q(x) per generated pair.

  For pairs z ~ m(z), x ~ d(x|z) and a normalised density q(x), the mean is
  an unbiased estimate of G = E_{m d}[log d(x|z) / q(x)] >= I_d(X; Z), with
  G - I_d = KL(g || q), g(x) = E_m[d(x|z)] the model's marginal over x.

  The image models use for log q(x) the model's own estimate of log g(x),
  the IWAE bound with K samples (`iwae`, proposals e(z|x)). That estimate is
  not the log of a normalised density: it is biased low, E[IWAE_K(x)] <=
  log g(x), so the estimated G is an upper bound on I_d only up to the
  estimator's bias. Its expectation is E[log d] - E[IWAE_K] >= E[log d] -
  E[log g] = I_d (the bias errs on the safe side) and falls to I_d as K grows
  (IWAE_K -> log g), while any finite number of pairs adds Monte Carlo noise
  of either sign.
  """
  return log_d - log_q


def gaussian_kl_per_dim(mean: jax.Array, scale: jax.Array,
                        marginal_mean: jax.Array = 0.0,
                        marginal_scale: jax.Array = 1.0) -> jax.Array:
  """KL(N(mu, s^2) || N(nu, t^2)) per dimension, in nats.

  KL_j = log(t_j / s_j) + (s_j^2 + (mu_j - nu_j)^2) / (2 t_j^2) - 1/2; for a
  diagonal Gaussian encoder and marginal the rate KL(e(z|x) || m(z)) is the
  sum over j, so this is the rate carried by each latent dimension.
  """
  ratio = (scale / marginal_scale) ** 2
  return 0.5 * (ratio + ((mean - marginal_mean) / marginal_scale) ** 2
                - 1.0 - jnp.log(ratio))


def merge_moments(a: tuple[float, np.ndarray, np.ndarray],
                  b: tuple[float, np.ndarray, np.ndarray]
                  ) -> tuple[float, np.ndarray, np.ndarray]:
  """Combines (count, mean, M2) of two disjoint sets of vectors, exactly.

  M2 is the sum of squared deviations from the set's mean, so the variance
  of a set is M2 / count. For sets of sizes n_a, n_b with means m_a, m_b
  (Chan et al., 1979):

    n = n_a + n_b,  m = m_a + (m_b - m_a) n_b / n,
    M2 = M2_a + M2_b + (m_b - m_a)^2 n_a n_b / n,

  in float64 on the host. An empty set (count 0) is the identity.
  """
  n_a, mean_a, m2_a = a
  n_b, mean_b, m2_b = b
  if n_b == 0:
    return a
  if n_a == 0:
    return (float(n_b), np.asarray(mean_b, np.float64),
            np.asarray(m2_b, np.float64))
  n = float(n_a) + float(n_b)
  delta = np.asarray(mean_b, np.float64) - np.asarray(mean_a, np.float64)
  mean = mean_a + delta * (n_b / n)
  m2 = (np.asarray(m2_a, np.float64) + np.asarray(m2_b, np.float64)
        + delta ** 2 * (n_a * n_b / n))
  return n, mean, m2


def active_units(variances: np.ndarray,
                 threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
  """The number of latent dimensions u with A_u = Cov_x(E[z_u|x]) > threshold.

  Args:
    variances: [Z] the variance over the data of the encoder's mean of each
      dimension (M2 / count of `merge_moments`).
    threshold: 0.01 (Burda et al., 2016).
  """
  return int(np.sum(np.asarray(variances) > threshold))
