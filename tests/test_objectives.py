"""Tests for rdvae/objectives/losses.py: values and gradients on hand-computed cases,
beta schedules, the Lagrange multiplier, and config validation."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rdvae.objectives import losses as objectives

from rdvae.objectives import settings
from rdvae import types
from rdvae import validation

# Two examples weighted 1/4 and 3/4: R = 2.5, D = 3.5.
RATE = jnp.array([1.0, 3.0])
DISTORTION = jnp.array([2.0, 4.0])
WEIGHTS = jnp.array([0.25, 0.75])


def _state(multiplier=1.0, **numbers):
  state = objectives.init_state(objectives.hyperparameters(**numbers))
  return state._replace(multiplier=jnp.asarray(multiplier, jnp.float32))


def _loss_and_grads(objective, multiplier=0.0, step=0, weights=WEIGHTS,
                    **numbers):
  state = _state(multiplier, **numbers)

  def loss(rate, distortion):
    return objectives.loss_fn(objective, types.RDTerms(rate, distortion),
                              state, step, weights=weights)

  (value, aux), grads = jax.value_and_grad(loss, argnums=(0, 1),
                                           has_aux=True)(RATE, DISTORTION)
  return float(value), aux, np.asarray(grads[0]), np.asarray(grads[1])


class LossTest(parameterized.TestCase):

  # (name, kind, numbers, multiplier, loss, d loss / d R, d loss / d D);
  # the per-example gradients are these times the normalised weights.
  @parameterized.named_parameters(
      ('elbo', 'elbo', {}, 0.0, 6.0, 1.0, 1.0),
      ('elbo_ignores_beta', 'elbo', {'beta': 5.0}, 0.0, 6.0, 1.0, 1.0),
      ('beta_vae_2', 'beta_vae', {'beta': 2.0}, 0.0, 8.5, 2.0, 1.0),
      ('beta_vae_0', 'beta_vae', {'beta': 0.0}, 0.0, 3.5, 0.0, 1.0),
      ('target_rate_below', 'target_rate', {'rate': 3.0}, 0.0, 3.5 + 0.5,
       -1.0, 1.0),
      ('target_rate_above', 'target_rate', {'rate': 1.0}, 0.0, 3.5 + 1.5,
       1.0, 1.0),
      ('target_distortion_below', 'target_distortion', {'distortion': 3.0},
       0.0, 2.5 + 0.5, 1.0, 1.0),
      ('target_distortion_above', 'target_distortion', {'distortion': 5.0},
       0.0, 2.5 + 1.5, 1.0, -1.0),
      # D + lambda (R - sigma) + (rho / 2) (R - sigma)^2 / sigma,
      # R - sigma = 0.5: 3.5 + 0.25 + 2 * 0.25 / 2.
      ('rate_constraint', 'rate_constraint', {'rate': 2.0, 'penalty': 4.0},
       0.5, 3.5 + 0.5 * 0.5 + 2.0 * 0.25 / 2.0, 0.5 + 4.0 * 0.5 / 2.0, 1.0),
      ('rate_constraint_no_penalty', 'rate_constraint',
       {'rate': 3.0, 'penalty': 0.0}, 2.0,
       3.5 + 2.0 * (-0.5), 2.0, 1.0),
      # R + lambda (D - delta) + (rho / 2) (D - delta)^2 / delta,
      # D - delta = -0.5.
      ('distortion_constraint', 'distortion_constraint',
       {'distortion': 4.0, 'penalty': 2.0}, 1.5,
       2.5 + 1.5 * -0.5 + 1.0 * 0.25 / 4.0, 1.0, 1.5 + 2.0 * -0.5 / 4.0),
  )
  def test_value_and_gradient(self, kind, numbers, multiplier, want_loss,
                              want_drate, want_ddistortion):
    value, aux, grad_rate, grad_distortion = _loss_and_grads(
        objectives.Objective(kind), multiplier, **numbers)
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
    value, _, grad_rate, _ = _loss_and_grads(
        objectives.Objective('target_rate'), weights=None, rate=2.0)
    self.assertAlmostEqual(value, 3.0, places=6)  # D = 3, |2 - 2| = 0
    # At the kink any value in [-1, 1] is a subgradient of |sigma - R|.
    self.assertLessEqual(abs(float(np.sum(grad_rate))), 1.0)

  def test_constraint_violation_is_reported(self):
    _, aux, _, _ = _loss_and_grads(objectives.Objective('rate_constraint'),
                                   rate=2.0)
    self.assertAlmostEqual(float(aux['constraint']), 0.5, places=6)
    self.assertAlmostEqual(float(aux['rate_target']), 2.0, places=6)

  def test_multiplier_gets_no_gradient(self):
    objective = objectives.Objective('rate_constraint')
    grad = jax.grad(lambda lam: objectives.loss_fn(
        objective, types.RDTerms(RATE, DISTORTION),
        _state(lam, rate=2.0), 0)[0])(jnp.float32(1.0))
    self.assertEqual(float(grad), 0.0)

  def test_unweighted_mean_and_mapped_mean_agree(self):
    rate = jnp.arange(8.0)
    terms = types.RDTerms(rate, 2.0 * rate)
    state = _state()
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

    L = D + lambda (R - sigma) + (rho / 2)(R - sigma)^2 / sigma with the
    global R = 2.5 (mean of 0..5; the last two examples weigh 0), sigma = 2,
    lambda = 0.5, rho = 4: dL/dR = 0.5 + 4 * 0.5 / 2 = 1.5, dL/dD = 1, and
    example i's share is w_i / sum(w) = 1/6.
    """
    objective = objectives.Objective('rate_constraint')
    state = objectives.init_state(objectives.hyperparameters(
        rate=2.0, penalty=4.0, multiplier_init=0.5))
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
    np.testing.assert_allclose(want[0], 1.5 * weights / 6.0, rtol=1e-6)
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
    objective = objectives.Objective(kind, beta_schedule=schedule)
    hparams = objectives.hyperparameters(beta=2.0, beta_start=0.1,
                                         anneal_steps=10)
    self.assertAlmostEqual(float(objectives.beta_at(objective, hparams, step)),
                           want, places=6)

  def test_annealed_beta_enters_the_loss(self):
    objective = objectives.Objective('beta_vae', beta_schedule='linear')
    value, _, grad_rate, _ = _loss_and_grads(objective, step=1, beta=2.0,
                                             beta_start=0.0, anneal_steps=4)
    self.assertAlmostEqual(value, 3.5 + 0.5 * 2.5, places=5)
    np.testing.assert_allclose(grad_rate, 0.5 * WEIGHTS, atol=1e-6)

  # sigma_t = sigma min(1, t / rate_anneal_steps) with sigma = 30, 10 steps.
  @parameterized.named_parameters(
      ('constant', 'constant', 0, 30.0),
      ('constant_late', 'constant', 7, 30.0),
      ('linear_start', 'linear', 0, 0.0),
      ('linear_one', 'linear', 1, 3.0),
      ('linear_middle', 'linear', 5, 15.0),
      ('linear_end', 'linear', 10, 30.0),
      ('linear_after', 'linear', 25, 30.0),
  )
  def test_rate_target_at(self, schedule, step, want):
    objective = objectives.Objective('rate_constraint', rate_schedule=schedule)
    hparams = objectives.hyperparameters(rate=30.0, rate_anneal_steps=10)
    self.assertAlmostEqual(
        float(objectives.rate_target_at(objective, hparams, step)), want,
        places=5)

  @parameterized.named_parameters(('target_rate', 'target_rate', 1.0),
                                  ('rate_constraint', 'rate_constraint', 3.0))
  def test_annealed_rate_target_enters_the_loss(self, kind, multiplier):
    # sigma_2 = 4 * 2 / 8 = 1 and R = 2.5: target_rate D + |1 - 2.5|;
    # rate_constraint D + lambda (2.5 - 1).
    objective = objectives.Objective(kind, rate_schedule='linear')
    value, aux, grad_rate, _ = _loss_and_grads(
        objective, multiplier, step=2, rate=4.0, rate_anneal_steps=8,
        penalty=0.0)
    self.assertAlmostEqual(float(aux['rate_target']), 1.0, places=6)
    self.assertAlmostEqual(value, 3.5 + multiplier * 1.5, places=5)
    np.testing.assert_allclose(grad_rate, multiplier * WEIGHTS, atol=1e-6)


