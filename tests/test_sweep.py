"""Sweeps (rdvae/sweeps/runner.py, rdvae/sweeps/claims.py, experiments/sweep.py): naming
and expansion of every shipped sweep file, restarts, failures and concurrent
runners on tiny toy points (configs/toy.py:smoke with a few dozen steps)."""

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types

import pytest

from configs import toy as toy_config
from rdvae.sweeps import claims
from rdvae.models import model
from rdvae.sweeps import runner
from rdvae.sweeps import sweep_file
from rdvae import validation
from rdvae.files import atomic_files
from rdvae.files import metric_files
from rdvae.files import sweep_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWEEP_DIR = os.path.join(REPO, 'configs', 'sweeps')
SHIPPED = sorted(f[:-3] for f in os.listdir(SWEEP_DIR) if f.endswith('.py'))


def _read_summary(workdir):
  return {row['name']: row for row in sweep_files.read_summary(workdir)}


# ------------------------------------------------------------------- naming


@pytest.mark.parametrize('overrides, name', [
    ({'model.family': '-+v', 'objective.beta': 0.15}, 'family=-+v,beta=0.15'),
    ({'objective.beta': 1.0}, 'beta=1'),
    ({'objective.beta': 1}, 'beta=1'),
    ({'objective.rate': 2.9140512100848506}, 'rate=2.9140512100848506'),
    ({'optim.learning_rate': 1e-05}, 'learning_rate=1e-05'),
    ({'objective.beta': -0.5}, 'beta=-0.5'),
    ({'train.scan_unroll': False}, 'scan_unroll=False'),
    ({'data.class_probs': (0.6, 0.4)}, 'class_probs=0.6_0.4'),
    ({'dataset.path': 'a/b c,d=e.npz'}, 'path=a%2Fb%20c%2Cd%3De.npz'),
    ({'objective.rate': 5.0, 'dataset.rate': 1}, 'objective.rate=5,dataset.rate=1'),
    ({}, 'base'),
])
def test_point_name(overrides, name):
  assert sweep_file.point_name(overrides) == name


def test_point_names_are_filesystem_safe():
  for overrides in ({'a.b': 'x/y'}, {'a.b': '..'}, {'a.b': '%s'}):
    name = sweep_file.point_name(overrides)
    assert re.fullmatch(r'[A-Za-z0-9._+\-=,%]+', name), name
    assert '/' not in name


def _module(get_config, points):
  module = types.ModuleType('test_sweep_module')
  module.get_config = get_config
  module.get_sweep = lambda: points
  return module


def _toy(num_steps=40):
  config = toy_config.get_config('smoke')
  config.train.num_steps = num_steps
  config.train.steps_per_dispatch = 10
  config.train.log_every = 10
  return config


@pytest.mark.parametrize('points, pattern', [
    ([{'train.seed': 1}, {'train.seed': 1.0}], r"points 0 and 1 have the same name 'seed=1'"),
    ([{'train.seed': 1, 'train.num_steps': 40}, {'train.num_steps': 40, 'train.seed': 1}],
     r"points 'seed=1,num_steps=40' and 'num_steps=40,seed=1' have the same "
     'config'),
    ([{'train.seed': 0}, {'model.encodr': 'bump'}],
     r"sweep point 1 \(encodr=bump\): config key 'model.encodr' is missing"),
    ([{'model': 3}], r"point 0 \(model=3\): config key 'model' is a section"),
    ([{'train.num_steps': 2.5}],
     r"point 0 \(num_steps=2.5\): config.train.num_steps=2.5 has the wrong "
     'type'),
    ([{'train.seed': 0}, {'objective.rate': 3.0, 'objective.kind': 'target_rate'}],
     r'sweep point 1 \(rate=3,kind=target_rate\): config.objective.rate=3.0 '
     'is above the data entropy'),
    ([{'train.seed': 0}, {'model.decoder': 'pixelcnn'}],
     r"sweep point 1 \(decoder=pixelcnn\): config.model.decoder='pixelcnn' "
     'is not one of'),
    ([], r'non-empty list'),
    (['seed=1'], r"sweep point 0 is 'seed=1', expected a dict"),
])
def test_bad_points_name_the_point_and_key(points, pattern):
  with pytest.raises(sweep_file.SweepError, match=pattern):
    sweep_file.expand(_module(_toy, points))


