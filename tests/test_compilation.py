"""Compile once: the persistent compilation cache (rdvae/runtime/compilation.py), the
programs shared by runs of one architecture (programs.create_run), and the
backend-aware train settings (rdvae/runtime/backends.py)."""

import json
import os
import subprocess
import sys

import pytest

from configs import default
from configs import mnist
from rdvae.training import programs
from rdvae.runtime import backends
from rdvae.runtime import compilation
from rdvae.training import loop as train
from rdvae import validation
from rdvae.files import metric_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- backend-aware defaults: pure functions of the backend name -------------

@pytest.mark.parametrize('backend, unroll, steps', [
    ('cpu', True, 2), ('gpu', False, 100), ('cuda', False, 100),
    ('rocm', False, 100), ('tpu', False, 100)])
def test_defaults_for_backend(backend, unroll, steps):
  assert backends.defaults_for_backend(backend) == {
      'scan_unroll': unroll, 'steps_per_dispatch': steps}


def test_defaults_for_unknown_backend_names_it():
  with pytest.raises(ValueError, match="'metal'"):
    backends.defaults_for_backend('metal')


@pytest.mark.parametrize('backend, batch', [
    ('cpu', 64), ('gpu', 0), ('cuda', 0), ('rocm', 0), ('tpu', 0)])
def test_pseudo_input_batch_for_backend(backend, batch):
  assert backends.pseudo_input_batch(backend) == batch


def test_pseudo_input_batch_for_unknown_backend_names_it():
  with pytest.raises(ValueError, match="'metal'"):
    backends.pseudo_input_batch('metal')


@pytest.mark.parametrize('preferred, every, expected', [
    (100, [100, 7810, 1000], 10),  # gcd 10
    (100, [1000], 100),
    (2, [2, 2, 2], 2),
    (100, [300, 450], 75),          # gcd 150: its largest divisor <= 100
    (4, [6], 3),
    (100, [7], 7),
    (100, [], 100)])
def test_auto_steps_per_dispatch(preferred, every, expected):
  assert backends.auto_steps_per_dispatch(preferred, every) == expected


@pytest.mark.parametrize('backend, unroll, steps, pseudo', [
    ('cpu', True, 2, 64), ('gpu', False, 10, 0), ('tpu', False, 10, 0)])
def test_default_config_resolves_per_backend(backend, unroll, steps, pseudo):
  config = default.get_config()  # log 100, eval 7810, checkpoint 1000
  assert config.train.steps_per_dispatch == 0
  assert config.train.scan_unroll is None
  assert config.model.pseudo_input_batch is None
  resolved, chosen = backends.resolved_config(config, backend)
  assert chosen == {'backend': backend, 'scan_unroll': unroll,
                    'steps_per_dispatch': steps, 'pseudo_input_batch': pseudo,
                    'auto': ['scan_unroll', 'steps_per_dispatch',
                             'pseudo_input_batch']}
  assert resolved.train.scan_unroll is unroll
  assert resolved.train.steps_per_dispatch == steps
  assert resolved.model.pseudo_input_batch == pseudo
  for key in backends.EVERY_KEYS:  # still dispatch boundaries
    assert validation.get(resolved, key) % steps == 0
  programs.validate(resolved)
  # the user's config is left as asked (config.json keeps 'auto')
  assert config.train.steps_per_dispatch == 0
  assert config.train.scan_unroll is None
  assert config.model.pseudo_input_batch is None


def test_explicit_settings_are_kept():
  config = default.get_config()
  config.train.scan_unroll = True
  config.train.steps_per_dispatch = 5
  config.train.log_every = 5
  config.train.eval_every = 10
  config.train.checkpoint_every = 0
  config.model.pseudo_input_batch = 100
  chosen = backends.resolve(config, 'gpu')
  assert (chosen['scan_unroll'], chosen['steps_per_dispatch'],
          chosen['pseudo_input_batch'], chosen['auto']) == (True, 5, 100, [])


