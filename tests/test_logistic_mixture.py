"""Tests for rdvae/models/logistic_mixture.py: the discretized logistic mixture.

Every number is checked against something computed another way: sums over
all 256 (or 256^3) values, a plain float64 numpy reference, an exact
reference in 60-digit decimal arithmetic for the tails, a mixture known to be
uniform to 1e-6, chi-square tests of samples and central differences of the
reference for gradients. `MutantTest` re-runs the checks on deliberately
broken versions of the module and asserts that each is caught.
"""

import decimal
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special
from scipy import stats

from rdvae.objectives import bounds
from rdvae.models import logistic_mixture as lm

ENUMERATION_TOL = 1e-5   # |sum of probabilities - 1|
REFERENCE_ATOL = 1e-5    # nats, per pixel, plus REFERENCE_RTOL * |log p|
REFERENCE_RTOL = 1e-6    # float32's rounding of x = 2 v / 255 - 1 times e^-s
TAIL_RTOL = 1e-6         # relative to |log P| + 1; |log P| ~ 3.4e4 at mu = 30
UNIFORM_TOL = 1e-5       # bits per dimension
P_VALUE_FLOOR = 1e-3     # chi-square: the correct sampler must pass this
VALUES = np.arange(lm.NUM_VALUES)
TAIL_VALUES = (0, 1, 127, 254, 255)


def _random_params(seed, shape, channels, components,
                   log_scales=(-5.0, 1.0), mean_range=1.2, coeff_scale=1.0):
  """Random named parameters (float32 numpy) for pixels of `shape`."""
  rng = np.random.default_rng(seed)
  params = (rng.normal(size=shape + (components,)),
            rng.uniform(-mean_range, mean_range,
                        shape + (channels, components)),
            rng.uniform(*log_scales, shape + (channels, components)),
            rng.normal(scale=coeff_scale,
                       size=shape + (lm.num_coefficients(channels),
                                     components)))
  return tuple(np.float32(p) for p in params)


def _mixture(params):
  return lm.DiscretizedLogisticMixture(*map(jnp.asarray, params))


def _reference_bins(values, means, log_scales, coeffs):
  """Per-component bin probabilities in float64, written plainly.

  values [..., C] integers; means and log_scales [..., C, K]; coeffs
  [..., C(C-1)/2, K]; C is 1 or 3. Returns (P, F(v), F(v - 1)), each
  [..., C, K]: the probability of v_c's bin given v_<c in component k, and
  the component's CDF at the bin's upper and lower edges.
  """
  values = np.asarray(values, np.float64)
  means, log_scales, coeffs = (np.asarray(a, np.float64)
                               for a in (means, log_scales, coeffs))
  x = 2 * values / 255 - 1
  mu = np.broadcast_to(means, x.shape[:-1] + means.shape[-2:]).copy()
  if means.shape[-2] == 3:  # coefficients (1, 0), (2, 0), (2, 1)
    alpha = np.tanh(coeffs)
    mu[..., 1, :] += alpha[..., 0, :] * x[..., 0, None]
    mu[..., 2, :] += (alpha[..., 1, :] * x[..., 0, None]
                      + alpha[..., 2, :] * x[..., 1, None])
  scale = np.exp(np.maximum(log_scales, -7.0))
  upper = (x[..., None] + 1 / 255 - mu) / scale
  lower = (x[..., None] - 1 / 255 - mu) / scale
  cdf = special.expit
  v = values[..., None]
  # sigma(a) - sigma(b) = sigma(-b) - sigma(-a): take the unsaturated side;
  # 1 - sigma(b) = sigma(-b).
  p = np.where(upper + lower > 0, cdf(-lower) - cdf(-upper),
               cdf(upper) - cdf(lower))
  p = np.where(v == 0, cdf(upper), np.where(v == 255, cdf(-lower), p))
  return (p, np.where(v == 255, 1.0, cdf(upper)),
          np.where(v == 0, 0.0, cdf(lower)))


def _reference_log_prob_per_pixel(values, logits, means, log_scales, coeffs):
  """log p(pixel) = log sum_k pi_k prod_c P_k(v_c | v_<c), float64."""
  p, _, _ = _reference_bins(values, means, log_scales, coeffs)
  log_weights = special.log_softmax(np.asarray(logits, np.float64), -1)
  with np.errstate(divide='ignore'):  # log 0 for a component far away
    return special.logsumexp(log_weights + np.log(p).sum(-2), axis=-1)