def test_base_overrides_apply_to_every_point_and_are_checked():
  points = sweep_file.expand(_module(_toy, [{'train.seed': 0}, {'train.seed': 1}]),
                        overrides={'train.num_steps': 20})
  assert [p.config.train.num_steps for p in points] == [20, 20]
  assert [p.config.train.seed for p in points] == [0, 1]
  with pytest.raises(validation.ConfigError,
                     match=r'base config override: config key '
                     r"'train.num_stepz' is missing"):
    sweep_file.expand(_module(_toy, [{'train.seed': 0}]), {'train.num_stepz': 20})


def test_shipped_sweep_files_are_all_tested():
  assert SHIPPED == ['beta_table', 'cifar10_rd', 'compile_once', 'family_table', 'mnist_rd',
                     'mnist_rd_cpu', 'mnist_simple_betas', 'mnist_vpm',
                     'omniglot_rd', 'toy_rd']


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_sweep_expands_and_validates(name):
  path = os.path.join(SWEEP_DIR, f'{name}.py')
  with open(path) as f:
    assert f.readline().startswith(
        f'r"""python -m experiments.sweep --sweep=configs/sweeps/{name}.py '
        f'--workdir=runs/{name}')
  points = sweep_file.expand(path)  # validates every point's config
  names = [p.name for p in points]
  assert len(set(names)) == len(names)
  assert [p.name for p in sweep_file.expand(path)] == names  # stable
  base = sweep_file.load(path).get_config()
  for point in points:
    assert point.name == sweep_file.point_name(point.overrides)
    for key, value in point.overrides.items():
      assert validation.get(point.config, key) == value
    for key in ('objective.kind', 'train.batch_size', 'train.num_steps'):
      if key not in point.overrides and key.split('.')[1] in base[
          key.split('.')[0]]:
        assert validation.get(point.config, key) == validation.get(base, key)


