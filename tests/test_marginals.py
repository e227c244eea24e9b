"""Tests of rdvae.marginals: the fixed standard normal marginal of F.3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rdvae import marginals


@pytest.mark.parametrize('latent_dim', [1, 64], ids=['z1', 'z64'])
def test_standard_normal_log_prob_closed_form(latent_dim):
  marginal = marginals.StandardNormal(latent_dim=latent_dim)
  variables = marginal.init(jax.random.key(0))
  assert not jax.tree_util.tree_leaves(variables)  # fixed: no parameters
  m = marginal.apply(variables, encoder=None)
  assert m.event_shape == (latent_dim,) and m.batch_shape == ()
  z = jax.random.normal(jax.random.key(1), (5, latent_dim)) * 2.0
  expected = (-0.5 * latent_dim * np.log(2 * np.pi)
              - 0.5 * np.sum(np.asarray(z, np.float64) ** 2, axis=-1))
  np.testing.assert_allclose(m.log_prob(z), expected, rtol=1e-6)


def test_standard_normal_moments():
  m = marginals.StandardNormal().apply({})
  z = m.sample(seed=jax.random.key(2), sample_shape=(20_000,))
  assert z.shape == (20_000, 64)
  # Standard errors: 1/sqrt(n) = 0.007 for the mean, sqrt(2/n) = 0.01 for
  # the variance; 5 standard errors over 64 coordinates.
  np.testing.assert_allclose(jnp.mean(z, 0), 0.0, atol=0.036)
  np.testing.assert_allclose(jnp.var(z, 0), 1.0, atol=0.05)
