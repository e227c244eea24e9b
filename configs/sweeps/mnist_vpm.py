r"""python -m experiments.sweep --sweep=configs/sweeps/mnist_vpm.py --workdir=runs/mnist_vpm

Fig. 4a/b: the (-,+,v) family (simple encoder, PixelCNN++ decoder,
VampPrior) on static binarized MNIST with the beta-VAE objective and KL
annealing (beta rising linearly from 0 over ANNEAL_STEPS steps) at
beta = 0.1 (autoencoder), 0.15 (syntactic encoder), 1.0 (semantic encoder)
and 1.1 (autodecoder), at the paper's budget (configs/mnist.py). The image
grids of each point (images/) are the figure's columns. Compute: 4 runs of
the (-,+,v) family, about 270 CPU-hours each on a 2-core CPU, a few GPU-hours
each (see configs/sweeps/mnist_rd.py).
"""

import ml_collections

from configs import mnist

BETAS = (0.1, 0.15, 1.0, 1.1)
ANNEAL_STEPS = 15_620   # 20 epochs, as in configs/sweeps/mnist_rd.py


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config()
  config.model.family = '-+v'
  config.objective.kind = 'beta_vae'
  config.objective.beta_schedule = 'linear'
  config.objective.beta_start = 0.0
  config.objective.anneal_steps = ANNEAL_STEPS
  return config


def get_sweep() -> list[dict]:
  return [{'objective.beta': beta} for beta in BETAS]
