"""Tests of rdvae/training/steps.py on a tiny stand-in model (tests/tiny_model.py)."""

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import tiny_model
from rdvae.evaluation import steps as eval_steps
from rdvae.runtime import parallel
from rdvae.objectives import bounds
from rdvae.objectives import losses as objectives
from rdvae.training import optim
from rdvae.training import steps

MODEL = tiny_model.TinyModel()
X = (jax.random.uniform(jax.random.key(0), (6, 4, 4, 1)) > 0.5).astype(
    jnp.float32)


@jax.jit
def _apply_one(params, x, key):
  return MODEL.apply({'params': params}, x, rngs={'sample': key})


@jax.jit
def _per_example(params, x, keys):
  return parallel.apply_per_example(MODEL, params, x, keys)


OPTIMIZER = optim.create_optimizer(
    ml_collections.ConfigDict({'optim': optim.default_config()}), 10)


@functools.lru_cache(maxsize=None)
def _state(**numbers):
  """The initial state with objective numbers `numbers` (Hyperparameters)."""
  init = jax.jit(steps.create_train_state, static_argnums=(0, 1))
  return init(MODEL, OPTIMIZER,
              objectives.init_state(objectives.hyperparameters(**numbers)),
              jax.random.key(1), X)


def test_example_keys_depend_on_step_only_through_fold_in():
  rng = jax.random.key_data(jax.random.key(3))
  a = parallel.example_keys(rng, 5, 4)
  b = parallel.example_keys(rng, 5, 4)
  c = parallel.example_keys(rng, 6, 4)
  data = jax.random.key_data
  np.testing.assert_array_equal(data(a), data(b))
  assert not np.array_equal(data(a), data(c))
  np.testing.assert_array_equal(
      data(a), data(jax.random.split(
          jax.random.fold_in(jax.random.key(3), 5), 4)))


def test_apply_per_example_equals_single_example_applies():
  state = _state()
  keys = parallel.example_keys(state.rng, 0, len(X))
  terms = _per_example(state.params, X, keys)
  for i in range(len(X)):
    one = _apply_one(state.params, X[i:i + 1], keys[i])
    np.testing.assert_allclose(terms.rate[i], one.rate[0], rtol=1e-6)
    np.testing.assert_allclose(terms.distortion[i], one.distortion[0],
                               rtol=1e-6)


def test_apply_per_example_is_layout_independent():
  # Permuting the batch and its keys permutes the outputs exactly: each
  # example's draws depend on its own key only.
  state = _state()
  keys = parallel.example_keys(state.rng, 0, len(X))
  perm = np.array([3, 0, 5, 1, 4, 2])
  a = _per_example(state.params, X, keys)
  b = _per_example(state.params, X[perm], keys[perm])
  np.testing.assert_array_equal(np.asarray(a.rate)[perm], b.rate)


@pytest.mark.parametrize(
    'kind, numbers',
    [('elbo', {}),
     ('beta_vae', {'beta': 10.0}),
     ('target_rate', {'rate': 2.0}),
     ('rate_constraint', {'rate': 1.0, 'multiplier_lr': 0.5, 'penalty': 1.0,
                          'constraint_decay': 0.5})],
    ids=['elbo', 'beta_vae', 'target_rate', 'rate_constraint'])
def test_train_step_equals_manual_update(kind, numbers):
  objective = objectives.Objective(kind)
  state = _state(**numbers)
  optimizer = OPTIMIZER
  keys = parallel.example_keys(state.rng, state.step, len(X))
  step = jax.jit(steps.make_train_step(MODEL, optimizer, objective))
  new, metrics = step(state, X, keys)

  def loss(params):
    terms = parallel.apply_per_example(MODEL, params, X, keys)
    return objectives.loss_fn(objective, terms, state.objective_state, 0)

  (value, aux), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      state.params)
  updates, _ = optimizer.update(grads, state.opt_state, state.params)
  expected = optax.apply_updates(state.params, updates)
  np.testing.assert_allclose(metrics['loss'], value, rtol=1e-5)
  np.testing.assert_allclose(metrics['grad_norm'], optax.tree.norm(grads),
                             rtol=1e-5)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  assert int(new.step) == 1
  expected_multiplier = objectives.update_state(
      objective, state.objective_state, aux).multiplier
  np.testing.assert_allclose(new.objective_state.multiplier,
                             expected_multiplier, rtol=1e-5, atol=1e-7)
  if objective.kind == 'rate_constraint':
    # lambda_1 = lambda_0 exp(lr (1 - decay) (R - sigma) / sigma), lambda_0 = 1
    np.testing.assert_allclose(expected_multiplier,
                               np.exp(0.5 * 0.5 * (aux['rate'] - 1.0)),
                               rtol=1e-5)


