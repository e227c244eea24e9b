r"""python -m experiments.sweep --sweep=configs/sweeps/omniglot_rd.py --workdir=runs/omniglot_rd

The Omniglot rate-distortion plane of Fig. 7 (Appendix G) on TFDS omniglot
(configs/omniglot.py: 200 epochs of batch 64): the twelve families with the
beta-VAE objective, the powerful (PixelCNN++) decoder families at betas from
1.1 down to 0.1 and the weaker decoder families at 0.9, 1.0 and 1.1, each
with and without KL annealing (beta rising linearly from 0 over
ANNEAL_STEPS steps; the paper reached finite rates with it). 6 x 8 x 2 +
6 x 3 x 2 = 132 runs. The paper gives the range, not the grid, of the
powerful decoders' betas; POWERFUL_BETAS is our choice. TFDS must have
prepared omniglot (see configs/omniglot.py).
"""

import ml_collections

from configs import omniglot
from rdvae.models import model

POWERFUL_BETAS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 1.1)
WEAK_BETAS = (0.9, 1.0, 1.1)
ANNEAL_STEPS = 5_420                 # 20 epochs of 271 steps
# Without and with KL annealing (beta from objective.beta_start = 0).
BETA_SCHEDULES = ({'objective.beta_schedule': 'constant'},
                  {'objective.beta_schedule': 'linear',
                   'objective.anneal_steps': ANNEAL_STEPS})


def get_config() -> ml_collections.ConfigDict:
  config = omniglot.get_config()
  config.objective.kind = 'beta_vae'
  return config


def get_sweep() -> list[dict]:
  return [{'model.family': family, 'objective.beta': beta, **schedule}
          for family in model.FAMILIES
          for beta in (POWERFUL_BETAS if family[1] == '+' else WEAK_BETAS)
          for schedule in BETA_SCHEDULES]
