"""Every config key reaches what it configures.

The walk visits every leaf key of every shipped config (configs/*.py with
each of its VARIANTS, and each sweep file's base config), sets it to another
valid value (`_alternative`: ALTERNATIVES, CHOICES, or a rule: a boolean
flipped, a number doubled, halved or started at 1 or 0.5, a choice cycled,
the first that `programs.validate` takes) and checks the change reaches what
the run depends on. That check runs on the smoke config of the key's task
(`BASES`; a key means the same there as in every shipped config of that
task), where `_fingerprint` builds the run with `programs.create_run` and
reads what the run computes from it:

  program     the ProgramSpec, less its model, optimizer and objective
              (those three are compared by what they compute, below)
  model       the model (toy: the traced computation of its terms)
  params      the initial parameters (image models: the arguments of their
              initialisation, which is not run here; it is a pure function
              of the model, the key and the example)
  optimizer   a tiny quadratic trained by the run's optimizer program from
              the run's optimizer numbers (opt_state.hyperparams), over the
              run's steps
  objective   the run's objective (loss, its gradient in R and D, the
              multiplier) from the run's objective state, at several steps
  state       the initial step and RNG key
  data        the dataset's arrays (toy: the DataSpec)
  num_steps   T
  evaluation  the evaluator's compiled programs and keys, and the image
              task's evaluation run through stand-in programs (which read
              back the subset, batches, pairs and grid it is given)
  results     what the task writes to results.json besides its measures
              (it records settings whether or not they act, so it does not
              count alone)

A key that changes none of these fails, unless READERS names the code
outside the run that reads it (the host loop; a behavioural check of that
reader, on the image smoke config). A key that acts only with a companion
setting (COMPANIONS, e.g. objective.beta with objective.kind='beta_vae') is
checked with it; without it the key must be refused by validation, naming
it (REFUSED_WITHOUT_COMPANION), or be a documented no-effect key
(KNOWN_INERT) that provably changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib
import inspect
import os
import tempfile
import types as pytypes
import zlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from rdvae import types
from rdvae import validation
from rdvae.data import sources
from rdvae.evaluation import evaluator as evaluator_lib
from rdvae.files import checkpointing
from rdvae.files import metric_files
from rdvae.models import model as model_lib
from rdvae.objectives import losses as objectives
from rdvae.objectives import settings
from rdvae.runtime import backends
from rdvae.runtime import parallel
from rdvae.toy import data as toy_data
from rdvae.toy import model as toy_model
from rdvae.toy import task as toy_task
from rdvae.training import loop
from rdvae.training import monitors
from rdvae.training import optim
from rdvae.training import programs
from rdvae.training import steps
from rdvae.training import tasks

import tiny_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ------------------------------------------------------------ shipped configs


def _shipped() -> dict[str, ml_collections.ConfigDict]:
  """'file[:variant]' -> config, for every config file and sweep file."""
  out = {}
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))
                     + glob.glob(os.path.join(REPO, 'configs', 'sweeps',
                                              '*.py'))):
    name = os.path.relpath(path, REPO)[:-3]
    if os.path.basename(name).startswith('_'):
      continue
    module = importlib.import_module(name.replace(os.sep, '.'))
    for variant in getattr(module, 'VARIANTS', (None,)):
      label = name if variant is None else f'{name}:{variant}'
      out[label] = (module.get_config() if variant is None
                    else module.get_config(variant))
  return out


SHIPPED = _shipped()
# The walk builds far more runs than the 16 specs whose evaluation programs a
# process keeps (evaluator._programs); keep them all here, so that two runs
# of one spec share one Programs and compare equal by identity whatever
# number of runs came between them.
evaluator_lib._programs = functools.lru_cache(maxsize=None)(  # pylint: disable=protected-access
    evaluator_lib._programs.__wrapped__)  # pylint: disable=protected-access
# Where each task's keys are checked: its smoke config (the image one over
# 10 steps: at 4, half held, the linear and cosine decays take equal values).
BASES = {'image': 'configs/mnist:smoke', 'toy': 'configs/toy:smoke'}
BASE_OVERRIDES = {'image': {'train.num_steps': 10}}


def _leaves(config, prefix: str = '') -> dict[str, Any]:
  out = {}
  for name, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_leaves(value, f'{prefix}{name}.'))
    else:
      out[f'{prefix}{name}'] = value
  return out


def _with(config, overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    *path, last = key.split('.')
    node = config
    for part in path:
      node = node[part]
    node[last] = value
  return config


def _task_name(config) -> str:
  return tasks.for_config(config).name


def _valid(config) -> bool:
  try:
    programs.validate(config)
  except validation.ConfigError:
    return False
  return True


# ------------------------------------------------------- alternative values

# A small .npz of its own (written by the `world` fixture) and a TFDS
# directory served by a stand-in loader: data that differs by name and dir.
WORLD = {'npz': None}
FAKE_TFDS_DIR = '/nonexistent/tfds'

CHOICES = {
    'image': {
        'dataset.name': sources.NAMES,
        # 'arrays' takes its splits from Python (data=, tests/test_eight_bit).
        'dataset.source': tuple(s for s in sources.SOURCES if s != 'arrays'),
        'model.family': model_lib.FAMILIES,
        'train.parallel': parallel.NAMES,
    },
    'toy': {
        'dataset.name': ('toy',),
        'model.encoder': toy_model.PARAMETERIZATIONS,
        'model.decoder': toy_model.PARAMETERIZATIONS,
    },
}
for _task in CHOICES.values():
  _task.update({
      'objective.kind': objectives.KINDS,
      'objective.beta_schedule': objectives.ANNEAL_SCHEDULES,
      'objective.rate_schedule': objectives.ANNEAL_SCHEDULES,
      'optim.schedule': optim.SCHEDULES,
      'train.nonfinite': tasks.NONFINITE_MODES,
  })


def _backend_unroll() -> bool:
  return backends.defaults_for_backend(jax.default_backend())['scan_unroll']


# Candidates where the rule would not do: strings, None (the backend's
# choice), vectors, the eps (a doubled 1e-8 is lost in float32 round-off)
# and max_skipped (its reader must see the limit reached).
ALTERNATIVES: dict[str, Callable[[Any], list]] = {
    'dataset.path': lambda v: [WORLD['npz']] if v != WORLD['npz'] else [''],
    'dataset.tfds_data_dir': lambda v: ['' if v else FAKE_TFDS_DIR],
    **{f'dataset.{k}': lambda v: ['' if v else 'train[:50%]']
       for k in sources.SPLIT_KEYS},
    # On binary images 'auto', 'binary' and '' are the same choice; '8bit'
    # and the mixture act.
    'dataset.values': lambda v: ['8bit'] if v != '8bit' else ['auto'],
    'model.likelihood': lambda v: (['logistic_mixture']
                                   if v != 'logistic_mixture' else ['']),
    'dataset.class_probs': lambda v: [(0.5, 0.5), (0.7, 0.3)],
    'dataset.class_means': lambda v: [tuple(reversed(v))],
    'train.scan_unroll': lambda v: [not (_backend_unroll() if v is None
                                         else v)],
    'model.pseudo_input_batch': lambda v: [32, 0] if v is None else [2 * v, 0],
    'optim.eps': lambda v: [v * 1e6 or 1e-2],
    'optim.normalize_eps': lambda v: [v * 1e6 or 1e-2],
    'train.max_skipped': lambda v: [1 if v != 1 else 2],
    # A user's own part in place of the family letter's (docs/models.md).
    # (The toy's parts are 'bump' or 'tabular'.)
    'model.encoder': lambda v: (
        [{'bump': 'tabular', 'tabular': 'bump'}[v]] if v in ('bump', 'tabular')
        else ['examples.mlp_vae:encoder']),
    'model.decoder': lambda v: (
        [{'bump': 'tabular', 'tabular': 'bump'}[v]] if v in ('bump', 'tabular')
        else ['examples.mlp_vae:decoder']),
    'model.marginal': lambda v: ['rdvae.models.factories:maf_marginal'],
    # beta_vae at its default beta 1 is the ELBO: try the others first.
    'objective.kind': lambda v: [k for k in objectives.KINDS[2:]
                                 + objectives.KINDS[:2] if k != v],
}


def _candidates(task: str, key: str, value: Any) -> list:
  if key in ALTERNATIVES:
    found = ALTERNATIVES[key](value)
  elif key in CHOICES[task]:
    allowed = CHOICES[task][key]
    i = allowed.index(value) if value in allowed else -1
    found = [allowed[(i + k) % len(allowed)] for k in range(1, len(allowed))]
  elif isinstance(value, bool):
    found = [not value]
  elif isinstance(value, int):
    found = ([2 * value, value + 1, 1, value // 2] if value
             else [1, 2, 10, 100, 1000])
  elif isinstance(value, float):
    found = [2 * value, value / 2] if value else [0.5, 0.25]
  else:
    raise AssertionError(f'no rule for an alternative of {key}={value!r}: add '
                         'it to ALTERNATIVES or CHOICES')
  return [c for c in dict.fromkeys(found) if c != value]


def _alternative(config, key: str) -> Any:
  """The first candidate for `key` that `config` validates with, or None."""
  value = _leaves(config)[key]
  for candidate in _candidates(_task_name(config), key, value):
    if _valid(_with(config, {key: candidate})):
      return candidate
  return None


# ------------------------------------------------------------- companions


def _kind(config, kind: str, **numbers: float) -> dict[str, Any]:
  """objective.kind=kind, with the keys that do not act under it reset."""
  out = {'objective.kind': kind}
  defaults = settings.default_config()
  for key, kinds in settings.APPLIES_TO.items():
    if kind not in kinds and config.objective[key] != defaults[key]:
      out[f'objective.{key}'] = defaults[key]
  out.update({f'objective.{k}': v for k, v in numbers.items()})
  return out


def _needs_kind(kinds, kind: str, **numbers: float):
  def companions(config):
    return {} if config.objective.kind in kinds else _kind(config, kind,
                                                           **numbers)
  return companions


def _schedule(schedule: str, kinds, kind: str, **numbers: float):
  """The kind a schedule acts under; leaving 'linear' resets the keys that
  act only under it."""
  def companions(config):
    out = _needs_kind(kinds, kind, **numbers)(config)
    if config.objective[schedule] == 'linear':
      defaults = settings.default_config()
      for key, of in settings.LINEAR_ONLY.items():
        if of == schedule and config.objective[key] != defaults[key]:
          out[f'objective.{key}'] = defaults[key]
    return out
  return companions


def _linear(schedule: str, kinds, kind: str, **numbers: float):
  def companions(config):
    out = _needs_kind(kinds, kind, **numbers)(config)
    if config.objective[schedule] != 'linear':
      out[f'objective.{schedule}'] = 'linear'
    return out
  return companions


def _rate_positive(inner):
  def companions(config):
    out = inner(config)
    if not _with(config, out).objective.rate > 0:
      out['objective.rate'] = 0.5
    return out
  return companions


def _family(position: int, letter: str):
  """The family with `letter` at `position` (encoder 0, decoder 1,
  marginal 2); a flow (+) acts at 0 or 2."""
  def companions(config):
    family = config.model.family
    acts = (family[position] == letter if letter != '+' or position == 1
            else '+' in (family[0], family[2]))
    if acts:
      return {}
    return {'model.family': family[:position] + letter + family[position + 1:]}
  return companions


def _when(key: str, test: Callable[[Any], bool], value: Any):
  def companions(config):
    return {} if test(_leaves(config)[key]) else {key: value}
  return companions


_CONSTRAINED = _rate_positive(_needs_kind(objectives.CONSTRAINED,
                                          'rate_constraint'))
_FLOW = _family(0, '+')      # an IAF encoder (or a MAF marginal)
_PIXELCNN = _family(1, '+')
_VAMP = _family(2, 'v')

# The settings under which a key acts (a function of the config: {} where it
# acts already). The walk's alternative is checked with them.
COMPANIONS: dict[str, Callable[[Any], dict]] = {
    # At the default numbers (beta 1, rate 0, distortion 0) the ELBO, the
    # beta-VAE, the target rate and the target distortion are one
    # objective; a rate target of 0.5 tells target_rate from rate_constraint.
    'objective.kind': lambda c: (
        {} if c.objective.kind in objectives.RATE_TARGETED
        and c.objective.rate > 0 else _kind(c, 'target_rate', rate=0.5)),
    'dataset.name': lambda c: (
        {'dataset.source': 'tfds'} if c.dataset.get('source') == 'npz'
        else {}),
    'dataset.path': _when('dataset.source', lambda v: v == 'npz', 'npz'),
    'dataset.tfds_data_dir': _when('dataset.source', lambda v: v == 'tfds',
                                   'tfds'),
    **{f'dataset.{k}': _when('dataset.source', lambda v: v == 'tfds', 'tfds')
       for k in sources.SPLIT_KEYS},
    'model.mixture_components': _when(
        'model.likelihood', lambda v: v == 'logistic_mixture',
        'logistic_mixture'),
    'dataset.source': lambda c: (
        {'dataset.path': WORLD['npz']}
        if c.dataset.get('source') == 'tfds' and not c.dataset.get('path')
        and c.dataset.name != 'binarized_mnist' else {}),
    'model.flow_steps': _FLOW, 'model.made_hidden': _FLOW,
    'model.made_layers': _FLOW,
    'model.pixelcnn_features': _PIXELCNN,
    'model.pixelcnn_resnets_per_block': _PIXELCNN,
    'model.pixelcnn_scales': _PIXELCNN,
    'model.num_pseudo_inputs': _VAMP, 'model.pseudo_input_batch': _VAMP,
    'model.encoder_w_mean': _when('model.encoder', lambda v: v == 'bump',
                                  'bump'),
    'model.decoder_w_mean': _when('model.decoder', lambda v: v == 'bump',
                                  'bump'),
    'objective.beta': _needs_kind(('beta_vae',), 'beta_vae'),
    'objective.beta_schedule': _schedule('beta_schedule',
                                         objectives.BETA_WEIGHTED, 'beta_vae'),
    'objective.beta_start': _linear('beta_schedule', objectives.BETA_WEIGHTED,
                                    'beta_vae'),
    'objective.anneal_steps': _linear('beta_schedule',
                                      objectives.BETA_WEIGHTED, 'beta_vae'),
    'objective.rate': _needs_kind(objectives.RATE_TARGETED, 'target_rate'),
    'objective.rate_schedule': _rate_positive(_schedule(
        'rate_schedule', objectives.RATE_TARGETED, 'target_rate')),
    'objective.rate_anneal_steps': _rate_positive(_linear(
        'rate_schedule', objectives.RATE_TARGETED, 'target_rate')),
    'objective.distortion': _needs_kind(objectives.DISTORTION_TARGETED,
                                        'target_distortion'),
    'objective.multiplier_init': _CONSTRAINED,
    'objective.multiplier_lr': _CONSTRAINED,
    'objective.constraint_decay': _CONSTRAINED,
    'objective.penalty': _CONSTRAINED,
    'optim.normalize_eps': _when('optim.normalize_gradients', bool, True),
    'train.num_epochs': _when('train.num_steps', lambda v: v == 0, 0),
    'eval.subset_seed': _when('eval.max_examples', bool, 12),
    'train.max_skipped': _when('train.nonfinite', lambda v: v == 'skip',
                               'skip'),
}

# Where a key has no effect and validation refuses it, naming it: the
# setting, on the task's smoke config.
REFUSED_WITHOUT_COMPANION = {
    # 'omniglot' from an .npz needs a dataset.path (given one, the name only
    # labels the file's images, as analysis.sweep_results reads it).
    'dataset.name': {},
    'dataset.source': {'dataset.name': 'omniglot', 'dataset.source': 'tfds'},
    'objective.beta': {},
    'objective.beta_schedule': {'objective.kind': 'target_rate'},
    'objective.beta_start': {},
    'objective.anneal_steps': {},
    'objective.rate': {},
    'objective.rate_schedule': {},
    'objective.rate_anneal_steps': {'objective.kind': 'target_rate',
                                    'objective.rate': 0.5},
    'objective.distortion': {},
    'objective.multiplier_init': {}, 'objective.multiplier_lr': {},
    'objective.constraint_decay': {}, 'objective.penalty': {},
    'optim.normalize_eps': {'optim.normalize_gradients': False},
}

# Keys that validation accepts where they have no effect: the setting (on
# the task's smoke config) and why. Each is checked to change nothing the
# run computes there; one that starts to be refused or to act must leave.
KNOWN_INERT = {
    'objective.kind': ({}, 'elbo, beta_vae, target_rate and '
                       'target_distortion at the default numbers'),
    'dataset.path': ({'dataset.source': 'tfds'},
                     'the .npz file; the tfds source never reads it'),
    'dataset.tfds_data_dir': ({'dataset.source': 'npz'},
                              'the TFDS directory; the npz source never '
                              'reads it'),
    **{f'dataset.{k}': ({'dataset.source': 'npz'},
                        'a TFDS split; the npz source never reads it')
       for k in sources.SPLIT_KEYS},
    'model.mixture_components': ({'model.likelihood': 'bernoulli'},
                                 'the logistics of the 8-bit likelihood'),
    **{f'model.{k}': ({'model.family': '---'},
                      'the flows of a + encoder or marginal')
       for k in ('flow_steps', 'made_hidden', 'made_layers')},
    **{f'model.{k}': ({'model.family': '---'}, 'the PixelCNN++ decoder')
       for k in ('pixelcnn_features', 'pixelcnn_resnets_per_block',
                 'pixelcnn_scales')},
    **{f'model.{k}': ({'model.family': '---'}, 'the VampPrior marginal')
       for k in ('num_pseudo_inputs', 'pseudo_input_batch')},
    'model.encoder_w_mean': ({'model.encoder': 'tabular'},
                             'the bump encoder\'s initial w'),
    'model.decoder_w_mean': ({'model.decoder': 'tabular'},
                             'the bump decoder\'s initial w'),
    'objective.rate_schedule': ({'objective.kind': 'target_rate'},
                                'the ramp of a rate target of 0'),
    'train.num_epochs': ({'train.num_steps': 4},
                         'train.num_steps > 0 overrides it'),
    'eval.subset_seed': ({'eval.max_examples': 0, 'eval.batch_size': 5000},
                         'the seed of a subset; max_examples=0 takes the '
                         'whole split (results.json records it)'),
    'train.max_skipped': ({'train.nonfinite': 'stop'},
                          'the limit of consecutive skipped steps'),
}

# Keys read only outside the run: the reader, 'module:function' (the host
# loop; no key is read by the analysis alone: sweep_results and report read
# objective.*, model.family, dataset.name, which all reach the run).
READERS = {
    'train.log_every': 'rdvae.training.loop:_train',
    'train.eval_every': 'rdvae.training.loop:_train',
    'train.checkpoint_every': 'rdvae.training.loop:_train',
    'train.max_checkpoints_to_keep': 'rdvae.training.loop:_start',
    'train.max_skipped': 'rdvae.training.monitors:NonFinite',
}

# Keys with one valid value in their task: the reader their value selects.
SELECTORS = {('toy', 'dataset.name'): 'rdvae.training.tasks:for_config'}


def _companions(config, key: str) -> dict[str, Any]:
  return COMPANIONS.get(key, lambda c: {})(config)


# ------------------------------------------------------------ fingerprints


def _fake_tfds(name: str, data_dir=None,
               splits=None) -> dict[str, np.ndarray]:
  """Stand-in TFDS: a few random binary images, different for each
  (name, data_dir, splits)."""
  rng = np.random.default_rng(
      zlib.crc32(f'{name}|{data_dir}|{splits}'.encode()))
  return {split: rng.integers(0, 2, (n,) + sources.IMAGE_SHAPE, np.uint8)
          for split, n in (('train', 16), ('validation', 12), ('test', 12))}


def _image_init(model, optimizer, objective_state, key, example_x):
  """`steps.create_train_state` without running the initialisation: the
  parameters stand for its arguments (the model is in the ProgramSpec)."""
  del model
  params = {'key': jax.random.key_data(key).astype(jnp.float32),
            'example': jnp.asarray(example_x[:1], jnp.float32)}
  return types.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      opt_state=optimizer.init(params), objective_state=objective_state,
      rng=jax.random.key_data(key))


@pytest.fixture(scope='module', autouse=True)
def world(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('data') / 'small.npz')
  images = _fake_tfds('npz')
  sources.save_npz(path, images['train'], images['validation'],
                   images['test'])
  WORLD['npz'] = path


_DATA_SPECS: dict[str, Any] = {}


def _toy_data_spec(config):
  """`toy.data.create_data_spec`, once per dataset section (its root
  finding is most of the toy's validation)."""
  key = repr(sorted(config.dataset.items()))
  if key not in _DATA_SPECS:
    _DATA_SPECS[key] = CREATE_DATA_SPEC(config)
  return _DATA_SPECS[key]


CREATE_DATA_SPEC = toy_data.create_data_spec


@pytest.fixture(autouse=True)
def toy_data_specs(monkeypatch):
  monkeypatch.setattr(toy_data, 'create_data_spec', _toy_data_spec)


@pytest.fixture
def stand_ins(monkeypatch):
  """The stand-in TFDS, and image runs built without initialising."""
  monkeypatch.setattr(sources, 'load_tfds', _fake_tfds)
  monkeypatch.setattr(steps, 'create_train_state', _image_init)


_DATA: dict[str, Any] = {}


def _data(task, config):
  """The image task's data for `config`, loaded once per dataset section
  (as `loop.train_and_eval` loads it and hands it to the run)."""
  if task.name != 'image':
    return None
  key = repr(sorted(config.dataset.items()))
  if key not in _DATA:
    _DATA[key] = task.load_data(config)
  return _DATA[key]


_PATH_STEPS = 512


@functools.partial(jax.jit, static_argnums=0)
def _optimizer_path(optimizer, hyperparams, num_steps):
  """A tiny quadratic (two blocks of different scales) trained by
  `optimizer` with `hyperparams`, for min(num_steps, _PATH_STEPS) steps."""
  params = {'a': jnp.array([1.0, -2.0, 3.0]), 'b': jnp.array([0.3, -0.1])}
  target = {'a': jnp.array([0.5, 0.5, 0.5]), 'b': jnp.array([-0.2, 0.4])}
  scale = {'a': 10.0, 'b': 1e-3}
  state = optimizer.init(params)._replace(hyperparams=hyperparams)

  def step(carry, t):
    p, s = carry
    # Scales from 1e-2 to 1e2 across steps: Adam is blind to a constant one.
    size = 10.0 ** (2 * jnp.sin(t))
    g = jax.tree.map(lambda p_, t_, c: size * c * (p_ - t_), p, target, scale)
    u, s_new = optimizer.update(g, s, p)
    new = (optax.apply_updates(p, u), s_new)
    new = jax.tree.map(lambda n, o: jnp.where(t < num_steps, n, o), new,
                       (p, s))
    return new, new[0]

  return jax.lax.scan(step, (params, state), jnp.arange(_PATH_STEPS))[1]


@functools.partial(jax.jit, static_argnums=0)
def _objective_path(objective, state):
  """The loss, its gradient in the per-example R and D and the multiplier
  at several steps, the state updated after each as in a step."""
  rate, distortion = jnp.array([1.0, 2.0, 4.5]), jnp.array([60.0, 70.0, 95.0])
  out = []
  for t in (0, 1, 2, 3, 10, 100, 10_000, 1_000_000):
    def loss(r, d, t=t):
      return objectives.loss_fn(objective, types.RDTerms(r, d), state, t)
    (value, aux), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(
        rate, distortion)
    state = objectives.update_state(objective, state, aux)
    out.append((value, grads, state.multiplier, state.constraint_average))
  return out


def _fake_programs(latent_dim: int) -> evaluator_lib.Programs:
  """Evaluation programs that return what they are given: sums of the
  images, the mask, the batch index, the keys, the pair indices."""

  def sums(params, x, mask, rng, index, iwae=False):
    del params
    m = mask.astype(jnp.float32)
    s = jnp.sum(x.reshape(x.shape[0], -1), axis=1)
    out = {'count': jnp.sum(m), 'elbo': jnp.sum(s * m) + index,
           'rate': jnp.sum(m) * jnp.sum(rng.astype(jnp.float32))}
    if iwae:
      out['iwae'] = jnp.sum(s * s * m)
    return out

  def latent(params, x, mask, rng, index):
    del params, rng, index
    m = mask.astype(jnp.float32)
    s = jnp.sum(x.reshape(x.shape[0], -1), axis=1)
    count = jnp.sum(m)
    mean = jnp.full((latent_dim,), jnp.sum(s * m) / jnp.maximum(count, 1))
    return {'count': count, 'mean': mean,
            'm2': jnp.full((latent_dim,), jnp.sum(s * s * m))}

  def generative(params, key, start, num_pairs):
    del params
    return {'count': jnp.float32(1), 'generative_lower': start * 1.0,
            'generative_upper': num_pairs + jnp.sum(key.astype(jnp.float32))}

  def sample(params, x, key):
    del params
    return {'x': x, 'key': jax.random.key_data(key)}

  return evaluator_lib.Programs(
      eval_loop=sums, final_eval_loop=functools.partial(sums, iwae=True),
      latent_loop=latent, generative_step=generative, sample_fn=sample)


def _evaluation(run) -> Any:
  """The evaluator's programs and keys, and the task's final evaluation
  run through `_fake_programs`."""
  if run.evaluator is None:
    return None
  grids = []
  # The stand-ins compute on the host: the one-program layout (the run's
  # layout is part of its ProgramSpec).
  fake = dataclasses.replace(
      run, evaluator=dataclasses.replace(
          run.evaluator, programs=_fake_programs(2),
          layout=parallel.create_layout('jit')))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(metric_files, 'write_sample_grid',
                  lambda workdir, writer, step, samples: grids.append(
                      jax.device_get(samples)))
    results = run.task.evaluate(fake, None, None, 7, True,
                                pytypes.SimpleNamespace(workdir=None))
  results.pop('eval_seconds', None)  # how long, not what
  e = run.evaluator
  return {'programs': e.programs, 'keys': (e.eval_rng, jax.random.key_data(
      e.sample_key), e.generative_key), 'results': results, 'grids': grids}


def _terms_program(run) -> Any:
  """The model: the toy's traced terms (what it computes), the image
  model's module (its ProgramSpec entry)."""
  if run.task.name != 'toy':
    return run.model
  terms = run.task.terms_fn(run.model)
  return str(jax.make_jaxpr(terms)(run.init_state.params,
                                   run.task.train_data(run.data), None))


_FINGERPRINTS: dict[str, dict[str, Any]] = {}


def _fingerprint(config) -> dict[str, Any]:
  """`_compute_fingerprint`, once per config."""
  key = repr(sorted(_leaves(config).items()))
  if key not in _FINGERPRINTS:
    _FINGERPRINTS[key] = _compute_fingerprint(config)
  return _FINGERPRINTS[key]


def _compute_fingerprint(config) -> dict[str, Any]:
  """What a run of `config` depends on (the module doc), by component."""
  task = programs.validate(config)
  run = programs.create_run(config, _data(task, config))
  spec = programs.program_spec(run.config, run.task, run.data, run.model,
                               run.layout)
  state = jax.device_get(run.init_state)
  data = (run.data._asdict() if run.task.name == 'toy' else
          {f: getattr(run.data, f) for f in ('train', 'validation', 'test',
                                             'image_shape')})
  results = {}
  run.task.summarize(results, run.config)
  return {
      'program': dataclasses.replace(spec, model=None, optimizer=None,
                                     objective=None),
      'model': _terms_program(run),
      'params': state.params,
      'optimizer': _optimizer_path(programs.programs(spec).optimizer,
                                   run.init_state.opt_state.hyperparams,
                                   run.num_steps),
      'objective': _objective_path(spec.objective,
                                   run.init_state.objective_state),
      'state': (state.step, state.rng),
      'data': data,
      'num_steps': run.num_steps,
      'evaluation': _evaluation(run),
      'results': results,
  }


def _equal(a, b) -> bool:
  if a is b:
    return True
  if isinstance(a, (np.ndarray, jax.Array, np.generic)):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
  if isinstance(a, dict):
    return (isinstance(b, dict) and a.keys() == b.keys()
            and all(_equal(a[k], b[k]) for k in a))
  if isinstance(a, (list, tuple)):
    return (type(a) is type(b) and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b)))
  return bool(a == b)