def test_training_lowers_the_loss():
  # 200 steps' schedule (lr held for 100): the step reads it from the state.
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  state = _state()
  state = state.replace(opt_state=optim.set_numbers(state.opt_state, config,
                                                    200))
  step = jax.jit(steps.make_train_step(MODEL, OPTIMIZER, objectives.Objective()))
  losses = []
  for _ in range(200):
    keys = parallel.example_keys(state.rng, state.step, len(X))
    state, metrics = step(state, X, keys)
    losses.append(float(metrics['loss']))
  assert np.mean(losses[-20:]) < np.mean(losses[:20]) - 1.0


@pytest.mark.parametrize('iwae_samples', [0, 1, 5], ids=lambda k: f'k{k}')
def test_eval_step_masked_sums(iwae_samples):
  state = _state()
  keys = parallel.example_keys(state.rng, 0, len(X))
  mask = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
  sums = jax.jit(eval_steps.make_eval_step(MODEL, iwae_samples))(
      state.params, X, mask, keys)
  terms = _per_example(state.params, X, keys)
  keep = np.asarray(mask, bool)
  np.testing.assert_allclose(sums['count'], 4.0)
  np.testing.assert_allclose(sums['rate'], np.sum(np.asarray(terms.rate)[keep]),
                             rtol=1e-5)
  np.testing.assert_allclose(
      sums['elbo'], -np.sum(np.asarray(terms.rate + terms.distortion)[keep]),
      rtol=1e-5)
  np.testing.assert_allclose(
      sums['analytic_rate'], np.sum(np.asarray(terms.analytic_rate)[keep]),
      rtol=1e-5)
  if not iwae_samples:
    assert 'iwae' not in sums
    return
  iwae_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
  weights = jax.jit(lambda p, x, k: MODEL.apply(
      {'params': p}, x, iwae_samples, rngs={'sample': k},
      method='log_importance_weights'))
  log_w = np.stack([weights(state.params, X[i:i + 1], iwae_keys[i])[:, 0]
                    for i in range(len(X))], axis=1)  # [K, B]
  np.testing.assert_allclose(
      sums['iwae'], np.sum(np.asarray(bounds.iwae(jnp.asarray(log_w)))[keep]),
      rtol=1e-5)


def test_iwae_at_one_sample_equals_elbo_with_same_key():
  state = _state()
  keys = parallel.example_keys(state.rng, 0, len(X))
  log_w = jax.jit(lambda p: parallel.apply_per_example(
      MODEL, p, X, keys, eval_steps._log_importance_weights, 1))(state.params)
  terms = _per_example(state.params, X, keys)
  np.testing.assert_allclose(log_w[:, 0], -(terms.rate + terms.distortion),
                             rtol=1e-5)


def test_sample_fn_means_are_means_of_the_draws():
  state = _state()
  sample = jax.jit(eval_steps.make_sample_fn(MODEL, num_images=3, num_decodes=5))
  key = jax.random.key(7)
  out = sample(state.params, X, key)
  recon_key, gen_key = jax.random.split(key)
  draws, _ = jax.jit(lambda p: MODEL.apply(
      {'params': p}, X[:3], 5, rngs={'sample': recon_key},
      method='reconstruct'))(state.params)
  np.testing.assert_array_equal(out['data'], X[:3])
  np.testing.assert_array_equal(out['reconstruction'], draws[0])
  np.testing.assert_allclose(out['reconstruction_mean'], np.mean(draws, 0))
  assert set(np.unique(out['generation'])) <= {0.0, 1.0}
  assert np.all((out['generation_mean'] >= 0) & (out['generation_mean'] <= 1))
  assert out['generation_mean'].shape == (3, 4, 4, 1)


def test_train_state_is_a_pytree_of_arrays():
  state = _state()
  leaves = jax.tree.leaves(state)
  assert all(isinstance(leaf, jax.Array) for leaf in leaves)
  assert state.rng.dtype == jnp.uint32
  assert dataclasses.is_dataclass(state)


def _with_numbers(state, **numbers):
  return state.replace(objective_state=objectives.init_state(
      objectives.hyperparameters(**numbers)))


