r"""python -m experiments.main --config=configs/cifar10.py --workdir=runs/cifar10

CIFAR-10 (Krizhevsky, 2009) through TFDS: 32x32x3 8-bit images, the simple
family (-,-,-) with the discretized logistic mixture of PixelCNN++ as d(x|z)
(`dataset.values='auto'` finds 8-bit values; `model.mixture_components` = 10
logistics per pixel), and the paper's optimisation (Appendix F): 200 epochs
of batch 64, Adam on normalized gradients. TFDS has no validation split:
train is TFDS train[:90%] (45,000 images), validation train[90%:] (5,000),
test TFDS test (10,000). Results are in nats per image and in bits per
dimension (`bpd`, `distortion_bpd`, `iwae_bpd`; 3,072 dimensions).

Every family of the paper takes CIFAR-10 (`--config.model.family=-+v`): the
PixelCNN++ decoder reads out the mixture of each pixel's three channels
given the pixels before it (10 K parameters a pixel, as PixelCNN++).
The plane of all twelve families is configs/sweeps/cifar10_rd.py. TFDS
must have prepared `cifar10`
(that step needs TensorFlow and a network; reading it afterwards does not).

Variants:

  --config=configs/cifar10.py          the paper's optimisation on CIFAR-10
  --config=configs/cifar10.py:smoke    a few steps on tiny evaluation subsets
                                       (tests run it on tfds.testing.mock_data)
"""

import ml_collections

from configs import default

VARIANTS = ('', 'paper', 'smoke')


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """The CIFAR-10 config; `variant` is one of VARIANTS."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown cifar10 config variant {variant!r}; '
                     f'expected one of {VARIANTS}')
  config = default.get_config()
  config.dataset.name = 'cifar10'
  config.dataset.source = 'tfds'
  config.dataset.train_split = 'train[:90%]'
  config.dataset.valid_split = 'train[90%:]'
  config.dataset.test_split = 'test'
  config.model.family = '---'
  # 45,000 training images: 703 steps of 64 per epoch; evaluate every 10.
  config.train.eval_every = 7030
  if variant == 'smoke':
    default.make_smoke(config)
  return config