def _differences(a: dict, b: dict) -> list[str]:
  return [k for k in a if not _equal(a[k], b[k])]


# ---------------------------------------------------------------- host loop


class _State(NamedTuple):
  step: int
  params: Any


class _Writer:
  def __init__(self, events):
    self.events, self.workdir = events, None

  def write_scalars(self, step, scalars):
    train = sorted(k for k in scalars if k.startswith('train/'))
    self.events.append(('log', step, tuple(train)) if train else
                       ('metrics', step))

  def close(self):
    pass


class _Manager:
  def __init__(self, kind, max_to_keep):
    self.kind, self.max_to_keep = kind, max_to_keep
    self.directory, self.latest = kind, None


class _Task:
  """The run's task with an evaluation that records its step."""

  def __init__(self, task, events):
    self._task, self._events = task, events

  def __getattr__(self, name):
    return getattr(self._task, name)

  def evaluate(self, run, params_host, params, step, final, writer):
    del run, params_host, params, writer
    self._events.append(('evaluate', step, final))
    return {self._task.selection_key: -float(step)}


def _fake_loop(length: int):
  """A dispatch of `length` steps that flags steps 3 and later non-finite."""

  def run_steps(state, data):
    del data
    flags = [int(s >= 3) for s in range(state.step + 1,
                                        state.step + length + 1)]
    zero = np.float32(0)  # each metric's mean over the dispatch
    return _State(state.step + length, state.params), {
        'loss': zero, 'rate': zero, 'distortion': zero,
        'nonfinite': np.asarray(flags, np.uint8)}

  return run_steps