def _exact_log_bin(value, mean, log_scale):
  """log P(v | mu, s) in 60-digit decimal arithmetic (s clamped at -7)."""
  with decimal.localcontext() as context:
    context.prec = 60
    dec = decimal.Decimal
    x = dec(2 * int(value)) / 255 - 1
    scale = dec(max(float(log_scale), -7.0)).exp()
    upper = (x + dec(1) / 255 - dec(float(mean))) / scale
    lower = (x - dec(1) / 255 - dec(float(mean))) / scale

    def sigmoid(t):
      return 1 / (1 + (-t).exp())

    if value == 0:
      p = sigmoid(upper)
    elif value == 255:
      p = sigmoid(-lower)
    elif upper + lower > 0:
      p = sigmoid(-lower) - sigmoid(-upper)
    else:
      p = sigmoid(upper) - sigmoid(lower)
    return float(p.ln())


def _pixel_values(values):
  """[N, C] values as N one-pixel images [N, 1, 1, C]."""
  values = np.asarray(values)
  return jnp.asarray(values.reshape(values.shape[0], 1, 1, -1))


# The checks: each returns a figure that the tests bound and the mutants
# push past the bound.


def _grey_enumeration_error(seed=0):
  """max |sum_v P(v) - 1| over 8 random grey pixels with K = 3."""
  dist = _mixture(_random_params(seed, (1, 8), 1, 3, log_scales=(-8., 3.)))
  log_p = dist.log_prob_per_pixel(VALUES.reshape(256, 1, 1, 1))  # [256,1,8]
  return float(np.max(np.abs(np.exp(np.float64(log_p)).sum(0) - 1)))


def _colour_conditional_errors(seed=1):
  """max |sum_{v_c} p(v_c | v_<c) - 1| per channel c, 8 random RGB pixels."""
  dist = _mixture(_random_params(seed, (1, 8), 3, 3, log_scales=(-8., 3.)))
  fixed = np.random.default_rng(seed).integers(0, 256, (1, 1, 8, 3))
  errors = []
  for c in range(3):
    values = np.broadcast_to(fixed, (256, 1, 8, 3)).copy()
    values[..., c] = VALUES[:, None, None]
    log_p = dist.log_prob_per_subpixel(jnp.asarray(values))[..., c]
    errors.append(np.max(np.abs(np.exp(np.float64(log_p)).sum(0) - 1)))
  return errors


def _colour_pixel():
  """One random RGB pixel, K = 2."""
  return _mixture(_random_params(4, (1, 1), 3, 2, log_scales=(-4., 0.)))


def _full_joint_error():
  """|sum of p over all 256^3 values of `_colour_pixel()` - 1|, the sums
  over blue in float32 (256 terms), the rest in float64."""
  dist = _colour_pixel()
  green_blue = np.stack(np.meshgrid(VALUES, VALUES, indexing='ij'),
                        -1).reshape(1, -1, 2)

  @jax.jit
  def totals(red):  # 16 reds -> [16, 256] sums over blue
    values = jnp.concatenate(
        [jnp.broadcast_to(red[:, None, None], (16, 65536, 1)),
         jnp.broadcast_to(green_blue, (16, 65536, 2))], -1)
    log_p = dist.log_prob_per_pixel(values.reshape(-1, 1, 1, 3))
    return jnp.exp(log_p).reshape(16, 256, 256).sum(-1)

  total = sum(np.float64(totals(jnp.arange(16) + r)).sum()
              for r in range(0, 256, 16))
  return float(abs(total - 1))


def _reference_error(channels, seed=2):
  """max over pixels of |log p - reference| / (ATOL + RTOL |reference|)."""
  params = _random_params(seed, (3, 2, 4), channels, 4)
  values = np.random.default_rng(seed).integers(0, 256, (3, 2, 4, channels))
  values[0, 0, :2] = 0  # both edge bins in every channel
  values[0, 1, :2] = 255
  got = np.asarray(_mixture(params).log_prob_per_pixel(jnp.asarray(values)))
  want = _reference_log_prob_per_pixel(values, *params)
  return float(np.max(np.abs(got - want)
                      / (REFERENCE_ATOL + REFERENCE_RTOL * np.abs(want))))


def _tail_grid():
  """(v, mu, s) for mu = +-30, s in {-9 (clamped), -7, 0, 5}, v at edges."""
  grid = [(v, m, s) for v in TAIL_VALUES for m in (-30., 30.)
          for s in (-9., -7., 0., 5.)]
  return tuple(np.array(a, np.float32) for a in zip(*grid))


