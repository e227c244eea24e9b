r"""python -m experiments.family_table --workdir=runs/family_table

Trains each of the paper's twelve model families (encoder, decoder, marginal)
in {-,+} x {-,+} x {-,+,v} on static binarized MNIST with the same fixed
short budget (configs/mnist.py:short, `--num_steps` steps of batch 64,
evaluation on a fixed seeded random `--max_examples` validation and test
images), and
prints, per family and beta: the parameter count and test R, D, ELBO and IWAE
in nats per image. (Training speed: benchmarks/family_throughput.py, on a
quiet machine; these runs may share the CPU.)

By default every family runs at beta = 1 (the ELBO) and the four PixelCNN++
families (decoder +) also at beta = 0.1, to show the rate collapse of a
powerful decoder at beta = 1 relative to beta = 0.1 (the paper's
autodecoder). Each run has its own workdir WORKDIR/<family>_beta<beta>;
rerunning reuses finished runs and resumes unfinished ones.

  --families=---,-+v   a subset of families
  --betas=1            betas for every family
  --decoder_betas=0.1  extra betas for the families with the PixelCNN++ decoder
  --num_steps=N        the budget (the same for every run)
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from rdvae.model import FAMILIES

_WORKDIR = flags.DEFINE_string('workdir', None, 'Parent directory of the runs.')
_FAMILIES = flags.DEFINE_list('families', list(FAMILIES), 'Families to train.')
_BETAS = flags.DEFINE_list('betas', ['1'], 'Betas for every family.')
_DECODER_BETAS = flags.DEFINE_list(
    'decoder_betas', ['0.1'], 'Extra betas for PixelCNN++ (decoder +) families.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', 200, 'Training steps per run.')
_MAX_EXAMPLES = flags.DEFINE_integer(
    'max_examples', 1000, 'Evaluation examples per split (0: all).')
_IWAE_SAMPLES = flags.DEFINE_integer('iwae_samples', 5, 'K of the IWAE bound.')
flags.mark_flag_as_required('workdir')


def family_config(family: str, beta: float):
  """configs/mnist.py:short for `family` at `beta`, with this script's budget."""
  from configs import mnist  # pylint: disable=g-import-not-at-top
  config = mnist.get_config('short')
  config.model.family = family
  config.objective.kind = 'beta_vae'
  config.objective.beta = beta
  config.train.num_steps = _NUM_STEPS.value
  config.train.log_every = min(config.train.log_every, _NUM_STEPS.value)
  config.train.steps_per_dispatch = min(config.train.steps_per_dispatch,
                                        _NUM_STEPS.value)
  config.eval.max_examples = _MAX_EXAMPLES.value
  config.eval.iwae_samples = _IWAE_SAMPLES.value
  return config


def runs():
  """(family, beta) pairs in the order they are trained."""
  for family in _FAMILIES.value:
    betas = [float(b) for b in _BETAS.value]
    if family[1] == '+':
      betas += [float(b) for b in _DECODER_BETAS.value if float(b) not in betas]
    for beta in betas:
      yield family, beta


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  from rdvae import model  # pylint: disable=g-import-not-at-top
  from rdvae import train  # pylint: disable=g-import-not-at-top
  pairs = list(runs())
  for family, _ in pairs:  # every config is checked before any training
    model.validate(family_config(family, 1.0))
  rows = []
  for family, beta in pairs:
    workdir = os.path.join(_WORKDIR.value, f'{family}_beta{beta:g}')
    results = train.train_and_eval(family_config(family, beta), workdir)
    rows.append({'family': family, 'beta': beta, **{
        k: results.get(k) for k in ('num_parameters', 'rate', 'distortion',
                                     'elbo', 'iwae')}})
  with open(os.path.join(_WORKDIR.value, 'family_table.json'), 'w') as f:
    json.dump(rows, f, indent=2)
  print(f'\n{_NUM_STEPS.value} steps of batch 64 on static binarized MNIST; '
        f'test set ({_MAX_EXAMPLES.value or "all"} images), nats per image')
  print(f'{"family":>7} {"beta":>5} {"params":>10} {"R":>8} {"D":>8} '
        f'{"ELBO":>8} {"IWAE":>8}')
  for r in rows:
    print(f'{r["family"]:>7} {r["beta"]:>5g} {r["num_parameters"]:>10,d} '
          f'{r["rate"]:8.2f} {r["distortion"]:8.2f} {r["elbo"]:8.2f} '
          f'{r["iwae"]:8.2f}')


if __name__ == '__main__':
  app.run(main)
