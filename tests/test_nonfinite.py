"""train.nonfinite: 'stop' and 'skip' on a NaN in a batch and on a learning
rate that blows up; no checkpoint ever holds a non-finite value.

Step level on the tiny model (exact: a skipped step leaves every array of the
state as it was but the step count), end to end on configs/mnist.py:smoke.
"""

import functools
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

import tiny_model
from configs import mnist
from rdvae.training import programs
from rdvae.runtime import parallel
from rdvae.files import checkpointing
from rdvae.data import batching
from rdvae.objectives import losses as objectives
from rdvae.training import optim
from rdvae.training import steps
from rdvae.training import loop as train
from rdvae.files import metric_files

MODEL = tiny_model.TinyModel()
X = (jax.random.uniform(jax.random.key(0), (6, 4, 4, 1)) > 0.5).astype(
    jnp.float32)


def _step(skip, learning_rate=1e-3):
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  config.optim.learning_rate = learning_rate
  optimizer = optim.create_optimizer(config, 10)
  objective = objectives.Objective(kind='rate_constraint')
  objective_state = objectives.init_state(
      objectives.hyperparameters(rate=1.0, multiplier_lr=0.5))
  state = steps.create_train_state(MODEL, optimizer, objective_state,
                                   jax.random.key(1), X)
  step = jax.jit(steps.make_train_step(MODEL, optimizer, objective,
                                       skip_nonfinite=skip))
  return state, step


def _run(state, step, x):
  return step(state, x, parallel.example_keys(state.rng, state.step, len(x)))


def _assert_same(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for u, v in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _finite(tree):
  return all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(tree)
             if np.issubdtype(np.asarray(a).dtype, np.inexact))


@pytest.mark.parametrize('flags, used', [
    ([0, 0, 0, 0], [0, 1, 2, 3]),   # all good: every step
    ([0, 1, 0, 17], [0, 2]),        # some flagged: the good ones only
    ([1, 2, 4, 31], [0, 1, 2, 3]),  # all flagged: every step
])
def test_dispatch_metrics_average_the_good_steps(flags, used):
  """A dispatch's metrics reach the host as means over its good steps (a
  flagged step's NaN left out), its flags per step as uint8."""
  loss = np.asarray([1.0, np.nan, 4.0, 10.0], np.float32)
  if len(used) == 4:
    loss[1] = 2.0  # a mean over every step needs finite values to check
  rate = np.asarray([0.5, 0.25, 0.125, 1.0], np.float32)
  out = jax.jit(steps.dispatch_metrics)(
      {'loss': loss, 'rate': rate, 'nonfinite': np.asarray(flags, np.int32)})
  assert out['nonfinite'].dtype == np.uint8
  np.testing.assert_array_equal(out['nonfinite'], flags)
  assert float(out['loss']) == pytest.approx(float(np.mean(loss[used])))
  assert float(out['rate']) == pytest.approx(float(np.mean(rate[used])))


def test_good_step_has_no_flags_and_skip_changes_nothing():
  state, stop = _step(skip=False)
  _, skip = _step(skip=True)
  a, metrics = _run(state, stop, X)
  b, _ = _run(state, skip, X)
  assert int(metrics['nonfinite']) == 0
  _assert_same(a, b)


@pytest.mark.parametrize('skip', [False, True], ids=['stop', 'skip'])
def test_nan_in_a_batch(skip):
  state, step = _step(skip)
  x = X.at[2, 1, 1, 0].set(jnp.nan)
  new, metrics = _run(state, step, x)
  names = steps.names_of_flags(int(metrics['nonfinite']))
  assert {'loss', 'distortion', 'grad_norm'} <= set(names), names
  assert int(new.step) == 1
  if skip:  # everything as before the step, but the step count
    _assert_same(new.replace(step=state.step), state)
    again, metrics = _run(new, step, X)  # the next good batch trains
    assert int(metrics['nonfinite']) == 0 and int(again.step) == 2
    assert not np.array_equal(again.params['logits']['kernel'],
                              state.params['logits']['kernel'])
  else:  # the update went through: the host must stop before saving it
    assert not _finite(new.params)


