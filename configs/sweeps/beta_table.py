r"""python -m experiments.sweep --sweep=configs/sweeps/beta_table.py --workdir=runs/beta_table

Beta at a fixed short budget: the simple family (-,-,-) on static binarized
MNIST with the beta-VAE objective D + beta R (Eq. 6) at beta = 0.1, 1 and 10,
all with configs/mnist.py:short (300 steps of batch 64, evaluation on 2,000
examples per split, IWAE k = 5). R should fall and D rise as beta grows.
Another budget for every beta: e.g. --config.train.num_steps=1000.
"""

import ml_collections

from configs import mnist

BETAS = (0.1, 1.0, 10.0)


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config('short')
  config.objective.kind = 'beta_vae'
  return config


def get_sweep() -> list[dict]:
  return [{'objective.beta': beta} for beta in BETAS]
