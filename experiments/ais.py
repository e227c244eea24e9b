r"""python -m experiments.ais --workdir=runs/mnist --examples=100 --chains=16 \
     --steps=500 --beta_max=1 --bdmc_examples=10 --params=last

Annealed importance sampling of a finished run's decoder (Huang et al.,
2020): log p(x) on a seeded random subset of the test split, the decoder's
rate-distortion curve (R_b, D_b) for b in [0, beta_max] (monotone, beside
the chains' sampled D_b and, from two chains on, its standard error), and
BDMC bounds on
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

from experiments import ais_flags
from experiments import cli
from rdvae.runs import ais_workdir

_WORKDIR = flags.DEFINE_string('workdir', None,
                               'A run, or a sweep directory of runs.')
_SETTINGS = ais_flags.define()
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
  settings = _SETTINGS()
  log = lambda line: print(line, flush=True)
  try:
    settings.check()  # before any run is read
    ais_workdir.ais_any(_WORKDIR.value, settings, log, _EVERY.value)
  except (validation.ConfigError, FileNotFoundError, ValueError) as e:
    print(f'{type(e).__name__}: {e}', file=sys.stderr, flush=True)
    sys.exit(preemption.EXIT_USAGE)


if __name__ == '__main__':
  cli.collect_less()
  app.run(main)
