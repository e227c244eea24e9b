"""Rate, distortion and their information bounds by exact enumeration.

Every quantity of the paper's framework (section 2, Appendices C and D) for a
discrete data space of X values and a discrete latent space of K values,
computed exactly from probability tables, with no sampling:

  p_data   p*(x)     [X]      the data distribution
  encoder  e(z|x)    [X, K]   rows sum to one
  marginal m(z)      [K]
  decoder  d(x|z)    [K, X]   rows sum to one

All functions are pure `jax.numpy` and traceable, so the toy trains through
them; they keep the dtype of their inputs, so under `jax.enable_x64(True)`
float64 tables give float64 results. Logarithms are natural (nats), and
`0 log 0 = 0`: an entry that has no mass contributes nothing, and its
gradient is zero rather than NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rdvae import types


def _plogq(p: jax.Array, q: jax.Array) -> jax.Array:
  """Elementwise `p log q` with `0 log q = 0` (also for q = 0), grad-safe."""
  positive = p > 0
  return jnp.where(positive, p * jnp.log(jnp.where(positive, q, 1.0)), 0.0)


def entropy(p: jax.Array, axis: int = -1) -> jax.Array:
  """Shannon entropy `H = -sum p log p` (Eq. 3 for p = p*), in nats."""
  return -jnp.sum(_plogq(p, p), axis=axis)


def kl_divergence(p: jax.Array, q: jax.Array, axis: int = -1) -> jax.Array:
  """`KL(p || q) = sum p log(p / q)` along `axis`; +inf where q misses p."""
  return jnp.sum(_plogq(p, p) - _plogq(p, q), axis=axis)


def aggregate_posterior(p_data: jax.Array, encoder: jax.Array) -> jax.Array:
  """The encoder's marginal `p_e(z) = sum_x p*(x) e(z|x)` [K] (section 2).

  It is the rate-optimal marginal for a fixed encoder (Appendix D.3).
  """
  return p_data @ encoder


def rate_per_example(encoder: jax.Array, marginal: jax.Array) -> jax.Array:
  """`KL(e(z|x) || m(z))` for each x [X]: the integrand of R (Eq. 5).

  This is the expectation over z ~ e(z|x) of the sampled rate
  `log e(z|x) - log m(z)`, exact because z is enumerated.
  """
  return kl_divergence(encoder, marginal[None, :], axis=1)


def distortion_per_example(encoder: jax.Array, decoder: jax.Array) -> jax.Array:
  """`-sum_z e(z|x) log d(x|z)` for each x [X]: the integrand of D (Eq. 4)."""
  return -jnp.sum(_plogq(encoder, decoder.T), axis=1)


def terms(encoder: jax.Array, decoder: jax.Array,
          marginal: jax.Array) -> types.RDTerms:
  """Per-example rate and distortion of every data value x, exactly.

  Returns:
    RDTerms with rate [X] and distortion [X] in nats; `analytic_rate` is the
    same exact KL (there is no sampling to distinguish it from). Weighting by
    p*(x) and summing gives R and D.
  """
  rate_x = rate_per_example(encoder, marginal)
  return types.RDTerms(rate=rate_x,
                       distortion=distortion_per_example(encoder, decoder),
                       analytic_rate=rate_x)


def rate(p_data: jax.Array, encoder: jax.Array,
         marginal: jax.Array) -> jax.Array:
  """The rate `R = sum_x p*(x) KL(e(z|x) || m(z))` (Eq. 5), in nats."""
  return _weighted_sum(p_data, rate_per_example(encoder, marginal))


def distortion(p_data: jax.Array, encoder: jax.Array,
               decoder: jax.Array) -> jax.Array:
  """The distortion `D = -sum_x p*(x) sum_z e(z|x) log d(x|z)` (Eq. 4)."""
  return _weighted_sum(p_data, distortion_per_example(encoder, decoder))


def mutual_information(p_data: jax.Array, encoder: jax.Array) -> jax.Array:
  """The representational mutual information `I_e(X; Z)` (Eq. 1).

  `I_e = sum_x p*(x) KL(e(z|x) || p_e(z))`; it satisfies `H - D <= I_e <= R`
  (Eq. 2) for every decoder and marginal.
  """
  return rate(p_data, encoder, aggregate_posterior(p_data, encoder))


def joint_mutual_information(joint: jax.Array) -> jax.Array:
  """The mutual information of a joint table p(a, b) [A, B], in nats."""
  p_a = jnp.sum(joint, axis=1, keepdims=True)
  p_b = jnp.sum(joint, axis=0, keepdims=True)
  return jnp.sum(_plogq(joint, joint) - _plogq(joint, p_a * p_b))


def generative_distribution(marginal: jax.Array,
                            decoder: jax.Array) -> jax.Array:
  """The model's generative distribution `g(x) = sum_z m(z) d(x|z)` [X]."""
  return marginal @ decoder


def reconstruction_distribution(p_data: jax.Array, encoder: jax.Array,
                                decoder: jax.Array) -> jax.Array:
  """`d(x) = sum_x' sum_z p*(x') e(z|x') d(x|z)` [X] (Fig. 2 caption)."""
  return aggregate_posterior(p_data, encoder) @ decoder


def generative_mutual_information(marginal: jax.Array,
                                  decoder: jax.Array) -> jax.Array:
  """`I_d(X; Z)` of the generative joint `p_d(x, z) = m(z) d(x|z)` (Eqs. 7-8)."""
  return _weighted_sum(marginal, kl_divergence(
      decoder, generative_distribution(marginal, decoder)[None, :], axis=1))


def generative_lower_bound(marginal: jax.Array, decoder: jax.Array,
                           encoder: jax.Array) -> jax.Array:
  """`E = sum_z m(z) sum_x d(x|z) log(e(z|x) / m(z))` <= I_d (Eq. 9, D.5).

  The encoder plays the variational posterior q(z|x) of the generative path.
  """
  inner = (jnp.sum(_plogq(decoder, encoder.T), axis=1)
           - jnp.sum(decoder, axis=1) * _log0(marginal))  # [K]
  return _weighted_sum(marginal, inner)


def generative_upper_bound(marginal: jax.Array, decoder: jax.Array,
                           q: jax.Array) -> jax.Array:
  """`G = sum_z m(z) sum_x d(x|z) log(d(x|z) / q(x))` >= I_d (Eq. 10, D.6).

  `G - I_d = KL(g || q)`, so G is tight exactly when q(x) = g(x).
  """
  return _weighted_sum(marginal, kl_divergence(decoder, q[None, :], axis=1))


def _log0(p: jax.Array) -> jax.Array:
  """`log p` with 0 where p = 0 (those entries are weighted by p itself)."""
  positive = p > 0
  return jnp.where(positive, jnp.log(jnp.where(positive, p, 1.0)), 0.0)


def _weighted_sum(weights: jax.Array, values: jax.Array) -> jax.Array:
  """`sum_i w_i v_i` where entries with w_i = 0 contribute 0 even if v_i is
  infinite (a latent state the marginal never draws)."""
  positive = weights > 0
  return jnp.sum(jnp.where(positive, weights * jnp.where(positive, values, 0.0),
                           0.0))
