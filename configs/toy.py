r"""python -m experiments.main --config=configs/toy.py --workdir=runs/toy

The discrete toy of section 4 / Appendix E (Fig. 2), trained on the exact
p*(x) and measured by exact enumeration. The default is the Fig. 2 reading
(bump encoder, tabular decoder) trained with the ELBO. Variants:

  --config=configs/toy.py:elbo           the ELBO (Fig. 2b), the default
  --config=configs/toy.py:target_rate    D + |0.5 - R| (Fig. 2c)
  --config=configs/toy.py:rate_constraint  min D subject to R = 0.5
  --config=configs/toy.py:smoke          a few hundred steps, for tests

and any key can be overridden, e.g. `--config.model.decoder=bump`
`--config.objective.kind=target_rate --config.objective.rate=0.5`.
"""

import ml_collections

from rdvae.objectives import losses as objectives

VARIANTS = ('elbo', 'target_rate', 'rate_constraint', 'smoke')


def get_config(variant: str = 'elbo') -> ml_collections.ConfigDict:
  """The toy config; `variant` picks the objective (see the module doc)."""
  if variant not in VARIANTS:
    raise ValueError(f'unknown toy config variant {variant!r}; '
                     f'expected one of {VARIANTS}')
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = 'toy'

  # The data spec of Appendix E (see rdvae/toy/toy.py); change it only knowingly:
  # results compare with an independent reference at these values.
  config.data = ml_collections.ConfigDict()
  config.data.num_bins = 30
  config.data.class_probs = (0.7, 0.3)
  config.data.class_means = (0.35, 0.65)
  config.data.class_information = 0.5   # I(x; z*), nats

  config.model = ml_collections.ConfigDict()
  config.model.encoder = 'bump'      # bump | tabular
  config.model.decoder = 'tabular'   # bump | tabular
  config.model.num_latents = 30      # K
  # Bump: w ~ N(w_mean, scale^2), b ~ w U(0, 1) + N(0, scale^2); tabular:
  # logits ~ N(0, scale^2). A small encoder scale starts near R = 0, which the
  # target rate needs (its optimum is degenerate above sigma).
  config.model.encoder_w_mean = 0.0
  config.model.encoder_scale = 0.01
  config.model.decoder_w_mean = 0.0
  config.model.decoder_scale = 0.01

  config.objective = objectives.default_config()

  config.train = ml_collections.ConfigDict()
  config.train.num_steps = 20_000
  config.train.learning_rate = 0.01
  config.train.lr_schedule = 'cosine'     # constant | cosine
  config.train.final_lr_fraction = 0.01   # cosine decays to this fraction
  # Adam's eps well above float32 round-off: on the flat (degenerate) optima
  # of the ELBO and the target rate, eps 1e-8 turns round-off gradients into
  # full-size steps and R drifts.
  config.train.adam_eps = 1e-6
  config.train.steps_per_dispatch = 1_000
  config.train.log_every = 1_000

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
