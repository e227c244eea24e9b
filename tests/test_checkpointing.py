"""Tests of rdvae/files/checkpointing.py: orbax round trips of the training state."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import tiny_model
from rdvae import types
from rdvae.files import checkpointing
from rdvae.objectives import losses as objectives
from rdvae.training import optim
from rdvae.training import steps


def _state(seed=0):
  config = ml_collections.ConfigDict({'optim': optim.default_config()})
  model = tiny_model.TinyModel()
  return jax.jit(steps.create_train_state, static_argnums=(0, 1))(
      model, optim.create_optimizer(config, 10),
      objectives.init_state(objectives.hyperparameters(
          multiplier_init=0.25, rate=2.0)),
      jax.random.key(seed), jnp.zeros((1, 4, 4, 1)))


def _assert_trees_equal(a, b):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_train_state_round_trip_is_exact(tmp_path):
  state = _state().replace(step=jnp.asarray(7, jnp.int32))
  manager = checkpointing.create_manager(str(tmp_path))
  checkpointing.save(manager, 7, state)
  assert checkpointing.latest_step(manager) == 7
  restored = checkpointing.restore(manager, _state(seed=1))
  assert isinstance(restored, types.TrainState)
  _assert_trees_equal(restored, state)
  assert int(restored.step) == 7
  assert float(restored.objective_state.multiplier) == 0.25
  assert float(restored.objective_state.hparams.rate) == 2.0
  assert restored.rng.dtype == np.uint32


def test_keeps_the_latest_and_skips_a_step_saved_twice(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path), max_to_keep=2)
  for step in (1, 2, 3):
    checkpointing.save(manager, step, {'w': np.full(2, step, np.float32)})
  checkpointing.save(manager, 3, {'w': np.zeros(2, np.float32)})  # no-op
  assert manager.all_steps() == [2, 3]
  np.testing.assert_array_equal(checkpointing.restore(manager)['w'], [3, 3])


def test_best_manager_keeps_the_highest_metric(tmp_path):
  best = checkpointing.create_manager(str(tmp_path), 1, best_metric='elbo')
  for step, elbo in ((1, -100.0), (2, -90.0), (3, -95.0)):
    checkpointing.save(best, step, {'w': np.full(1, step, np.float32)},
                       {'elbo': elbo})
  assert best.all_steps() == [2]
  assert (tmp_path / checkpointing.BEST_DIR).is_dir()


def test_restore_without_checkpoint_raises(tmp_path):
  manager = checkpointing.create_manager(str(tmp_path))
  try:
    checkpointing.restore(manager, {'w': np.zeros(1)})
  except FileNotFoundError as e:
    assert 'no checkpoint' in str(e)
  else:
    raise AssertionError('expected FileNotFoundError')
