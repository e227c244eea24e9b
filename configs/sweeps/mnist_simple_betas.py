r"""python -m experiments.sweep --sweep=configs/sweeps/mnist_simple_betas.py --workdir=runs/mnist_simple_betas

The simple family (-,-,-) on static binarized MNIST at 8 betas from 0.1 to
10, beta-VAE objective, on a budget whose time is mostly training (batch 64,
STEPS Adam steps; a short evaluation: 200 test images, IWAE k = 2, no
generative samples or image grids). Beta is an array of the training state,
so a runner compiles the family once. It is the sweep that
benchmarks/sweep_workers.py times with `--workers=1` and with the default
(one runner per core on the CPU): `python benchmarks/sweep_workers.py`.
"""

import ml_collections

from configs import mnist

from rdvae.sweeps import sweep_file
STEPS = 120
BUDGET = {
    'train.batch_size': 64,
    'train.num_steps': STEPS,
    'train.steps_per_dispatch': 2,
    'train.scan_unroll': True,
    'train.log_every': 20,
    'train.eval_every': 0,
    'train.checkpoint_every': 60,
    'eval.max_examples': 200,
    'eval.iwae_samples': 2,
    'eval.generative_samples': 0,
    'eval.num_grid_images': 0,
}
BETAS = (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config()
  config.objective.kind = 'beta_vae'
  config.model.family = '---'
  return sweep_file.apply_overrides(config, BUDGET, 'budget')


def get_sweep() -> list[dict]:
  return [{'objective.beta': beta} for beta in BETAS]