@pytest.mark.parametrize('kind, members', [
    ('beta_vae', ({'beta': 0.1}, {'beta': 10.0})),
    ('rate_constraint', ({'rate': 0.5, 'multiplier_lr': 0.5},
                         {'rate': 3.0, 'multiplier_lr': 0.2})),
], ids=['beta', 'sigma'])
def test_vmapped_population_equals_separate_runs(kind, members):
  # A sweep as one program: states stacked on a leading axis, each with its
  # own objective numbers and key, trained under jax.vmap.
  step = steps.make_train_step(MODEL, OPTIMIZER, objectives.Objective(kind))
  members = [_with_numbers(_state(), **numbers).replace(
      rng=jax.random.key_data(jax.random.key(s)))
             for numbers, s in zip(members, (5, 6))]

  def two_steps(state):
    for _ in range(2):
      keys = parallel.example_keys(state.rng, state.step, len(X))
      state, metrics = step(state, X, keys)
    return state, metrics

  population = jax.tree.map(lambda *a: jnp.stack(a), *members)
  stacked, metrics = jax.jit(jax.vmap(two_steps))(population)
  for i, member in enumerate(members):
    alone, alone_metrics = jax.jit(two_steps)(member)
    for key in ('loss', 'multiplier'):
      np.testing.assert_allclose(metrics[key][i], alone_metrics[key],
                                 rtol=1e-5)
    for a, b in zip(jax.tree.leaves(stacked.params),
                    jax.tree.leaves(alone.params)):
      np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-7)
  assert not np.allclose(metrics['loss'][0], metrics['loss'][1])
  if kind == 'rate_constraint':
    assert not np.allclose(metrics['multiplier'][0], metrics['multiplier'][1])


def test_runs_differing_only_in_numbers_share_one_program():
  # Two configs that differ in sigma (and in every other number of the
  # objective) lower to the same program text, and one jitted step traces
  # once for both: a sweep over them compiles once.
  traces = []

  def counted(model, optimizer, objective):
    body = steps.make_train_step(model, optimizer, objective)

    def step(state, x, keys):
      traces.append(1)
      return body(state, x, keys)
    return jax.jit(step)

  objective = objectives.Objective('rate_constraint', rate_schedule='linear')
  step = counted(MODEL, OPTIMIZER, objective)
  a = _with_numbers(_state(), rate=5.0, rate_anneal_steps=100)
  b = _with_numbers(_state(), rate=30.0, rate_anneal_steps=7, beta=3.0,
                    multiplier_lr=0.1, multiplier_init=2.0, penalty=1.0)
  keys = parallel.example_keys(a.rng, a.step, len(X))
  out_a = step(a, X, keys)[1]
  out_b = step(b, X, keys)[1]
  assert len(traces) == 1
  assert float(out_a['rate_target']) == 0.0  # sigma_0 = 0 under 'linear'
  assert float(out_a['multiplier']) != float(out_b['multiplier'])
  text = [jax.jit(steps.make_train_step(MODEL, OPTIMIZER, objective)).lower(
      s, X, keys).as_text() for s in (a, b)]
  assert text[0] == text[1]


@pytest.mark.parametrize('k, batch, limit, expected',
                         [(100, 500, 1024, 2), (100, 8, 1024, 100),
                          (7, 500, 1024, 1), (12, 6, 24, 4), (5, 6, 1024, 5)],
                         ids=['k100_b500', 'k100_b8', 'prime', 'k12', 'k5'])
def test_iwae_chunk(k, batch, limit, expected):
  assert eval_steps.iwae_chunk(k, batch, limit) == expected


def test_chunked_iwae_uses_the_chunk_keys():
  # K = 4 in chunks of 2 (B = 6, iwae_batch = 12): two calls of
  # log_importance_weights(x, 2) with keys fold_in(key_i, 1) and (key_i, 2).
  state = _state()
  keys = parallel.example_keys(state.rng, 0, len(X))
  mask = jnp.ones(len(X))
  sums = jax.jit(eval_steps.make_eval_step(MODEL, 4, iwae_batch=12))(
      state.params, X, mask, keys)
  weights = jax.jit(lambda p, ks: parallel.apply_per_example(
      MODEL, p, X, ks, eval_steps._log_importance_weights, 2))
  log_w = jnp.concatenate([
      weights(state.params,
              jax.vmap(lambda k, c=c: jax.random.fold_in(k, c))(keys))
      for c in (1, 2)], axis=1)  # [B, 4]
  np.testing.assert_allclose(sums['iwae'], jnp.sum(bounds.iwae(log_w.T)),
                             rtol=1e-5)


def test_create_train_state_eager_and_inside_jit_agree():
  # Eagerly it runs as its own program (compiled at low optimisation on the
  # CPU); inside a transformation it is inlined into the caller's program.
  eager = steps.create_train_state(
      MODEL, OPTIMIZER, objectives.init_state(objectives.hyperparameters()),
      jax.random.key(1), X)
  inlined = _state()
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(inlined)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert int(eager.step) == 0
  assert any(float(np.max(np.abs(a))) > 0.1
             for a in jax.tree.leaves(eager.params))