def test_shipped_sweeps_hold_the_papers_points():
  def load(name):
    path = os.path.join(SWEEP_DIR, f'{name}.py')
    return sweep_file.load(path), sweep_file.expand(path)

  module, points = load('mnist_rd')
  assert len(points) == 12 * 9 * 2
  assert {p.config.model.family for p in points} == set(model.FAMILIES)
  betas = sorted({p.config.objective.beta for p in points})
  assert betas[0] == 0.1 and betas[-1] == 10.0
  assert {0.15, 1.0, 1.1} <= set(betas)
  assert {p.config.objective.beta_schedule for p in points} == {
      'constant', 'linear'}
  assert all(p.config.train.num_epochs == 200.0 and
             p.config.train.num_steps == 0 for p in points)
  assert points[0].name == 'family=---,beta=0.1,beta_schedule=constant'
  # The compute stated in the docstring.
  assert round(module.estimated_hours(), -2) == 29_500
  assert round(module.estimated_hours(module.GPU_SPEEDUP), -2) == 300

  module, points = load('cifar10_rd')
  assert len(points) == 12 * 9
  assert {p.config.model.family for p in points} == set(model.FAMILIES)
  assert all(p.config.dataset.name == 'cifar10' and
             p.config.objective.kind == 'beta_vae' and
             p.config.train.num_epochs == 200.0 for p in points)
  assert round(module.estimated_hours(), -2) == 14_000
  assert round(module.estimated_hours(module.GPU_SPEEDUP), -1) == 140

  _, points = load('mnist_vpm')
  assert [p.name for p in points] == ['beta=0.1', 'beta=0.15', 'beta=1',
                                      'beta=1.1']
  assert all(p.config.model.family == '-+v' and
             p.config.objective.beta_schedule == 'linear' for p in points)

  _, points = load('omniglot_rd')
  assert len(points) == (6 * 8 + 6 * 3) * 2
  assert all(p.config.dataset.name == 'omniglot' for p in points)

  _, points = load('toy_rd')
  rates = [p.config.objective.rate for p in points]
  assert rates[0] == 0.0 and rates[1] == 0.05 and rates[-2] == 2.9
  assert abs(rates[-1] - 2.9140512) < 1e-7
  assert all(p.config.objective.kind == 'target_rate' and
             p.config.model.encoder == 'bump' and
             p.config.model.decoder == 'tabular' for p in points)

  _, points = load('mnist_rd_cpu')
  assert [p.name for p in points] == [
      'family=---,beta=0.1', 'family=---,beta=0.2', 'family=---,beta=0.5',
      'family=---,beta=1', 'family=---,beta=2', 'family=---,beta=5',
      'family=---,beta=10',
      'family=---,kind=rate_constraint,rate=5',
      'family=---,kind=rate_constraint,rate=15',
      'family=---,kind=rate_constraint,rate=30',
      'family=-+-,beta=0.1,num_steps=50,iwae_samples=2,'
      'generative_samples=100',
      'family=-+-,beta=0.5,num_steps=50,iwae_samples=2,'
      'generative_samples=100',
      'family=-+-,beta=1,num_steps=50,iwae_samples=2,'
      'generative_samples=100']
  for p in points:
    c = p.config
    assert (c.train.batch_size, c.eval.max_examples, c.train.eval_every,
            c.train.checkpoint_every, c.train.log_every) == (64, 1000, 0, 50,
                                                             50)
    simple = c.model.family == '---'
    assert c.train.num_steps == (300 if simple else 50)
    assert c.eval.generative_samples == (1000 if simple else 100)
    assert c.eval.iwae_samples == (5 if simple else 2)

  _, points = load('beta_table')
  assert [p.config.objective.beta for p in points] == [0.1, 1.0, 10.0]
  assert all(p.config.train.num_steps == 300 and
             p.config.train.batch_size == 64 for p in points)

  _, points = load('family_table')
  pairs = [(p.config.model.family, p.config.objective.beta) for p in points]
  assert pairs == [(f, b) for f in model.FAMILIES
                   for b in ((1.0, 0.1) if f == '-+-' else (1.0,))]
  assert all(p.config.train.num_steps == 50 for p in points)

  _, points = load('mnist_simple_betas')
  assert [(p.config.model.family, p.config.objective.beta) for p in points] == [
      ('---', b) for b in (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)]
  assert all((p.config.train.num_steps, p.config.train.batch_size,
              p.config.eval.max_examples) == (120, 64, 200) for p in points)

  _, points = load('compile_once')
  pairs = [(p.config.model.family, p.config.objective.beta) for p in points]
  assert pairs == [('---', b) for b in (0.1, 0.3, 1.0, 3.0, 10.0)] + [
      ('-+-', b) for b in (0.1, 0.5, 1.0)]
  assert all(p.config.train.num_steps == 4 for p in points)


# ------------------------------------------------------------------- claims


def test_claims_exclude_and_release(tmp_path):
  directory = str(tmp_path / 'point')
  first = claims.try_claim(directory)
  assert first is not None
  assert claims.try_claim(directory) is None  # held (also in one process)
  record = claims.live_owner(directory)
  assert (record['pid'], record['host']) == (os.getpid(), socket.gethostname())
  assert runner.status(directory) == 'running'
  first.release()
  assert not os.path.exists(os.path.join(directory, claims.CLAIM_FILE))
  assert runner.status(directory) == 'pending'
  second = claims.try_claim(directory)
  assert second is not None
  second.release()


