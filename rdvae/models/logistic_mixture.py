"""The discretized logistic mixture of PixelCNN++ over 8-bit images.

Owns the likelihood of PixelCNN++ (Salimans et al., 2017) as a distrax
distribution, its parameter layout and its exact sampler; no network.

Bins. A subpixel value v in {0, ..., 255} is read as x = 2 v / 255 - 1 in
[-1, 1]; bin v is [x - h, x + h] with h = 1/255 (width 2/255), except that
the edge bins take the tails: bin 0 is (-inf, x_0 + h], bin 255 is
[x_255 - h, inf). For a logistic with mean mu and log-scale s, with
a = (x + h - mu) e^-s and b = (x - h - mu) e^-s,

  P(v | mu, s) = sigma(a)            v = 0,
               = 1 - sigma(b)        v = 255,
               = sigma(a) - sigma(b) otherwise,

so the 256 probabilities sum to 1 exactly. s is clamped below at -7, as in
PixelCNN++ (a bin is then about 8.6 scales wide).

Mixture. K components per pixel, with weights pi = softmax(logits) shared by
the C channels. For colour the channels depend linearly on the earlier ones:
in component k the mean of channel c is

  mu'_{c,k} = mu_{c,k} + sum_{c' < c} alpha_{c,c',k} x_{c'},
  alpha = tanh(raw coefficients),

with the pairs (c, c') in the order of `coefficient_pairs` (row by row,
(1, 0), (2, 0), (2, 1) for RGB), and

  p(x) = prod_pixels sum_k pi_k prod_c P(v_c | mu'_{c,k}, s_{c,k}).

Every log probability is in nats, summed over the event (H, W, C) by
`log_prob`.

Numerics. With a - b = d = (2/255) e^-s > 0 known without cancellation,

  log(sigma(a) - sigma(b)) = log sigma(a) + log sigma(-b) + log(1 - e^-d)
                           = -softplus(-a) - softplus(b) + log1mexp(d),

a sum of three non-positive terms each computed to full relative precision,
whether both sigmoids saturate at 0, at 1, or neither. No fallback to the
density at the bin centre is needed: the formula stays finite and accurate
for |a|, |b| up to float32's range (mu = +-30 at s = -7 gives |a| ~ 3.4e4),
and log1mexp uses log d - d/2 + d^2/24 for small d, so it holds even when
e^-s underflows.
"""

from __future__ import annotations

from typing import Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np

NUM_VALUES = 256
HALF_BIN = 1.0 / 255.0  # half the bin width in x = 2 v / 255 - 1
MIN_LOG_SCALE = -7.0    # PixelCNN++'s clamp on the log-scales
_SERIES_BELOW = 1e-3    # log1mexp uses its series for d below this
_LOG_BIN_WIDTH = float(np.log(2 * HALF_BIN))


def num_coefficients(num_channels: int) -> int:
  """C (C - 1) / 2: the channel-dependence coefficients per component."""
  return num_channels * (num_channels - 1) // 2


def num_params(num_channels: int, num_components: int) -> int:
  """Network outputs per pixel: K logits, C K means, C K log-scales and
  C (C - 1) / 2 K coefficients, K (1 + 2 C + C (C - 1) / 2) in all (3 K for
  grey, 10 K for RGB, as in PixelCNN++)."""
  return num_components * (1 + 2 * num_channels
                           + num_coefficients(num_channels))


def coefficient_pairs(num_channels: int) -> tuple[np.ndarray, np.ndarray]:
  """(c, c') of each coefficient, c' < c, row by row: (1,0), (2,0), (2,1)."""
  return np.tril_indices(num_channels, -1)