def test_create_train_state_with_an_unhashable_model_runs_op_by_op():
  class WithArray(tiny_model.TinyModel):
    weights: Any = None  # an array attribute makes the module unhashable

  model = WithArray(weights=np.ones(3))
  with pytest.raises(TypeError):
    hash(model)
  objective_state = objectives.init_state(objectives.hyperparameters())
  state = steps.create_train_state(model, OPTIMIZER, objective_state,
                                   jax.random.key(1), X)
  want = steps.create_train_state(MODEL, OPTIMIZER, objective_state,
                                  jax.random.key(1), X)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


RD_MODEL = tiny_model.tiny_rd_model()


@functools.lru_cache(maxsize=None)
def _rd_params():
  return jax.jit(RD_MODEL.init)(
      {'params': jax.random.key(5), 'sample': jax.random.key(6)}, X)['params']


def test_latent_step_moments_active_units_and_rate_per_dim():
  params = _rd_params()
  images = (jax.random.uniform(jax.random.key(7), (10, 4, 4, 1)) > 0.5
            ).astype(jnp.float32)
  step = jax.jit(eval_steps.make_latent_step(RD_MODEL))
  merged, rate_sum = (0.0, 0.0, 0.0), 0.0
  for start in range(0, 10, 4):  # batches of 4, the last padded
    x = np.zeros((4, 4, 4, 1), np.float32)
    chunk = np.asarray(images[start:start + 4])
    x[:len(chunk)] = chunk
    mask = (np.arange(4) < len(chunk)).astype(np.float32)
    out = step(params, x, mask, None)
    merged = bounds.merge_moments(
        merged, (float(out['count']), out['mean'], out['m2']))
    rate_sum = rate_sum + np.asarray(out['rate_per_dim'], np.float64)
  stats = RD_MODEL.apply({'params': params}, images,
                         method='latent_statistics')
  count, mean, m2 = merged
  assert count == 10
  np.testing.assert_allclose(mean, np.mean(stats['mean'], axis=0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(m2 / count, np.var(stats['mean'], axis=0),
                             rtol=1e-4)
  terms = RD_MODEL.apply({'params': params}, images,
                         rngs={'sample': jax.random.key(0)})
  np.testing.assert_allclose(np.sum(rate_sum) / count,
                             np.mean(terms.analytic_rate), rtol=1e-5)
  np.testing.assert_allclose(rate_sum / count,
                             np.mean(stats['rate_per_dim'], axis=0),
                             rtol=1e-5)


def test_generative_step_draws_depend_on_the_pair_index_only():
  params = _rd_params()
  key_data = jax.random.key_data(jax.random.key(8))
  num_pairs, k = 6, 3
  # iwae_batch large enough that every example's K proposals are one chunk.
  small = jax.jit(eval_steps.make_generative_step(RD_MODEL, 4, k, iwae_batch=64))
  large = jax.jit(eval_steps.make_generative_step(RD_MODEL, 8, k, iwae_batch=64))
  halves = [small(params, key_data, start, num_pairs) for start in (0, 4)]
  whole = large(params, key_data, 0, num_pairs)
  assert float(whole['count']) == num_pairs
  for name in ('generative_lower', 'generative_upper', 'count'):
    np.testing.assert_allclose(sum(float(h[name]) for h in halves),
                               float(whole[name]), rtol=1e-5)
  # By hand, pair i from key fold_in(key, i): z ~ m, x ~ d(x|z); log q(x)
  # the IWAE bound with proposals drawn from fold_in(k_i, 1).
  @jax.jit
  def by_hand(i):
    k_i = jax.random.fold_in(jax.random.wrap_key_data(key_data), i)
    pair = RD_MODEL.apply({'params': params}, 1, rngs={'sample': k_i},
                          method='generative_pairs')
    log_w = RD_MODEL.apply({'params': params}, pair['x'], k,
                           rngs={'sample': jax.random.fold_in(k_i, 1)},
                           method='log_importance_weights')
    return (pair['log_e'][0] - pair['log_m'][0],
            pair['log_d'][0] - bounds.iwae(log_w)[0], pair['x'])

  lower = upper = 0.0
  for i in range(num_pairs):
    lower_i, upper_i, x = by_hand(i)
    lower, upper = lower + float(lower_i), upper + float(upper_i)
    assert set(np.unique(x)) <= {0.0, 1.0}
  np.testing.assert_allclose(float(whole['generative_lower']), lower,
                             rtol=1e-5)
  np.testing.assert_allclose(float(whole['generative_upper']), upper,
                             rtol=1e-5)