def _quadratic_problem(scale, hparams, num_steps):
  """min D = k((t - 2)^2 + 1) s.t. R = k t = sigma, t by Adam (eps 0).

  With k = `scale`, R, D and the constraint scale together; t* = 1 at
  sigma = k and lambda* = -dD/dR = 2 whatever k. Returns the multiplier and
  t at every step.
  """
  objective = objectives.Objective('rate_constraint')
  optimizer = optax.adam(optax.cosine_decay_schedule(0.05, num_steps,
                                                     alpha=0.01), eps=0.0)

  def step(carry, i):
    t, opt_state, state = carry

    def loss(t):
      terms = types.RDTerms(scale * t[None],
                            scale * ((t - 2.0)[None]**2 + 1.0))
      return objectives.loss_fn(objective, terms, state, i)

    grad, aux = jax.grad(loss, has_aux=True)(t)
    updates, opt_state = optimizer.update(grad, opt_state)
    state = objectives.update_state(objective, state, aux)
    return (t + updates, opt_state, state), (state.multiplier, t)

  t = jnp.float32(3.0)
  _, (multiplier, t) = jax.lax.scan(
      step, (t, optimizer.init(t), objectives.init_state(hparams)),
      jnp.arange(num_steps))
  return np.asarray(multiplier), np.asarray(t)


