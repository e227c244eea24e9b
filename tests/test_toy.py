"""Tests for rdvae/toy/ (data, model, measures, task; its Fig. 2 drawn by
rdvae/analysis/figures.py) and configs/toy.py: the data spec, the hand-built
model, the parameterizations, each acceptance line of the toy experiment
(fewer seeds and steps than the report), the bump-decoder finding,
populations on the one training stack, and an end-to-end run through
`rdvae.train_and_eval`."""

import functools
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np
from scipy import optimize

import rdvae
from configs import toy as toy_configs
from rdvae.runtime import populations
from rdvae.toy import data
from rdvae.toy import measures
from rdvae.toy import model as toy_model
from rdvae.training import loop
from rdvae.training import programs
from rdvae.runs import reevaluate
from rdvae import validation
from rdvae.files import atomic_files
from rdvae.files import metric_files
from rdvae.files import run_files

H_REFERENCE = 2.914051210084853


@functools.lru_cache(maxsize=None)
def _spec():
  return data.compute_data_spec()


@functools.lru_cache(maxsize=None)
def _trained(variant, decoder, seed, num_steps):
  """Exact metrics of one toy run (training without the workdir files)."""
  config = toy_configs.get_config(variant)
  config.model.decoder = decoder
  config.train.seed = seed
  config.train.num_steps = num_steps
  config.train.steps_per_dispatch = config.train.log_every = num_steps
  run = programs.create_run(config)
  [state] = _train(run, [run.init_state])
  return measures.evaluate(run.data,
                           toy_model.model_tables(run.model, state.params))


def _train(run, states):
  """The members `states` after one dispatch of `run`'s loop."""
  layout = run.layout
  trained, _ = run.train_loop(layout.put_states(states),
                              layout.put_replicated(run.task.train_data(
                                  run.data)))
  return layout.member_states(layout.get_replicated(trained))


class DataSpecTest(absltest.TestCase):

  def test_entropy_and_class_information(self):
    spec = _spec()
    self.assertAlmostEqual(spec.entropy, H_REFERENCE, delta=1e-9)
    self.assertAlmostEqual(spec.class_information, 0.5, delta=1e-9)
    self.assertAlmostEqual(spec.scale, 0.0896654522, delta=1e-9)

  def test_bins_fold_the_tails(self):
    spec = _spec()
    np.testing.assert_allclose(spec.class_likelihood.sum(axis=1), 1.0,
                               atol=1e-15)
    np.testing.assert_allclose(spec.p_data.sum(), 1.0, atol=1e-15)
    np.testing.assert_allclose(spec.centres, (np.arange(30) + 0.5) / 30)
    self.assertEqual(spec.p_data.dtype, np.float64)


class HandBuiltTest(absltest.TestCase):

  def test_true_process_model(self):
    spec = _spec()
    results = measures.evaluate(spec, toy_model.true_process_tables(spec, 30))
    self.assertAlmostEqual(results['rate'], 0.5, delta=1e-9)
    self.assertAlmostEqual(results['distortion'], spec.entropy - 0.5,
                           delta=1e-9)
    self.assertAlmostEqual(results['kl_data_generative'], 0.0, delta=1e-12)
    self.assertAlmostEqual(results['kl_data_reconstruction'], 0.0,
                           delta=1e-12)
    self.assertAlmostEqual(results['mutual_information'], 0.5, delta=1e-9)
    self.assertAlmostEqual(results['cluster_mass_0'], 0.7, delta=1e-9)
    self.assertAlmostEqual(results['cluster_mass_1'], 0.3, delta=1e-9)
    # z is a posterior sample of z*, so I(z; z*) < I(x; z*) = 0.5.
    self.assertBetween(results['latent_alignment'], 0.3, 0.5)
    self.assertTrue(results['bounds_hold'])