def test_heartbeat_refreshes_the_claim(tmp_path):
  directory = str(tmp_path / 'point')
  with claims.try_claim(directory, heartbeat_seconds=0.05):
    started = atomic_files.read_json(os.path.join(directory, claims.CLAIM_FILE))
    time.sleep(0.3)
    now = atomic_files.read_json(os.path.join(directory, claims.CLAIM_FILE))
  assert now['heartbeat'] > started['heartbeat']
  assert now['token'] == started['token']


def test_stale_claims(tmp_path):
  directory = str(tmp_path / 'point')
  os.makedirs(directory)
  path = os.path.join(directory, claims.CLAIM_FILE)
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  now = time.time()
  here = socket.gethostname()
  cases = [({'pid': dead.pid, 'host': here, 'heartbeat': now}, False),
           ({'pid': os.getpid(), 'host': here, 'heartbeat': now}, True),
           ({'pid': os.getpid(), 'host': here, 'heartbeat': now - 3600}, False),
           ({'pid': 1, 'host': 'elsewhere', 'heartbeat': now - 10}, True),
           ({'pid': 1, 'host': 'elsewhere', 'heartbeat': now - 3600}, False),
           ({'host': 'elsewhere'}, False)]
  for record, live in cases:
    atomic_files.write_json_atomic(path, record)
    assert (claims.live_owner(directory) is not None) == live, record
  # A stale claim.json (its owner died) does not stop the next owner.
  atomic_files.write_json_atomic(path, cases[0][0])
  with claims.try_claim(directory) as claim:
    assert atomic_files.read_json(path)['token'] == claim.record['token']


# --------------------------------------------------- restarts (in-process)


@pytest.mark.parametrize('population', ['off', 'on'])
def test_failed_point_is_recorded_once_and_retried(tmp_path, monkeypatch,
                                                   population):
  """With population 'on' the population fails first (on purpose), and its
  points train again one at a time: the same records as 'off'."""
  from rdvae.training import loop  # pylint: disable=g-import-not-at-top
  calls = collections.Counter()
  real = loop.train_and_eval
  populations = []

  def population_fails(configs, workdirs):
    populations.append(len(configs))
    raise RuntimeError('the population fails on purpose')

  monkeypatch.setattr(loop, 'train_population', population_fails)

  def fails_for_seed_1(config, workdir):
    calls[config.train.seed] += 1
    if config.train.seed == 1:
      raise RuntimeError('fails on purpose')
    return real(config, workdir)

  monkeypatch.setattr(loop, 'train_and_eval', fails_for_seed_1)
  module = _module(_toy, [{'train.seed': s} for s in range(3)])
  workdir = str(tmp_path / 'sweep')
  rows = runner.run(module, workdir, population=population)
  assert [r['status'] for r in rows] == ['done', 'failed', 'done']
  assert calls == {0: 1, 1: 1, 2: 1}
  assert populations == ([3] if population == 'on' else [])
  failure = atomic_files.read_json(os.path.join(workdir, 'seed=1', 'failure.json'))
  assert failure['type'] == 'RuntimeError'
  assert failure['message'] == 'fails on purpose'
  assert 'fails_for_seed_1' in failure['traceback']
  summary = _read_summary(workdir)
  assert list(summary) == ['seed=0', 'seed=1', 'seed=2']
  assert summary['seed=1']['status'] == 'failed'
  assert summary['seed=1']['error'] == 'RuntimeError: fails on purpose'
  assert summary['seed=1']['rate'] == ''
  results = atomic_files.read_json(os.path.join(workdir, 'seed=0', 'results.json'))
  assert float(summary['seed=0']['rate']) == results['rate']
  assert float(summary['seed=0']['distortion']) == results['distortion']
  assert summary['seed=0']['train.seed'] == '0'
  for s in range(3):
    assert atomic_files.read_json(
        os.path.join(workdir, f'seed={s}', 'sweep_point.json')) == {
            'name': f'seed={s}', 'overrides': {'train.seed': s}}
    assert not os.path.exists(os.path.join(workdir, f'seed={s}',
                                           claims.CLAIM_FILE))

  # Rerun: nothing runs again, the failure stays as it was.
  runner.run(module, workdir, population=population)
  assert calls == {0: 1, 1: 1, 2: 1}
  assert atomic_files.read_json(
      os.path.join(workdir, 'seed=1', 'failure.json')) == failure

  # retry_failed: the failed point runs once more (and fails again, once).
  rows = runner.run(module, workdir, retry_failed=True, population=population)
  assert calls == {0: 1, 1: 2, 2: 1}
  assert populations == ([3] if population == 'on' else [])  # one left
  assert atomic_files.read_json(os.path.join(workdir, 'seed=1', 'failure.json')
                           )['token'] != failure['token']

  # Fixed, retried: done; the others untouched.
  monkeypatch.setattr(loop, 'train_and_eval', real)
  rows = runner.run(module, workdir, retry_failed=True, population=population)
  assert [r['status'] for r in rows] == ['done'] * 3
  assert not os.path.exists(os.path.join(workdir, 'seed=1', 'failure.json'))
  assert [r['step'] for r in metric_files.read_metrics(
      os.path.join(workdir, 'seed=1')) if 'train/loss' in r] == [10, 20, 30, 40]


