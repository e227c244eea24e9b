"""Tests of rdvae/training/optim.py: block-normalized gradients and the F.4 schedule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from rdvae.training import optim
from rdvae import validation


def _config(**overrides):
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  for key, value in overrides.items():
    config.optim[key] = value
  return config


@pytest.mark.parametrize('eps', [0.0, 1e-8], ids=['no_eps', 'eps'])
def test_normalize_gradients_divides_each_leaf_by_its_norm(eps):
  grads = {'kernel': jnp.array([[3.0, 4.0]]), 'bias': jnp.array([0.0, -2.0])}
  out, _ = optim.normalize_gradients(eps).update(grads, None)
  np.testing.assert_allclose(out['kernel'], [[0.6 / (1 + eps / 5),
                                              0.8 / (1 + eps / 5)]], rtol=1e-6)
  np.testing.assert_allclose(out['bias'], [0.0, -1.0], rtol=1e-6)


def test_normalize_gradients_keeps_zero_block_zero():
  out, _ = optim.normalize_gradients().update({'w': jnp.zeros(3)}, None)
  np.testing.assert_array_equal(out['w'], np.zeros(3))


@pytest.mark.parametrize(
    'step, expected',
    [(0, 3e-4), (49, 3e-4), (50, 3e-4), (75, 1.5e-4), (90, 0.6e-4),
     (100, 0.0), (120, 0.0)],
    ids=lambda v: str(v))
def test_schedule_holds_then_decays_linearly_to_zero(step, expected):
  schedule = optim.make_learning_rate_schedule(3e-4, 100)
  np.testing.assert_allclose(schedule(step), expected, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize(
    'hold, final, step, expected',
    [(0.25, 0.1, 25, 1.0), (0.25, 0.1, 100, 0.1), (0.25, 0.1, 50, 0.7),
     (0.0, 0.0, 50, 0.5), (1.0, 0.0, 99, 1.0)],
    ids=['hold_end', 'final', 'mid', 'no_hold', 'all_hold'])
def test_schedule_fractions(hold, final, step, expected):
  schedule = optim.make_learning_rate_schedule(1.0, 100, hold, final)
  np.testing.assert_allclose(schedule(step), expected, rtol=1e-6)


def test_first_step_is_lr_times_sign_of_gradient():
  # Adam's first bias-corrected step is m/sqrt(v) = g/|g| elementwise, so the
  # normalization cannot change it; the second step shows the difference.
  params = {'a': jnp.array([1.0, 2.0]), 'b': jnp.array([3.0])}
  grads = {'a': jnp.array([3.0, -4.0]), 'b': jnp.array([10.0])}
  tx = optim.create_optimizer(_config(eps=0.0), num_steps=10)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates['a'], [-3e-4, 3e-4], rtol=1e-5)
  np.testing.assert_allclose(updates['b'], [-3e-4], rtol=1e-5)
  # Step 2 with gradients scaled by 100: normalized, the input to Adam is the
  # same as at step 1, so the update is again -lr * sign.
  grads2 = jax.tree.map(lambda g: 100.0 * g, grads)
  updates, _ = tx.update(grads2, state, params)
  np.testing.assert_allclose(updates['a'], [-3e-4, 3e-4], rtol=1e-4)


def test_normalization_matches_manual_chain():
  params = {'w': jnp.array([0.5, -1.0, 2.0])}
  tx = optim.create_optimizer(_config(), num_steps=4)
  ref = optax.chain(optax.scale_by_adam(), optax.scale(-3e-4))
  s, r = tx.init(params), ref.init(params)
  for g in ([1.0, 2.0, 2.0], [0.0, 3.0, -4.0]):
    g = {'w': jnp.array(g)}
    u, s = tx.update(g, s, params)
    n = {'w': g['w'] / (jnp.linalg.norm(g['w']) + 1e-8)}
    v, r = ref.update(n, r, params)
    np.testing.assert_allclose(u['w'], v['w'], rtol=1e-6)


@pytest.mark.parametrize(
    'key, value',
    [('learning_rate', 0.0), ('hold_fraction', 1.5), ('final_fraction', -0.1),
     ('normalize_eps', -1.0), ('b2', 2.0)],
    ids=lambda v: str(v))
def test_validate_names_bad_key(key, value):
  with pytest.raises(validation.ConfigError, match=f'optim.{key}'):
    optim.validate(_config(**{key: value}))


def test_normalize_eps_without_normalization_is_refused():
  # It has no effect there; at its default it is accepted (the toy's case).
  with pytest.raises(validation.ConfigError,
                     match=r'optim.normalize_eps=0.0001 has no effect with '
                     r'optim.normalize_gradients=False'):
    optim.validate(_config(normalize_gradients=False, normalize_eps=1e-4))
  optim.validate(_config(normalize_gradients=False))
  optim.validate(_config(normalize_eps=1e-4))


def test_update_reads_the_numbers_of_the_state():
  # Numbers as arrays: `a` (lr 1e-3, Adam's eps 1e-3, T = 4: held 2 steps,
  # then 2 of decay) and `b` (defaults, T = 100) are different objects, but
  # the update takes its numbers from the state, so `b` updating `a`'s state
  # is `a`.
  params = {'w': jnp.array([0.5, -1.0, 2.0])}
  settings = _config(learning_rate=1e-3, eps=1e-3)
  a = optim.create_optimizer(settings, num_steps=4)
  b = optim.create_optimizer(_config(), num_steps=100)
  assert a is optim.create_optimizer(settings, 4)
  assert a is not b
  state = a.init(params)
  assert {k: float(v) for k, v in state.hyperparams.items()} == pytest.approx(
      {'learning_rate': 1e-3, 'hold_steps': 2.0, 'decay_steps': 2.0,
       'final_fraction': 0.0, 'eps': 1e-3, 'normalize_eps': 1e-8})
  state_a = state_b = state
  lrs = []
  for g in ([1.0, 2.0, 2.0], [0.0, 3.0, -4.0], [2.0, -1.0, 1.0],
            [1.0, 1.0, -3.0]):
    g = {'w': jnp.array(g)}
    u_a, state_a = a.update(g, state_a, params)
    u_b, state_b = jax.jit(b.update)(g, state_b, params)
    np.testing.assert_allclose(u_b['w'], u_a['w'], rtol=1e-6)
    lrs.append(float(optim.learning_rate_at(len(lrs), 1e-3, 2.0, 2.0, 0.0)))
  # a's schedule, not b's (which would hold 3e-4 for 50 steps)
  np.testing.assert_allclose(lrs, [1e-3, 1e-3, 1e-3, 5e-4], rtol=1e-6)
  # set_numbers gives b's initial state a's numbers
  moved = optim.set_numbers(b.init(params), settings, 4)
  for got, want in zip(jax.tree.leaves(moved), jax.tree.leaves(state)):
    np.testing.assert_array_equal(got, want)


def test_learning_rate_reaches_the_compiled_update():
  # One jitted update, two learning rates in the state: the updates scale.
  params = {'w': jnp.array([0.5, -1.0, 2.0])}
  grads = {'w': jnp.array([1.0, 2.0, -2.0])}
  tx = optim.create_optimizer(_config(), num_steps=10)
  update = jax.jit(tx.update)
  small, _ = update(grads, tx.init(params), params)
  state = optim.set_numbers(tx.init(params), _config(learning_rate=3e-3), 10)
  large, _ = update(grads, state, params)
  assert update._cache_size() == 1
  np.testing.assert_allclose(large['w'], 10 * small['w'], rtol=1e-5)
