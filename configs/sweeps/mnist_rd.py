r"""python -m experiments.sweep --sweep=configs/sweeps/mnist_rd.py --workdir=runs/mnist_rd

The MNIST rate-distortion plane of Fig. 3 (section 4, Appendix F): the
twelve families (encoder, decoder, marginal) in {-,+} x {-,+} x {-,+,v}, the
beta-VAE objective D + beta R (Eq. 6) at betas from 0.1 to 10, each with and
without KL annealing (beta rising linearly from 0 over ANNEAL_STEPS steps,
Bowman et al. 2016), at the paper's budget (configs/mnist.py: 200 epochs of
batch 64, lr 3e-4 held for 100 epochs then linearly to 0, final IWAE with
k = 100 on the whole validation and test sets). 12 x 9 x 2 = 216 runs (the
paper reports 209). The paper states neither its betas beyond the range and
Fig. 4's (0.1, 0.15, 1.0, 1.1) nor its annealing length; BETAS and
ANNEAL_STEPS are our choice.

Compute (an estimate, not a measurement): 200 epochs are 156,200 steps of
64 images, 1.0e7 training images per run. At the training images/s measured
per family on this project's 2-core CPU (BUILD.md, "The twelve families";
CPU_IMAGES_PER_SECOND below) one run takes 23 h (---) to 272 h (++v), one
of each family 1,640 CPU-hours, the sweep about 29,500 CPU-hours. Assuming
one modern GPU trains these models about 100 times faster than that CPU
(GPU_SPEEDUP, unmeasured: the simple family runs at 88 GFLOP/s there, a
GPU sustains some TFLOP/s), the sweep needs about 300 GPU-hours of training
(`estimated_hours()`), plus about 7% for the evaluations (every 10 epochs on
the validation set; at the end validation and test with k = 100).
"""

import ml_collections

from configs import mnist
from rdvae.models import model
from rdvae.sweeps import sweep_file

BETAS = (0.1, 0.15, 0.3, 0.5, 1.0, 1.1, 2.0, 5.0, 10.0)
ANNEAL_STEPS = 15_620                # 20 epochs, a tenth of training
# Without and with KL annealing (beta from objective.beta_start = 0).
BETA_SCHEDULES = ({'objective.beta_schedule': 'constant'},
                  {'objective.beta_schedule': 'linear',
                   'objective.anneal_steps': ANNEAL_STEPS})

# Training images/s at batch 64 on a 2-core CPU (BUILD.md), and the assumed
# GPU speed-up of the compute estimate.
CPU_IMAGES_PER_SECOND = {
    '---': 121.9, '--+': 105.8, '--v': 25.3, '-+-': 13.2, '-++': 14.9,
    '-+v': 10.3, '+--': 120.6, '+-+': 114.9, '+-v': 22.7, '++-': 14.5,
    '+++': 15.3, '++v': 10.2}
GPU_SPEEDUP = 100.0


def get_config() -> ml_collections.ConfigDict:
  config = mnist.get_config()
  config.objective.kind = 'beta_vae'
  return config


def get_sweep() -> list[dict]:
  return [{'model.family': family, 'objective.beta': beta, **schedule}
          for family in model.FAMILIES for beta in BETAS
          for schedule in BETA_SCHEDULES]


def estimated_hours(speedup: float = 1.0) -> float:
  """Training hours of the whole sweep at CPU_IMAGES_PER_SECOND x speedup
  (1: the CPU; GPU_SPEEDUP: the GPU estimate of the module doc)."""
  rates = {family: rate * speedup
            for family, rate in CPU_IMAGES_PER_SECOND.items()}
  return sweep_file.training_hours(get_sweep(), 200 * 781 * get_config().train.batch_size, rates)
