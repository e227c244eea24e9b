r"""python -m experiments.sweep --sweep=configs/sweeps/compile_once.py --workdir=runs/compile_once

Compile once per architecture: 5 betas of the simple family (-,-,-) and 3 of
the PixelCNN++ family (-,+,-) on static binarized MNIST, beta-VAE objective,
on a budget so short (4 steps, 200 test images) that what a point costs is
mostly what it compiles. Within one sweep process each family's programs
are built once (beta is an array in the training state); a rerun, or a
runner killed and started again, reads them from the persistent
compilation cache. benchmarks/sweep_compile.py times it against the same
points each in its own process with no cache (`python
benchmarks/sweep_compile.py`).
"""

import ml_collections

from configs import mnist

from rdvae.sweeps import sweep_file
BUDGET = {
    'train.batch_size': 64,
    'train.num_steps': 4,
    'train.steps_per_dispatch': 2,
    'train.scan_unroll': True,
    'train.log_every': 2,
    'train.eval_every': 0,
    'train.checkpoint_every': 2,
    'eval.max_examples': 200,
    'eval.iwae_samples': 2,
    'eval.generative_samples': 0,
    'eval.num_grid_images': 4,
}
SIMPLE_BETAS = (0.1, 0.3, 1.0, 3.0, 10.0)
PIXELCNN_BETAS = (0.1, 0.5, 1.0)


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config()
  config.objective.kind = 'beta_vae'
  config = sweep_file.apply_overrides(config, BUDGET, 'budget')
  return config


def get_sweep() -> list[dict]:
  return ([{'model.family': '---', 'objective.beta': b} for b in SIMPLE_BETAS]
          + [{'model.family': '-+-', 'objective.beta': b}
             for b in PIXELCNN_BETAS])