def _host_events(config, monkeypatch) -> list:
  """What the host loop does with `config` (`loop._start`, `loop._train`)
  around stand-in training steps: logs, evaluations, checkpoint saves, how
  many checkpoints it keeps, and where it stops."""
  events = []
  monkeypatch.setattr(checkpointing, 'create_manager',
                      lambda workdir, max_to_keep, best_metric=None:
                      _Manager(best_metric or 'latest', max_to_keep))
  monkeypatch.setattr(checkpointing, 'restore_latest_good',
                      lambda manager, template: None)
  monkeypatch.setattr(checkpointing, 'latest_step', lambda m: m.latest)

  def save(manager, step, state, metrics=None):
    del state, metrics
    manager.latest = step
    events.append(('save', manager.kind, step))

  monkeypatch.setattr(checkpointing, 'save', save)
  task = programs.validate(config)
  with tempfile.TemporaryDirectory() as workdir:
    member = loop._start(config, workdir, _data(task, config))  # pylint: disable=protected-access
    member.writer.close()
  run = dataclasses.replace(
      member.run, train_loop=_fake_loop(member.run.config.train
                                        .steps_per_dispatch),
      short_loop=_fake_loop, task=_Task(member.run.task, events))
  member = dataclasses.replace(member, run=run, writer=_Writer(events))
  events.append(('keeps', member.manager.max_to_keep))
  try:
    loop._train([member], _State(0, None), 0, monitors.Speed())  # pylint: disable=protected-access
  except FloatingPointError as e:
    events.append(('stopped', str(e)))
  return events


