r"""python -m experiments.sweep --sweep=configs/sweeps/mnist_rd_cpu.py --workdir=runs/mnist_rd_cpu

A CPU-sized slice of the MNIST rate-distortion plane (Fig. 3) on static
binarized MNIST (configs/mnist.py), beta-VAE objective D + beta R (Eq. 6):

  - the simple family (-,-,-) at 7 betas from 0.1 to 10: R should fall and D
    rise with beta;
  - the PixelCNN++ family (-,+,-) at beta 0.1, 0.5 and 1, on a shorter
    budget (it trains about 9 times slower): lower rate than the simple
    family at beta 1, lower distortion at 0.1 than at 1;
  - the simple family with the rate constraint (min D subject to R = sigma)
    at sigma = 5, 15 and 30 nats: target rates reach points that beta picks
    only by search.

The budget is in BUDGET and the per-family settings in the points; tune them
here (or with --config.<key>=<value>, which applies to every point).
"""

import ml_collections

from configs import mnist

from rdvae.sweeps import sweep_file
# The budget of every point (the families' own steps and IWAE samples are in
# get_sweep).
BUDGET = {
    'train.batch_size': 64,
    'train.log_every': 50,
    'train.eval_every': 0,
    'train.checkpoint_every': 50,
    'eval.max_examples': 1000,
    # The CPU's choice (rdvae/runtime/backends.py), pinned: this sweep is sized for a
    # CPU, and its figures in BUILD.md were measured with these.
    'train.steps_per_dispatch': 2,
    'train.scan_unroll': True,
}
SIMPLE_STEPS, SIMPLE_IWAE = 300, 5
PIXELCNN_STEPS, PIXELCNN_IWAE = 50, 2
# Pairs z ~ m(z), x ~ d(x|z) for E and G: the PixelCNN++ decoder samples pixel
# by pixel (about 0.8 s an image here), so it draws fewer.
PIXELCNN_GENERATIVE = 100
SIMPLE_BETAS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
PIXELCNN_BETAS = (0.1, 0.5, 1.0)
RATE_TARGETS = (5.0, 15.0, 30.0)


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config()
  config.objective.kind = 'beta_vae'
  config = sweep_file.apply_overrides(config, BUDGET, 'budget')
  config.train.num_steps = SIMPLE_STEPS
  config.eval.iwae_samples = SIMPLE_IWAE
  return config


def get_sweep() -> list[dict]:
  simple = [{'model.family': '---', 'objective.beta': beta}
            for beta in SIMPLE_BETAS]
  pixelcnn = [{'model.family': '-+-', 'objective.beta': beta,
               'train.num_steps': PIXELCNN_STEPS,
               'eval.iwae_samples': PIXELCNN_IWAE,
               'eval.generative_samples': PIXELCNN_GENERATIVE}
              for beta in PIXELCNN_BETAS]
  constrained = [{'model.family': '---', 'objective.kind': 'rate_constraint',
                  'objective.rate': sigma} for sigma in RATE_TARGETS]
  return simple + constrained + pixelcnn   # the slowest last
