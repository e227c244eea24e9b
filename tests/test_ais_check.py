"""Tests of the arithmetic of experiments/ais_check.py on exact numbers.

The curve is the exact rate-distortion curve of the linear-Gaussian model
of tests/test_ais.py (R_b, D_b of q_b = m d^b / Z_b in closed form); the
model's point is that of another Gaussian encoder e(z|x) = N(mu_1, c P_1^-1)
(the posterior's mean, its covariance scaled by c), whose R and D are also
closed forms:

  R = KL(N(mu, S) || N(0, I)) = (tr S + |mu|^2 - k - log det S) / 2,
  D = (d/2) log(2 pi s^2) + (|x - W mu - b|^2 + tr(W S W^T)) / (2 s^2).

Every encoder has R + b D >= R_b + b D_b at every b, so its slack is never
negative; a point 1 nat of distortion below the encoder's is below the curve
at b = 1 (where the posterior, c = 1, is the optimum).
"""

import math

import numpy as np
import pytest

import test_ais as lg
from experiments import ais_check


def _encoder_point(x, scale):
  precision, mu = lg.exact_q(x, 1.0)
  cov = scale * np.linalg.inv(precision)
  residual = x - lg.W @ mu - lg.OFFSET
  rate = 0.5 * (np.trace(cov) + mu @ mu - lg.LATENTS
                - np.linalg.slogdet(cov)[1])
  distortion = (0.5 * lg.DIMS * math.log(2 * math.pi * lg.SIGMA**2)
                + (residual @ residual + np.trace(lg.W @ cov @ lg.W.T))
                / (2 * lg.SIGMA**2))
  return rate, distortion


def _record(x, betas):
  points = [lg.exact_rate_distortion(x, b) for b in betas]
  return {'curve': [{'beta': b, 'rate': r, 'distortion': d}
                    for b, (r, d) in zip(betas, points)],
          'log_px': lg.exact_log_px(x)}


def test_curve_checks_on_the_exact_curve():
  x = lg.simulate(12, 1)[0].astype(np.float64)
  betas = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 60)])
  record = _record(x, betas)
  rate, distortion = _encoder_point(x, 3.0)
  out = ais_check._curve_checks(record, rate, distortion)
  assert out['against'] == 0.0  # the exact curve is monotone
  assert out['end_error'] < 1e-9  # R_1 + D_1 = -log p(x)
  # A worse encoder is above the curve; with the posterior's covariance
  # scaled by 3 it comes close to q_b near b = 1/3 (slack 0.019 nats).
  assert out['min_slack'] > 0.01 and 0.1 < out['slack_beta'] < 0.7
  assert out['d_at_model_rate'] < distortion
  # The posterior itself touches the curve at b = 1.
  rate_1, distortion_1 = _encoder_point(x, 1.0)
  touching = ais_check._curve_checks(record, rate_1, distortion_1)
  assert abs(touching['min_slack']) < 1e-9 and touching['slack_beta'] == 1.0
  # One nat less distortion is below the curve.
  below = ais_check._curve_checks(record, rate_1, distortion_1 - 1.0)
  assert below['min_slack'] == pytest.approx(-1.0, abs=1e-9)
  # A step of D upwards is reported, in nats, and fails the check.
  curve = record['curve']
  step = curve[-2]['distortion'] - curve[-1]['distortion']  # > 0
  curve[-2]['distortion'] -= 0.5
  assert ais_check._curve_checks(record, rate, distortion)['against'] == (
      pytest.approx(0.5 - step, abs=1e-9))
  assert 0.5 - step > ais_check.ROUNDING
  curve[-2]['distortion'] += 0.5
  # So is a fall of R.
  saved = curve[30]['rate']
  curve[30]['rate'] = curve[29]['rate'] - 0.4
  assert ais_check._curve_checks(record, rate, distortion)['against'] == (
      pytest.approx(0.4, abs=1e-9))
  curve[30]['rate'] = saved
  # The sampled D's distance from the curve's D at b_t, [D_{t+1}, D_t], in
  # its standard errors: none without them, 0 inside the interval.
  assert ais_check._curve_checks(record, rate, distortion)[
      'sampled_units'] is None
  for t, c in enumerate(curve):
    c['sampled_distortion'] = c['distortion']
    c['sampled_distortion_stderr'] = 0.25
  out = ais_check._curve_checks(record, rate, distortion)
  assert out['sampled_units'] == 0.0 and out['sampled_rms'] == 0.0
  # 1 nat above D_t at knot 10 is 4 se; 0.5 below D_{t+1} at knot 20 is 2.
  curve[10]['sampled_distortion'] = curve[10]['distortion'] + 1.0
  curve[20]['sampled_distortion'] = curve[21]['distortion'] - 0.5
  out = ais_check._curve_checks(record, rate, distortion)
  assert out['sampled_units'] == pytest.approx(4.0, rel=1e-9)
  assert out['sampled_rms'] == pytest.approx(
      math.sqrt((16 + 4) / len(curve)), rel=1e-9)


def test_log_mean_exp_and_its_standard_error():
  rng = np.random.default_rng(0)
  log_w = rng.normal(size=(100, 3))
  value, se = ais_check._log_mean_exp_and_se(log_w)
  w = np.exp(log_w)
  np.testing.assert_allclose(value, np.log(w.mean(0)), rtol=1e-12)
  # Delta method: std(w) / (sqrt(K) mean(w)), std with K - 1.
  np.testing.assert_allclose(se, w.std(0, ddof=1) / (10 * w.mean(0)),
                             rtol=1e-10)