def test_population_points_equal_their_runs_alone(tmp_path):
  """Toy points differing in target rate and seed train as one population
  (population='auto'); each ends bitwise equal to the same point trained
  alone (population='off'): results, metrics and parameters."""
  def base():
    config = _toy(num_steps=40)
    config.objective.kind = 'target_rate'
    return config
  points = [{'objective.rate': r, 'train.seed': s}
            for r, s in ((0.2, 0), (0.5, 1), (1.0, 2))]
  module = _module(base, points)
  together = str(tmp_path / 'together')
  alone = str(tmp_path / 'alone')
  rows = runner.run(module, together)
  assert [r['status'] for r in rows] == ['done'] * 3
  runner.run(module, alone, population='off')
  for row in rows:
    a = atomic_files.read_json(os.path.join(alone, row['name'], 'results.json'))
    b = atomic_files.read_json(os.path.join(together, row['name'],
                                       'results.json'))
    assert 'population_size' not in a and b.pop('population_size') == 3
    assert a.pop('compile') and b.pop('compile')  # what each compiled
    assert a == b
    assert float(row['rate']) == a['rate']
    assert (metric_files.read_metrics(os.path.join(alone, row['name'])) ==
            metric_files.read_metrics(os.path.join(together, row['name'])))
  # Each member trained with its own numbers.
  rates = [float(r['rate']) for r in rows]
  assert len(set(rates)) == 3


def test_population_on_refuses_image_models():
  from configs import mnist  # pylint: disable=g-import-not-at-top

  def base():
    config = mnist.get_config('smoke')
    config.objective.kind = 'beta_vae'
    return config
  module = _module(base, [{'objective.beta': 0.5}, {'objective.beta': 2.0}])
  points = sweep_file.expand(module)
  assert runner.population_key(points[0], 'auto') is None
  assert runner.population_key(points[0], 'off') is None
  with pytest.raises(sweep_file.SweepError,
                     match=r"'beta=0.5': population training is built for "
                     'the toy only'):
    runner.population_key(points[0], 'on')
  with pytest.raises(sweep_file.SweepError, match=r"population='sometimes'"):
    runner.population_key(points[0], 'sometimes')


def test_workdir_with_another_config_is_refused_before_any_work(tmp_path):
  workdir = str(tmp_path / 'sweep')
  module = _module(_toy, [{'train.seed': 0}, {'train.seed': 1}])
  runner.run(module, workdir, overrides={'train.num_steps': 10})
  before = _read_summary(workdir)
  with pytest.raises(sweep_file.SweepError,
                     match=r"sweep point 'seed=0': .* another config .*"
                     r"'train.num_steps'"):
    runner.run(module, workdir, overrides={'train.num_steps': 20})
  assert _read_summary(workdir) == before