class ParameterizationTest(parameterized.TestCase):

  @parameterized.named_parameters(('bump_tabular', 'bump', 'tabular'),
                                  ('bump_bump', 'bump', 'bump'),
                                  ('tabular_tabular', 'tabular', 'tabular'))
  def test_tables_follow_appendix_e(self, encoder, decoder):
    spec = _spec()
    model = toy_model.ToyModel(encoder, decoder, 30, tuple(spec.centres),
                               encoder_w_mean=2.0, encoder_scale=1.0,
                               decoder_w_mean=3.0, decoder_scale=1.0)
    params = model.init(jax.random.key(0))['params']
    tables = toy_model.model_tables(model, params)
    x = spec.centres

    def expected(kind, name, axis):
      if kind == 'bump':
        w, b = np.asarray(params[name]['wb'], np.float64)
        energy = -(w[:, None] * x[None, :] - b[:, None])**2  # [K, X]
      else:
        energy = np.asarray(params[name]['logits'], np.float64)
      energy = energy.T if axis == 'z' else energy
      energy = energy - energy.max(axis=1, keepdims=True)
      return np.exp(energy) / np.exp(energy).sum(axis=1, keepdims=True)

    np.testing.assert_allclose(tables.encoder,
                               expected(encoder, 'encoder', 'z'), rtol=1e-12)
    np.testing.assert_allclose(tables.decoder,
                               expected(decoder, 'decoder', 'x'), rtol=1e-12)
    np.testing.assert_allclose(tables.marginal, np.full(30, 1 / 30),
                               rtol=1e-12)
    if encoder == 'bump':  # Appendix E: 2K = 60 encoder parameters
      self.assertEqual(params['encoder']['wb'].size, 60)

  def test_small_init_starts_near_zero_rate(self):
    config = toy_configs.get_config('target_rate')
    spec = _spec()
    model = toy_model.create_model(config, spec)
    tables = toy_model.model_tables(model,
                                    model.init(jax.random.key(0))['params'])
    self.assertLess(measures.evaluate(spec, tables)['mutual_information'], 1e-4)


class BumpDecoderFindingTest(absltest.TestCase):
  """A bump decoder is one discretised Gaussian per z: at R = 0 it must fit
  the bimodal p*(x) with one Gaussian, which costs ~0.096 nats; so the ELBO
  keeps R near 0.5, and no autodecoder appears."""

  def test_any_zero_rate_solution_costs_about_0_096_nats(self):
    spec = _spec()

    def kl(theta):  # KL(p* || g) with g = d(.|z) the same for every z
      w, b = theta
      energy = -(w * spec.centres - b)**2
      log_g = energy - np.log(np.sum(np.exp(energy - energy.max()))) \
          - energy.max()
      return float(np.sum(spec.p_data * (np.log(spec.p_data) - log_g)))

    best = min(
        (optimize.minimize(kl, [w, w * c], method='Nelder-Mead',
                           options={'xatol': 1e-9, 'fatol': 1e-13})
         for w in (2.0, 5.0, 10.0) for c in (0.35, 0.45, 0.65)),
        key=lambda r: r.fun)
    self.assertAlmostEqual(best.fun, 0.0963, delta=5e-4)

  def test_elbo_keeps_the_rate_near_one_half(self):
    results = _trained('elbo', 'bump', 0, 8000)
    self.assertGreater(results['rate'], 0.45)
    self.assertLess(results['distortion'] + results['rate']
                    - results['entropy'], 1e-4)
    self.assertTrue(results['bounds_hold'])


class AcceptanceTest(parameterized.TestCase):
  """The Fig. 2 reading (bump encoder, tabular decoder), 2 seeds each; the
  10-seed measurement is `experiments.toy_report --seeds=10`."""

  @parameterized.named_parameters(('seed0', 0), ('seed1', 1))
  def test_elbo_learns_an_autodecoder(self, seed):
    results = _trained('elbo', 'tabular', seed, 6000)
    self.assertLessEqual(results['rate'], 0.02)
    self.assertLessEqual(results['distortion'] + results['rate']
                         - results['entropy'], 1e-4)
    self.assertLessEqual(results['kl_data_generative'], 1e-4)
    self.assertTrue(results['bounds_hold'])

  @parameterized.named_parameters(('seed0', 0), ('seed1', 1))
  def test_target_rate_recovers_the_two_classes(self, seed):
    results = _trained('target_rate', 'tabular', seed, 14000)
    self.assertBetween(results['rate'], 0.495, 0.55)
    self.assertLessEqual(abs(results['distortion'] - (results['entropy']
                                                      - results['rate'])),
                         1e-4)
    self.assertAlmostEqual(results['cluster_mass_0'], 0.7, delta=0.05)
    self.assertAlmostEqual(results['cluster_mass_1'], 0.3, delta=0.05)
    self.assertGreater(results['latent_alignment'], 0.3)
    self.assertTrue(results['bounds_hold'])

  @parameterized.named_parameters(('seed0', 0), ('seed1', 1))
  def test_rate_constraint_pins_the_rate(self, seed):
    results = _trained('rate_constraint', 'tabular', seed, 8000)
    self.assertAlmostEqual(results['rate'], 0.5, delta=1e-5)
    self.assertLessEqual(abs(results['distortion'] - (results['entropy']
                                                      - results['rate'])),
                         1e-3)
    self.assertTrue(results['bounds_hold'])