# ------------------------------------------------------------------- tests


def _base(task: str) -> ml_collections.ConfigDict:
  return _with(SHIPPED[BASES[task]], BASE_OVERRIDES.get(task, {}))


def _alternative_where_active(config, key: str) -> Any:
  """The walk's other value of `key`: chosen with its companions."""
  return _alternative(_with(config, _companions(config, key)), key)


def _base_keys():
  for task in BASES:
    for key in _leaves(_base(task)):
      if (task, key) not in SELECTORS:
        yield pytest.param(task, key, id=f'{task}-{key}')


def test_every_shipped_key_is_checked_on_its_tasks_smoke_config():
  for label, config in SHIPPED.items():
    missing = set(_leaves(config)) - set(_leaves(_base(_task_name(config))))
    assert not missing, f'{label}: keys {sorted(missing)} are not checked'
  files = {label.split(':')[0] for label in SHIPPED}
  assert {'configs/default', 'configs/mnist', 'configs/omniglot',
          'configs/toy', 'configs/sweeps/toy_rd'} <= files


@pytest.mark.parametrize('label', sorted(SHIPPED))
def test_every_key_of_a_shipped_config_takes_another_valid_value(label):
  """Each key, alone, validates at another value where it acts; where its
  companion setting is missing, it is refused naming it or known inert."""
  config = SHIPPED[label]
  task = _task_name(config)
  assert _valid(config)
  for key in _leaves(config):
    if (task, key) in SELECTORS:
      continue
    companions = _companions(config, key)
    value = _alternative_where_active(config, key)
    assert value is not None, f'{label}: no valid other value of {key}'
    if not companions:
      continue
    try:
      programs.validate(_with(config, {key: value}))
    except validation.ConfigError as e:
      # The message names the key, or what it lacks.
      assert any(k in str(e) for k in (key, *companions)), (label, key, e)
    else:
      assert key in KNOWN_INERT, (
          f'{label}: config.{key}={value!r} is accepted without '
          f'{companions}, where it has no effect')