def split_params(params: jax.Array, num_channels: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Splits raw network outputs into the mixture's named parameters.

  Layout of the last axis (P = `num_params(C, K)`):
  [logits (K) | means (C K) | log-scales (C K) | coefficients (C(C-1)/2 K)],
  each block channel-major (all K components of channel 0 first).

  Args:
    params: [..., P] raw outputs.
    num_channels: C.

  Returns:
    logits [..., K], means [..., C, K], log_scales [..., C, K] (unclamped) and
    coeffs [..., C (C - 1) / 2, K] (before tanh).
  """
  per_component = num_params(num_channels, 1)
  if params.shape[-1] % per_component:
    raise ValueError(f'{params.shape[-1]} outputs are not a multiple of '
                     f'{per_component} (C={num_channels})')
  k = params.shape[-1] // per_component
  num_coeffs = num_coefficients(num_channels)
  sizes = np.cumsum([k, num_channels * k, num_channels * k])
  logits, means, log_scales, coeffs = jnp.split(params, sizes, axis=-1)
  lead = params.shape[:-1]
  return (logits, means.reshape(lead + (num_channels, k)),
          log_scales.reshape(lead + (num_channels, k)),
          coeffs.reshape(lead + (num_coeffs, k)))


def to_unit_interval(value: jax.Array) -> jax.Array:
  """x = 2 v / 255 - 1: 8-bit values 0..255 to bin centres in [-1, 1]."""
  return jnp.asarray(value, jnp.float32) * (2.0 / 255.0) - 1.0


def _discretize(y: jax.Array) -> jax.Array:
  """The bin of a continuous y: round((y + 1) 255 / 2) clipped to [0, 255]."""
  return jnp.clip(jnp.round((y + 1.0) * (255.0 / 2.0)), 0.0, 255.0)


def _log1mexp(d: jax.Array, log_d: jax.Array) -> jax.Array:
  """log(1 - e^-d) for d > 0, given log d as well.

  The series log d - d/2 + d^2/24 (error below d^4/2880) serves small d,
  where e^-s may have underflowed d to 0 but log d = log(2/255) - s has not.
  Each branch sees only arguments in its own range, so the branch not taken
  has finite gradients and `where` passes no NaN.
  """
  small = d < _SERIES_BELOW
  d_small = jnp.where(small, d, 0.0)
  series = log_d - d_small / 2 + d_small * d_small / 24
  d_large = jnp.where(small, _SERIES_BELOW, d)
  return jnp.where(small, series, jnp.log(-jnp.expm1(-d_large)))


def log_discretized_logistic(value: jax.Array, mean: jax.Array,
                             log_scale: jax.Array,
                             min_log_scale: float = MIN_LOG_SCALE
                             ) -> jax.Array:
  """log P(v | mu, s) of one discretized logistic per subpixel, in nats.

  The formula of the module docstring: log sigma(a) at v = 0,
  log(1 - sigma(b)) = -softplus(b) at v = 255, and
  -softplus(-a) - softplus(b) + log(1 - e^-d) in between, with s clamped at
  `min_log_scale` (its gradient is 0 below the clamp).

  Args:
    value: 8-bit values 0..255 (integer or float), broadcasting against mean.
    mean: mu, in the units of x = 2 v / 255 - 1.
    log_scale: s, unclamped.
    min_log_scale: the clamp on s.

  Returns:
    log P, the broadcast shape of the arguments, float32 and finite.
  """
  value = jnp.asarray(value, jnp.float32)
  log_scale = jnp.maximum(log_scale, min_log_scale)
  inv_scale = jnp.exp(-log_scale)
  centred = to_unit_interval(value) - mean
  upper = (centred + HALF_BIN) * inv_scale  # a
  lower = (centred - HALF_BIN) * inv_scale  # b
  log_d = _LOG_BIN_WIDTH - log_scale
  log_cdf_upper = -jax.nn.softplus(-upper)   # log sigma(a)
  log_sf_lower = -jax.nn.softplus(lower)     # log (1 - sigma(b))
  interior = log_cdf_upper + log_sf_lower + _log1mexp(jnp.exp(log_d), log_d)
  return jnp.where(value < 0.5, log_cdf_upper,
                   jnp.where(value > 254.5, log_sf_lower, interior))


def pairwise_sum(terms: jax.Array, num_axes: int) -> jax.Array:
  """The sum over the last num_axes axes, added in pairs (a balanced tree).

  XLA's float32 reduction on CPU loses about 8e-6 relative over 1024 equal
  terms (a 32x32 image), an error that grows with the number of terms; in
  pairs it grows like its logarithm.
  """
  terms = terms.reshape(terms.shape[:terms.ndim - num_axes] + (-1,))
  while terms.shape[-1] > 1:
    if terms.shape[-1] % 2:
      terms = jnp.concatenate([terms, jnp.zeros_like(terms[..., :1])], -1)
    terms = terms[..., 0::2] + terms[..., 1::2]
  return terms[..., 0]


def _dependent_means(means: jax.Array, alphas: jax.Array,
                     x: jax.Array) -> jax.Array:
  """mu'_{c,k} = mu_{c,k} + sum_{c' < c} alpha_{c,c',k} x_{c'}: [..., C, K].

  Args:
    means: [..., C, K].
    alphas: [..., C (C - 1) / 2, K], tanh of the coefficients, in the order
      of `coefficient_pairs`.
    x: [..., C] values in [-1, 1]; x_{c'} for c' >= c is not read by mu'_c
      (the sampler passes a partly filled x).
  """
  channels = [means[..., c, :] for c in range(means.shape[-2])]
  for j, (c, earlier) in enumerate(zip(*coefficient_pairs(len(channels)))):
    channels[c] = channels[c] + alphas[..., j, :] * x[..., earlier, None]
  return jnp.stack(jnp.broadcast_arrays(*channels), axis=-2)


class DiscretizedLogisticMixture(distrax.Distribution):
  """p(v) = prod_pixels sum_k pi_k prod_c P(v_c | mu'_{c,k}, s_{c,k}).

  Over 8-bit images v [..., H, W, C] with values 0..255: event shape
  (H, W, C), batch shape the leading dimensions of the parameters. Values
  given to the log-probability methods broadcast against the parameters'
  [..., H, W] (a one-pixel distribution scores any number of pixels).
  Samples are float32 arrays of integers 0..255.
  """

  def __init__(self, logits: jax.Array, means: jax.Array,
               log_scales: jax.Array, coeffs: Optional[jax.Array] = None,
               min_log_scale: float = MIN_LOG_SCALE):
    """From named parameters (see `split_params` for the raw layout).

    Args:
      logits: [..., H, W, K] mixture logits, pi = softmax(logits).
      means: [..., H, W, C, K] mu, in units of x = 2 v / 255 - 1.
      log_scales: [..., H, W, C, K] s, clamped below at min_log_scale.
      coeffs: [..., H, W, C (C - 1) / 2, K] raw coefficients, alpha = tanh;
        None (or absent) for C = 1.
      min_log_scale: the clamp on s.
    """
    super().__init__()
    self._means = jnp.asarray(means, jnp.float32)
    self._num_channels, self._num_components = self._means.shape[-2:]
    if coeffs is None:
      coeffs = jnp.zeros(self._means.shape[:-2] + (0, self._num_components))
    self._coeffs = jnp.asarray(coeffs, jnp.float32)
    if self._coeffs.shape[-2] != num_coefficients(self._num_channels):
      raise ValueError(f'{self._coeffs.shape[-2]} coefficients for '
                       f'{self._num_channels} channels')
    self._logits = jnp.asarray(logits, jnp.float32)
    self._log_scales = jnp.maximum(jnp.asarray(log_scales, jnp.float32),
                                   min_log_scale)
    self._min_log_scale = min_log_scale

  @classmethod
  def from_params(cls, params: jax.Array, num_channels: int,
                  min_log_scale: float = MIN_LOG_SCALE
                  ) -> DiscretizedLogisticMixture:
    """From raw network outputs params [..., H, W, P], P = num_params(C, K)."""
    return cls(*split_params(params, num_channels), min_log_scale)

  @property
  def event_shape(self) -> tuple[int, ...]:
    return self._logits.shape[-3:-1] + (self._num_channels,)

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self._logits.shape[:-3]

  @property
  def num_components(self) -> int:
    return self._num_components

  def component_log_probs(self, value: jax.Array) -> jax.Array:
    """log P(v_c | v_<c, component k) for every subpixel: [..., H, W, C, K].

    Args:
      value: [..., H, W, C] 8-bit values 0..255.
    """
    value = jnp.asarray(value)
    means = _dependent_means(self._means, jnp.tanh(self._coeffs),
                             to_unit_interval(value))
    return log_discretized_logistic(value[..., None], means, self._log_scales,
                                    self._min_log_scale)

  def _log_joint_prefixes(self, value: jax.Array) -> jax.Array:
    """log p(v_0, ..., v_c) of each pixel for c = 0..C-1: [..., H, W, C]."""
    log_weights = jax.nn.log_softmax(self._logits, axis=-1)[..., None, :]
    prefix = jnp.cumsum(self.component_log_probs(value), axis=-2)
    return jax.scipy.special.logsumexp(log_weights + prefix, axis=-1)

  def log_prob_per_pixel(self, value: jax.Array) -> jax.Array:
    """log p(v_pixel) = log sum_k pi_k prod_c P_k(v_c | v_<c): [..., H, W].

    The per-position term of an autoregressive (PixelCNN++) decoder, whose
    parameters at each pixel are computed from the earlier pixels.

    Args:
      value: [..., H, W, C] 8-bit values 0..255.
    """
    log_weights = jax.nn.log_softmax(self._logits, axis=-1)
    log_joint = jnp.sum(self.component_log_probs(value), axis=-2)
    return jax.scipy.special.logsumexp(log_weights + log_joint, axis=-1)

  def log_prob_per_subpixel(self, value: jax.Array) -> jax.Array:
    """log p(v_c | v_<c) within each pixel, marginal over the components.

    log p(v_<=c) - log p(v_<c), with log p(v_<=c) =
    log sum_k pi_k prod_{c' <= c} P_k(v_c'); the C terms sum to
    `log_prob_per_pixel` and each is a normalised distribution over the 256
    values of v_c. Its absolute error grows with |log p(v_<c)| (a difference
    of float32 logs).

    Args:
      value: [..., H, W, C] 8-bit values 0..255.

    Returns:
      [..., H, W, C] conditional log probabilities, nats.
    """
    prefixes = self._log_joint_prefixes(value)
    return prefixes - jnp.concatenate(
        [jnp.zeros_like(prefixes[..., :1]), prefixes[..., :-1]], axis=-1)

  def log_prob(self, value: jax.Array) -> jax.Array:
    """log p(v) summed over the event (H, W, C), nats: [...].

    The pixels' terms are added by `pairwise_sum`.

    Args:
      value: [..., H, W, C] 8-bit values 0..255, integer or float.
    """
    return pairwise_sum(self.log_prob_per_pixel(value), 2)

  def _sample_n(self, key: jax.Array, n: int) -> jax.Array:
    """Exact draws [n, ..., H, W, C], float32 integers 0..255: the
    `sample_from_noise` of standard Gumbel and logistic noise."""
    component_key, noise_key = jax.random.split(key)
    pixel_shape = (n,) + self._logits.shape[:-1]
    gumbel = jax.random.gumbel(component_key,
                               pixel_shape + (self._num_components,))
    logistic = jax.random.logistic(noise_key,
                                   pixel_shape + (self._num_channels,))
    return self.sample_from_noise(gumbel, logistic)

  def sample_from_noise(self, gumbel: jax.Array,
                        logistic: jax.Array) -> jax.Array:
    """The draw of every pixel given its noise: [..., H, W, C], 0..255.

    Per pixel: the component k = argmax_k (logit_k + g_k), which is k with
    probability pi_k (the Gumbel-max trick), then channel by channel a
    logistic y_c = mu'_{c,k} + e^{s_{c,k}} e_c put in its bin (round, clip
    to [0, 255]). mu'_c reads the *binned* earlier channels, the values
    log_prob conditions on, so draws follow exactly the distribution that
    log_prob scores. An autoregressive decoder calls this one pixel at a
    time with the noise of that pixel.

    Args:
      gumbel: [..., H, W, K] standard Gumbel noise (leading axes broadcast
        against the batch shape).
      logistic: [..., H, W, C] standard logistic noise.
    """
    components = jnp.argmax(self._logits + gumbel, axis=-1)
    one_hot = jax.nn.one_hot(components, self._num_components)[..., None, :]
    means = jnp.sum(self._means * one_hot, -1)[..., None]  # [..., C, 1]
    scales = jnp.exp(jnp.sum(self._log_scales * one_hot, -1))
    alphas = jnp.sum(jnp.tanh(self._coeffs) * one_hot, -1)[..., None]
    values = jnp.zeros(jnp.broadcast_shapes(logistic.shape,
                                            self._means.shape[:-1]),
                       jnp.float32)
    for c in range(self._num_channels):
      mean = _dependent_means(means, alphas, to_unit_interval(values))
      binned = _discretize(mean[..., c, 0] + scales[..., c] * logistic[..., c])
      values = values.at[..., c].set(binned)
    return values

  def continuous_mean(self) -> jax.Array:
    """The mean of the mixture before binning, in 0..255: [..., H, W, C].

    sum_k pi_k m_{c,k} with m_{c,k} = mu_{c,k} + sum_{c'<c} alpha m_{c',k},
    mapped by (m + 1) 255 / 2 and clipped to [0, 255]. Cheap, for pictures:
    it is not the mean of the discrete distribution, which also counts the
    edge bins' tails and the binning of the earlier channels.
    """
    alphas = jnp.tanh(self._coeffs)
    m = [self._means[..., c, :] for c in range(self._num_channels)]
    # Row by row, so m_{c'} is final before any m_c with c > c' reads it.
    for j, (c, earlier) in enumerate(
        zip(*coefficient_pairs(self._num_channels))):
      m[c] = m[c] + alphas[..., j, :] * m[earlier]
    weights = jax.nn.softmax(self._logits, -1)[..., None, :]
    mean = jnp.sum(weights * jnp.stack(jnp.broadcast_arrays(*m), -2), -1)
    return jnp.clip((mean + 1.0) * (255.0 / 2.0), 0.0, 255.0)
