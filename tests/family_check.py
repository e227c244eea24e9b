"""One train step and one evaluation of model families on 1 and 2 devices.

Run as a script, `python tests/family_check.py FAMILY [FAMILY ...]`
(tests/test_families.py starts it in a subprocess, since XLA_FLAGS must be
set before JAX initialises its backend; several families share one process
and its start-up). The family gets tiny widths (`tiny_config`); it is trained for
one step through the real training loop (`JitLayout.train_loop`)
and evaluated through the real evaluation loop (`JitLayout.eval_loop`,
IWAE with K = 2) on (a) one device and (b) two devices, where the batch is
sharded and XLA inserts the gradient all-reduce. Prints one JSON report
per family, a line each.
"""

import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rdvae.evaluation import steps as eval_steps
from rdvae.runtime import cpu_devices  # pylint: disable=g-import-not-at-top

# Two CPU devices, set before JAX starts. XLA's backend optimisation level 1
# instead of the default 2: the check is of values, and compiling dominates it
# (one family's check in a fresh process: (---) 22.0 s at the default level,
# 19.0 s at level 1, 29.4 s at level 0, whose slow code costs more than its
# faster compilation saves; (-+-) 37.7, 32.0 and 30.8 s).
cpu_devices.use_emulated_devices(2)
os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=1'
os.environ['JAX_PLATFORMS'] = 'cpu'

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from configs import mnist
from experiments import cli
from rdvae.runtime import compilation
from rdvae.data import sources as data
from rdvae.data import batching
from rdvae.models import model as model_lib
from rdvae.objectives import settings
from rdvae.training import optim
from rdvae.runtime import parallel
from rdvae.training import steps

BATCH = 4
NUM_IMAGES = 8
BETA = 0.5

compilation.setup()  # the suite's cache (RDVAE_COMPILATION_CACHE)
cli.collect_less()  # as the commands


def tiny_config(family: str):
  """configs/mnist.py:smoke for `family`, every width cut to a few units."""
  config = mnist.get_config('smoke')
  config.model.family = family
  config.model.latent_dim = 4
  config.model.flow_steps = 2
  config.model.made_hidden = 8
  config.model.made_layers = 2
  config.model.num_pseudo_inputs = 3
  config.model.pseudo_input_batch = 0  # all 3 in one encoder call
  config.model.pixelcnn_features = 4
  config.model.pixelcnn_resnets_per_block = 1
  # Two scales keep a down and an up path (three are the paper's, checked in
  # tests/test_pixelcnn.py): (-+-) checks in 24.1 s instead of 30.3 s.
  config.model.pixelcnn_scales = 2
  config.objective.kind = 'beta_vae'
  config.objective.beta = BETA
  return config


def run(model, optimizer, objective, objective_state, images: np.ndarray,
        num_devices: int) -> dict:
  """One step and one evaluation over the first `num_devices` devices."""
  layout = parallel.create_layout('jit', jax.devices()[:num_devices])
  data_key = jax.random.key(2)
  loop = layout.train_loop(
      steps.make_train_step(model, optimizer, objective),
      lambda start: batching.batch_index_block(data_key, start, 1, NUM_IMAGES,
                                               BATCH),
      batching.gather_batch, BATCH)
  initial = steps.create_train_state(model, optimizer, objective_state,
                                     jax.random.key(0),
                                     batching.gather_batch(images, np.arange(1)))
  state, metrics = loop(layout.put_replicated(initial),
                        layout.put_replicated(images))
  state = layout.get_replicated(state)
  evaluate = layout.eval_loop(
      eval_steps.make_eval_step(model, iwae_samples=2), BATCH)
  x, mask = next(batching.eval_batches(images[:BATCH - 1], BATCH))
  x, mask = layout.put_sharded((x, mask))
  sums = evaluate(layout.put_replicated(state.params), x, mask,
                  layout.put_replicated(state.rng), 0)
  moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)),
                       layout.get_replicated(initial.params), state.params)
  return {
      'metrics': {k: float(np.asarray(v)[0]) for k, v in metrics.items()},
      'sums': {k: float(v) for k, v in layout.get_replicated(sums).items()},
      'step': int(state.step),
      'moved': {name: any(jax.tree.leaves(flags))
                for name, flags in moved.items()},
      'params': [np.asarray(a) for a in jax.tree.leaves(state.params)],
  }


def check(family: str) -> dict:
  """The report of `family`: both runs and their largest parameter gap."""
  config = tiny_config(family)
  # Built once, so both runs share the compiled initialisation.
  parts = (model_lib.create_model(config, data.IMAGE_SHAPE), optim.create_optimizer(config, 10),
           settings.create_objective(config),
           settings.create_state(config),
           data.load_npz(str(data.packaged_npz_path()))['test'][:NUM_IMAGES])
  one, two = run(*parts, 1), run(*parts, 2)
  report = {'family': family, 'devices': jax.device_count()}
  for name, out in (('one_device', one), ('two_devices', two)):
    report[name] = {k: v for k, v in out.items() if k != 'params'}
  report['max_param_diff'] = max(
      float(np.max(np.abs(a - b))) for a, b in zip(one['params'], two['params']))
  return report


def main():
  assert jax.device_count() == 2, jax.devices()
  for family in sys.argv[1:]:
    try:
      report = check(family)
    except Exception:  # pylint: disable=broad-except
      # Reported, so the other families of the process still run.
      report = {'family': family, 'error': traceback.format_exc()[-3000:]}
    print(json.dumps(report), flush=True)


if __name__ == '__main__':
  main()
