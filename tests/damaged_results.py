"""Each way a results.json can be damaged, made from the real writer's file:
{id: (damage(workdir), the reason `run_files.read_results` gives, as a
regular expression)}. 'missing' is no file at all: the run is pending."""

import os

from rdvae.files import atomic_files
from rdvae.files import run_files

RESULTS = {'rate': 5.25, 'distortion': 80.5, 'elbo': -85.75, 'step': 3}
HINT = '; remove it and run again to evaluate the last checkpoint afresh$'


def _truncate(workdir):
  run_files.write_results(workdir, RESULTS)
  path = os.path.join(workdir, run_files.RESULTS_FILE)
  with open(path, 'r+') as f:
    f.truncate(len(f.read()) // 2)


def _rewrite(**changes):
  def damage(workdir):
    run_files.write_results(workdir, dict(RESULTS, **changes))
  return damage


def _text(text):
  def damage(workdir):
    atomic_files.write_text_atomic(
        os.path.join(workdir, run_files.RESULTS_FILE), text)
  return damage


DAMAGES = {
    'missing': (lambda workdir: None, None),
    'truncated': (_truncate, r'^not valid JSON \(.*\)' + HINT),
    'list': (_text('[5.25, 80.5]\n'),
             '^holds a JSON list, not an object' + HINT),
    'empty_object': (lambda workdir: run_files.write_results(workdir, {}),
                     "^no 'rate'; no 'distortion'; no 'elbo'" + HINT),
    'string_numbers': (_rewrite(rate='5.25'),
                       "^'rate' is '5.25', not a finite number" + HINT),
    'nan': (_rewrite(elbo=float('nan'), distortion=float('inf')),
            "^'distortion' is 'inf', not a finite number; 'elbo' is 'nan', "
            'not a finite number' + HINT),
    'nan_literal': (_text('{"rate": NaN, "distortion": 80.5, "elbo": 1}'),
                    "^'rate' is nan, not a finite number" + HINT),
    'boolean': (_rewrite(rate=True),
                "^'rate' is True, not a finite number" + HINT),
}