def _many_leaves():
  tree = {f'w{i}': np.ones((i % 4 + 1, 3), np.float32) for i in range(30)}
  tree['half'] = np.ones((2, 2), np.float16)
  tree['count'] = np.arange(3)  # integers are never non-finite
  return tree


@pytest.mark.parametrize('leaf,index,value', [
    (None, None, None), ('w17', (1, 2), np.nan), ('w3', (0, 0), np.inf),
    ('w29', (1, 0), -np.inf), ('half', (1, 1), np.nan)])
def test_all_finite_finds_one_bad_element_among_many_leaves(leaf, index,
                                                            value):
  tree = _many_leaves()
  if leaf is not None:
    tree[leaf][index] = value
  assert bool(jax.jit(steps.all_finite)(tree)) == (leaf is None)


def test_all_finite_is_one_kernel_per_dtype():
  # The state check of every training step: a reduction per leaf made the
  # simple family's step 675 kernels instead of 461.
  compiled = jax.jit(steps.all_finite).lower(_many_leaves()).compile()
  assert compiled.as_text().count(' fusion(') <= 4  # two dtypes + the 'and'
  assert bool(steps.all_finite({'n': np.arange(2)}))  # no floats at all


@pytest.mark.parametrize('part', ['params', 'opt_state', 'objective_state'])
def test_state_flag_reads_every_part_a_checkpoint_keeps(part):
  state, _ = _step(False)
  metrics = {k: jnp.float32(1.0) for k in steps.NONFINITE_KEYS[:-1]}
  assert int(steps.nonfinite_flags(metrics, state)) == 0
  leaves, tree = jax.tree.flatten(getattr(state, part))
  floats = [i for i, a in enumerate(leaves)
            if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
  for i in (floats[0], floats[-1]):
    bad = list(leaves)
    bad[i] = jnp.full_like(bad[i], jnp.nan)
    broken = state.replace(**{part: jax.tree.unflatten(tree, bad)})
    assert int(steps.nonfinite_flags(metrics, broken)) == 1 << 4  # 'state'


@pytest.mark.parametrize('normalize', [False, True], ids=['raw', 'blocks'])
@pytest.mark.parametrize('big', [1e18, 3e19, 1e30, np.inf])
def test_moments_overflow_only_with_the_gradient_norm(normalize, big):
  # Adam's moments: a step from finite moments leaves them finite unless the
  # gradient norm (flagged too) is not finite.
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  config.optim.normalize_gradients = normalize
  optimizer = optim.create_optimizer(config, 10)
  params = {'w': jnp.ones((3,)), 'b': jnp.zeros(())}
  grads = {'w': jnp.asarray([big, 1.0, -2.0], jnp.float32),
           'b': jnp.asarray(0.5, jnp.float32)}
  opt_state = optimizer.init(params)
  for _ in range(2):
    _, opt_state = optimizer.update(grads, opt_state, params)
    norm_ok = bool(jnp.isfinite(optax.tree.norm(grads)))
    moments_ok = bool(steps.all_finite(opt_state))
    assert moments_ok or not norm_ok
  # float32 squares overflow above ~1.8e19: the raw moments do, and so does
  # the norm that flags them; block-normalized moments never do.
  assert norm_ok == (big < 1.8e19)
  assert moments_ok == (normalize and big < np.inf or big < 1.8e19)


@pytest.mark.parametrize('skip', [False, True], ids=['stop', 'skip'])
def test_learning_rate_that_blows_up(skip):
  state, step = _step(skip, learning_rate=1e38)
  flags = []
  current = state
  for _ in range(3):
    current, metrics = _run(current, step, X)
    flags.append(int(metrics['nonfinite']))
  assert any(flags), flags
  if skip:
    assert _finite(current)
    first_bad = next(i for i, f in enumerate(flags) if f)
    assert all(flags[first_bad:]), flags  # the blown-up update never lands
  else:
    assert not _finite(current)


# ----------------------------------------------------------- end to end


def _smoke(**overrides):
  config = mnist.get_config('smoke')
  config.train.num_steps = 6
  config.train.eval_every = 0
  config.eval.num_grid_images = 0
  config.train.max_checkpoints_to_keep = 5
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def _poison_step(monkeypatch, config, step):
  """Training examples of the (1-based) `step` become NaN when gathered."""
  _, data_key, _, _ = jax.random.split(jax.random.key(config.train.seed), 4)
  poisoned = int(batching.batch_indices(data_key, step - 1, 50000,
                                    config.train.batch_size)[0])
  gather = batching.gather_batch

  def poisoned_gather(images, indices):
    x = gather(images, indices)
    hit = (indices == poisoned)[..., None, None, None]
    return jnp.where(hit, jnp.nan, x)

  monkeypatch.setattr(batching, 'gather_batch', poisoned_gather)
  # programs.create_run shares compiled loops between runs of one architecture
  # in a process: the poisoned gather must not reach, or come from, them.
  programs._programs.cache_clear()  # pylint: disable=protected-access
  monkeypatch.setattr(programs, '_programs',
                      functools.lru_cache(maxsize=16)(
                          programs._programs.__wrapped__))  # pylint: disable=protected-access


def _checkpoints_finite_and_restorable(workdir):
  manager = checkpointing.create_manager(workdir)
  assert manager.all_steps()
  for step in manager.all_steps():
    state = checkpointing.restore(manager, step=step)
    assert _finite(state), step
  return manager.all_steps()


@pytest.mark.slow
def test_stop_on_a_nan_batch_keeps_the_last_good_checkpoint(monkeypatch,
                                                             tmp_path):
  config = _smoke()
  _poison_step(monkeypatch, config, 3)
  workdir = str(tmp_path / 'run')
  with pytest.raises(FloatingPointError,
                     match=r'non-finite loss, rate, distortion, grad_norm, state at step '
                     r"3 \(train.nonfinite='stop'\); the last good checkpoint "
                     r'is step 2'):
    train.train_and_eval(config, workdir)
  assert _checkpoints_finite_and_restorable(workdir) == [2]
  assert not os.path.exists(os.path.join(workdir, 'results.json'))


@pytest.mark.slow
def test_skip_on_a_nan_batch_counts_and_finishes(monkeypatch, tmp_path):
  config = _smoke(**{'train.nonfinite': 'skip'})
  _poison_step(monkeypatch, config, 3)
  workdir = str(tmp_path / 'run')
  results = train.train_and_eval(config, workdir)
  assert math.isfinite(results['elbo'])
  skipped = {r['step']: r['train/skipped'] for r in metric_files.read_metrics(workdir)
             if 'train/skipped' in r}
  assert skipped == {2: 0, 4: 1, 6: 0}
  assert _checkpoints_finite_and_restorable(workdir) == [2, 4, 6]


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['stop', 'skip'])
def test_learning_rate_that_blows_up_stops_with_good_checkpoints(mode,
                                                                 tmp_path):
  config = _smoke(**{'train.nonfinite': mode, 'train.max_skipped': 3,
                     'optim.learning_rate': 1e38})
  workdir = str(tmp_path / 'run')
  with pytest.raises(FloatingPointError, match=r'non-finite .* at step') as e:
    train.train_and_eval(config, workdir)
  if mode == 'skip':
    # Step 1 takes the parameters to ~1e38 (finite), steps 2, 3, 4 are
    # non-finite and skipped, the third in a row stops the run; the
    # checkpoint of step 2 holds the state after step 1.
    assert 'at step 4 (3 consecutive' in str(e.value)
    assert _checkpoints_finite_and_restorable(workdir) == [2]
  else:
    assert not checkpointing.create_manager(workdir).all_steps()