@pytest.mark.parametrize('key, value, pattern', [
    ('train.steps_per_dispatch', -1, r'train\.steps_per_dispatch=-1'),
    ('train.log_every', 3, r'train\.log_every=3 must be a multiple'),
    ('train.log_every', 0, r'train\.log_every=0 must be > 0')])
def test_bad_dispatch_settings_are_named(key, value, pattern):
  config = mnist.get_config('smoke')  # steps_per_dispatch 2
  section, name = key.split('.')
  config[section][name] = value
  with pytest.raises(validation.ConfigError, match=pattern):
    backends.validate(config)


def test_dry_run_prints_the_gpu_choice_without_a_gpu():
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.main', '--config=configs/mnist.py',
       '--dry_run', '--backend=gpu'],
      capture_output=True, text=True, cwd=REPO, timeout=120, check=True)
  assert ('backend gpu: train.scan_unroll=False train.steps_per_dispatch=10 '
          'model.pseudo_input_batch=0 (auto: scan_unroll, steps_per_dispatch, '
          'pseudo_input_batch)') in out.stdout


@pytest.mark.parametrize('args, status, expected', [
    (['--config=configs/toy.py', '--backend=gpu'], 0,
     'backend gpu: train.scan_unroll=False train.steps_per_dispatch=1000 (auto: none)'),
    (['--config=configs/mnist.py', '--backend=cpu',
      '--config.model.pseudo_input_batch=-2'], 2,
     'ConfigError: config.model.pseudo_input_batch=-2 must be >= 0'),
    (['--config=configs/mnist.py', '--backend=metal'], 2,
     "ValueError: unknown backend 'metal'")])
def test_dry_run_of_the_toy_and_of_bad_values(args, status, expected):
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.main', '--dry_run', *args],
      capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
  assert out.returncode == status, out.stderr
  assert expected in out.stdout + out.stderr
  assert 'Traceback' not in out.stderr


# --- the persistent cache ---------------------------------------------------

_PROBE = r'''
import json, sys
from rdvae.runtime import compilation
compilation.setup(sys.argv[1])  # the default threshold: every program
counter = compilation.Counter()
import jax, jax.numpy as jnp
if len(sys.argv) > 3:  # another threshold
  jax.config.update('jax_persistent_cache_min_compile_time_secs',
                    float(sys.argv[3]))
from jax._src import distributed
distributed.global_state.process_id = int(sys.argv[2])  # as jax.distributed
# compiler_options are part of the cache key (steps._compiled_init uses them)
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum(),
            compiler_options={'xla_backend_optimization_level': 0})
value = float(f(jnp.arange(64.0).reshape(8, 8) / 64))
print(json.dumps({'value': value, **counter.report()}))
'''


