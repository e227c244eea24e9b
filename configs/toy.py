r"""python -m experiments.main --config=configs/toy.py --workdir=runs/toy

The discrete toy of section 4 / Appendix E (Fig. 2), trained on the exact
p*(x) and measured by exact enumeration. The default is the Fig. 2 reading
(bump encoder, tabular decoder) trained with the ELBO. Variants:

  --config=configs/toy.py:elbo           the ELBO (Fig. 2b), the default
  --config=configs/toy.py:target_rate    D + |0.5 - R| (Fig. 2c)
  --config=configs/toy.py:rate_constraint  min D subject to R = 0.5
  --config=configs/toy.py:smoke          a few hundred steps, for tests

and any key can be overridden, e.g. `--config.model.decoder=bump`
`--config.train.seed=1`
`--config.objective.kind=target_rate --config.objective.rate=0.5`.
"""

import ml_collections


from rdvae.objectives import settings
from rdvae.toy import data
from rdvae.toy import model
from rdvae.training import optim

VARIANTS = ('elbo', 'target_rate', 'rate_constraint', 'smoke')


def get_config(variant: str = 'elbo') -> ml_collections.ConfigDict:
  """The toy config; `variant` picks the objective (see the module doc)."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown toy config variant {variant!r}; '
                     f'expected one of {VARIANTS}')
  config = ml_collections.ConfigDict()
  # The data spec of Appendix E (rdvae/toy/data.py); change it only
  # knowingly: results compare with an independent reference at these values.
  config.dataset = data.default_config()
  config.model = model.default_config()
  config.objective = settings.default_config()

  config.optim = optim.default_config()
  config.optim.learning_rate = 0.01
  # A cosine from the first step down to 1% of the rate lets the target rate
  # settle on its kink at R = sigma instead of hopping across it.
  config.optim.schedule = 'cosine'
  config.optim.hold_fraction = 0.0
  config.optim.final_fraction = 0.01
  config.optim.normalize_gradients = False
  # Adam's eps well above float32 round-off: on the flat (degenerate) optima
  # of the ELBO and the target rate, eps 1e-8 turns round-off gradients into
  # full-size steps and R drifts.
  config.optim.eps = 1e-6

  config.train = ml_collections.ConfigDict()
  config.train.seed = 0
  config.train.num_steps = 20_000
  config.train.steps_per_dispatch = 1_000
  config.train.scan_unroll = False
  config.train.log_every = 1_000
  config.train.eval_every = 0        # the measures are exact: at the end
  config.train.checkpoint_every = 0  # at the end (and on SIGTERM/SIGINT)
  config.train.max_checkpoints_to_keep = 1
  config.train.nonfinite = 'stop'
  config.train.max_skipped = 10

  if variant == 'target_rate':
    config.objective.kind = 'target_rate'
    config.objective.rate = 0.5
  elif variant == 'rate_constraint':
    config.objective.kind = 'rate_constraint'
    config.objective.rate = 0.5
    # The multiplier's defaults (the same as on MNIST): the toy's slope at
    # R = 0.5 is dD/dR = -1, so lambda settles at 1, and R ends at 0.5 within
    # 1e-6 (tests/test_toy.py checks 1e-5).
  elif variant == 'smoke':
    config.train.num_steps = 400
    config.train.steps_per_dispatch = 100
    config.train.log_every = 100
  config.lock()
  return config
