r"""python -m experiments.main --config=configs/default.py --workdir=runs/default

Every key of the image experiments (binarized MNIST, Omniglot, CIFAR-10,
your own binary or 8-bit images), at the
paper's setting for the simple family (-,-,-) on static binarized MNIST
(Appendix F). The other config files start from this one and override a few
keys; `--config.<key>=<value>` overrides any key from the command line. The
config is locked: a misspelt key is an error.

Sections (each module documents and validates its own):
  dataset.*    rdvae/data/sources.py: name, source ('npz' | 'tfds' |
               'arrays'), path ('' = the packaged binarized MNIST; else an
               .npz of uint8 images), tfds_data_dir ('' = TFDS default),
               train_split, valid_split, test_split (TFDS splits, '' = the
               dataset's own), values ('auto' | 'binary' | '8bit').
  model.*      rdvae/models/model.py: family (the paper's tuple, e.g. '---'),
               latent_dim; encoder, decoder, marginal ('' = the family
               letter's, or a user's 'package.module:factory',
               docs/models.md); likelihood ('' = by the data's values,
               'bernoulli', 'logistic_mixture'), mixture_components.
  objective.*  rdvae/objectives/losses.py: kind, beta, rate, distortion, schedules,
               multiplier settings.
  optim.*      rdvae/training/optim.py: Adam on block-normalized gradients; lr held for
               hold_fraction of training, then linearly to final_fraction*lr.
  train.*      rdvae/training/loop.py: seed, batch_size, num_epochs or num_steps,
               steps_per_dispatch and scan_unroll (0 and None: the
               backend's choice, rdvae/runtime/backends.py), parallel ('jit' |
               'pmap'), log_every, eval_every, checkpoint_every (0 = only at the end),
               max_checkpoints_to_keep, nonfinite ('stop' | 'skip'),
               max_skipped.
  eval.*       rdvae/evaluation/measures.py: batch_size, iwae_samples (K of the
               final IWAE bound and of the model's log q(x) in G),
               max_examples (0 = the whole split; N > 0 = a fixed random
               sample of N examples of each split, drawn with subset_seed,
               the same for every run: the test split is ordered by class,
               so its first N are not a sample), subset_seed,
               num_grid_images, num_decodes (the 'mean of 5' of Fig. 4),
               generative_samples (pairs z ~ m(z), x ~ d(x|z) for the
               generative bounds E and G, at most max_examples when that is
               > 0; 0 skips them). The final evaluation prints its progress
               and writes each part's time to results.json ('eval_seconds').
"""

import ml_collections
from ml_collections import config_dict

from rdvae.data import sources as data
from rdvae.evaluation import measures as evaluation
from rdvae.models import model
from rdvae.objectives import settings
from rdvae.training import optim


def get_config() -> ml_collections.ConfigDict:
  """The paper's MNIST run of the simple family at beta = 1."""
  config = ml_collections.ConfigDict()
  config.dataset = data.default_config()
  config.model = model.default_config()
  config.objective = settings.default_config()
  config.optim = optim.default_config()

  config.train = ml_collections.ConfigDict()
  config.train.seed = 0
  # The paper does not state its batch size; 64 is the common choice for
  # these models.
  config.train.batch_size = 64
  config.train.num_epochs = 200.0   # F.4
  config.train.num_steps = 0        # > 0 overrides num_epochs
  # 0 and None: the backend's choice (rdvae/runtime/backends.py): on the CPU an
  # unrolled scan of 2 steps per dispatch (XLA:CPU runs convolutions inside a
  # rolled loop far slower; BUILD.md, "Throughput"), on GPU/TPU a rolled scan
  # of up to 100 steps (a divisor of log_every, eval_every and
  # checkpoint_every). The values chosen are logged and written to
  # results.json under 'backend'.
  config.train.steps_per_dispatch = 0
  config.train.scan_unroll = config_dict.placeholder(bool)
  config.train.parallel = 'jit'
  config.train.log_every = 100
  config.train.eval_every = 7810    # 10 epochs of 781 steps
  config.train.checkpoint_every = 1000
  config.train.max_checkpoints_to_keep = 2
  # A step whose loss, rate, distortion, gradient norm or updated state is
  # NaN/inf: 'stop' the run (the last checkpoint stays the last good one) or
  # 'skip' the update (counted as train/skipped; the run stops after
  # max_skipped consecutive skips).
  config.train.nonfinite = 'stop'
  config.train.max_skipped = 10

  config.eval = evaluation.default_config()

  config.lock()
  return config


def make_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks `config` in place to a few steps on tiny batches, for tests."""
  config.train.batch_size = 8
  config.train.num_steps = 4
  config.train.steps_per_dispatch = 2
  config.train.log_every = 2
  config.train.eval_every = 2
  config.train.checkpoint_every = 2
  config.eval.batch_size = 8
  config.eval.iwae_samples = 2
  config.eval.max_examples = 12
  config.eval.num_grid_images = 3
  config.eval.generative_samples = 4
  return config
