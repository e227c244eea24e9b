r"""python -m experiments.sweep --sweep=examples/digits_rd.py --workdir=runs/digits_rd

A CPU-sized rate-distortion sweep on real 8-bit images: scikit-learn's
digits (8x8, 17 grey levels as 0..255; write them first with
`python -m examples.digits runs/digits.npz`, from the repository root),
beta-VAE objective D + beta R, d(x|z) the discretized logistic mixture of
PixelCNN++:

  - the simple family (-,-,-) at 3 betas: R should fall and D rise with beta;
  - one PixelCNN++ point (-,+,-) at beta 1, on a shorter budget: its
    autoregressive decoder should reach a lower distortion at a lower rate.

The report reads nats per image; results.json also holds bits per dimension
(`bpd`, `distortion_bpd`, `iwae_bpd`; 64 dimensions).
"""

import ml_collections

from configs import default
from rdvae.sweeps import sweep_file

PATH = 'runs/digits.npz'  # relative to where the sweep starts
BUDGET = {
    'train.batch_size': 64,
    'train.log_every': 100,
    'train.eval_every': 0,
    'train.checkpoint_every': 200,
    'eval.max_examples': 0,       # the whole 180-image splits
    'eval.batch_size': 60,
    'eval.iwae_samples': 10,
    'eval.num_grid_images': 8,
    'eval.generative_samples': 90,
    'train.steps_per_dispatch': 2,
    'train.scan_unroll': True,
}
SIMPLE_STEPS = 300
PIXELCNN_STEPS = 100
BETAS = (0.3, 1.0, 3.0)


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()
  config.dataset.name = 'digits'
  config.dataset.source = 'npz'
  config.dataset.path = PATH
  config.model.family = '---'
  config.model.latent_dim = 16
  config.model.mixture_components = 5
  config.model.pixelcnn_features = 32
  config.model.pixelcnn_scales = 2   # 8x8 and 4x4
  config.objective.kind = 'beta_vae'
  config = sweep_file.apply_overrides(config, BUDGET, 'budget')
  config.train.num_steps = SIMPLE_STEPS
  return config


def get_sweep() -> list[dict]:
  simple = [{'objective.beta': beta} for beta in BETAS]
  pixelcnn = [{'model.family': '-+-', 'objective.beta': 1.0,
               'train.num_steps': PIXELCNN_STEPS}]
  return simple + pixelcnn