def _blows_up():
  """configs/mnist.py:smoke for 4 steps whose learning rate blows the
  parameters up: train_and_eval raises FloatingPointError at run time."""
  from configs import mnist  # pylint: disable=g-import-not-at-top
  config = mnist.get_config('smoke')
  config.train.num_steps = 4
  config.train.eval_every = 0
  config.eval.num_grid_images = 0
  config.optim.normalize_gradients = False
  config.train.nonfinite = 'stop'
  config.optim.learning_rate = 1e30
  return config


@pytest.mark.slow
def test_run_time_failure_shows_in_summary_and_report(tmp_path):
  """A point that fails in training (not a stand-in that raises): its error
  type and message as failure.json records them, in summary.csv and in the
  report (points.csv and report.md)."""
  from rdvae.analysis import report  # pylint: disable=g-import-not-at-top
  from rdvae.files import run_files  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'sweep')
  rows = runner.run(_module(_blows_up, [{'train.seed': 3}]), workdir,
                    population='off')
  failure = run_files.read_failure(os.path.join(workdir, 'seed=3'))
  assert failure['type'] == 'FloatingPointError'
  assert re.match(r"non-finite .* at step \d+ \(train.nonfinite='stop'\)",
                  failure['message']), failure['message']
  error = run_files.failure_text(failure)
  assert error.startswith('FloatingPointError: non-finite ')
  assert [(r['status'], r['error']) for r in rows] == [('failed', error)]
  summary = _read_summary(workdir)['seed=3']
  assert (summary['status'], summary['error'], summary['rate']) == (
      'failed', error, '')
  out = report.write_report(workdir)
  point, = out['points']
  assert (point.status, point.error) == ('failed', error)
  with open(os.path.join(out['directory'], 'report.md')) as f:
    text = f.read()
  assert '1 points: 0 done, 0 pending, 1 failed.' in text
  assert f'## Failed points\n\n- seed=3: {error}\n' in text
  with open(os.path.join(out['directory'], 'points.csv')) as f:
    assert error in f.read()


# ------------------------------------------------- runners (subprocesses)

_SUBPROCESS_SWEEP = '''
"""Toy points (one per seed); the point with seed FAIL_SEED raises."""
from configs import toy as toy_config
from rdvae.training import loop

FAIL_SEED = {fail_seed}
NUM_POINTS = {num_points}

if not hasattr(loop, 'real_train_and_eval'):
  loop.real_train_and_eval = loop.train_and_eval

  def _train_and_eval(config, workdir):
    if config.train.seed == FAIL_SEED:
      raise RuntimeError('fails on purpose')
    return loop.real_train_and_eval(config, workdir)

  loop.train_and_eval = _train_and_eval


def get_config():
  config = toy_config.get_config('smoke')
  config.train.num_steps = 20  # the runners pass --config.train.num_steps
  config.train.steps_per_dispatch = 10
  config.train.log_every = 10
  return config


def get_sweep():
  return [{{'train.seed': s}} for s in range(NUM_POINTS)]
'''


def _write_sweep(tmp_path, num_points, fail_seed=-1):
  path = str(tmp_path / 'seeds.py')
  with open(path, 'w') as f:
    f.write(_SUBPROCESS_SWEEP.format(num_points=num_points,
                                     fail_seed=fail_seed))
  return path


