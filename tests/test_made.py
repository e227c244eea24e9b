"""Tests for rdvae/models/made.py: masks, autoregressive Jacobians, paper sizes."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np

from rdvae.models import made


def _random_params(params, seed=0):
  """Replaces every parameter by N(0, 0.5^2) so no weight is trivially 0."""
  # From NumPy: jax.random.normal compiles a program per shape.
  leaves, treedef = jax.tree_util.tree_flatten(params)
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_unflatten(
      treedef, [jnp.asarray(0.5 * rng.standard_normal(l.shape), jnp.float32)
                for l in leaves])


class DegreeMasksTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('dim1', 1, 4, 1, False),
      ('dim2', 2, 3, 2, False),
      ('dim4', 4, 16, 3, False),
      ('dim7_narrow', 7, 6, 2, False),
      ('dim64_paper', 64, 640, 3, False),
      ('dim4_context', 4, 16, 3, True),
      ('dim64_paper_context', 64, 640, 3, True),
  )
  def test_connectivity_is_exactly_strictly_lower(self, dim, hidden, layers,
                                                  context):
    masks = made.degree_masks(dim, hidden, layers, context=context)
    self.assertLen(masks, layers + 1)
    paths = masks[0]
    for mask in masks[1:]:
      paths = paths @ mask  # [D, D]: number of paths input j -> output i
    j, i = np.meshgrid(np.arange(dim), np.arange(dim), indexing='ij')
    np.testing.assert_array_equal(paths[j >= i], 0.0)
    # Hidden degrees cycle through 1..D-1, so with hidden >= D - 1 every
    # allowed connection j < i is realised.
    self.assertTrue(np.all(paths[j < i] > 0))

  def test_hidden_degrees_cycle(self):
    masks = made.degree_masks(4, 7, 1)
    # Hidden degrees 1,2,3,1,2,3,1: unit k sees inputs of degree <= m(k).
    np.testing.assert_array_equal(masks[0].sum(axis=0), [1, 2, 3, 1, 2, 3, 1])
    # Output i (degree i + 1) sees hidden units of degree <= i.
    np.testing.assert_array_equal(masks[1].sum(axis=0), [0, 3, 5, 7])

  def test_context_units_feed_the_first_output(self):
    masks = made.degree_masks(4, 8, 1, context=True)
    # With a context, degrees cycle 0,1,2,3,0,1,2,3; degree 0 sees no input.
    np.testing.assert_array_equal(masks[0].sum(axis=0), [0, 1, 2, 3] * 2)
    np.testing.assert_array_equal(masks[1].sum(axis=0), [2, 4, 6, 8])


class MADETest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ('no_context', None),
      ('context', 3),
  )
  def test_jacobian_is_strictly_lower_triangular(self, context_dim):
    dim = 5
    network = made.MADE(hidden=16, layers=3, zero_init_output=False)
    x = jax.random.normal(jax.random.key(1), (dim,))
    context = (None if context_dim is None
               else jax.random.normal(jax.random.key(2), (context_dim,)))
    params = _random_params(network.init(jax.random.key(0), x, context))
    jac = self.variant(jax.jacfwd(
        lambda v: network.apply(params, v, context)))(x)  # [i, j]
    upper = np.triu(np.ones((dim, dim), bool))
    np.testing.assert_array_equal(np.asarray(jac)[upper], 0.0)
    self.assertGreater(np.count_nonzero(np.asarray(jac)[~upper]), 5)

  def test_context_reaches_every_output(self):
    network = made.MADE(hidden=16, layers=2, zero_init_output=False)
    x = jnp.ones((4,))
    context = jnp.ones((3,))
    params = _random_params(network.init(jax.random.key(0), x, context))
    jac = jax.jacfwd(lambda c: network.apply(params, x, c))(context)  # [4, 3]
    self.assertTrue(np.all(np.abs(np.asarray(jac)).sum(axis=1) > 0))

  def test_zero_init_output_gives_zero_shift(self):
    network = made.MADE(hidden=8, layers=2)
    x = jax.random.normal(jax.random.key(1), (3, 6))
    params = network.init(jax.random.key(0), x)
    np.testing.assert_array_equal(network.apply(params, x), 0.0)

  def test_paper_size_forward_pass(self):
    dim, hidden = 64, 640
    network = made.MADE(hidden=hidden, layers=3, zero_init_output=False)
    x = jax.random.normal(jax.random.key(1), (2, dim))
    context = jnp.ones((2, 256))
    params = network.init(jax.random.key(0), x, context)
    count = sum(p.size for p in jax.tree_util.tree_leaves(params))
    expected = ((dim + 1) * hidden + 256 * hidden + 2 * (hidden + 1) * hidden
                + (hidden + 1) * dim)
    self.assertEqual(count, expected)
    mu = network.apply(params, x, context)
    self.assertEqual(mu.shape, (2, dim))
    self.assertTrue(bool(jnp.all(jnp.isfinite(mu))))
    # Output 0 reads no input: it is the same for both rows (same context).
    np.testing.assert_allclose(mu[0, 0], mu[1, 0], rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
