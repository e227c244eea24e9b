r"""What the training loop's state check costs to compile.

  python benchmarks/compile_cost.py
  python benchmarks/compile_cost.py --families=---,-+- --rounds=3

For each family at the family checks' tiny widths (tests/family_check.py's
`tiny_config`), builds the trainer's loop (`JitLayout.train_loop` of
`parallel.create_layout('jit')` on one device, one step per call) twice:
with the state check of the step as it is (`steps.all_finite`: one fused
reduction per dtype) and with a check of each leaf on its own (an
`isfinite` and a reduction per array, the form used before). Compiles each
`--rounds` times, alternating, with the persistent cache off, and prints
the kernels (fusions) of the compiled loop, the CPU time of each
compilation (every compiler thread counted, benchmarks/_timing.py) and its
wall time.
"""

from __future__ import annotations

import os
import pathlib
import sys

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / 'tests'))
sys.path.insert(0, str(REPO / 'benchmarks'))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position

_FAMILIES = flags.DEFINE_list('families', ['---', '-+-'], 'Families.')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'Compilations of each form.')


def _per_leaf_flags(metrics, state):
  """`steps.nonfinite_flags` with each leaf of the state checked alone."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rdvae.training import steps  # pylint: disable=g-import-not-at-top
  leaves = jax.tree.leaves((state.params, state.opt_state,
                            state.objective_state))
  state_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in leaves
                                if jnp.issubdtype(a.dtype, jnp.inexact)]))
  ok = [jnp.isfinite(metrics[k]) for k in steps.NONFINITE_KEYS[:-1]]
  return sum(jnp.where(o, 0, 1 << i)
             for i, o in enumerate(ok + [state_ok])).astype(jnp.int32)


def main(argv):
  del argv
  os.environ['RDVAE_COMPILATION_CACHE'] = 'off'
  import family_check  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rdvae.data import batching  # pylint: disable=g-import-not-at-top
  from rdvae.data import sources as data  # pylint: disable=g-import-not-at-top
  from rdvae.models import model as model_lib  # pylint: disable=g-import-not-at-top
  from rdvae.objectives import settings  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import parallel  # pylint: disable=g-import-not-at-top
  from rdvae.training import optim  # pylint: disable=g-import-not-at-top
  from rdvae.training import steps  # pylint: disable=g-import-not-at-top

  fused = steps.nonfinite_flags
  images = data.load_npz(str(data.packaged_npz_path()))['test'][:8]
  layout = parallel.create_layout('jit', jax.devices()[:1])
  key = jax.random.key(2)
  print(f'load average {os.getloadavg()}')
  print(' family  check     kernels  CPU s (each round)        wall s')
  for family in _FAMILIES.value:
    config = family_check.tiny_config(family)
    model = model_lib.create_model(config, data.IMAGE_SHAPE)
    optimizer = optim.create_optimizer(config, 10)
    objective = settings.create_objective(config)
    state = steps.create_train_state(
        model, optimizer, settings.create_state(config),
        jax.random.key(0), batching.gather_batch(images, np.arange(1)))
    args = (layout.put_replicated(state), layout.put_replicated(images))
    times = {'fused': [], 'per-leaf': []}
    walls = {'fused': [], 'per-leaf': []}
    kernels = {}
    for _ in range(_ROUNDS.value):
      for form, flags_fn in (('per-leaf', _per_leaf_flags),
                             ('fused', fused)):
        steps.nonfinite_flags = flags_fn
        loop = layout.train_loop(
            steps.make_train_step(model, optimizer, objective),
            lambda start: batching.batch_index_block(key, start, 1, 8, 4),
            batching.gather_batch, 4, unroll=True)
        lowered = loop.lower(*args)
        with _timing.Timer() as timed:
          compiled = lowered.compile()
        times[form].append(timed.cpu)
        walls[form].append(timed.wall)
        kernels[form] = compiled.as_text().count(' fusion(')
    steps.nonfinite_flags = fused
    for form in ('per-leaf', 'fused'):
      cpu = ', '.join(f'{t:.2f}' for t in times[form])
      wall = ', '.join(f'{t:.2f}' for t in walls[form])
      print(f' {family:6s}  {form:8s}  {kernels[form]:7d}  {cpu:24s}  {wall}')
  print(f'load average {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
