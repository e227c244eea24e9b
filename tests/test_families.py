"""The paper's families, (encoder, decoder, marginal) in {-,+} x {-,+} x
{-,+,v}, on tiny widths: one train step and one evaluation
step of the real step bodies (`rdvae.steps`), under `jax.jit` and under the
data-parallel `jax.pmap` wrapper of the same body, with finite R, D and IWAE,
the two wrappers agreeing, and the exact relations between the figures."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import mnist
from rdvae import data
from rdvae import model as model_lib
from rdvae import objectives
from rdvae import optim
from rdvae import steps

# Each component letter at least once; compiling all twelve at ~40 s each
# would take most of the suite's budget. `experiments/family_table.py`
# trains every family at full size.
FAMILIES = ['---', '+++', '-+v']
BATCH = 4


def _tiny(family: str):
  config = mnist.get_config('smoke')
  config.model.family = family
  config.model.latent_dim = 4
  config.model.flow_steps = 2
  config.model.made_hidden = 8
  config.model.made_layers = 2
  config.model.num_pseudo_inputs = 3
  config.model.pixelcnn_features = 4
  config.model.pixelcnn_resnets_per_block = 1
  config.objective.kind = 'beta_vae'
  config.objective.beta = 0.5
  return config


@pytest.fixture(scope='module')
def images():
  mnist_data = data.load_npz(str(data.packaged_npz_path()))
  return jnp.asarray(mnist_data['test'][:BATCH], jnp.float32)


@pytest.mark.parametrize('family', FAMILIES,
                         ids=[f'family{f}' for f in FAMILIES])
def test_family_steps_under_jit_and_pmap(family, images):
  config = _tiny(family)
  model = model_lib.create_model(config)
  objective = objectives.create_objective(config)
  optimizer = optim.create_optimizer(config, num_steps=10)
  state = steps.create_train_state(model, optimizer, objective,
                                   jax.random.key(0), images)
  keys = steps.example_keys(state.rng, state.step, BATCH)

  body = steps.make_train_step(model, optimizer, objective)
  new_state, metrics = jax.jit(body)(state, images, keys)
  mapped = jax.pmap(steps.make_train_step(model, optimizer, objective,
                                          axis_name='data'),
                    axis_name='data')
  replicate = lambda tree: jax.tree.map(lambda a: a[None], tree)
  p_state, p_metrics = mapped(replicate(state), images[None], keys[None])

  for key in ('rate', 'distortion', 'loss'):
    assert math.isfinite(float(metrics[key])), key
    np.testing.assert_allclose(p_metrics[key][0], metrics[key], rtol=1e-5,
                               atol=1e-4)
  np.testing.assert_allclose(metrics['loss'],
                             metrics['distortion'] + 0.5 * metrics['rate'],
                             rtol=1e-6)
  assert int(new_state.step) == 1
  # Each trained component moved (a MADE's hidden layers wait one step: its
  # output layer starts at zero so that every flow starts as the identity).
  changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)),
                         state.params, new_state.params)
  for component, flags in changed.items():
    assert any(jax.tree.leaves(flags)), component
  for a, b in zip(jax.tree.leaves(new_state.params),
                  jax.tree.leaves(p_state.params)):
    np.testing.assert_allclose(b[0], a, rtol=1e-4, atol=1e-6)

  mask = jnp.asarray([1.0, 1.0, 1.0, 0.0])
  sums = jax.jit(steps.make_eval_step(model, iwae_samples=2))(
      new_state.params, images, mask, keys)
  assert float(sums['count']) == 3.0
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    assert math.isfinite(float(sums[key])), key
  np.testing.assert_allclose(sums['elbo'], -(sums['rate'] + sums['distortion']),
                             rtol=1e-5)
  # D of a barely trained decoder is near 784 log 2 nats per image.
  assert 0 < float(sums['distortion']) / 3 < 784 * math.log(2) * 1.5