class MultiplierTest(parameterized.TestCase):

  def test_update_by_hand(self):
    """sigma = 2, decay 0.5, lr 0.1, lambda_0 = 1, violations 1, -0.5, 0.25:
    c = 0.5, -0.25, 0.125; c_avg = 0.25, 0, 0.0625;
    lambda = e^0.025, e^0.025, e^0.03125."""
    objective = objectives.Objective('rate_constraint')
    state = objectives.init_state(objectives.hyperparameters(
        rate=2.0, constraint_decay=0.5, multiplier_lr=0.1))
    got = []
    for violation in (1.0, -0.5, 0.25):
      state = objectives.update_state(objective, state,
                                      {'constraint': jnp.float32(violation)})
      got.append((float(state.constraint_average), float(state.multiplier)))
    np.testing.assert_allclose(
        got, [(0.25, 1.0253151205), (0.0, 1.0253151205),
              (0.0625, 1.0317434075)], rtol=1e-6, atol=1e-7)

  @parameterized.named_parameters(
      # relative violation -0.5 / 4 = -0.125, decay 0: lambda = 2 e^-0.0125.
      ('distortion_constraint', 'distortion_constraint',
       2.0 * np.exp(-0.0125)),
      ('elbo_unchanged', 'elbo', 2.0),
      ('target_rate_unchanged', 'target_rate', 2.0))
  def test_update_state(self, kind, want):
    objective = objectives.Objective(kind)
    state = objectives.init_state(objectives.hyperparameters(
        distortion=4.0, rate=4.0, multiplier_init=2.0, multiplier_lr=0.1,
        constraint_decay=0.0))
    new = objectives.update_state(objective, state,
                                  {'constraint': jnp.float32(-0.5)})
    self.assertAlmostEqual(float(new.multiplier), want, places=6)

  def test_init_state(self):
    hparams = objectives.hyperparameters(multiplier_init=0.7, rate=3.0)
    state = objectives.init_state(hparams)
    self.assertAlmostEqual(float(state.multiplier), 0.7, places=6)
    self.assertEqual(float(state.constraint_average), 0.0)
    self.assertEqual(float(state.hparams.rate), 3.0)
    for leaf in jax.tree.leaves(state):
      self.assertEqual(leaf.dtype, jnp.float32)
      self.assertEqual(leaf.shape, ())

  def test_unknown_hyperparameter_raises(self):
    with self.assertRaisesRegex(TypeError, 'sigma'):
      objectives.hyperparameters(sigma=1.0)

  def test_solves_a_constrained_problem(self):
    """min (t - 2)^2 + 1 s.t. R = t = 1: t* = 1, lambda* = -dD/dR = 2."""
    hparams = objectives.hyperparameters(rate=1.0, multiplier_lr=0.05,
                                         constraint_decay=0.9, penalty=0.0)
    multiplier, t = _quadratic_problem(1.0, hparams, 3000)
    self.assertAlmostEqual(float(t[-1]), 1.0, places=5)
    self.assertAlmostEqual(float(multiplier[-1]), 2.0, places=4)

  def test_multiplier_trajectory_is_scale_invariant(self):
    """R, D and sigma times 100 (1 nat vs 100 nats): the same lambda(t)."""
    numbers = {'multiplier_lr': 0.05, 'constraint_decay': 0.9,
               'penalty': 1.0}
    small = _quadratic_problem(
        1.0, objectives.hyperparameters(rate=1.0, **numbers), 1000)
    large = _quadratic_problem(
        100.0, objectives.hyperparameters(rate=100.0, **numbers), 1000)
    np.testing.assert_allclose(large[0], small[0], rtol=1e-4)
    np.testing.assert_allclose(large[1], small[1], rtol=1e-4, atol=1e-5)
    self.assertGreater(np.ptp(small[0]), 0.5)  # lambda moved: not vacuous