def _probe(cache_dir, process_id=0, min_compile_time=None):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  threshold = [] if min_compile_time is None else [str(min_compile_time)]
  out = subprocess.run([sys.executable, '-c', _PROBE, cache_dir,
                        str(process_id), *threshold],
                       capture_output=True, text=True, cwd=REPO, env=env,
                       timeout=120, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def test_persistent_cache_is_read_back_by_another_process(tmp_path):
  cache_dir = str(tmp_path / 'cache')
  first = _probe(cache_dir)
  second = _probe(cache_dir)
  assert first['cache_dir'] == second['cache_dir'] == cache_dir
  # Every program is written, the op-by-op ones (arange, reshape, divide) of
  # a few milliseconds too: four programs, four entries.
  assert first['cache_hits'] == 0
  assert first['cache_misses'] == first['programs'] == 4
  # every program the second process needs comes from the cache
  assert second['cache_misses'] == 0
  assert second['cache_hits'] == first['cache_misses'] == second['programs']
  assert second['value'] == first['value']
  entries = os.listdir(cache_dir)
  assert len(entries) == first['cache_misses']
  assert all(e.endswith('-cache') for e in entries), entries  # no temp files


def test_every_process_writes_its_entries(tmp_path):
  """A process other than the first of a multi-process run writes what it
  compiled (JAX alone writes from process 0 only), and reads it back on
  its next run."""
  cache_dir = str(tmp_path / 'cache')
  first = _probe(cache_dir, process_id=1)
  assert first['cache_misses'] == first['programs'] == 4
  assert len(os.listdir(cache_dir)) == 4
  second = _probe(cache_dir, process_id=1)
  assert second['cache_misses'] == 0 and second['cache_hits'] == 4
  assert second['value'] == first['value']


@pytest.mark.parametrize('process_id', [0, 1])
def test_every_process_keeps_the_compile_time_threshold(tmp_path, process_id):
  """Programs quicker to compile than
  `jax_persistent_cache_min_compile_time_secs` are written by no process."""
  cache_dir = str(tmp_path / 'cache')
  out = _probe(cache_dir, process_id=process_id, min_compile_time=1e6)
  assert out['programs'] == 4 and out['cache_hits'] == 0
  assert not os.path.exists(cache_dir) or not os.listdir(cache_dir)


def test_cache_path_resolution(monkeypatch, tmp_path):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
  monkeypatch.delenv(compilation.ENV, raising=False)
  assert compilation.resolve_path() == str(tmp_path / 'rdvae' / 'jax')
  monkeypatch.setenv(compilation.ENV, str(tmp_path / 'x'))
  assert compilation.resolve_path() == str(tmp_path / 'x')
  assert compilation.resolve_path(str(tmp_path / 'y')) == str(tmp_path / 'y')
  monkeypatch.setenv(compilation.ENV, 'off')
  assert compilation.resolve_path() is None
  assert compilation.resolve_path('OFF') is None


# --- one compilation per architecture within a process ----------------------

def test_runs_differing_only_in_numbers_share_their_programs(tmp_path):
  def config(beta, learning_rate=3e-4, num_steps=4):
    c = mnist.get_config('smoke')
    c.train.seed = 90817  # programs no other test has built in this process
    c.objective.kind = 'beta_vae'
    c.objective.beta = beta
    c.optim.learning_rate = learning_rate
    c.train.num_steps = num_steps
    return c

  first = train.train_and_eval(config(0.5), str(tmp_path / 'a'))
  second = train.train_and_eval(config(2.0), str(tmp_path / 'b'))
  # another learning rate and budget: the optimizer's numbers are arrays too
  third = train.train_and_eval(config(2.0, 1e-3, 6), str(tmp_path / 'c'))
  assert first['compile']['programs'] > 0
  for later in (second, third):
    assert later['compile']['programs'] == 0, later['compile']
    assert later['compile']['cache_hits'] == 0
    assert later['compile']['cache_misses'] == 0
  # the numbers reached the step: the runs trained differently
  assert first['rate'] != second['rate']
  assert third['rate'] != second['rate']
  metrics = metric_files.read_metrics(str(tmp_path / 'c'))
  rates = {r['step']: r['train/learning_rate'] for r in metrics
           if 'train/learning_rate' in r}
  # the lr of the last update logged: 1e-3 held for steps 0-3 of 6, then
  # down by a third of it per step
  assert rates == pytest.approx({2: 1e-3, 4: 1e-3, 6: 1e-3 / 3}, abs=1e-9)
  assert first['backend'] == second['backend'] == {
      'backend': 'cpu', 'scan_unroll': True, 'steps_per_dispatch': 2,
      'pseudo_input_batch': 64, 'auto': ['scan_unroll', 'pseudo_input_batch']}
  with open(tmp_path / 'b' / 'results.json') as f:
    assert json.load(f)['compile']['programs'] == 0
  with open(tmp_path / 'b' / 'config.json') as f:
    assert json.load(f)['train']['scan_unroll'] is None  # what was asked


def test_known_options_keeps_what_xla_accepts():
  options = {'xla_backend_optimization_level': 1,
             'xla_no_such_option_anywhere': True,
             'xla_llvm_disable_expensive_passes': 'not a bool'}
  assert compilation.known_options(options) == {
      'xla_backend_optimization_level': 1}
  assert compilation.known_options({}) == {}
