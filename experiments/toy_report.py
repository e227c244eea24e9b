r"""python -m experiments.toy_report --workdir=runs/toy_report [--seeds=10]

The main job: the paper's toy experiment (section 4, Fig. 2), computed
exactly. For both readings of Appendix E's model family,

  fig2          bump encoder + tabular decoder (the Fig. 2 reading: a family
                that can autoencode or autodecode);
  bump_decoder  bump encoder + bump decoder (one discretised Gaussian per z,
                which cannot fit the bimodal p*(x) while ignoring z),

it evaluates the hand-built true-process model and trains the ELBO, the
target rate D + |0.5 - R| and the rate constraint R = 0.5 for `--seeds`
seeds, prints a table (mean and range over seeds), checks the paper's
claims about the toy (`acceptance`), and writes one Fig. 2 figure per
reading (hand-built, ELBO, target rate; seed 0) plus `results.json` to the
workdir. Each run keeps its own workdir below
(`<reading>/<objective>/seed_<k>`); rerunning resumes.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from experiments import cli

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for all runs.')
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Seeds per (reading, objective).')
_NUM_STEPS = flags.DEFINE_integer(
    'num_steps', None, 'Training steps per run (default: the config).')
flags.mark_flag_as_required('workdir')

READINGS = {'fig2': ('bump', 'tabular'), 'bump_decoder': ('bump', 'bump')}
OBJECTIVES = ('elbo', 'target_rate', 'rate_constraint')
# The heading of each reading's Fig. 2 file.
TITLES = {
    'fig2': 'Fig. 2, the toy with a tabular decoder: (a) the hand-built '
            'model, (b) trained on the ELBO, (c) on a target rate R = 0.5',
    'bump_decoder': 'The toy with a bump decoder: (a) the hand-built model, '
                    '(b) trained on the ELBO, (c) on a target rate R = 0.5'}
COLUMNS = (('rate', 'R', '.5f'), ('distortion', 'D', '.5f'),
           ('elbo_gap', 'D+R-H', '.1e'), ('kl_data_generative', 'KL(p*|g)',
                                          '.1e'),
           ('mutual_information', 'I', '.4f'),
           ('latent_alignment', 'I(z;z*)', '.4f'),
           ('cluster_mass_0', 'mass0', '.3f'), ('cluster_mass_1', 'mass1',
                                                '.3f'))


def toy_config(reading: str, objective: str, seed: int, num_steps=None):
  """The toy config of one run of the report."""
  from configs import toy as toy_configs  # pylint: disable=g-import-not-at-top
  config = toy_configs.get_config(objective)
  config.train.seed = seed
  config.model.encoder, config.model.decoder = READINGS[reading]
  if num_steps is not None:
    config.train.num_steps = num_steps
  return config


def run_all(workdir: str, seeds: int, num_steps=None) -> dict:
  """Runs every (reading, objective, seed); returns results and tables."""
  import rdvae  # pylint: disable=g-import-not-at-top
  from rdvae.toy import data  # pylint: disable=g-import-not-at-top
  from rdvae.toy import measures  # pylint: disable=g-import-not-at-top
  from rdvae.toy import model  # pylint: disable=g-import-not-at-top
  results, tables = {}, {}
  for reading in READINGS:
    for objective in OBJECTIVES:
      runs = []
      for seed in range(seeds):
        config = toy_config(reading, objective, seed, num_steps)
        run_dir = os.path.join(workdir, reading, objective, f'seed_{seed}')
        runs.append(rdvae.train_and_eval(config, run_dir))
        if seed == 0:
          tables[(reading, objective)] = measures.read_tables(
              os.path.join(run_dir, measures.TABLES_FILE))
      results[(reading, objective)] = runs
  spec = data.create_data_spec(toy_config('fig2', 'elbo', 0))
  hand = model.true_process_tables(spec, 30)
  results[('true_process', 'hand_built')] = [measures.evaluate(spec, hand)]
  tables[('true_process', 'hand_built')] = hand
  return {'results': results, 'tables': tables, 'spec': spec}


def format_table(results: dict) -> str:
  """One row per (reading, objective): mean [min, max] over seeds."""
  header = f'{"reading":<13}{"objective":<16}{"n":>3}  ' + '  '.join(
      f'{label:>22}' for _, label, _ in COLUMNS) + '  bounds'
  lines = [header]
  for (reading, objective), runs in results.items():
    cells = []
    for key, _, fmt in COLUMNS:
      values = np.array([_value(r, key) for r in runs])
      cell = format(values.mean(), fmt)
      if len(values) > 1:
        cell += f' [{values.min():{fmt}},{values.max():{fmt}}]'
      cells.append(f'{cell:>22}')
    ok = all(r['bounds_hold'] for r in runs)
    lines.append(f'{reading:<13}{objective:<16}{len(runs):>3}  '
                 + '  '.join(cells) + f'  {"hold" if ok else "FAIL"}')
  return '\n'.join(lines)


def _value(result: dict, key: str) -> float:
  if key == 'elbo_gap':
    return result['distortion'] + result['rate'] - result['entropy']
  return result[key]


def acceptance(results: dict) -> list[tuple[str, bool]]:
  """The toy's expected outcomes (section 4, Fig. 2), each checked on every
  seed."""
  def every(key, predicate):
    return all(predicate(r) for r in results[key])
  hand = results[('true_process', 'hand_built')][0]
  h = hand['entropy']
  checks = [
      ('data: H(X) = 2.914051210084853 and I(x;z*) = 0.5 to 1e-9',
       abs(h - 2.914051210084853) < 1e-9
       and abs(hand['class_information'] - 0.5) < 1e-9),
      ('hand-built: R = 0.5, D = H - 0.5, KL(p*||g) = 0',
       abs(hand['rate'] - 0.5) < 1e-9
       and abs(hand['distortion'] - (h - 0.5)) < 1e-9
       and abs(hand['kl_data_generative']) < 1e-12),
      ('fig2 ELBO: R <= 0.02, D + R - H <= 1e-4, KL(p*||g) <= 1e-4',
       every(('fig2', 'elbo'), lambda r: r['rate'] <= 0.02
             and _value(r, 'elbo_gap') <= 1e-4
             and r['kl_data_generative'] <= 1e-4)),
      ('fig2 target rate: R in [0.495, 0.55], |D - (H - R)| <= 1e-4, '
       'clusters 0.7/0.3 (+-0.05)',
       every(('fig2', 'target_rate'), lambda r: 0.495 <= r['rate'] <= 0.55
             and abs(_value(r, 'elbo_gap')) <= 1e-4
             and abs(r['cluster_mass_0'] - 0.7) <= 0.05
             and abs(r['cluster_mass_1'] - 0.3) <= 0.05)),
      ('fig2 rate constraint: |R - 0.5| <= 0.005',
       every(('fig2', 'rate_constraint'),
             lambda r: abs(r['rate'] - 0.5) <= 0.005)),
      ('bump decoder ELBO: R >= 0.45 with D + R - H <= 1e-4',
       every(('bump_decoder', 'elbo'), lambda r: r['rate'] >= 0.45
             and _value(r, 'elbo_gap') <= 1e-4)),
      ('bounds H - D <= I <= R and E <= I_d <= G hold in every run',
       all(r['bounds_hold'] for runs in results.values() for r in runs)),
  ]
  return checks


def write_figures(workdir: str, run: dict) -> list[str]:
  from rdvae.analysis import toy_figures  # pylint: disable=g-import-not-at-top
  from rdvae.toy import measures  # pylint: disable=g-import-not-at-top
  spec, tables = run['spec'], run['tables']
  paths = []
  for reading in READINGS:
    columns = [
        measures.figure_column('(a) hand-built', spec,
                          tables[('true_process', 'hand_built')]),
        measures.figure_column('(b) ELBO', spec, tables[(reading, 'elbo')]),
        measures.figure_column('(c) target rate 0.5', spec,
                          tables[(reading, 'target_rate')])]
    path = os.path.join(workdir, f'fig2_{reading}.png')
    toy_figures.plot_toy_columns(columns, path, title=TITLES[reading])
    paths.append(path)
  return paths


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if repo not in sys.path:
    sys.path.insert(0, repo)  # for `configs`
  from rdvae.files import run_files  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
  start = time.time()
  os.makedirs(_WORKDIR.value, exist_ok=True)
  run = run_all(_WORKDIR.value, _SEEDS.value, _NUM_STEPS.value)
  paths = write_figures(_WORKDIR.value, run)
  elapsed = time.time() - start
  print(format_table(run['results']))
  checks = acceptance(run['results'])
  for line, ok in checks:
    print(f'{"PASS" if ok else "FAIL"}  {line}')
  print(f'figures: {", ".join(paths)}')
  print(f'{_SEEDS.value} seed(s), all runs: {elapsed:.1f} s')
  run_files.write_results(_WORKDIR.value, {
      'runs': {f'{a}/{b}': runs for (a, b), runs in run['results'].items()},
      'acceptance': {line: ok for line, ok in checks},
      'seconds': elapsed})


if __name__ == '__main__':
  cli.collect_less()
  app.run(main)