# A value other than the default for every key of APPLIES_TO.
_OTHER_VALUES = {
    'beta': 2.0, 'beta_schedule': 'linear', 'beta_start': 0.5,
    'anneal_steps': 10, 'rate': 2.0, 'rate_schedule': 'linear',
    'rate_anneal_steps': 10, 'distortion': 5.0, 'multiplier_init': 1.5,
    'multiplier_lr': 0.3, 'constraint_decay': 0.5, 'penalty': 2.0}


def _with_target(kind: str, overrides: dict) -> dict:
  """`overrides` under `kind`, with the positive target a constraint needs."""
  needs = {'rate_constraint': {'rate': 1.0},
           'distortion_constraint': {'distortion': 1.0}}.get(kind, {})
  return {'kind': kind, **needs, **overrides}


class AppliesToTest(parameterized.TestCase):
  """`APPLIES_TO` and `LINEAR_ONLY` against the loss itself: a key changes
  the loss, its gradient or the multiplier's update exactly where the table
  says it acts."""

  # Schedules in force and targets away from zero, so that every key can act.
  BASE = {'anneal_steps': 10.0, 'rate_anneal_steps': 10.0, 'rate': 1.0,
          'distortion': 3.0}

  def _result(self, kind, step=3, **changes):
    schedules = {k: changes.pop(k, 'constant')
                 for k in ('beta_schedule', 'rate_schedule')}
    objective = objectives.Objective(kind, **schedules)
    state = objectives.init_state(
        objectives.hyperparameters(**{**self.BASE, **changes}))

    def loss(rate, distortion):
      return objectives.loss_fn(objective, types.RDTerms(rate, distortion),
                                state, step, weights=WEIGHTS)

    (value, aux), grads = jax.value_and_grad(loss, argnums=(0, 1),
                                             has_aux=True)(RATE, DISTORTION)
    updated = objectives.update_state(objective, state, aux)
    # The multiplier's step, not its value: an unconstrained objective
    # carries lambda = multiplier_init unused.
    return np.array([float(value), *np.concatenate(grads),
                     float(updated.multiplier - state.multiplier),
                     float(updated.constraint_average)])

  def _changes(self, key, kind, linear):
    value = _OTHER_VALUES[key]
    if key not in ('beta_schedule', 'rate_schedule'):
      value = float(value) if key not in self.BASE else 2 * self.BASE[key]
    changes = {key: value}
    if linear:
      changes.update(beta_schedule='linear', rate_schedule='linear')
    return changes

  @parameterized.named_parameters(
      *[(f'{key}_{kind}', key, kind) for key in settings.APPLIES_TO
        for kind in objectives.KINDS])
  def test_key_acts_exactly_under_its_kinds(self, key, kind):
    linear = {'beta_schedule': 'linear', 'rate_schedule': 'linear'}
    base = self._result(kind, **(
        {} if key in ('beta_schedule', 'rate_schedule') else linear))
    changed = self._result(kind, **self._changes(
        key, kind, key not in ('beta_schedule', 'rate_schedule')))
    acts = not np.array_equal(base, changed)
    self.assertEqual(acts, kind in settings.APPLIES_TO[key])

  @parameterized.named_parameters(
      *[(key, key) for key in settings.LINEAR_ONLY])
  def test_linear_only_key_is_inert_under_constant_schedule(self, key):
    kind = settings.APPLIES_TO[key][-1]
    base = self._result(kind)
    changed = self._result(kind, **self._changes(key, kind, linear=False))
    np.testing.assert_array_equal(base, changed)


