r"""Training throughput of the paper's twelve families at the paper's sizes.

  python benchmarks/family_throughput.py                     # all twelve
  python benchmarks/family_throughput.py --families=---,-+- --dispatches=3

For each family (encoder, decoder, marginal) in {-,+} x {-,+} x {-,+,v}:
builds the run exactly as `train.train_and_eval` does (`train.create_run` on
configs/mnist.py with the family, batch 64, static binarized MNIST, the
trainer's own `parallel.make_train_loop` of `train.steps_per_dispatch` Adam
steps per call), then times `--dispatches` calls after one warm-up call.
Prints the parameter count, the time of the first call (compiling the loop
plus its steps; excluded from the rate) and training images/s. Run it on a quiet
machine: the load average is printed with the figures.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from rdvae.model import FAMILIES

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs

_FAMILIES = flags.DEFINE_list('families', list(FAMILIES), 'Families to time.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Training batch size.')
_DISPATCHES = flags.DEFINE_integer(
    'dispatches', 2, 'Timed calls of the training loop (each runs '
    'train.steps_per_dispatch steps).')


def time_family(family: str) -> dict:
  from configs import mnist  # pylint: disable=g-import-not-at-top
  from rdvae import parallel  # pylint: disable=g-import-not-at-top
  from rdvae import train  # pylint: disable=g-import-not-at-top
  config = mnist.get_config()
  config.model.family = family
  config.train.batch_size = _BATCH.value
  train.validate(config)
  run = train.create_run(config)
  state = parallel.put_replicated(run.init_state, run.mesh, run.mode)
  data = parallel.put_replicated(run.dataset.train, run.mesh, run.mode)
  start = time.perf_counter()
  state, metrics = run.train_loop(state, data)
  jax.block_until_ready(metrics)
  first_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(_DISPATCHES.value):
    state, metrics = run.train_loop(state, data)
  jax.block_until_ready(metrics)
  seconds = time.perf_counter() - start
  images = (_DISPATCHES.value * run.config.train.steps_per_dispatch
            * _BATCH.value)
  return {'family': family,
          'num_parameters': sum(int(np.size(p)) for p in
                                jax.tree.leaves(run.init_state.params)),
          'first_call_s': first_s,
          'images_per_second': images / seconds,
          'loss_finite': bool(np.all(np.isfinite(
              parallel.scalar_metrics(metrics, run.mode)['loss'])))}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  print(f'devices: {jax.devices()}; load average: {os.getloadavg()}')
  print(f'batch {_BATCH.value}, {_DISPATCHES.value} timed calls after one '
        'warm-up call')
  print(f'{"family":>7} {"params":>10} {"first call s":>13} {"img/s":>7}',
        flush=True)
  for family in _FAMILIES.value:
    r = time_family(family)
    print(f'{r["family"]:>7} {r["num_parameters"]:>10,d} '
          f'{r["first_call_s"]:13.1f} {r["images_per_second"]:7.1f}'
          + ('' if r['loss_finite'] else '  (loss not finite)'), flush=True)
  print(f'load average: {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
