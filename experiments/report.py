r"""python -m experiments.report --workdir=runs/mnist_rd [--grid_betas=0.1,1]
    [--grid_families=-+v] [--max_grids=12]

Writes the report of a sweep (or any directory of runs) to DIR/report/:
points.csv, frontier.csv, hull.csv, the RD plane (Fig. 3a), its panels by
encoder, decoder and marginal, -ELBO against R (Fig. 3b), sample grids of the
frontier and of chosen betas (Fig. 4), report.md with every point, and
TensorBoard HParams (`tensorboard --logdir=DIR/report/tensorboard`). It reads
only the points' config.json, sweep_point.json, results.json, failure.json
and images, so it can run while the sweep does; see `rdvae.analysis.report`.
"""

import os

from absl import app
from absl import flags

from experiments import cli
from rdvae.analysis import figures
from rdvae.analysis import report
from rdvae.analysis import sweep_results

_WORKDIR = flags.DEFINE_string('workdir', None, 'The sweep directory.')
_GRID_BETAS = flags.DEFINE_list(
    'grid_betas', ['1'], 'Final betas whose points get a grid figure each.')
_GRID_FAMILIES = flags.DEFINE_list(
    'grid_families', [], "Families (e.g. '-+v') whose points get a grid "
    'figure each, by falling rate.')
_MAX_GRIDS = flags.DEFINE_integer('max_grids', 12,
                                  'Grids per grid figure.')
_AIS_CURVES = flags.DEFINE_list(
    'ais_curves', [], 'Points whose decoder RD curve (ais.json) is drawn '
    '(default: the Pareto frontier\'s points with ais.json).')
flags.mark_flag_as_required('workdir')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    betas = [float(b) for b in _GRID_BETAS.value]
  except ValueError:
    raise app.UsageError(f'--grid_betas={_GRID_BETAS.value!r} must be a '
                         'comma-separated list of numbers') from None
  bad = [f for f in _GRID_FAMILIES.value if not figures.is_family(f)]
  if bad:
    raise app.UsageError(
        f'--grid_families: {bad} are not families; expected 3 letters '
        "(encoder - or +, decoder - or +, marginal -, + or v), e.g. '-+v'")
  if _MAX_GRIDS.value < 1:
    raise app.UsageError(f'--max_grids={_MAX_GRIDS.value} must be >= 1')
  if not os.path.isdir(_WORKDIR.value):
    raise app.UsageError(f'--workdir={_WORKDIR.value!r} is not a directory; '
                         'expected a sweep directory (or any directory of '
                         'runs)')
  if not sweep_results.read_sweep(_WORKDIR.value):
    raise app.UsageError(f'--workdir={_WORKDIR.value!r} holds no runs (no '
                         'subdirectory with a config.json or results.json); '
                         'expected a sweep directory')
  out = report.write_report(_WORKDIR.value, betas, _MAX_GRIDS.value,
                            _GRID_FAMILIES.value, _AIS_CURVES.value)
  h_hat = 'unknown' if out['h_hat'] is None else f"{out['h_hat']:.6g} nats"
  print(f"{len(out['points'])} points ({report.status_counts(out['points'])});"
        f' H-hat = {h_hat}')
  print(f"wrote {out['directory']}: {', '.join(out['files'])}")


def _kept() -> str:
  return ('the runs are unchanged; the report may be incomplete: run the '
          'same command again')


if __name__ == '__main__':
  cli.run(main, _kept)
