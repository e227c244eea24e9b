r"""python -m experiments.sweep --sweep=examples/mlp_rd.py --workdir=runs/mlp_rd

The rate-distortion plane of the MLP VAE of examples/mlp_vae.py: the
beta-VAE objective D + beta R (Eq. 6) at three betas, at the short budget of
configs/mnist.py:short (300 steps of batch 64). R falls and D rises as beta
grows. Then the report (RD plane, frontier, sample grids, table):

  python -m experiments.report --workdir=runs/mlp_rd
"""

from examples import mlp_vae

BETAS = (0.1, 1.0, 10.0)


def get_config():
  config = mlp_vae.get_config('short')
  config.objective.kind = 'beta_vae'
  return config


def get_sweep() -> list[dict]:
  return [{'objective.beta': beta} for beta in BETAS]
