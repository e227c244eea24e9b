r"""python -m experiments.beta_table --workdir=runs/beta_table

Trains the simple family (-,-,-) on static binarized MNIST with the beta-VAE
objective D + beta R (Eq. 6) at beta = 0.1, 1 and 10, all with the same fixed
budget (configs/mnist.py:short: 300 steps of batch 64, evaluation on a fixed
seeded random 2,000 validation and test images), and prints test R, D and ELBO
per beta.
R should fall and D rise as beta grows. Each beta is its own run in
WORKDIR/beta_<beta> (rerunning resumes or reuses finished runs).

  --num_steps=N        another budget (same for every beta)
  --betas=0.1,1,10     other betas
  --max_examples=N     evaluation subset size (0: the whole splits)
"""

import os

from absl import app
from absl import flags
from absl import logging

_WORKDIR = flags.DEFINE_string('workdir', None, 'Parent directory of the runs.')
_BETAS = flags.DEFINE_list('betas', ['0.1', '1', '10'], 'The betas.')
_NUM_STEPS = flags.DEFINE_integer('num_steps', 300, 'Training steps per beta.')
_MAX_EXAMPLES = flags.DEFINE_integer(
    'max_examples', 2000, 'Evaluation examples per split (0: all).')
flags.mark_flag_as_required('workdir')


def beta_config(beta: float, num_steps: int, max_examples: int):
  from configs import mnist  # pylint: disable=g-import-not-at-top
  config = mnist.get_config('short')
  config.objective.kind = 'beta_vae'
  config.objective.beta = beta
  config.train.num_steps = num_steps
  config.train.log_every = min(config.train.log_every, num_steps)
  config.eval.max_examples = max_examples
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  from rdvae import train  # pylint: disable=g-import-not-at-top
  rows = []
  for beta in (float(b) for b in _BETAS.value):
    config = beta_config(beta, _NUM_STEPS.value, _MAX_EXAMPLES.value)
    results = train.train_and_eval(
        config, os.path.join(_WORKDIR.value, f'beta_{beta:g}'))
    rows.append((beta, results['rate'], results['distortion'],
                 results['elbo'], results['iwae']))
  print(f'\nsimple family (-,-,-), {_NUM_STEPS.value} steps of batch 64, '
        f'test set ({_MAX_EXAMPLES.value or "all"} examples), nats per image')
  print(f'{"beta":>6} {"R":>9} {"D":>9} {"ELBO":>9} {"IWAE":>9}')
  for beta, rate, distortion, elbo, iwae in rows:
    print(f'{beta:>6g} {rate:9.2f} {distortion:9.2f} {elbo:9.2f} {iwae:9.2f}')


if __name__ == '__main__':
  app.run(main)
