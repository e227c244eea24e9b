"""The rate-distortion frontier of achieved points: pure geometry on (R, D).

Each run of a sweep lands at one point (R_i, D_i) of the RD plane (Fig. 3).
Both coordinates are to be minimised, so the runs define

  the monotone Pareto frontier: the points that no other point dominates,
    where j dominates i when R_j <= R_i and D_j <= D_i with one of the two
    strict. Sorted by rate, their distortions fall strictly. The region the
    runs achieve, {(R, D): R >= R_i and D >= D_i for some i}, is bounded by
    the staircase through them (`stepwise`), the paper's "stepwise black
    curve";
  the lower convex hull: the vertices of the convex hull that face the
    origin, i.e. the points that minimise D + beta R (the beta-VAE objective,
    Eq. 6) for some beta in (0, inf). These are the points a beta sweep over
    a perfect optimiser could reach; Pareto points strictly above the hull
    can only be targeted by a rate or distortion target. The minimiser for
    beta -> inf is the point of least rate (of least distortion among ties),
    for beta -> 0 the point of least distortion (of least rate among ties).
    Points on the hull between two vertices (collinear points) are not
    vertices: no beta picks them out uniquely. Three points count as
    collinear when the sine of their turn is below `COLLINEAR_TOLERANCE`, so
    points on one line in exact arithmetic (the toy's D = H - R) stay
    collinear after rounding.

Ties are handled deterministically: an (R, D) value achieved by several
points (exact duplicates) is represented by the first of them in input order;
every function returns indices into the input, ordered by increasing rate.
All functions take 1-D arrays of equal length of finite numbers (nats) and
accept empty inputs.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np


def _check(rate, distortion) -> tuple[np.ndarray, np.ndarray]:
  rate = np.asarray(rate, np.float64)
  distortion = np.asarray(distortion, np.float64)
  if rate.ndim != 1 or distortion.shape != rate.shape:
    raise ValueError(
        f'rate and distortion must be 1-D arrays of equal length; got shapes '
        f'{rate.shape} and {distortion.shape}')
  bad = ~(np.isfinite(rate) & np.isfinite(distortion))
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise ValueError(
        f'point {i} has a non-finite coordinate (R={rate[i]}, '
        f'D={distortion[i]}); expected finite rates and distortions')
  return rate, distortion


def pareto_indices(rate, distortion) -> np.ndarray:
  """Indices of the monotone Pareto frontier, by increasing rate.

  Args:
    rate: [N] R_i, nats.
    distortion: [N] D_i, nats.

  Returns:
    int [M] indices i of the non-dominated points, one per distinct
    non-dominated (R, D) value (the first in input order among duplicates),
    sorted so that rate rises strictly and distortion falls strictly.
  """
  rate, distortion = _check(rate, distortion)
  # Sorted by rate, then distortion, then input order: a point is on the
  # frontier iff its distortion is below every distortion seen before it
  # (same-rate points with larger D and later duplicates are dominated or
  # represented already).
  order = np.lexsort((np.arange(len(rate)), distortion, rate))
  keep, best = [], np.inf
  for i in order:
    if distortion[i] < best:
      keep.append(i)
      best = distortion[i]
  return np.asarray(keep, dtype=np.int64)


# Turns with |sin(angle)| below this count as straight: points that are
# collinear in exact arithmetic (e.g. on D = H - R) stay collinear in floats.
COLLINEAR_TOLERANCE = 1e-9


def _turns_left(o, a, b) -> bool:
  """Whether o -> a -> b turns counter-clockwise, beyond rounding."""
  ax, ay, bx, by = a[0] - o[0], a[1] - o[1], b[0] - o[0], b[1] - o[1]
  cross = ax * by - ay * bx
  return cross > COLLINEAR_TOLERANCE * math.hypot(ax, ay) * math.hypot(bx, by)


def lower_hull_indices(rate, distortion) -> np.ndarray:
  """Vertices of the lower-left convex hull, by increasing rate.

  A point is a vertex iff it is the unique minimiser of D + beta R over the
  points (duplicates counting as one) for some beta in (0, inf), or the
  limiting minimiser for beta -> 0 or beta -> inf (see the module docstring).
  Every minimiser of D + beta R with beta > 0 is Pareto-optimal, so the hull
  is Andrew's monotone-chain lower hull of the Pareto frontier, which runs
  from the least-rate to the least-distortion frontier point with slopes
  rising (and negative): collinear points are dropped.

  Args:
    rate: [N] R_i, nats.
    distortion: [N] D_i, nats.

  Returns:
    int [M] indices of the vertices, sorted by increasing rate (decreasing
    distortion); consecutive vertices k, k + 1 are both minimisers at
    beta = -(D_{k+1} - D_k) / (R_{k+1} - R_k).
  """
  rate, distortion = _check(rate, distortion)
  hull = []
  for i in pareto_indices(rate, distortion):
    point = (rate[i], distortion[i])
    while len(hull) >= 2 and not _turns_left(
        (rate[hull[-2]], distortion[hull[-2]]),
        (rate[hull[-1]], distortion[hull[-1]]), point):
      hull.pop()
    hull.append(i)
  return np.asarray(hull, dtype=np.int64)


def hull_betas(rate, distortion) -> np.ndarray:
  """[M - 1] the beta of each hull edge, -(dD/dR), falling along the hull."""
  rate, distortion = _check(rate, distortion)
  hull = lower_hull_indices(rate, distortion)
  return -np.diff(distortion[hull]) / np.diff(rate[hull])


def stepwise(rate, distortion, rate_max: Optional[float] = None,
             distortion_max: Optional[float] = None
             ) -> tuple[np.ndarray, np.ndarray]:
  """The staircase that bounds the achieved region, as a polyline.

  From frontier point k, (R_k, D_k), the boundary runs right to (R_{k+1},
  D_k), then down to (R_{k+1}, D_{k+1}). With `distortion_max` it starts at
  (R_0, distortion_max) above the first point; with `rate_max` it ends at
  (rate_max, D_last) right of the last.

  Args:
    rate: [N] R_i, nats.
    distortion: [N] D_i, nats.
    rate_max: where to end the last horizontal segment (None: at the point).
    distortion_max: where to start the first vertical one (None: at the point).

  Returns:
    (xs, ys): the polyline's rates and distortions, nats; empty for no points.
  """
  rate, distortion = _check(rate, distortion)
  front = pareto_indices(rate, distortion)
  if not len(front):
    return np.zeros(0), np.zeros(0)
  r, d = rate[front], distortion[front]
  xs = np.repeat(r, 2)[1:]            # R0, R1, R1, R2, R2, ...
  ys = np.repeat(d, 2)[:-1]           # D0, D0, D1, D1, D2, ...
  if distortion_max is not None:
    xs, ys = np.r_[r[0], xs], np.r_[max(distortion_max, d[0]), ys]
  if rate_max is not None:
    xs, ys = np.r_[xs, max(rate_max, r[-1])], np.r_[ys, d[-1]]
  return xs, ys