def _tail_errors():
  """log P of the tail grid: (all finite, max |error| / (|exact| + 1))."""
  values, means, log_scales = _tail_grid()
  got = np.asarray(lm.log_discretized_logistic(values, means, log_scales))
  want = np.array([_exact_log_bin(*args)
                   for args in zip(values.astype(int), means, log_scales)])
  return (bool(np.all(np.isfinite(got))),
          float(np.max(np.abs(got - want) / (np.abs(want) + 1))))


def _tail_pixel_params():
  """Raw params [1, 1, 20] of an RGB pixel, K = 2, mu = -30 and +30."""
  means = np.array([[-30., 30.]] * 3)
  log_scales = np.array([[-7., 5.], [5., -7.], [-7., -7.]])
  coeffs = np.array([[0.5, -0.5], [-1., 1.], [2., 0.3]])
  raw = np.concatenate([[0.3, -0.2], means.ravel(), log_scales.ravel(),
                        coeffs.ravel()])
  return np.float32(raw).reshape(1, 1, -1)


def _tail_values():
  """All 125 RGB pixels with channels in TAIL_VALUES, [125, 1, 1, 3]."""
  grid = np.stack(np.meshgrid(*[TAIL_VALUES] * 3, indexing='ij'), -1)
  return _pixel_values(grid.reshape(-1, 3))


def _uniform_bits_per_dim():
  """Bits per dimension of a 16x16 grey image holding every value once.

  The mixture: K = 256 equal weights, component k centred on bin k with
  s = -7. Summed over the components, bin v gets
  F((2v + 1) h) - F(-(2(255 - v) + 1) h) with F the logistic CDF at scale
  e^-7 (a telescoping sum), and the edge bins F(h) + F(-h) + ... = 1, so
  every P(v) is 1/256 to within F(-3h) ~ 3e-6 relative.
  """
  centres = np.float32(2 * VALUES / 255 - 1)
  dist = lm.DiscretizedLogisticMixture(
      jnp.zeros((16, 16, 256)),
      jnp.broadcast_to(centres, (16, 16, 1, 256)),
      jnp.full((16, 16, 1, 256), -7.0))
  image = VALUES.reshape(16, 16, 1)
  return float(bounds.bits_per_dim(-dist.log_prob(image), image.size))


def _chi_square_p_value(counts, probs, min_expected=5.0):
  """Pearson's chi-square p-value of counts against probabilities.

  Bins with expected count below min_expected are pooled into one bin
  (merged into the smallest other bin if the pool itself is small).
  """
  counts, expected = np.asarray(counts), counts.sum() * np.asarray(probs)
  keep = expected >= min_expected
  observed, expected = list(counts[keep]), list(expected[keep])
  pooled = (counts[~keep].sum(), counts.sum() - sum(expected))
  if pooled[1] >= min_expected:
    observed.append(pooled[0])
    expected.append(pooled[1])
  else:
    smallest = int(np.argmin(expected))
    observed[smallest] += pooled[0]
    expected[smallest] += pooled[1]
  observed, expected = np.array(observed), np.array(expected)
  statistic = np.sum((observed - expected) ** 2 / expected)
  return float(stats.chi2.sf(statistic, len(observed) - 1))


def _sampling_params(channels):
  """One pixel whose mass sits on tens of values, one component at an edge
  (K = 3 grey, K = 2 RGB with strong channel dependence)."""
  if channels == 1:
    return (np.float32([[[0.5, -0.3, 0.0]]]),
            np.float32([[[[-0.3, 0.4, -0.995]]]]),
            np.float32([[[[-3.0, -3.5, -4.0]]]]),
            np.zeros((1, 1, 0, 3), np.float32))
  return (np.float32([[[0.4, -0.4]]]),
          np.float32([[[[-0.2, 0.97], [0.1, 0.3], [-0.1, -0.6]]]]),
          np.float32([[[[-3.5, -4.0], [-4.0, -3.5], [-3.8, -4.2]]]]),
          np.float32([[[[1.5, -1.2], [-1.0, 2.0], [0.8, 1.3]]]]))


def _draw(channels, sample_params=None, n=50_000, seed=3):
  """n pixels [n, C] drawn from sample_params (default the tested ones)."""
  sampler = _mixture(sample_params or _sampling_params(channels))
  samples = np.asarray(sampler.sample(seed=jax.random.key(seed),
                                      sample_shape=n)).reshape(n, channels)
  if not np.array_equal(samples, np.clip(np.round(samples), 0, 255)):
    raise AssertionError('samples are not integers in [0, 255]')
  return samples.astype(int)