def _runner(path, workdir, log):
  """A sweep runner of 2000 steps per point (the steps set on the command
  line: the test checks that every point ran them)."""
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.sweep', f'--sweep={path}',
       f'--workdir={workdir}', '--jax_platforms=cpu', '--poll_seconds=0.2',
       '--config.train.num_steps=2000', '--population=off', '--workers=1'],
      cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _running_point(workdir, procs, timeout=300):
  """Waits until some point is mid-training (its claim held, metrics
  logged, no results yet) and returns (point directory, owner pid)."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    assert any(p.poll() is None for p in procs), 'every runner exited'
    for name in sorted(os.listdir(workdir)) if os.path.isdir(workdir) else ():
      directory = os.path.join(workdir, name)
      owner = claims.live_owner(directory)
      if (owner and metric_files.read_metrics(directory) and
          not os.path.exists(os.path.join(directory, 'results.json'))):
        return directory, owner['pid']
    time.sleep(0.02)
  raise AssertionError('no point was seen mid-training')


def _check_every_point_done_once(workdir, logs, names, failed=()):
  outcomes = collections.Counter()
  for log in logs:
    with open(log) as f:
      for line in f:
        match = re.match(r'\[sweep\] (\S+): (done|FAILED)', line)
        if match:
          outcomes[match.groups()] += 1
  expected = {(n, 'FAILED' if n in failed else 'done'): 1 for n in names}
  assert outcomes == expected
  summary = _read_summary(workdir)
  assert list(summary) == names
  for name in names:
    assert summary[name]['status'] == ('failed' if name in failed else 'done')
    directory = os.path.join(workdir, name)
    assert not os.path.exists(os.path.join(directory, claims.CLAIM_FILE))
    if name not in failed:
      records = metric_files.read_metrics(directory)
      steps = [r['step'] for r in records if 'train/loss' in r]
      assert steps == sorted(set(steps)) and steps[-1] == 2000, (name, steps)
      # One final evaluation, at the end.
      finals = [r['step'] for r in records if 'train/loss' not in r]
      assert finals == [2000], (name, finals)


@pytest.mark.slow
def test_killed_runner_rerun_finishes_every_point_once(tmp_path):
  path = _write_sweep(tmp_path, num_points=3)
  workdir = str(tmp_path / 'sweep')
  names = [f'seed={s}' for s in range(3)]
  logs = [str(tmp_path / f'log{i}') for i in range(2)]
  with open(logs[0], 'w') as log:
    proc = _runner(path, workdir, log)
    directory, pid = _running_point(workdir, [proc])
    assert pid == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
  killed = os.path.basename(directory)
  assert not os.path.exists(os.path.join(directory, 'results.json'))
  summary = _read_summary(workdir)
  assert summary[killed]['status'] == 'running'  # as the runner left it
  # The dead runner's claim.json is stale: --dry_run lists the point as
  # pending and writes nothing.
  assert os.path.exists(os.path.join(directory, claims.CLAIM_FILE))
  listing = subprocess.run(
      [sys.executable, '-m', 'experiments.sweep', f'--sweep={path}',
       f'--workdir={workdir}', '--jax_platforms=cpu', '--dry_run',
       '--config.train.num_steps=2000'],
      cwd=REPO, capture_output=True, text=True, check=True).stdout
  assert re.search(rf'^pending +{re.escape(killed)}$', listing, re.M), listing
  assert _read_summary(workdir) == summary
  with open(logs[1], 'w') as log:
    assert _runner(path, workdir, log).wait(timeout=600) == 0
  _check_every_point_done_once(workdir, logs, names)


@pytest.mark.slow
def test_concurrent_runners_one_killed_share_the_points(tmp_path):
  path = _write_sweep(tmp_path, num_points=6, fail_seed=2)
  workdir = str(tmp_path / 'sweep')
  names = [f'seed={s}' for s in range(6)]
  logs = [str(tmp_path / f'log{i}') for i in range(2)]
  with open(logs[0], 'w') as log0, open(logs[1], 'w') as log1:
    procs = [_runner(path, workdir, log0), _runner(path, workdir, log1)]
    _, pid = _running_point(workdir, procs)
    victim = next(p for p in procs if p.pid == pid)
    survivor = next(p for p in procs if p.pid != pid)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=600) == 1  # one point failed
  _check_every_point_done_once(workdir, logs, names, failed=('seed=2',))
  failure = atomic_files.read_json(os.path.join(workdir, 'seed=2', 'failure.json'))
  assert failure['message'] == 'fails on purpose'
