r"""python -m experiments.sweep --sweep=configs/sweeps/family_table.py --workdir=runs/family_table

The paper's twelve model families (encoder, decoder, marginal) in
{-,+} x {-,+} x {-,+,v} on static binarized MNIST at one short budget: 50
Adam steps of batch 64 (configs/mnist.py:short otherwise), beta-VAE objective
(Eq. 6), every family at beta = 1 (the ELBO) and the PixelCNN++ family
(-,+,-) also at beta = 0.1, to show the rate collapse of a powerful decoder
at beta = 1 (the paper's autodecoder) and what a lower beta does to it.
R, D, ELBO and IWAE (k = 2) on a seeded random 500 examples per split, E
and G from 100 generative samples (PixelCNN++ sampling is 784 sequential
steps). Training speed per family: benchmarks/family_throughput.py.
"""

import ml_collections

from configs import mnist
from rdvae.models import model

NUM_STEPS = 50
BETAS = (1.0,)
EXTRA_BETAS = {'-+-': (0.1,)}   # family -> betas beside BETAS


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config('short')
  config.objective.kind = 'beta_vae'
  config.train.num_steps = NUM_STEPS
  config.train.log_every = NUM_STEPS
  config.eval.max_examples = 500
  config.eval.iwae_samples = 2
  config.eval.generative_samples = 100
  return config


def get_sweep() -> list[dict]:
  points = []
  for family in model.FAMILIES:
    extra = EXTRA_BETAS.get(family, ())
    for beta in BETAS + tuple(b for b in extra if b not in BETAS):
      points.append({'model.family': family, 'objective.beta': beta})
  return points