def _grey_sampling_p_value(**kwargs):
  """Chi-square of the counts of the 256 grey values against
  exp(log_prob) of every value."""
  counts = np.bincount(_draw(1, **kwargs)[:, 0], minlength=256)
  log_p = _mixture(_sampling_params(1)).log_prob_per_pixel(
      _pixel_values(VALUES[:, None]))
  return _chi_square_p_value(counts, np.exp(np.float64(log_p[:, 0, 0])))


def _reference_pit(values, logits, means, log_scales, coeffs, noise):
  """The randomised probability integral transform of RGB pixels [n, 3].

  u_c = F(v_c - 1 | v_<c) + noise_c p(v_c | v_<c), with F the mixture's
  conditional CDF: sum_k w_k F_k, w_k the posterior of component k given
  v_<c, F_k the CDF of its discretized logistic (float64, plainly). Pixels
  from the model give u uniform on [0, 1]^3, independent across channels.
  """
  p, cdf_at, cdf_below = _reference_bins(values, means[0, 0], log_scales[0, 0],
                                        coeffs[0, 0])
  with np.errstate(divide='ignore'):  # log 0 for a component far away
    log_p = np.log(p)  # [n, C, K]
  earlier = np.concatenate([np.zeros_like(log_p[:, :1]),
                            np.cumsum(log_p[:, :-1], 1)], 1)
  log_w = special.log_softmax(np.float64(logits[0, 0])) + earlier
  w = special.softmax(log_w, -1)
  below, at = (w * cdf_below).sum(-1), (w * cdf_at).sum(-1)
  return below + noise * (at - below)


def _colour_sampling_p_value(samples, cells=8):
  """Chi-square of the PIT of RGB samples [n, 3] of `_sampling_params(3)`
  on a grid of cells^3 equal cubes of [0, 1]^3."""
  noise = np.random.default_rng(7).uniform(size=samples.shape)
  u = _reference_pit(samples, *_sampling_params(3), noise)
  if not np.all(np.isfinite(u)):
    return 0.0  # a pixel that every component gives probability 0
  index = np.ravel_multi_index(tuple(np.minimum(u * cells, cells - 1)
                                     .astype(int).T), (cells,) * 3)
  counts = np.bincount(index, minlength=cells ** 3)
  return _chi_square_p_value(counts, np.full(cells ** 3, cells ** -3.0))


def _tail_gradients_finite():
  raw = jnp.asarray(_tail_pixel_params())
  values = _tail_values()
  grad = jax.jit(jax.grad(lambda p: jnp.sum(  # a new function: no stale trace
      lm.DiscretizedLogisticMixture.from_params(p, 3).log_prob(values))))(raw)
  return bool(np.all(np.isfinite(np.asarray(grad))))


class LayoutTest(absltest.TestCase):

  def test_num_params(self):
    self.assertEqual(lm.num_params(1, 5), 15)
    self.assertEqual(lm.num_params(3, 10), 100)  # PixelCNN++'s 10 K

  def test_split_params_layout(self):
    channels, k = 3, 2
    raw = np.arange(lm.num_params(channels, k), dtype=np.float32)
    logits, means, log_scales, coeffs = lm.split_params(raw, channels)
    np.testing.assert_array_equal(logits, [0, 1])
    np.testing.assert_array_equal(means, [[2, 3], [4, 5], [6, 7]])
    np.testing.assert_array_equal(log_scales, [[8, 9], [10, 11], [12, 13]])
    np.testing.assert_array_equal(coeffs, [[14, 15], [16, 17], [18, 19]])
    with self.assertRaises(ValueError):
      lm.split_params(raw[:-1], channels)

  def test_shapes_and_sample(self):
    params = np.random.default_rng(0).normal(
        size=(2, 4, 5, lm.num_params(3, 2))).astype(np.float32)
    dist = lm.DiscretizedLogisticMixture.from_params(jnp.asarray(params), 3)
    self.assertEqual(dist.event_shape, (4, 5, 3))
    self.assertEqual(dist.batch_shape, (2,))
    samples = dist.sample(seed=jax.random.key(0), sample_shape=3)
    self.assertEqual(samples.shape, (3, 2, 4, 5, 3))
    self.assertEqual(samples.dtype, jnp.float32)
    log_p = dist.log_prob(samples)
    self.assertEqual(log_p.shape, (3, 2))
    np.testing.assert_allclose(
        log_p, dist.log_prob_per_subpixel(samples).sum((-3, -2, -1)),
        rtol=1e-5)

  def test_continuous_mean(self):
    # Narrow components on bin centres: the mean is the weighted value.
    centres = np.float32(2 * np.array([[40., 200.], [10., 30.]]) / 255 - 1)
    dist = lm.DiscretizedLogisticMixture(
        jnp.log(jnp.array([[[0.25, 0.75]]])), jnp.asarray(centres)[None, None],
        jnp.full((1, 1, 2, 2), -7.0), jnp.zeros((1, 1, 1, 2)))
    np.testing.assert_allclose(dist.continuous_mean()[0, 0],
                               [160., 25.], atol=1e-3)


