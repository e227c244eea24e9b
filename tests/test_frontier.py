"""Tests for rdvae/analysis/frontier.py: the Pareto frontier and the lower convex hull
against brute force (exact rational arithmetic) on random point clouds with
ties, duplicates and collinear points, and against a dense grid of betas."""

import fractions

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from rdvae.analysis import frontier


def _first_of_value(rate, distortion, i):
  """Whether i is the first point in input order with its (R, D) value."""
  return not any(rate[j] == rate[i] and distortion[j] == distortion[i]
                 for j in range(i))


def _brute_pareto(rate, distortion):
  """Indices not dominated by any point, first of each value, by rate."""
  n = len(rate)
  keep = []
  for i in range(n):
    dominated = any(
        rate[j] <= rate[i] and distortion[j] <= distortion[i]
        and (rate[j] < rate[i] or distortion[j] < distortion[i])
        for j in range(n))
    if not dominated and _first_of_value(rate, distortion, i):
      keep.append(i)
  return sorted(keep, key=lambda i: rate[i])


def _brute_hull(rate, distortion):
  """Points that are the unique minimiser of D + beta R for some beta > 0.

  For each other value j the strict inequality D_i + beta R_i < D_j + beta R_j
  bounds beta from below (R_j > R_i) or above (R_j < R_i), or needs D_i < D_j
  (R_j = R_i); i qualifies iff the bounds leave an open interval in (0, inf).
  Exact in rationals for integer or float inputs.
  """
  r = [fractions.Fraction(float(v)) for v in rate]
  d = [fractions.Fraction(float(v)) for v in distortion]
  keep = []
  for i in range(len(r)):
    if not _first_of_value(rate, distortion, i):
      continue
    lo, hi, ok = fractions.Fraction(0), None, True
    for j in range(len(r)):
      if r[j] == r[i] and d[j] == d[i]:
        continue
      if r[j] > r[i]:
        lo = max(lo, (d[i] - d[j]) / (r[j] - r[i]))
      elif r[j] < r[i]:
        bound = (d[j] - d[i]) / (r[i] - r[j])
        hi = bound if hi is None else min(hi, bound)
      elif d[i] >= d[j]:
        ok = False
    if ok and (hi is None or lo < hi):
      keep.append(i)
  return sorted(keep, key=lambda i: rate[i])


def _grid_hull(rate, distortion, betas):
  """Unique minimisers of D + beta R over a grid of betas, by rate."""
  values = sorted({(r, d) for r, d in zip(rate, distortion)})
  r = np.array([v[0] for v in values])
  d = np.array([v[1] for v in values])
  objective = d[None, :] + betas[:, None] * r[None, :]  # [beta, value]
  best = objective.min(axis=1, keepdims=True)
  unique = (objective == best).sum(axis=1) == 1
  winners = {values[k] for k in np.argmin(objective[unique], axis=1)}
  return sorted(
      (i for i in range(len(rate))
       if (rate[i], distortion[i]) in winners
       and _first_of_value(rate, distortion, i)), key=lambda i: rate[i])


def _cloud(seed, n, integer):
  rng = np.random.default_rng(seed)
  if integer == 'line':  # most points on D = 10 - R: collinear hull points
    rate = rng.integers(0, 11, n).astype(float)
    return rate, 10.0 - rate + (rng.random(n) < 0.3) * rng.integers(0, 4, n)
  if integer:  # small integer grid: many ties, duplicates, collinear points
    return (rng.integers(0, 11, n).astype(float),
            rng.integers(0, 11, n).astype(float))
  return rng.exponential(10.0, n), rng.exponential(50.0, n)


CLOUDS = [dict(testcase_name=f'{name}_{n}_{seed}', seed=seed, n=n,
               integer=integer)
          for name, integer in (('int', True), ('line', 'line'),
                                ('float', False))
          for n in (1, 2, 3, 8, 40)
          for seed in range(4)]

# (name, rates, distortions, Pareto indices, hull indices)
HAND_CASES = [
    ('empty', [], [], [], []),
    ('single', [3.0], [4.0], [0], [0]),
    ('two_incomparable', [5.0, 1.0], [1.0, 5.0], [1, 0], [1, 0]),
    ('two_one_dominates', [1.0, 2.0], [1.0, 2.0], [0], [0]),
    ('exact_duplicates', [2.0, 2.0, 2.0], [3.0, 3.0, 3.0], [0], [0]),
    ('duplicate_later_first', [4.0, 1.0, 1.0], [0.0, 4.0, 4.0], [1, 0],
     [1, 0]),
    ('same_rate', [1.0, 1.0, 3.0], [5.0, 4.0, 0.0], [1, 2], [1, 2]),
    ('same_distortion', [1.0, 2.0, 0.0], [2.0, 2.0, 5.0], [2, 0], [2, 0]),
    ('collinear', [0.0, 1.0, 2.0, 3.0], [3.0, 2.0, 1.0, 0.0], [0, 1, 2, 3],
     [0, 3]),
    ('above_hull', [0.0, 1.0, 2.0], [4.0, 3.5, 0.0], [0, 1, 2], [0, 2]),
    ('below_chord', [0.0, 1.0, 2.0], [4.0, 1.0, 0.0], [0, 1, 2], [0, 1, 2]),
]