class PopulationTest(absltest.TestCase):

  def test_target_rates_share_one_program_and_vmap(self):
    """Runs that differ only in sigma and the seed: one compilation, and the
    vmapped population equals each run alone, bitwise. Six members: from
    five on, XLA:CPU would hand the population's reductions to YNNPACK,
    which sums in another order (populations.MEMBERWISE_COMPILER_OPTIONS
    turns that off), and an exp over six multipliers would take another path
    than over one (the population is computed as eight,
    populations.padded_population)."""
    sigmas = (0.3, 0.5, 0.1, 0.7, 0.2, 0.4)
    runs = []
    for seed, sigma in enumerate(sigmas):
      config = toy_configs.get_config('rate_constraint')
      config.objective.rate = sigma
      config.train.seed = seed
      config.train.steps_per_dispatch = config.train.log_every = 50
      runs.append(programs.create_run(config))
    self.assertLen({id(r.train_loop) for r in runs}, 1)  # one program
    alone = [_train(r, [r.init_state])[0] for r in runs]
    population = programs.create_run(runs[0].config,
                                     layout=populations.PopulationLayout(6))
    layout = population.layout
    together, metrics = layout.get_replicated(population.train_loop(
        layout.put_states([r.init_state for r in runs]),
        layout.put_replicated(population.task.train_data(population.data))))
    for i, state in enumerate(alone):
      self.assertAlmostEqual(float(metrics['rate_target'][i]), sigmas[i],
                             places=6)
      # Bitwise: XLA computes a member the same way in any population.
      for a, b in zip(jax.tree.leaves(together), jax.tree.leaves(state)):
        np.testing.assert_array_equal(a[i], b)
    self.assertNotAlmostEqual(float(together.objective_state.multiplier[0]),
                              float(together.objective_state.multiplier[1]),
                              places=3)

  def test_padded_population(self):
    self.assertEqual([populations.padded_population(n) for n in range(1, 18)],
                     [1, 2, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16,
                      24])
    self.assertEqual(populations.padded_population(61), 64)
    with self.assertRaisesRegex(ValueError, 'population size 0'):
      populations.padded_population(0)

  def test_share_sizes(self):
    self.assertEqual(populations.share_sizes(7, 3), (3, 3, 1))
    self.assertEqual(populations.share_sizes(60, 2), (30, 30))
    self.assertEqual(populations.share_sizes(16, 2), (8, 8))
    self.assertEqual(populations.share_sizes(5, 4), (2, 2, 1))  # 3 devices
    self.assertEqual(populations.share_sizes(1, 2), (1,))
    devices = tuple(jax.local_devices()) * 4  # any objects stand in here
    self.assertLen(populations.PopulationLayout(5, devices=devices[:4])
                   .devices, 3)

  def test_members_split_over_devices_equal_their_runs_alone(self):
    """On three devices (tests/population_check.py, in a subprocess): seven
    members in shares of 3, 3 and 1, each bitwise its run alone; and
    `loop.train_population` of three runs, one per device, writes the
    results.json and metrics.jsonl of their runs alone."""
    out = subprocess.run(
        [sys.executable, os.path.join(os.path.dirname(__file__),
                                      'population_check.py')],
        capture_output=True, text=True, check=False, timeout=600)
    self.assertEqual(out.returncode, 0, out.stderr[-3000:])
    report = json.loads(out.stdout.strip().splitlines()[-1])
    self.assertEqual(report['devices'], 3)
    self.assertEqual(report['shares'], [3, 3, 1])
    self.assertEqual(report['bitwise'], [True] * 7)
    sweep = report['sweep']
    self.assertEqual(sweep['results_equal'], [True] * 3)
    self.assertEqual(sweep['metrics_equal'], [True] * 3)
    self.assertLen(set(sweep['rates']), 3)

  def test_train_population_equals_runs_alone_and_resumes_by_step(self):
    """Members of a population end bitwise equal to their runs alone, each
    with its own files; a member restored at another step (trained, killed
    before its results) finishes on its own."""
    def config(sigma, seed, kind='target_rate'):
      c = toy_configs.get_config('smoke')
      c.train.num_steps, c.train.steps_per_dispatch = 60, 30
      c.train.log_every = 30
      c.objective.kind, c.objective.rate, c.train.seed = kind, sigma, seed
      return c
    # Six members: member 1 restored at its last step only finishes; the
    # other five train as one population (computed as eight members).
    configs = [config(0.3, 0), config(0.6, 1), config(1.2, 5),
               config(0.1, 2), config(0.9, 3), config(1.5, 4)]
    root = tempfile.mkdtemp()
    alone = [rdvae.train_and_eval(c, os.path.join(root, f'alone{i}'))
             for i, c in enumerate(configs)]
    together = [os.path.join(root, f'pop{i}') for i in range(len(configs))]
    rdvae.train_and_eval(configs[1], together[1])
    os.remove(os.path.join(together[1], run_files.RESULTS_FILE))
    outputs = loop.train_population(configs, together)
    timing = ('compile', 'population_size')
    for i, (a, b) in enumerate(zip(alone, outputs)):
      self.assertEqual(b['population_size'], (5, 1, 5, 5, 5, 5)[i])
      self.assertEqual({k: v for k, v in a.items() if k not in timing},
                       {k: v for k, v in b.items() if k not in timing})
      self.assertEqual(
          metric_files.read_metrics(os.path.join(root, f'alone{i}')),
          metric_files.read_metrics(together[i]))
      self.assertEqual(atomic_files.read_json(
          os.path.join(together[i], run_files.RESULTS_FILE))['rate'],
                       a['rate'])
    self.assertLen({a['rate'] for a in alone}, len(configs))
    with self.assertRaisesRegex(ValueError, 'cannot share their program'):
      loop.train_population([configs[0], config(0.3, 0, 'rate_constraint')],
                            [os.path.join(root, 'x'), os.path.join(root, 'y')])


