r"""python -m experiments.ais --workdir=runs/mnist --examples=100 --chains=16 \
     --steps=500 --beta_max=1 --bdmc_examples=10 --params=last

Annealed importance sampling of a finished run's decoder (Huang et al.,
2020): log p(x) on a seeded random subset of the test split, the decoder's
rate-distortion curve (R_b, D_b) for b in [0, beta_max], and BDMC bounds on
log p(x) of images simulated from the model (rdvae/runs/ais_workdir.py).
Writes `<workdir>/ais.json` and `<workdir>/ais_curve.csv` with the run's
own R and D on the same images; results.json is not touched. A run of the
beta-VAE objective D + beta R sits at b = 1 / beta on its decoder's curve,
so --beta_max=10 reaches a beta = 0.1 run; b = 1 stays a knot of the
schedule and log p(x) is read there (with fewer steps below 1, so a looser
bound than --beta_max=1 at the same --steps). On a sweep directory it runs every finished point in turn and
skips the points whose ais.json has the same settings, so it can be stopped
and started again. Progress is printed at least every --progress_every
seconds.

`--jax_platforms=cpu` picks the backend.
"""

import sys

from absl import app
from absl import flags
from absl import logging

from rdvae.evaluation import measures
from rdvae.runs import ais_workdir

_DEFAULTS = ais_workdir.Settings()
_WORKDIR = flags.DEFINE_string('workdir', None,
                               'A run, or a sweep directory of runs.')
_EXAMPLES = flags.DEFINE_integer('examples', _DEFAULTS.examples,
                                 'Test images (a seeded random subset; 0: '
                                 'all).')
_CHAINS = flags.DEFINE_integer('chains', _DEFAULTS.chains,
                               'AIS chains per image.')
_STEPS = flags.DEFINE_integer('steps', _DEFAULTS.steps,
                              'Annealing steps (intermediate distributions).')
_BETA_MAX = flags.DEFINE_float('beta_max', _DEFAULTS.beta_max,
                               'The last beta of the schedule (>= 1).')
_BDMC = flags.DEFINE_integer('bdmc_examples', _DEFAULTS.bdmc_examples,
                             'Images simulated from the model for BDMC '
                             '(0: no BDMC).')
_PARAMS = flags.DEFINE_enum('params', _DEFAULTS.params, list(measures.PARAMS),
                            'Checkpoint: the last, or the best by validation '
                            'ELBO.')
_SEED = flags.DEFINE_integer('seed', _DEFAULTS.seed,
                             'Seed of the image subset and of the chains.')
_LEAPFROG = flags.DEFINE_integer('leapfrog_steps', _DEFAULTS.leapfrog_steps,
                                 'Leapfrog steps per HMC transition.')
_CHUNK = flags.DEFINE_integer('chunk', _DEFAULTS.chunk,
                              'Images per compiled call (memory, progress).')
_PILOT = flags.DEFINE_integer('pilot_steps', _DEFAULTS.pilot_steps,
                              'Transitions of the pilot run that fixes the '
                              'step sizes (default: steps / 10, at least '
                              '20; 0: adapt on the chains).')
_EVERY = flags.DEFINE_float('progress_every', 30.0,
                            'Seconds between progress lines at most.')
_PLATFORMS = flags.DEFINE_string(
    'jax_platforms', None, 'JAX backends to use, e.g. "cpu".')
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  if _PLATFORMS.value:
    jax.config.update('jax_platforms', _PLATFORMS.value)
  from rdvae import validation  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import preemption  # pylint: disable=g-import-not-at-top
  compilation.setup()
  settings = ais_workdir.Settings(
      examples=_EXAMPLES.value, chains=_CHAINS.value, steps=_STEPS.value,
      beta_max=_BETA_MAX.value, bdmc_examples=_BDMC.value,
      params=_PARAMS.value, seed=_SEED.value,
      leapfrog_steps=_LEAPFROG.value, chunk=_CHUNK.value,
      pilot_steps=_PILOT.value)
  log = lambda line: print(line, flush=True)
  try:
    settings.check()  # before any run is read
    ais_workdir.ais_any(_WORKDIR.value, settings, log, _EVERY.value)
  except (validation.ConfigError, FileNotFoundError, ValueError) as e:
    print(f'{type(e).__name__}: {e}', file=sys.stderr, flush=True)
    sys.exit(preemption.EXIT_USAGE)


if __name__ == '__main__':
  app.run(main)