class FrontierTest(parameterized.TestCase):

  @parameterized.named_parameters(*CLOUDS)
  def test_pareto_matches_brute_force(self, seed, n, integer):
    rate, distortion = _cloud(seed, n, integer)
    got = frontier.pareto_indices(rate, distortion)
    self.assertEqual(got.tolist(), _brute_pareto(rate, distortion))
    self.assertTrue(np.all(np.diff(rate[got]) > 0))
    self.assertTrue(np.all(np.diff(distortion[got]) < 0))

  @parameterized.named_parameters(*CLOUDS)
  def test_hull_matches_brute_force(self, seed, n, integer):
    rate, distortion = _cloud(seed, n, integer)
    got = frontier.lower_hull_indices(rate, distortion).tolist()
    self.assertEqual(got, _brute_hull(rate, distortion))
    self.assertContainsSubset(got, frontier.pareto_indices(rate, distortion))

  @parameterized.named_parameters(
      *(c for c in CLOUDS if c['integer'] is not False))
  def test_hull_is_the_set_of_beta_minimisers(self, seed, n, integer):
    # On the 0..10 integer grid the edge slopes are ratios p/q with q <= 10,
    # so every vertex wins on a beta interval wider than the grid's steps.
    rate, distortion = _cloud(seed, n, integer)
    betas = np.geomspace(1e-3, 1e3, 200_001)
    got = frontier.lower_hull_indices(rate, distortion).tolist()
    self.assertEqual(got, _grid_hull(rate, distortion, betas))
    # The endpoints: least rate (least D among ties), least D (least R).
    order_r = np.lexsort((distortion, rate))
    order_d = np.lexsort((rate, distortion))
    self.assertEqual((rate[got[0]], distortion[got[0]]),
                     (rate[order_r[0]], distortion[order_r[0]]))
    self.assertEqual((rate[got[-1]], distortion[got[-1]]),
                     (rate[order_d[0]], distortion[order_d[0]]))

  @parameterized.named_parameters(*HAND_CASES)
  def test_hand_cases(self, rate, distortion, pareto, hull):
    self.assertEqual(frontier.pareto_indices(rate, distortion).tolist(),
                     pareto)
    self.assertEqual(frontier.lower_hull_indices(rate, distortion).tolist(),
                     hull)

  def test_rounded_collinear_points_are_not_vertices(self):
    # On D = H - R in floats, cross products of exactly collinear points are
    # rounding noise of either sign; only the ends are vertices.
    h = 2.914051210084853
    rate = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.3])
    distortion = h - rate
    self.assertEqual(frontier.lower_hull_indices(rate, distortion).tolist(),
                     [0, 7])
    distortion[3] -= 1e-6  # a real dent is still a vertex
    self.assertEqual(frontier.lower_hull_indices(rate, distortion).tolist(),
                     [0, 3, 7])

  def test_hull_betas_fall_along_the_hull(self):
    rate, distortion = [0.0, 1.0, 3.0, 7.0], [10.0, 4.0, 1.0, 0.0]
    np.testing.assert_allclose(frontier.hull_betas(rate, distortion),
                               [6.0, 1.5, 0.25])

  def test_stepwise_polyline(self):
    rate, distortion = [3.0, 1.0, 2.0, 5.0], [1.0, 4.0, 2.0, 3.0]
    xs, ys = frontier.stepwise(rate, distortion)
    np.testing.assert_array_equal(xs, [1, 2, 2, 3, 3])
    np.testing.assert_array_equal(ys, [4, 4, 2, 2, 1])
    xs, ys = frontier.stepwise(rate, distortion, rate_max=10.0,
                               distortion_max=9.0)
    np.testing.assert_array_equal(xs, [1, 1, 2, 2, 3, 3, 10])
    np.testing.assert_array_equal(ys, [9, 4, 4, 2, 2, 1, 1])
    xs, ys = frontier.stepwise([], [])
    self.assertEqual((len(xs), len(ys)), (0, 0))

  def test_stepwise_bounds_the_achieved_region(self):
    # Every point lies on or above the staircase at its rate.
    rate, distortion = _cloud(7, 60, False)
    xs, ys = frontier.stepwise(rate, distortion)
    for r, d in zip(rate, distortion):
      below = xs <= r
      self.assertTrue(below.any())
      self.assertGreaterEqual(d, ys[below].min())

  @parameterized.named_parameters(
      ('nan', [1.0, np.nan], [1.0, 2.0], 'point 1'),
      ('inf', [1.0], [np.inf], 'point 0'),
      ('shape', [1.0, 2.0], [1.0], 'equal length'),
      ('2d', [[1.0]], [[1.0]], '1-D'))
  def test_bad_input(self, rate, distortion, message):
    with self.assertRaisesRegex(ValueError, message):
      frontier.pareto_indices(rate, distortion)
    with self.assertRaisesRegex(ValueError, message):
      frontier.lower_hull_indices(rate, distortion)


if __name__ == '__main__':
  absltest.main()