class LogProbTest(parameterized.TestCase):

  def test_grey_probabilities_sum_to_one(self):
    self.assertLess(_grey_enumeration_error(), ENUMERATION_TOL)

  def test_colour_conditionals_sum_to_one(self):
    self.assertLess(max(_colour_conditional_errors()), ENUMERATION_TOL)

  def test_colour_joint_sums_to_one(self):
    """All 256^3 values of one RGB pixel (K = 2), 16 reds at a time."""
    self.assertLess(_full_joint_error(), ENUMERATION_TOL)

  @parameterized.named_parameters(('grey', 1), ('rgb', 3))
  def test_matches_float64_reference(self, channels):
    self.assertLess(_reference_error(channels), 1.0)

  def test_image_log_prob_is_the_sum_over_pixels(self):
    params = _random_params(5, (2, 3), 3, 2)
    values = np.random.default_rng(5).integers(0, 256, (2, 3, 3))
    np.testing.assert_allclose(
        _mixture(params).log_prob(jnp.asarray(values)),
        _reference_log_prob_per_pixel(values, *params).sum(), rtol=1e-6)

  def test_tails_finite_and_exact(self):
    finite, error = _tail_errors()
    self.assertTrue(finite)
    self.assertLess(error, TAIL_RTOL)

  def test_tail_pixels_match_exact_mixture(self):
    dist = lm.DiscretizedLogisticMixture.from_params(
        jnp.asarray(_tail_pixel_params()), 3)
    values = _tail_values()
    got = np.asarray(dist.log_prob_per_pixel(values))[:, 0, 0]
    self.assertTrue(np.all(np.isfinite(got)))
    logits, means, log_scales, coeffs = (
        np.float64(a[0, 0]) for a in lm.split_params(
            jnp.asarray(_tail_pixel_params()), 3))
    alpha = np.tanh(np.float32(coeffs))
    want = []
    for v in np.asarray(values)[:, 0, 0].astype(int):
      x = 2 * v / 255 - 1
      mu = means.copy()
      mu[1] += alpha[0] * x[0]
      mu[2] += alpha[1] * x[0] + alpha[2] * x[1]
      per_k = [sum(_exact_log_bin(v[c], mu[c, k], log_scales[c, k])
                   for c in range(3)) for k in range(2)]
      want.append(special.logsumexp(per_k + special.log_softmax(logits)))
    want = np.array(want)
    self.assertLess(np.max(np.abs(got - want) / (np.abs(want) + 1)),
                    TAIL_RTOL)

  def test_uniform_mixture_is_8_bits_per_dim(self):
    self.assertLess(abs(_uniform_bits_per_dim() - 8.0), UNIFORM_TOL)


class SampleTest(absltest.TestCase):

  def test_grey_value_frequencies(self):
    self.assertGreater(_grey_sampling_p_value(), P_VALUE_FLOOR)

  def test_colour_pixels_have_uniform_pit(self):
    self.assertGreater(_colour_sampling_p_value(_draw(3)), P_VALUE_FLOOR)


