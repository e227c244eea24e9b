r"""python -m experiments.sweep --sweep=configs/sweeps/toy_rd.py --workdir=runs/toy_rd

The discrete toy of section 4 / Appendix E in the Fig. 2 reading (bump
encoder, tabular decoder; configs/toy.py) trained with the target rate
D + |sigma - R| at targets sigma from 0 to the data entropy H = 2.9140512
nats: every 0.05 nats from 0 to 2.9, and H itself (the validator's upper
limit). The optimum of each target lies on the line D = H - R, so the sweep
traces the toy's whole rate-distortion frontier; each point is exact
(enumerated) and trains 20,000 full-batch steps in seconds.
"""

import ml_collections

from configs import toy as toy_config

from rdvae.toy import data
STEP = 0.05


def get_config() -> ml_collections.ConfigDict:
  config = toy_config.get_config()
  config.objective.kind = 'target_rate'
  return config


def entropy() -> float:
  """H of the toy's data, in nats (2.9140512...)."""
  return float(data.create_data_spec(get_config()).entropy)


def get_sweep() -> list[dict]:
  h = entropy()
  targets = [round(STEP * i, 2) for i in range(int(h / STEP) + 1)] + [h]
  return [{'objective.rate': sigma} for sigma in targets]
