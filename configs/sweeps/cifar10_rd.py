r"""python -m experiments.sweep --sweep=configs/sweeps/cifar10_rd.py --workdir=runs/cifar10_rd

The rate-distortion plane of Fig. 3 on CIFAR-10 (configs/cifar10.py: 32x32x3
8-bit images through TFDS, d(x|z) the discretized logistic mixture of
PixelCNN++ with 10 logistics a pixel): the twelve families (encoder,
decoder, marginal) in {-,+} x {-,+} x {-,+,v}, the beta-VAE objective
D + beta R (Eq. 6) at the betas of configs/sweeps/mnist_rd.py, without KL
annealing, at the paper's budget (200 epochs of batch 64, lr 3e-4 held for
100 epochs then linearly to 0, final IWAE with k = 100 on the whole
validation and test sets). 12 x 9 = 108 runs. Distortion and the bounds
are in nats per image and, in results.json and the report, in bits per
dimension (3,072 dimensions).

Compute (an estimate, not a measurement on a GPU): 200 epochs are 140,600
steps of 64 images, 9.0e6 training images per run. At the training images/s
estimated per family for this project's 2-core CPU (CPU_IMAGES_PER_SECOND)
one run takes 43 h (+--) to 234 h (-+v), one of each family 1,550
CPU-hours, the sweep about 14,000 CPU-hours (`estimated_hours()`). Assuming
one modern GPU trains these models about 100 times faster than that CPU
(GPU_SPEEDUP, the assumption of configs/sweeps/mnist_rd.py, unmeasured), the
sweep needs about 140 GPU-hours of training, plus the evaluations (every 10
epochs on the validation set; at the end validation and test with k = 100).
"""

import ml_collections

from configs import cifar10
from rdvae.models import model
from rdvae.sweeps import sweep_file

BETAS = (0.1, 0.15, 0.3, 0.5, 1.0, 1.1, 2.0, 5.0, 10.0)
EPOCHS = 200
STEPS_PER_EPOCH = 45_000 // 64      # 703: train[:90%] of TFDS cifar10

# Training images/s at batch 64 on a 2-core CPU, estimated per family as
# the MNIST figure of BUILD.md's family table ("The twelve families") times
# the ratio of XLA's FLOP per training image, MNIST over CIFAR-10, both
# counted by `python benchmarks/family_throughput.py [--images=cifar10]`
# (CIFAR-10 costs 2.0-2.1x MNIST's FLOP with the simple decoder, 1.6x with
# the VampPrior, 1.3x with PixelCNN++; the images/s of the two benchmarks,
# run one after the other on a loaded machine, give the same estimates
# within 14%). GPU_SPEEDUP: the assumed GPU speed-up of the estimate.
CPU_IMAGES_PER_SECOND = {
    '---': 56.4, '--+': 55.5, '--v': 26.1, '-+-': 13.5, '-++': 13.7,
    '-+v': 10.7, '+--': 58.0, '+-+': 52.6, '+-v': 26.0, '++-': 14.5,
    '+++': 14.3, '++v': 10.7}
GPU_SPEEDUP = 100.0


def get_config() -> ml_collections.ConfigDict:
  config = cifar10.get_config()
  config.objective.kind = 'beta_vae'
  return config


def get_sweep() -> list[dict]:
  return [{'model.family': family, 'objective.beta': beta}
          for family in model.FAMILIES for beta in BETAS]


def estimated_hours(speedup: float = 1.0) -> float:
  """Training hours of the whole sweep at CPU_IMAGES_PER_SECOND x speedup
  (1: the CPU; GPU_SPEEDUP: the GPU estimate of the module doc)."""
  rates = {family: rate * speedup
            for family, rate in CPU_IMAGES_PER_SECOND.items()}
  return sweep_file.training_hours(get_sweep(), EPOCHS * STEPS_PER_EPOCH * get_config().train.batch_size, rates)