@pytest.mark.parametrize('task, key', list(_base_keys()))
def test_key_reaches_the_run(task, key, stand_ins, monkeypatch):
  del stand_ins
  base = _base(task)
  reference = _with(base, _companions(base, key))
  value = _alternative(reference, key)
  assert value is not None, key
  changed = _with(reference, {key: value})
  differ = _differences(_fingerprint(reference), _fingerprint(changed))
  if key not in READERS:
    # results.json records settings whether the evaluation reads them or not.
    assert set(differ) - {'results'}, (
        f'config.{key}={value!r} (from {_leaves(reference)[key]!r}) changes '
        f'nothing a run computes (only {differ}): make it act, refuse it in '
        'validation, or name the code that reads it in READERS')
    return
  assert not differ, (f'{key} reaches {differ}: it is not read only by '
                      f'{READERS[key]}')
  module, name = READERS[key].split(':')
  source = inspect.getsource(getattr(importlib.import_module(module), name))
  assert key.split('.')[-1] in source, (key, READERS[key])
  if task == 'image':
    assert (_host_events(reference, monkeypatch)
            != _host_events(changed, monkeypatch)), key


@pytest.mark.parametrize('task', sorted(BASES))
def test_equal_configs_give_equal_fingerprints(task, stand_ins):
  # Two runs of one config must not differ, or every key would seem to act
  # (e.g. an unhashable model whose programs are rebuilt for each run).
  del stand_ins
  base = _base(task)
  assert not _differences(_compute_fingerprint(base),
                          _compute_fingerprint(_with(base, {})))


