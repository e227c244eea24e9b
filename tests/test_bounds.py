"""Tests of rdvae/bounds.py: the IWAE bound and unit conversions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae import bounds


def test_iwae_is_log_mean_exp_over_samples():
  log_w = np.array([[0.0, -1.0], [math.log(3.0), -2.0]], np.float32)  # [K, B]
  expected = [math.log((1 + 3) / 2), math.log((math.exp(-1) + math.exp(-2)) / 2)]
  np.testing.assert_allclose(bounds.iwae(jnp.asarray(log_w)), expected,
                             rtol=1e-6)


@pytest.mark.parametrize('k', [1, 7, 1000], ids=lambda k: f'k{k}')
def test_iwae_of_equal_weights_is_the_weight(k):
  log_w = jnp.full((k, 3), -500.0)  # exp underflows; logsumexp must not
  np.testing.assert_allclose(bounds.iwae(log_w), [-500.0] * 3, rtol=1e-6)


def test_iwae_is_at_least_the_mean_log_weight():
  # Jensen: log mean exp >= mean log, equality iff all weights are equal.
  log_w = jax.random.normal(jax.random.key(0), (50, 20)) * 3.0
  assert np.all(bounds.iwae(log_w) >= jnp.mean(log_w, axis=0) - 1e-5)


def test_iwae_matches_exact_log_marginal_of_a_discrete_model():
  # z in {0, 1} with m = (0.3, 0.7), d(x=1|z) = (0.9, 0.2): p(x=1) = 0.41.
  # With e(z|x) equal to the true posterior every weight is exactly p(x).
  m, d = np.array([0.3, 0.7]), np.array([0.9, 0.2])
  posterior = m * d / 0.41
  z = np.array([0, 1, 1, 0, 1])
  log_w = np.log(d[z] * m[z] / posterior[z])[:, None]
  np.testing.assert_allclose(bounds.iwae(jnp.asarray(log_w)), [math.log(0.41)],
                             rtol=1e-6)


@pytest.mark.parametrize('nats, dims, expected',
                         [(784 * math.log(2.0), 784, 1.0), (0.0, 10, 0.0),
                          (100.0, 784, 100.0 / (784 * math.log(2.0)))],
                         ids=['one_bit', 'zero', 'mnist'])
def test_bits_per_dim(nats, dims, expected):
  np.testing.assert_allclose(bounds.bits_per_dim(nats, dims), expected,
                             rtol=1e-12)


def test_nats_to_bits():
  np.testing.assert_allclose(bounds.nats_to_bits(math.log(8.0)), 3.0)
