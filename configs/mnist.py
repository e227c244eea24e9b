r"""python -m experiments.main --config=configs/mnist.py --workdir=runs/mnist

Static binarized MNIST (Larochelle & Murray, 2011) with the simple family
(-,-,-) of Appendix F, trained on the beta-VAE objective. Variants, picked by
the string after the colon:

  --config=configs/mnist.py            the paper: 200 epochs, batch 64, Adam
                                       on normalized gradients, lr 3e-4 held
                                       for 100 epochs then linearly to 0
  --config=configs/mnist.py:one_epoch  one epoch (781 steps) at beta = 1,
                                       full validation and test evaluation
  --config=configs/mnist.py:short      the fixed short budget of
                                       configs/sweeps/beta_table.py (300 steps,
                                       seeded random 2,000 examples per
                                       split, 100 generated pairs for E, G)
  --config=configs/mnist.py:smoke      a few steps on tiny evaluation
                                       subsets, for tests

Override any key, e.g. `--config.objective.kind=beta_vae
--config.objective.beta=10 --config.train.batch_size=256`.
"""

import ml_collections

from configs import default

VARIANTS = ('', 'paper', 'one_epoch', 'short', 'smoke')


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """The MNIST config; `variant` is one of VARIANTS (see the module doc)."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown mnist config variant {variant!r}; '
                     f'expected one of {VARIANTS}')
  config = default.get_config()
  config.dataset.name = 'binarized_mnist'
  config.dataset.source = 'npz'   # the packaged copy; 'tfds' with a network
  config.model.family = '---'
  if variant == 'one_epoch':
    config.train.num_epochs = 1.0
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 200
    config.eval.iwae_samples = 5
  elif variant == 'short':
    config.train.num_steps = 300
    config.train.log_every = 50
    config.train.eval_every = 0
    config.train.checkpoint_every = 0
    config.eval.iwae_samples = 5
    config.eval.max_examples = 2000
    # Pairs for E and G: a PixelCNN++ decoder samples them pixel by pixel
    # (784 sequential network passes per batch), slow on a CPU.
    config.eval.generative_samples = 100
  elif variant == 'smoke':
    default.make_smoke(config)
  return config