def _companion_cases():
  for task in BASES:
    keys = _leaves(_base(task))
    for key in sorted(COMPANIONS):
      if key in keys and (task, key) not in SELECTORS:
        yield pytest.param(task, key, id=f'{task}-{key}')


def test_every_companion_setting_is_checked_without_it():
  assert set(COMPANIONS) == (set(REFUSED_WITHOUT_COMPANION)
                             | set(KNOWN_INERT))


@pytest.mark.parametrize('task, key', list(_companion_cases()))
def test_key_without_its_companion_is_refused_or_known_inert(
    task, key, stand_ins, monkeypatch):
  del stand_ins
  base = _base(task)
  if key in REFUSED_WITHOUT_COMPANION:
    inactive = _with(base, REFUSED_WITHOUT_COMPANION[key])
    assert _valid(inactive) and _companions(inactive, key), key
    value = _alternative_where_active(inactive, key)
    with pytest.raises(validation.ConfigError, match=key.replace('.', r'\.')):
      programs.validate(_with(inactive, {key: value}))
  if key in KNOWN_INERT:
    inactive = _with(base, KNOWN_INERT[key][0])
    assert _valid(inactive) and _companions(inactive, key), key
    value = _alternative(inactive, key)
    assert value is not None, f'{key} is now refused: drop it from KNOWN_INERT'
    changed = _with(inactive, {key: value})
    differ = _differences(_fingerprint(inactive), _fingerprint(changed))
    # results.json records eval.subset_seed whether or not it acts.
    assert differ in ([], ['results']), f'{key} now acts: {differ}'
    if key in READERS and task == 'image':
      assert (_host_events(inactive, monkeypatch)
              == _host_events(changed, monkeypatch)), key