def _tempdir_method(self):
  return self.enter_context(tempfile.TemporaryDirectory())


class ConfigTest(parameterized.TestCase):

  _tempdir = _tempdir_method

  @parameterized.named_parameters(*((v, v) for v in toy_configs.VARIANTS))
  def test_variant_validates(self, variant):
    config = toy_configs.get_config(variant)
    programs.validate(config)
    spec = data.create_data_spec(config)
    self.assertAlmostEqual(spec.entropy, H_REFERENCE, delta=1e-9)
    with self.assertRaises(AttributeError):  # locked: no new keys
      config.train.num_stpes = 3

  def test_docstring_starts_with_the_command(self):
    self.assertTrue(toy_configs.__doc__.startswith(
        'python -m experiments.main --config=configs/toy.py --workdir='))

  @parameterized.named_parameters(
      ('dataset', 'dataset.name', 'mnist', 'dataset.name'),
      ('encoder', 'model.encoder', 'mlp', "allowed values \\('bump'"),
      ('decoder', 'model.decoder', 'pixelcnn', 'model.decoder'),
      ('num_latents', 'model.num_latents', 0, 'model.num_latents'),
      ('encoder_scale', 'model.encoder_scale', -1.0, 'model.encoder_scale'),
      ('num_steps', 'train.num_steps', 0, 'train.num_steps=0 must be > 0'),
      ('steps_per_dispatch', 'train.steps_per_dispatch', -5,
       'train.steps_per_dispatch'),
      ('log_every', 'train.log_every', 0, 'train.log_every'),
      ('learning_rate', 'optim.learning_rate', 0.0, 'optim.learning_rate'),
      ('schedule', 'optim.schedule', 'step', 'optim.schedule'),
      ('seed', 'train.seed', -1, 'train.seed'),
      ('class_probs', 'dataset.class_probs', (0.5, 0.6),
       'dataset.class_probs'),
      ('class_information', 'dataset.class_information', 0.7,
       'dataset.class_information'),
      ('objective_kind', 'objective.kind', 'iwae', 'objective.kind'),
      ('negative_beta', 'objective.beta', -0.1, 'objective.beta'),
  )
  def test_bad_value_names_the_key(self, key, value, message):
    config = toy_configs.get_config('elbo')
    section, name = key.split('.')
    config[section][name] = value
    with self.assertRaisesRegex(validation.ConfigError, message):
      programs.validate(config)

  def test_target_rate_above_the_data_entropy(self):
    config = toy_configs.get_config('target_rate')
    config.objective.rate = 3.0
    with self.assertRaisesRegex(validation.ConfigError,
                                'objective.rate=3.0 is above the data '
                                'entropy H=2.914051'):
      programs.validate(config)

  def test_bad_config_fails_before_any_work(self):
    config = toy_configs.get_config('smoke')
    config.train.num_steps = -1
    workdir = os.path.join(self._tempdir(), 'run')
    with self.assertRaises(validation.ConfigError):
      rdvae.train_and_eval(config, workdir)
    self.assertFalse(os.path.exists(workdir))


