"""Trains toy populations on 3 emulated CPU devices and reports whether
every member equals its run alone.

Run as a script (tests/test_toy.py starts it in a subprocess, since
XLA_FLAGS must be set before JAX starts). It reports, as JSON:
- 'devices', 'shares': the devices and members per device of a population
  of seven rate-constraint runs (`populations.PopulationLayout(7)`);
- 'bitwise': for each member, whether its state after one dispatch equals
  the same run's alone (on one device), leaf by leaf;
- 'sweep': for three runs trained by `loop.train_population` (on three
  devices, one member each; measured halfway and at the end) and each by
  `loop.train_and_eval`: whether results.json (but the population size and
  the compilation report) and metrics.jsonl are equal, and the rates, which
  differ by member."""

import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from rdvae.runtime import cpu_devices  # pylint: disable=g-import-not-at-top

cpu_devices.use_emulated_devices(3)  # before JAX starts
os.environ['JAX_PLATFORMS'] = 'cpu'

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from configs import toy as toy_configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.files import atomic_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.files import metric_files  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.runtime import populations  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.training import loop  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.training import programs  # pylint: disable=g-import-not-at-top,wrong-import-position


def _config(sigma, seed, steps):
  config = toy_configs.get_config('rate_constraint')
  config.objective.rate = sigma
  config.train.seed = seed
  config.train.num_steps = steps
  config.train.steps_per_dispatch = config.train.log_every = steps // 2
  config.train.eval_every = steps // 2  # a measure halfway, on the host
  return config


def _dispatch(run, states):
  """`states` after one dispatch of `run`'s loop, on the host."""
  layout = run.layout
  trained, _ = run.train_loop(
      layout.put_states(states),
      layout.put_replicated(run.task.train_data(run.data)))
  return layout.member_states(layout.get_replicated(trained))


def states_check():
  sigmas = (0.3, 0.5, 0.1, 0.7, 0.2, 0.4, 0.6)
  runs = [programs.create_run(_config(s, i, 40)) for i, s in enumerate(sigmas)]
  layout = populations.PopulationLayout(len(runs))
  population = programs.create_run(runs[0].config, layout=layout)
  together = _dispatch(population, [r.init_state for r in runs])
  bitwise = []
  for run, member in zip(runs, together):
    [alone] = _dispatch(run, [run.init_state])
    bitwise.append(all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(member), jax.tree.leaves(alone))))
  return {'devices': len(layout.devices), 'shares': list(layout.shares),
          'bitwise': bitwise}


def sweep_check():
  configs = [_config(s, i, 40) for i, s in enumerate((0.2, 0.5, 1.0))]
  out = {'results_equal': [], 'metrics_equal': [], 'rates': []}
  with tempfile.TemporaryDirectory() as tmp:
    together = [os.path.join(tmp, f'together{i}') for i in range(3)]
    loop.train_population(configs, together)
    for i, config in enumerate(configs):
      alone = os.path.join(tmp, f'alone{i}')
      loop.train_and_eval(config, alone)
      a = atomic_files.read_json(os.path.join(alone, 'results.json'))
      b = atomic_files.read_json(os.path.join(together[i], 'results.json'))
      b.pop('population_size')
      a.pop('compile'), b.pop('compile')
      out['results_equal'].append(a == b)
      out['metrics_equal'].append(metric_files.read_metrics(alone) ==
                                  metric_files.read_metrics(together[i]))
      out['rates'].append(b['rate'])
  return out


if __name__ == '__main__':
  compilation.setup()  # the suite's cache (RDVAE_COMPILATION_CACHE)
  print(json.dumps({**states_check(), 'sweep': sweep_check()}))