@pytest.mark.parametrize('task, key', sorted(SELECTORS))
def test_a_key_with_one_value_selects_its_task(task, key):
  module, name = SELECTORS[task, key].split(':')
  select = getattr(importlib.import_module(module), name)
  config = _base(task)
  assert select(config) is toy_task.TASK
  other = {'toy': 'binarized_mnist'}[_leaves(config)[key]]
  assert select(_with(config, {key: other})) is tasks.IMAGE_TASK


def test_adam_b2_changes_training(monkeypatch):
  """Two steps of the smoke MNIST config (a tiny model in place of the
  family's): b2 = 0.999 and 0.5 start from the same parameters and end
  apart."""
  monkeypatch.setattr(model_lib, 'create_model', lambda config, shape, components=None, values='binary':
                      tiny_model.TinyModel(image_shape=tuple(shape)))
  start, end = {}, {}
  for b2 in (0.999, 0.5):
    config = _with(SHIPPED['configs/mnist:smoke'], {'optim.b2': b2})
    run = programs.create_run(config)
    assert run.config.train.steps_per_dispatch == 2
    start[b2] = jax.device_get(run.init_state.params)
    data = run.layout.put_replicated(run.task.train_data(run.data))
    state, _ = run.train_loop(run.layout.put_replicated(run.init_state), data)
    end[b2] = jax.device_get(state.params)
  for a, b in zip(jax.tree.leaves(start[0.999]), jax.tree.leaves(start[0.5])):
    np.testing.assert_array_equal(a, b)
  gap = max(float(np.max(np.abs(a - b))) for a, b in
            zip(jax.tree.leaves(end[0.999]), jax.tree.leaves(end[0.5])))
  assert gap > 1e-6, gap