class GradientTest(absltest.TestCase):

  def test_tail_gradients_are_finite(self):
    self.assertTrue(_tail_gradients_finite())

  def test_gradient_matches_reference_differences(self):
    raw = np.concatenate([np.float32(a).reshape(1, 1, -1) for a in
                          _random_params(6, (1, 1), 3, 2)], -1)
    values = np.array([[[[0, 130, 255]], [[37, 255, 2]]]])  # [1, 2, 1, 3]
    grad = np.asarray(jax.jit(jax.grad(lambda p: jnp.sum(
        lm.DiscretizedLogisticMixture.from_params(p, 3).log_prob(
            jnp.asarray(values)))))(jnp.asarray(raw)))

    def reference(p):  # p [20]: 2 logits, 6 means, 6 log-scales, 6 coeffs
      logits, means, log_scales, coeffs = np.split(p, [2, 8, 14])
      return _reference_log_prob_per_pixel(
          values, logits, means.reshape(3, 2), log_scales.reshape(3, 2),
          coeffs.reshape(3, 2)).sum()

    step = 1e-6
    numeric = np.zeros(raw.shape[-1])
    for i in range(raw.shape[-1]):
      shift = np.zeros(raw.shape[-1])
      shift[i] = step
      numeric[i] = (reference(np.float64(raw[0, 0]) + shift)
                    - reference(np.float64(raw[0, 0]) - shift)) / (2 * step)
    np.testing.assert_allclose(grad[0, 0], numeric, rtol=1e-4, atol=1e-4)


def _naive(value, mean, log_scale, min_log_scale=-7.0):
  """Mutant: log(sigma(a) - sigma(b)) as written, for every bin (the edge
  bins 0 and 255 included, so they lose their tails)."""
  x = lm.to_unit_interval(value)
  scale = jnp.exp(jnp.maximum(log_scale, min_log_scale))
  return jnp.log(jax.nn.sigmoid((x + 1 / 255 - mean) / scale)
                 - jax.nn.sigmoid((x - 1 / 255 - mean) / scale))


def _naive_with_edges(value, mean, log_scale, min_log_scale=-7.0):
  """Mutant: correct edge bins, naive interior."""
  x = lm.to_unit_interval(value)
  scale = jnp.exp(jnp.maximum(log_scale, min_log_scale))
  value = jnp.asarray(value, jnp.float32)
  return jnp.where(
      value < 0.5, jnp.log(jax.nn.sigmoid((x + 1 / 255 - mean) / scale)),
      jnp.where(value > 254.5,
                jnp.log(1 - jax.nn.sigmoid((x - 1 / 255 - mean) / scale)),
                _naive(value, mean, log_scale, min_log_scale)))


def _reversed_pairs(num_channels):
  rows, cols = np.tril_indices(num_channels, -1)
  return rows[::-1], cols[::-1]


def _floor_bins(y):
  return jnp.clip(jnp.floor((y + 1.0) * (255.0 / 2.0)), 0.0, 255.0)


class MutantTest(absltest.TestCase):
  """Each check above fails on a module with the bug it should catch."""

  def test_edge_bins_as_interior_are_caught(self):
    with mock.patch.object(lm, 'log_discretized_logistic', _naive):
      self.assertGreater(_grey_enumeration_error(), 1e-3)
      self.assertGreater(max(_colour_conditional_errors()), 1e-3)
      self.assertGreater(_reference_error(3), 1e3)
      self.assertGreater(abs(_uniform_bits_per_dim() - 8.0), 10 * UNIFORM_TOL)

  def test_reversed_coefficient_order_is_caught(self):
    with mock.patch.object(lm, 'coefficient_pairs', _reversed_pairs):
      self.assertGreater(_reference_error(3), 1e3)

  def test_naive_log_difference_is_caught(self):
    with mock.patch.object(lm, 'log_discretized_logistic', _naive_with_edges):
      finite, error = _tail_errors()
      self.assertFalse(finite and error < TAIL_RTOL)
      self.assertFalse(_tail_gradients_finite())

  def test_floor_binning_in_the_sampler_is_caught(self):
    with mock.patch.object(lm, '_discretize', _floor_bins):
      self.assertLess(_grey_sampling_p_value(), 1e-6)
      self.assertLess(_colour_sampling_p_value(_draw(3)), 1e-6)

  def test_sampler_with_other_coefficients_is_caught(self):
    """A sampler reading the coefficients in another order, or ignoring
    them, draws from these parameters instead of the scored ones."""
    logits, means, log_scales, coeffs = _sampling_params(3)
    for wrong in (coeffs[..., ::-1, :], np.zeros_like(coeffs)):
      self.assertLess(_colour_sampling_p_value(
          _draw(3, (logits, means, log_scales, wrong))), 1e-6)

  def test_blue_one_value_too_high_is_caught(self):
    samples = _draw(3)
    samples[:, 2] = np.minimum(samples[:, 2] + 1, 255)
    self.assertLess(_colour_sampling_p_value(samples), 1e-6)


if __name__ == '__main__':
  absltest.main()
