"""Tests for rdvae/objectives.py: values and gradients on hand-computed cases,
beta schedules, the Lagrange multiplier, and config validation."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae import objectives
from rdvae import types
from rdvae import validation

# Two examples weighted 1/4 and 3/4: R = 2.5, D = 3.5.
RATE = jnp.array([1.0, 3.0])
DISTORTION = jnp.array([2.0, 4.0])
WEIGHTS = jnp.array([0.25, 0.75])


def _loss_and_grads(objective, multiplier=0.0, step=0, weights=WEIGHTS):
  state = objectives.ObjectiveState(jnp.asarray(multiplier, jnp.float32))

  def loss(rate, distortion):
    return objectives.loss_fn(objective, types.RDTerms(rate, distortion),
                              state, step, weights=weights)

  (value, aux), grads = jax.value_and_grad(loss, argnums=(0, 1),
                                           has_aux=True)(RATE, DISTORTION)
  return float(value), aux, np.asarray(grads[0]), np.asarray(grads[1])


class LossTest(parameterized.TestCase):

  # (name, objective, multiplier, loss, d loss / d R, d loss / d D); the
  # per-example gradients are these times the normalised weights.
  @parameterized.named_parameters(
      ('elbo', objectives.Objective('elbo'), 0.0, 6.0, 1.0, 1.0),
      ('elbo_ignores_beta', objectives.Objective('elbo', beta=5.0), 0.0, 6.0,
       1.0, 1.0),
      ('beta_vae_2', objectives.Objective('beta_vae', beta=2.0), 0.0, 8.5,
       2.0, 1.0),
      ('beta_vae_0', objectives.Objective('beta_vae', beta=0.0), 0.0, 3.5,
       0.0, 1.0),
      ('target_rate_below', objectives.Objective('target_rate', rate=3.0),
       0.0, 3.5 + 0.5, -1.0, 1.0),
      ('target_rate_above', objectives.Objective('target_rate', rate=1.0),
       0.0, 3.5 + 1.5, 1.0, 1.0),
      ('target_distortion_below',
       objectives.Objective('target_distortion', distortion=3.0), 0.0,
       2.5 + 0.5, 1.0, 1.0),
      ('target_distortion_above',
       objectives.Objective('target_distortion', distortion=5.0), 0.0,
       2.5 + 1.5, 1.0, -1.0),
      # D + lambda (R - sigma) + (rho / 2)(R - sigma)^2, R - sigma = 0.5.
      ('rate_constraint', objectives.Objective(
          'rate_constraint', rate=2.0, penalty=4.0), 0.5,
       3.5 + 0.5 * 0.5 + 2.0 * 0.25, 0.5 + 4.0 * 0.5, 1.0),
      ('rate_constraint_no_penalty', objectives.Objective(
          'rate_constraint', rate=3.0), -2.0, 3.5 + (-2.0) * (-0.5), -2.0,
       1.0),
      # R + lambda (D - delta) + (rho / 2)(D - delta)^2, D - delta = -0.5.
      ('distortion_constraint', objectives.Objective(
          'distortion_constraint', distortion=4.0, penalty=2.0), 1.5,
       2.5 + 1.5 * -0.5 + 1.0 * 0.25, 1.0, 1.5 + 2.0 * -0.5),
  )
  def test_value_and_gradient(self, objective, multiplier, want_loss,
                              want_drate, want_ddistortion):
    value, aux, grad_rate, grad_distortion = _loss_and_grads(objective,
                                                             multiplier)
    self.assertAlmostEqual(value, want_loss, places=5)
    self.assertAlmostEqual(float(aux['loss']), want_loss, places=5)
    self.assertAlmostEqual(float(aux['rate']), 2.5, places=6)
    self.assertAlmostEqual(float(aux['distortion']), 3.5, places=6)
    self.assertAlmostEqual(float(aux['elbo']), -6.0, places=6)
    np.testing.assert_allclose(grad_rate, want_drate * WEIGHTS, atol=1e-6)
    np.testing.assert_allclose(grad_distortion, want_ddistortion * WEIGHTS,
                               atol=1e-6)

  def test_target_rate_uses_the_batch_mean_rate(self):
    """|sigma - mean R| = 0 here, while mean |sigma - R_i| would be 1."""
    objective = objectives.Objective('target_rate', rate=2.0)
    value, _, grad_rate, _ = _loss_and_grads(objective, weights=None)
    self.assertAlmostEqual(value, 3.0, places=6)  # D = 3, |2 - 2| = 0
    # At the kink any value in [-1, 1] is a subgradient of |sigma - R|.
    self.assertLessEqual(abs(float(np.sum(grad_rate))), 1.0)

  def test_constraint_violation_is_reported(self):
    objective = objectives.Objective('rate_constraint', rate=2.0)
    _, aux, _, _ = _loss_and_grads(objective)
    self.assertAlmostEqual(float(aux['constraint']), 0.5, places=6)

  def test_multiplier_gets_no_gradient(self):
    objective = objectives.Objective('rate_constraint', rate=2.0)
    grad = jax.grad(lambda lam: objectives.loss_fn(
        objective, types.RDTerms(RATE, DISTORTION),
        objectives.ObjectiveState(lam), 0)[0])(jnp.float32(1.0))
    self.assertEqual(float(grad), 0.0)

  def test_unweighted_mean_and_mapped_mean_agree(self):
    rate = jnp.arange(8.0)
    terms = types.RDTerms(rate, 2.0 * rate)
    state = objectives.Objective().init_state()
    _, aux = objectives.loss_fn(objectives.Objective(), terms, state, 0)
    self.assertAlmostEqual(float(aux['rate']), 3.5, places=6)

    def mapped(rate_shard, weights_shard):
      return objectives.loss_fn(
          objectives.Objective(),
          types.RDTerms(rate_shard, 2.0 * rate_shard), state, 0,
          weights=weights_shard, axis_name='devices')[1]['rate']

    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    got = jax.vmap(mapped, axis_name='devices')(rate.reshape(4, 2),
                                                weights.reshape(4, 2))
    np.testing.assert_allclose(got, 2.5, rtol=1e-6)  # mean of 0..5

  def test_mapped_gradient_is_each_devices_share_of_the_global_one(self):
    """Under a named axis (psum transposes to psum, as under pmap) each device
    gets d loss / d R_i of its own examples, not D times it.

    L = D + lambda (R - sigma) + (rho / 2)(R - sigma)^2 with the global
    R = 2.5 (mean of 0..5; the last two examples weigh 0), sigma = 2,
    lambda = 0.5, rho = 4: dL/dR = 0.5 + 4 * 0.5 = 2.5, dL/dD = 1, and
    example i's share is w_i / sum(w) = 1/6.
    """
    objective = objectives.Objective('rate_constraint', rate=2.0, penalty=4.0)
    state = objectives.ObjectiveState(jnp.float32(0.5))
    weights = jnp.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0])

    def loss(rate, distortion, weights, axis_name):
      return objectives.loss_fn(objective, types.RDTerms(rate, distortion),
                                state, 0, weights=weights,
                                axis_name=axis_name)[0]

    def mapped(rate_shard, distortion_shard, weights_shard):
      return jax.grad(loss, argnums=(0, 1))(rate_shard, distortion_shard,
                                            weights_shard, 'devices')

    rate = jnp.arange(8.0)
    distortion = 2.0 * rate
    got = jax.vmap(mapped, axis_name='devices')(
        rate.reshape(4, 2), distortion.reshape(4, 2), weights.reshape(4, 2))
    want = jax.grad(loss, argnums=(0, 1))(rate, distortion, weights, None)
    np.testing.assert_allclose(want[0], 2.5 * weights / 6.0, rtol=1e-6)
    np.testing.assert_allclose(want[1], weights / 6.0, rtol=1e-6)
    np.testing.assert_allclose(np.ravel(got[0]), want[0], rtol=1e-6)
    np.testing.assert_allclose(np.ravel(got[1]), want[1], rtol=1e-6)

  def test_unknown_kind_raises(self):
    with self.assertRaisesRegex(ValueError, 'unknown objective kind'):
      _loss_and_grads(objectives.Objective('elbo_plus'))


class ScheduleTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('constant', 'beta_vae', 'constant', 0, 2.0),
      ('constant_late', 'beta_vae', 'constant', 1000, 2.0),
      ('linear_start', 'beta_vae', 'linear', 0, 0.1),
      ('linear_middle', 'beta_vae', 'linear', 5, 0.1 + 0.5 * 1.9),
      ('linear_end', 'beta_vae', 'linear', 10, 2.0),
      ('linear_after', 'beta_vae', 'linear', 25, 2.0),
      ('elbo_anneals_to_one', 'elbo', 'linear', 5, 0.1 + 0.5 * 0.9),
      ('elbo_constant_is_one', 'elbo', 'constant', 3, 1.0),
  )
  def test_beta_at(self, kind, schedule, step, want):
    objective = objectives.Objective(kind, beta=2.0, beta_schedule=schedule,
                                     beta_start=0.1, anneal_steps=10)
    self.assertAlmostEqual(float(objectives.beta_at(objective, step)), want,
                           places=6)

  def test_annealed_beta_enters_the_loss(self):
    objective = objectives.Objective('beta_vae', beta=2.0,
                                     beta_schedule='linear', beta_start=0.0,
                                     anneal_steps=4)
    value, _, grad_rate, _ = _loss_and_grads(objective, step=1)
    self.assertAlmostEqual(value, 3.5 + 0.5 * 2.5, places=5)
    np.testing.assert_allclose(grad_rate, 0.5 * WEIGHTS, atol=1e-6)


class MultiplierTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('rate_constraint', 'rate_constraint', 0.5, 0.1, 1.05),
      ('distortion_constraint', 'distortion_constraint', -0.5, 0.1, 0.95),
      ('elbo_unchanged', 'elbo', 0.5, 0.1, 1.0),
      ('target_rate_unchanged', 'target_rate', 0.5, 0.1, 1.0))
  def test_update_state(self, kind, violation, lr, want):
    objective = objectives.Objective(kind, multiplier_lr=lr)
    state = objectives.ObjectiveState(jnp.float32(1.0))
    new = objectives.update_state(objective, state,
                                  {'constraint': jnp.float32(violation)})
    self.assertAlmostEqual(float(new.multiplier), want, places=6)

  def test_init_state(self):
    state = objectives.Objective(multiplier_init=0.7).init_state()
    self.assertAlmostEqual(float(state.multiplier), 0.7, places=6)

  def test_method_of_multipliers_solves_a_constrained_problem(self):
    """min (t - 2)^2 + 1 s.t. R = t = 1: t* = 1, lambda* = -dD/dR = 2."""
    objective = objectives.Objective('rate_constraint', rate=1.0,
                                     multiplier_lr=0.1, penalty=1.0)

    def step(carry, i):
      t, state = carry
      def loss(t):
        terms = types.RDTerms(t[None], (t - 2.0)[None]**2 + 1.0)
        return objectives.loss_fn(objective, terms, state, i)
      grad, aux = jax.grad(loss, has_aux=True)(t)
      return (t - 0.1 * grad,
              objectives.update_state(objective, state, aux)), None

    (t, state), _ = jax.lax.scan(step, (jnp.float32(3.0),
                                        objective.init_state()),
                                 jnp.arange(3000))
    self.assertAlmostEqual(float(t), 1.0, places=4)
    self.assertAlmostEqual(float(state.multiplier), 2.0, places=3)


class ValidateTest(parameterized.TestCase):

  def _config(self, **objective):
    config = objectives.default_config()
    config.update(objective)
    return ml_collections.ConfigDict({'objective': config})

  @parameterized.named_parameters(
      ('unknown_kind', {'kind': 'vae'}, 'objective.kind', 'allowed values'),
      ('unknown_schedule', {'beta_schedule': 'cyclic'},
       'objective.beta_schedule', 'allowed values'),
      ('negative_beta', {'beta': -1.0}, 'objective.beta', '>= 0'),
      ('negative_sigma', {'kind': 'target_rate', 'rate': -0.5},
       'objective.rate', '>= 0'),
      ('negative_delta', {'distortion': -1.0}, 'objective.distortion',
       '>= 0'),
      ('zero_anneal_steps', {'anneal_steps': 0}, 'objective.anneal_steps',
       '> 0'),
      ('negative_anneal_steps', {'anneal_steps': -3},
       'objective.anneal_steps', '> 0'),
      ('negative_multiplier_lr', {'multiplier_lr': -0.1},
       'objective.multiplier_lr', '>= 0'),
  )
  def test_bad_value(self, overrides, key, message):
    with self.assertRaisesRegex(validation.ConfigError, key) as raised:
      objectives.validate(self._config(**overrides))
    self.assertIn(message, str(raised.exception))

  @parameterized.named_parameters(('target_rate', 'target_rate'),
                                  ('rate_constraint', 'rate_constraint'))
  def test_rate_above_entropy(self, kind):
    config = self._config(kind=kind, rate=3.0)
    with self.assertRaisesRegex(validation.ConfigError,
                                r'objective.rate=3.0 is above the data'):
      objectives.validate(config, data_entropy=2.914)
    objectives.validate(config)  # H unknown: nothing to check against
    objectives.validate(self._config(kind=kind, rate=2.9), data_entropy=2.914)

  def test_rate_above_entropy_is_fine_for_elbo(self):
    objectives.validate(self._config(kind='elbo', rate=3.0),
                        data_entropy=2.914)

  def test_create_objective_reads_every_key(self):
    config = self._config(kind='rate_constraint', rate=0.5, penalty=3.0,
                          multiplier_lr=0.2, multiplier_init=1.0)
    objective = objectives.create_objective(config)
    self.assertEqual(objective, objectives.Objective(
        'rate_constraint', rate=0.5, penalty=3.0, multiplier_lr=0.2,
        multiplier_init=1.0))

  def test_create_objective_validates_first(self):
    with self.assertRaisesRegex(validation.ConfigError, 'objective.kind'):
      objectives.create_objective(self._config(kind='nope'))


if __name__ == '__main__':
  absltest.main()