class ValidateTest(parameterized.TestCase):

  def _config(self, **objective):
    config = settings.default_config()
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
      ('unknown_rate_schedule', {'rate_schedule': 'cosine'},
       'objective.rate_schedule', 'allowed values'),
      ('zero_rate_anneal_steps', {'rate_anneal_steps': 0},
       'objective.rate_anneal_steps', '> 0'),
      ('zero_multiplier_init', {'multiplier_init': 0.0},
       'objective.multiplier_init', '> 0'),
      ('decay_one', {'constraint_decay': 1.0}, 'objective.constraint_decay',
       '< 1'),
      ('negative_decay', {'constraint_decay': -0.1},
       'objective.constraint_decay', '>= 0'),
      ('negative_penalty', {'penalty': -1.0}, 'objective.penalty', '>= 0'),
      ('zero_constrained_rate', {'kind': 'rate_constraint', 'rate': 0.0},
       r'objective.rate=0.0', 'must be > 0 for the rate constraint'),
      ('zero_constrained_distortion',
       {'kind': 'distortion_constraint', 'distortion': 0.0},
       r'objective.distortion=0.0', 'must be > 0 for the distortion'),
  )
  def test_bad_value(self, overrides, key, message):
    with self.assertRaisesRegex(validation.ConfigError, key) as raised:
      settings.validate(self._config(**overrides))
    self.assertIn(message, str(raised.exception))

  @parameterized.named_parameters(('target_rate', 'target_rate'),
                                  ('rate_constraint', 'rate_constraint'))
  def test_rate_above_entropy(self, kind):
    config = self._config(kind=kind, rate=3.0)
    with self.assertRaisesRegex(validation.ConfigError,
                                r'objective.rate=3.0 is above the data'):
      settings.validate(config, data_entropy=2.914)
    settings.validate(config)  # H unknown: nothing to check against
    settings.validate(self._config(kind=kind, rate=2.9), data_entropy=2.914)

  def test_rate_of_elbo_is_refused_before_the_entropy(self):
    # The ELBO has no rate target: a rate above H is not a target out of
    # range but a key with no effect.
    with self.assertRaisesRegex(validation.ConfigError,
                                r'objective.rate=3.0 has no effect'):
      settings.validate(self._config(kind='elbo', rate=3.0),
                          data_entropy=2.914)

  def test_create_objective_reads_every_key(self):
    # Each number under a kind (and schedule) where it acts.
    by_kind = {
        'beta_vae': {'beta': 2.0, 'beta_start': 0.5, 'anneal_steps': 7},
        'rate_constraint': {'rate': 0.5, 'rate_anneal_steps': 11,
                            'multiplier_init': 1.5, 'multiplier_lr': 0.2,
                            'constraint_decay': 0.8, 'penalty': 3.0},
        'distortion_constraint': {'distortion': 3.0},
    }
    self.assertCountEqual([k for n in by_kind.values() for k in n],
                          objectives.Hyperparameters._fields)
    for kind, numbers in by_kind.items():
      schedules = ({'beta_schedule': 'linear'} if kind == 'beta_vae'
                   else {'rate_schedule': 'linear'}
                   if kind == 'rate_constraint' else {})
      config = self._config(kind=kind, **schedules, **numbers)
      self.assertEqual(settings.create_objective(config),
                       objectives.Objective(kind, **schedules))
      hparams = settings.create_hyperparameters(config)
      for key, value in numbers.items():
        self.assertEqual(getattr(hparams, key).dtype, jnp.float32)
        self.assertAlmostEqual(float(getattr(hparams, key)), value, places=6)
      if kind == 'rate_constraint':
        state = settings.create_state(config)
        self.assertAlmostEqual(float(state.multiplier), 1.5, places=6)

  def test_beta_of_elbo_is_refused_with_what_to_do(self):
    with self.assertRaises(validation.ConfigError) as raised:
      settings.validate(self._config(kind='elbo', beta=2.0))
    self.assertEqual(
        str(raised.exception),
        "config.objective.beta=2.0 has no effect with objective.kind='elbo' "
        "(beta is 1); use objective.kind='beta_vae', or leave "
        'objective.beta at its default 1.0')

  @parameterized.named_parameters(
      *[(f'{key}_{kind}', key, kind)
        for key, kinds in settings.APPLIES_TO.items()
        for kind in objectives.KINDS if kind not in kinds])
  def test_key_without_effect_under_kind_is_refused(self, key, kind):
    value = _OTHER_VALUES[key]
    with self.assertRaises(validation.ConfigError) as raised:
      settings.validate(self._config(**_with_target(kind, {key: value})))
    message = str(raised.exception)
    for needle in (f'config.objective.{key}={value!r} has no effect',
                   f'objective.kind={kind!r}',
                   f'objective.kind={settings.APPLIES_TO[key][0]!r}'
                   if len(settings.APPLIES_TO[key]) == 1
                   else f'objective.kind in {settings.APPLIES_TO[key]}',
                   f'default {settings.default_config()[key]!r}'):
      self.assertIn(needle, message)

  @parameterized.named_parameters(
      *[(f'{key}_{kind}', key, kind)
        for key, kinds in settings.APPLIES_TO.items() for kind in kinds])
  def test_key_with_effect_under_kind_is_accepted(self, key, kind):
    overrides = {key: _OTHER_VALUES[key]}
    if key in settings.LINEAR_ONLY:
      overrides[settings.LINEAR_ONLY[key]] = 'linear'
    settings.validate(self._config(**_with_target(kind, overrides)))

  @parameterized.named_parameters(
      ('beta_start', 'beta_start', 'beta_vae'),
      ('anneal_steps', 'anneal_steps', 'elbo'),
      ('rate_anneal_steps', 'rate_anneal_steps', 'target_rate'))
  def test_linear_only_key_under_constant_schedule_is_refused(self, key, kind):
    schedule = settings.LINEAR_ONLY[key]
    with self.assertRaisesRegex(
        validation.ConfigError,
        f"objective.{key}=.* has no effect with objective.{schedule}="
        f"'constant'; use objective.{schedule}='linear'"):
      settings.validate(self._config(kind=kind,
                                       **{key: _OTHER_VALUES[key]}))

  def test_kind_groups_cover_the_kinds_once(self):
    groups = (objectives.BETA_WEIGHTED + objectives.RATE_TARGETED
              + objectives.DISTORTION_TARGETED)
    self.assertCountEqual(groups, objectives.KINDS)
    self.assertLess(set(objectives.CONSTRAINED),
                    set(objectives.RATE_TARGETED
                        + objectives.DISTORTION_TARGETED))
    self.assertCountEqual(settings.APPLIES_TO,
                          [k for k in settings.default_config()
                           if k != 'kind'])

  def test_default_config_declares_every_number(self):
    config = settings.default_config()
    for key in objectives.Hyperparameters._fields:
      self.assertIn(key, config)
    settings.validate(ml_collections.ConfigDict({'objective': config}))

  def test_create_objective_validates_first(self):
    with self.assertRaisesRegex(validation.ConfigError, 'objective.kind'):
      settings.create_objective(self._config(kind='nope'))


if __name__ == '__main__':
  absltest.main()
