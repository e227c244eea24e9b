r"""python -m experiments.main --config=configs/omniglot.py --workdir=runs/omniglot

Omniglot (Lake et al., 2015) as 28x28 binary images (Burda et al.'s
preprocessing, see rdvae/data/sources.py) through TFDS, with the simple family
(-,-,-) and the paper's optimisation (Appendix F): 200 epochs, batch 64.
TFDS must have prepared `omniglot` (that step needs TensorFlow and a network;
reading it afterwards does not). Variants:

  --config=configs/omniglot.py          the paper's run
  --config=configs/omniglot.py:smoke    a few steps on tiny evaluation subsets
                                        (tests run it on tfds.testing.mock_data)

Override any key, e.g. `--config.dataset.tfds_data_dir=/data/tfds`.
"""

import ml_collections

from configs import default

VARIANTS = ('', 'paper', 'smoke')


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """The Omniglot config; `variant` is one of VARIANTS."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown omniglot config variant {variant!r}; '
                     f'expected one of {VARIANTS}')
  config = default.get_config()
  config.dataset.name = 'omniglot'
  config.dataset.source = 'tfds'
  config.model.family = '---'
  # TFDS train less its last tenth (validation) is 17,352 images: 271 steps
  # of 64 per epoch; evaluate every 10 epochs.
  config.train.eval_every = 2710
  if variant == 'smoke':
    default.make_smoke(config)
  return config