class EndToEndTest(absltest.TestCase):

  _tempdir = _tempdir_method

  def test_train_and_eval_writes_its_files_and_resumes(self):
    config = toy_configs.get_config('smoke')
    config.objective.kind = 'rate_constraint'
    config.objective.rate = 0.5
    workdir = self._tempdir()
    results = rdvae.train_and_eval(config, workdir)  # the toy's task
    for name in ('config.json', 'metrics.jsonl', 'results.json',
                 'figure.png', 'tables.npz', 'checkpoints'):
      self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
    # No evaluation during training (train.eval_every = 0): the best
    # checkpoint is the last, and no second copy is written.
    self.assertEqual(config.train.eval_every, 0)
    self.assertFalse(os.path.exists(os.path.join(workdir, 'checkpoints_best')))
    run = programs.create_run(config)
    (best, best_step), (last, last_step) = (
        reevaluate.restore_params(run, workdir, p) for p in ('best', 'last'))
    self.assertEqual((best_step, last_step), (400, 400))
    for a, b in zip(jax.tree.leaves(best), jax.tree.leaves(last)):
      np.testing.assert_array_equal(a, b)
    for key in ('rate', 'distortion', 'elbo', 'entropy', 'mutual_information',
                'kl_data_generative', 'kl_data_reconstruction',
                'latent_alignment', 'cluster_mass_0', 'cluster_mass_1',
                'generative_lower_bound_E', 'generative_upper_bound_G'):
      self.assertIn(key, results)
    self.assertEqual(results['step'], 400)
    self.assertTrue(results['bounds_hold'])
    self.assertAlmostEqual(results['elbo'],
                           -(results['rate'] + results['distortion']))
    self.assertEqual(atomic_files.read_json(os.path.join(workdir, 'results.json')),
                     results)
    records = metric_files.read_metrics(workdir)
    train = [r for r in records if 'train/loss' in r]
    self.assertEqual([r['step'] for r in train], [100, 200, 300, 400])
    self.assertIn('train/multiplier', train[-1])
    # The final evaluation's record holds the exact measures.
    self.assertEqual(records[-1]['rate'], results['rate'])
    tables = measures.read_tables(os.path.join(workdir, 'tables.npz'))
    self.assertEqual(measures.evaluate(data.compute_data_spec(), tables)
                     ['rate'], results['rate'])
    # Resume: the same config in the same workdir restores, trains nothing.
    again = rdvae.train_and_eval(config, workdir)
    self.assertEqual(again, results)
    self.assertLen(metric_files.read_metrics(workdir), 5)
    config.train.seed = 1
    with self.assertRaises(run_files.WorkdirConflictError):
      rdvae.train_and_eval(config, workdir)


if __name__ == '__main__':
  absltest.main()
