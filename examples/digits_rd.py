r"""python -m experiments.sweep --sweep=examples/digits_rd.py --workdir=runs/digits_rd

A CPU-sized rate-distortion sweep on real 8-bit images: scikit-learn's
digits (8x8, 17 grey levels as 0..255; write them first with
`python -m examples.digits runs/digits.npz`, from the repository root),
the simple family (-,-,-) with the discretized logistic mixture as d(x|z),
beta-VAE objective D + beta R at 3 betas. R should fall and D rise with
beta; the report reads distortion in nats per image, and results.json also
in bits per dimension (64 dimensions). 8-bit PixelCNN++ decoding is not
built, so the sweep has no PixelCNN++ point.
"""

import ml_collections

from configs import default
from rdvae.sweeps import sweep_file

PATH = 'runs/digits.npz'  # relative to where the sweep starts
BUDGET = {
    'train.batch_size': 64,
    'train.num_steps': 2000,
    'train.log_every': 100,
    'train.eval_every': 0,
    'train.checkpoint_every': 500,
    'eval.max_examples': 0,       # the whole 180-image splits
    'eval.batch_size': 60,
    'eval.iwae_samples': 10,
    'eval.num_grid_images': 8,
    'eval.generative_samples': 180,
    'train.steps_per_dispatch': 2,
    'train.scan_unroll': True,
}
BETAS = (0.3, 1.0, 3.0)


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset.name = 'digits'
  config.dataset.source = 'npz'
  config.dataset.path = PATH
  config.model.family = '---'
  config.model.latent_dim = 16
  config.model.mixture_components = 5
  config.objective.kind = 'beta_vae'
  return sweep_file.apply_overrides(config, BUDGET, 'budget')


def get_sweep() -> list[dict]:
  return [{'objective.beta': beta} for beta in BETAS]
