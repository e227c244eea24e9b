r"""python -m experiments.evaluate --workdir=runs/mnist --params=best \
     --output=results_k1000.json --eval.iwae_samples=1000 --eval.max_examples=0

Evaluates a finished run again from its checkpoint, without retraining:
reads the run's config.json, restores its last checkpoint (`--params=last`)
or its best by validation ELBO (`--params=best`), applies the `--eval.<key>`
overrides (only evaluation keys; see rdvae/evaluation/measures.py) and writes every
measure of results.json (R, D, ELBO, IWAE, bits/dim, E, G, active units,
rate per dimension) to `<workdir>/<output>`. The run's own config.json,
metrics.jsonl and results.json are left as they are.

`--jax_platforms=cpu` picks the backend.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from experiments import cli
from rdvae.runs import reevaluate
from rdvae.evaluation import measures as evaluation

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of a run.')
_PARAMS = flags.DEFINE_enum('params', 'last', list(evaluation.PARAMS),
                            'Checkpoint: the last, or the best by validation '
                            'ELBO.')
_OUTPUT = flags.DEFINE_string('output', 'results_eval.json',
                              'Results file name, written in the workdir.')
_PLATFORMS = flags.DEFINE_string(
    'jax_platforms', None, 'JAX backends to use, e.g. "cpu".')
_EVAL = {
    key: flags.DEFINE_integer(f'eval.{key}', None,
                              f'Override config.eval.{key} (default: the '
                              f'run\'s own; {value} in new configs).')
    for key, value in evaluation.default_config().items()}
flags.mark_flags_as_required(['workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  output = _OUTPUT.value
  if (output in evaluation.RUN_FILES or os.path.basename(output) != output
      or not output.endswith('.json')):
    raise app.UsageError(
        f'--output={output!r}: expected a file name ending in .json (no '
        f'directory), other than the run files {evaluation.RUN_FILES}')
  import jax  # pylint: disable=g-import-not-at-top
  if _PLATFORMS.value:
    jax.config.update('jax_platforms', _PLATFORMS.value)
  overrides = {f'eval.{key}': flag.value for key, flag in _EVAL.items()
               if flag.value is not None}
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  from rdvae import validation  # pylint: disable=g-import-not-at-top
  compilation.setup()
  try:
    results = reevaluate.evaluate_workdir(_WORKDIR.value, _PARAMS.value,
                                          overrides, _OUTPUT.value)
  except (validation.ConfigError, FileNotFoundError) as e:
    cli.report(e)
  print(json.dumps(results, indent=2, sort_keys=True, default=str))


def _kept() -> str:
  return ('the run is unchanged and --output was not written; run the same '
          'command again')


if __name__ == '__main__':
  cli.run(main, _kept)
