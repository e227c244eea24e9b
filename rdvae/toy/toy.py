"""The discrete toy of section 4 and Appendix E (Fig. 2), computed exactly.

Data. A class z* in {0, 1} with p(z*) = (0.7, 0.3); a hidden value
h | z* ~ N(mu_z*, s^2) with mu = (0.35, 0.65) and one shared s, solved so
that I(x; z*) = 0.5 nats; x = the bin of h among 30 equal bins over [0, 1],
the tails folded into the end bins. The model sees bin j at its centre
x_j = (j + 0.5) / 30. H(X) = 2.9140512100848532 nats.

Model. K = 30 latent states; marginal m(z_i) = softmax(c)_i; encoder e(z|x)
and decoder d(x|z) each either

  bump     Appendix E's form: e(z_i|x_j) ∝ exp(-(w_i x_j - b_i)^2), normalised
           over i (the appendix prints a stray minus sign before the exp);
           the decoder likewise, d(x_j|z_i) ∝ exp(-(w'_i x_j - b'_i)^2),
           normalised over j: one discretised Gaussian per latent state;
  tabular  free logits per (x, z) pair, normalised the same way.

Training is on the exact p*(x) ("effectively infinite data"): the per-x
rate and distortion, exact expectations over the enumerated z
(`exact.terms`), are averaged with weights p*(x) by `objectives.loss_fn`.
Evaluation is in float64.

Clusters. Latent state z belongs to the cluster of the class that dominates
it, argmax_c p(z* = c | z); a cluster's mass is the aggregate posterior
e(z) = sum_x p*(x) e(z|x) summed over its states.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from scipy import optimize
from scipy import stats

from rdvae.files import checkpointing
from rdvae.runtime import compilation
from rdvae.objectives import exact
from rdvae.analysis import figures
from rdvae.objectives import losses as objectives
from rdvae import validation
from rdvae.files import metric_files
from rdvae.files import run_files

PARAMETERIZATIONS = ('bump', 'tabular')


class DataSpec(NamedTuple):
  """The toy's data distribution, all numpy float64."""

  class_probs: np.ndarray       # [C] p(z*)
  class_means: np.ndarray       # [C] mu_z*
  scale: float                  # s, shared by the classes
  centres: np.ndarray           # [X] what the model sees of bin j
  class_likelihood: np.ndarray  # [C, X] p(x | z*)
  p_data: np.ndarray            # [X] p*(x)
  entropy: float                # H(X), nats
  class_information: float      # I(x; z*), nats


def _class_likelihood(num_bins: int, means: np.ndarray,
                      scale: float) -> np.ndarray:
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  edges[0], edges[-1] = -np.inf, np.inf  # fold the tails into the end bins
  cdf = stats.norm.cdf((edges[None, :] - means[:, None]) / scale)
  return np.diff(cdf, axis=1)  # [C, X]


def _class_information(class_probs: np.ndarray,
                       likelihood: np.ndarray) -> float:
  joint = class_probs[:, None] * likelihood
  return float(exact.joint_mutual_information(joint))


def compute_data_spec(num_bins: int = 30,
                      class_probs: Sequence[float] = (0.7, 0.3),
                      class_means: Sequence[float] = (0.35, 0.65),
                      class_information: float = 0.5) -> DataSpec:
  """Solves for the noise scale s with I(x; z*) = class_information (brentq).

  I(x; z*) falls monotonically from H(z*) (s -> 0, classes separated) to 0
  (s -> inf), so a root exists for 0 < class_information < H(z*).
  """
  class_probs = np.asarray(class_probs, np.float64)
  class_means = np.asarray(class_means, np.float64)
  with jax.enable_x64(True):
    def gap(scale):
      return _class_information(
          class_probs, _class_likelihood(num_bins, class_means, scale)
      ) - class_information
    scale = optimize.brentq(gap, 1e-4, 10.0, xtol=1e-15, rtol=1e-15)
    likelihood = _class_likelihood(num_bins, class_means, scale)
    p_data = class_probs @ likelihood
    return DataSpec(
        class_probs=class_probs, class_means=class_means, scale=float(scale),
        centres=(np.arange(num_bins) + 0.5) / num_bins,
        class_likelihood=likelihood, p_data=p_data,
        entropy=float(exact.entropy(p_data)),
        class_information=_class_information(class_probs, likelihood))


def create_data_spec(config: ml_collections.ConfigDict) -> DataSpec:
  """The data spec of `config.data`."""
  c = config.data
  return compute_data_spec(int(c.num_bins), tuple(c.class_probs),
                           tuple(c.class_means), float(c.class_information))


class Tables(NamedTuple):
  """A toy model as probability tables."""

  encoder: jax.Array   # [X, K] e(z|x)
  decoder: jax.Array   # [K, X] d(x|z)
  marginal: jax.Array  # [K] m(z)


class Bump(nn.Module):
  """Energies `-(w_i x_j - b_i)^2` [K, X] of Appendix E's bump family.

  Initialised with w_i ~ N(w_mean, w_scale^2) and b_i = w_i u_i with
  u_i ~ U(0, 1) plus N(0, b_scale^2) noise: each bump starts centred at a
  random point of [0, 1] (for w_i != 0).
  """

  num_latents: int
  centres: tuple[float, ...]
  w_mean: float
  w_scale: float
  b_scale: float

  @nn.compact
  def __call__(self) -> jax.Array:
    def init(key, shape):
      k_w, k_u, k_b = jax.random.split(key, 3)
      w = self.w_mean + self.w_scale * jax.random.normal(k_w, shape)
      b = (w * jax.random.uniform(k_u, shape)
           + self.b_scale * jax.random.normal(k_b, shape))
      return jnp.stack([w, b])
    w, b = self.param('wb', init, (self.num_latents,))
    x = jnp.asarray(self.centres, w.dtype)
    return -jnp.square(w[:, None] * x[None, :] - b[:, None])  # [K, X]


class Tabular(nn.Module):
  """Free logits of the given shape, initialised N(0, scale^2)."""

  shape: tuple[int, int]
  scale: float

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.param('logits', nn.initializers.normal(self.scale),
                      self.shape)


class ToyModel(nn.Module):
  """Encoder, decoder and marginal of the toy, as probability tables.

  Attributes:
    encoder: 'bump' or 'tabular'.
    decoder: 'bump' or 'tabular'.
    num_latents: K.
    centres: the X bin centres the model sees.
    encoder_w_mean, encoder_scale: a bump encoder's w ~ N(mean, scale^2),
      b ~ w U(0, 1) + N(0, scale^2); a tabular encoder's logits ~ N(0,
      scale^2). A small encoder_scale starts e(z|x) nearly independent of x
      (R near 0).
    decoder_w_mean, decoder_scale: the same for the decoder.
  """

  encoder: str
  decoder: str
  num_latents: int
  centres: tuple[float, ...]
  encoder_w_mean: float = 0.0
  encoder_scale: float = 0.01
  decoder_w_mean: float = 0.0
  decoder_scale: float = 0.01

  def _energies(self, kind, w_mean, scale, name):
    k, x = self.num_latents, len(self.centres)
    if kind == 'bump':
      return Bump(k, self.centres, w_mean, scale, scale, name=name)()
    return Tabular((k, x), scale, name=name)()  # [K, X]

  @nn.compact
  def __call__(self) -> Tables:
    encoder = jax.nn.softmax(
        self._energies(self.encoder, self.encoder_w_mean, self.encoder_scale,
                       'encoder').T, axis=1)  # [X, K], normalised over z
    decoder = jax.nn.softmax(
        self._energies(self.decoder, self.decoder_w_mean, self.decoder_scale,
                       'decoder'), axis=1)  # [K, X], normalised over x
    logits = self.param('marginal', nn.initializers.zeros,
                        (self.num_latents,))
    return Tables(encoder, decoder, jax.nn.softmax(logits))


def create_model(config: ml_collections.ConfigDict,
                 spec: DataSpec) -> ToyModel:
  m = config.model
  return ToyModel(
      encoder=m.encoder, decoder=m.decoder, num_latents=int(m.num_latents),
      centres=tuple(float(c) for c in spec.centres),
      encoder_w_mean=float(m.encoder_w_mean),
      encoder_scale=float(m.encoder_scale),
      decoder_w_mean=float(m.decoder_w_mean),
      decoder_scale=float(m.decoder_scale))


def true_process_tables(spec: DataSpec, num_latents: int) -> Tables:
  """The hand-built optimal model of Fig. 2a, from the true process.

  State c < C codes class c: e(c|x) = p(z* = c | x), m(c) = p(z* = c),
  d(x|c) = p(x | z* = c); the other states are never used (e = m = 0) and
  decode to p*. Then R = I(x; z*), D = H(X | z*) = H - R and g = p*.
  """
  num_classes = len(spec.class_probs)
  joint = spec.class_probs[:, None] * spec.class_likelihood  # [C, X]
  encoder = np.zeros((len(spec.p_data), num_latents))
  encoder[:, :num_classes] = (joint / spec.p_data[None, :]).T
  marginal = np.zeros(num_latents)
  marginal[:num_classes] = spec.class_probs
  decoder = np.tile(spec.p_data, (num_latents, 1))
  decoder[:num_classes] = spec.class_likelihood
  return Tables(encoder, decoder, marginal)


def class_latent_joint(spec: DataSpec, encoder) -> jax.Array:
  """p(z*, z) = sum_x p(z*) p(x|z*) e(z|x) [C, K]."""
  return (spec.class_probs[:, None] * spec.class_likelihood) @ encoder


def cluster_masses(spec: DataSpec, encoder) -> np.ndarray:
  """Mass of e(z) in each class's cluster [C] (see the module docstring)."""
  joint = np.asarray(class_latent_joint(spec, encoder))  # [C, K]
  owner = np.argmax(joint, axis=0)
  return np.array([joint[:, owner == c].sum() for c in range(joint.shape[0])])


def evaluate(spec: DataSpec, tables: Tables) -> dict[str, float]:
  """Every exact metric of a toy model, in float64 nats.

  The generative upper bound G (Eq. 10) uses q(x) = p*(x), the one density
  over x we have besides the model's own g(x); with q = g it would equal
  I_d exactly (G - I_d = KL(g || q)), so `generative_mutual_information`
  reports that value directly.
  """
  with jax.enable_x64(True):
    p = jnp.asarray(spec.p_data, jnp.float64)
    e, d, m = (jnp.asarray(t, jnp.float64) for t in tables)
    h = float(exact.entropy(p))
    r = float(exact.rate(p, e, m))
    dist = float(exact.distortion(p, e, d))
    info = float(exact.mutual_information(p, e))
    info_gen = float(exact.generative_mutual_information(m, d))
    lower_gen = float(exact.generative_lower_bound(m, d, e))
    upper_gen = float(exact.generative_upper_bound(m, d, p))
    g = exact.generative_distribution(m, d)
    joint = class_latent_joint(spec, e)
    results = {
        'rate': r, 'distortion': dist, 'elbo': -(r + dist), 'entropy': h,
        'mutual_information': info,
        'kl_data_generative': float(exact.kl_divergence(p, g)),
        'kl_data_reconstruction': float(exact.kl_divergence(
            p, exact.reconstruction_distribution(p, e, d))),
        'latent_alignment': float(exact.joint_mutual_information(joint)),
        'class_information': spec.class_information,
        'generative_mutual_information': info_gen,
        'generative_lower_bound_E': lower_gen,
        'generative_upper_bound_G': upper_gen,
        'lower_bound_gap': info - (h - dist),   # I - (H - D) >= 0
        'upper_bound_gap': r - info,            # R - I >= 0
        'generative_lower_gap': info_gen - lower_gen,   # I_d - E >= 0
        'generative_upper_gap': upper_gen - info_gen,   # G - I_d >= 0
    }
  masses = cluster_masses(spec, np.asarray(e))
  for c, mass in enumerate(masses):
    results[f'cluster_mass_{c}'] = float(mass)
  results['bounds_hold'] = bool(
      min(results['lower_bound_gap'], results['upper_bound_gap']) >= -1e-12
      and min(results['generative_lower_gap'],
              results['generative_upper_gap']) >= -1e-12)
  return results


class TrainState(NamedTuple):
  """Everything a toy run needs to continue: a checkpoint holds it all."""

  step: jax.Array
  params: dict
  opt_state: optax.OptState
  objective_state: objectives.ObjectiveState


class TrainOptions(NamedTuple):
  """The optimiser's settings; hashable, so compiled steps are reused."""

  learning_rate: float
  lr_schedule: str
  num_steps: int
  final_lr_fraction: float
  adam_eps: float


def create_train_options(config: ml_collections.ConfigDict) -> TrainOptions:
  t = config.train
  return TrainOptions(float(t.learning_rate), t.lr_schedule, int(t.num_steps),
                      float(t.final_lr_fraction), float(t.adam_eps))


def adam_optimizer(options: TrainOptions) -> optax.GradientTransformation:
  """Adam with a constant or cosine-decayed learning rate.

  The cosine decay (to `final_lr_fraction` of the rate) lets the target rate
  settle on its kink at R = sigma instead of hopping across it.
  """
  lr = options.learning_rate
  if options.lr_schedule == 'cosine':
    lr = optax.cosine_decay_schedule(lr, options.num_steps,
                                     alpha=options.final_lr_fraction)
  return optax.adam(lr, eps=options.adam_eps)


def init_state(model: ToyModel, options: TrainOptions,
               objective_state: objectives.ObjectiveState,
               seed: int) -> TrainState:
  """The state at step 0; `objective_state` holds the objective's numbers."""
  params = model.init(jax.random.key(seed))['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=adam_optimizer(options).init(params),
                    objective_state=objective_state)


# XLA:CPU hands a reduction over a large enough array (a population's
# [members, 30, 30] tables, from 5 members on) to YNNPACK, which sums in
# another order than XLA's own loops; without it (and with LANES below)
# every member of any population is computed bitwise as the same run alone
# (tests/test_toy.py checks six members). The option means nothing to other
# backends.
MEMBERWISE_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}
# XLA:CPU computes an elementwise op (e.g. the exp of a constrained
# objective's multiplier update, one number per member) on arrays of a few
# elements by another path than on one element or many: an exp over 3, 5, 6,
# 7, 11, 13, 14 or 15 elements differs in the last bit from the same exp one
# by one; over 1, 2, 4, 8 and every count from 16 on it does not. So a
# population trains padded to a power of two below LANES or a multiple of
# LANES members (`padded_population`).
LANES = 8


def padded_population(size: int) -> int:
  """The members `train_steps` computes for a population of `size`: 1, 2,
  4, or the next multiple of LANES (see LANES)."""
  if size <= 0:
    raise ValueError(f'population size {size}: expected at least 1')
  if size >= LANES:
    return -(-size // LANES) * LANES
  return 1 << (size - 1).bit_length()


def train_steps(states: TrainState, p_data: jax.Array, *, model: ToyModel,
                objective: objectives.Objective, options: TrainOptions,
                length: int) -> tuple[TrainState, dict[str, jax.Array]]:
  """Runs `length` training steps of a population under one `lax.scan`.

  `states` carry a leading population axis (`stack`; a run alone is a
  population of one), and `jax.vmap` trains the members side by side. Each
  step minimises `objectives.loss_fn` of the exact per-x terms
  (`exact.terms`) weighted by p*(x) [X], then updates the objective state
  (the multiplier of a constrained objective follows its constraint). The
  objective's numbers are arrays in the state, so runs that differ only in
  them (e.g. a sweep of target rates) share one compiled program
  (`train_steps_program`). A member of a population of any size ends
  bitwise equal to its run alone (MEMBERWISE_COMPILER_OPTIONS;
  tests/test_toy.py), so a sweep's points equal their runs alone.

  Returns:
    (states, aux) with aux the last step's means (rate, distortion, ...),
    each with the population axis.
  """
  return train_steps_program()(states, p_data, model=model,
                               objective=objective, options=options,
                               length=length)


@functools.cache
def train_steps_program():
  """The jitted program behind `train_steps` (one per process)."""
  return jax.jit(
      _population_steps,
      static_argnames=('model', 'objective', 'options', 'length'),
      compiler_options=compilation.known_options(MEMBERWISE_COMPILER_OPTIONS))


def _population_steps(states, p_data, *, model, objective, options, length):
  def member(state):
    return _member_steps(state, p_data, model, objective, options, length)
  size = len(states.step)
  extra = padded_population(size) - size  # copies of the first member
  states = jax.tree.map(
      lambda a: jnp.concatenate([a, jnp.repeat(a[:1], extra, 0)]), states)
  return jax.tree.map(lambda a: a[:size], jax.vmap(member)(states))


def stack(states: Sequence[TrainState]) -> TrainState:
  """The population of `states`: their leaves stacked on a leading axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *states)


def unstack(states: TrainState) -> list[TrainState]:
  """The members of a population, in order (`stack`'s inverse)."""
  size = len(states.step)
  return [jax.tree.map(lambda a, i=i: a[i], states) for i in range(size)]


def _member_steps(state, p_data, model, objective, options, length):
  optimizer = adam_optimizer(options)

  def loss(params, objective_state, step):
    terms = exact.terms(*model.apply({'params': params}))
    return objectives.loss_fn(objective, terms, objective_state, step,
                              weights=p_data)

  def step_fn(state, _):
    grads, aux = jax.grad(loss, has_aux=True)(
        state.params, state.objective_state, state.step)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    objective_state = objectives.update_state(objective,
                                              state.objective_state, aux)
    return TrainState(state.step + 1, optax.apply_updates(state.params,
                                                          updates),
                      opt_state, objective_state), aux

  state, aux = jax.lax.scan(step_fn, state, None, length=length)
  return state, jax.tree.map(lambda a: a[-1], aux)


def model_tables(model: ToyModel, params) -> Tables:
  """The model's tables evaluated in float64 (parameters cast up)."""
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    return Tables(*(np.asarray(t) for t in model.apply({'params': params})))


FIGURE_FILE = 'figure.png'
SCHEDULES = ('constant', 'cosine')


def validate(config: ml_collections.ConfigDict) -> DataSpec:
  """Checks every toy key before any work; returns the data spec.

  Raises:
    validation.ConfigError naming the bad key, its value and what is allowed,
    including a target or constrained rate above the data entropy H.
  """
  validation.check_choice(config, 'dataset.name', ('toy',))
  validation.check_positive_int(config, 'seed', allow_zero=True)
  if validation.check_positive_int(config, 'data.num_bins') < 2:
    raise validation.ConfigError('config.data.num_bins must be >= 2')
  probs = _check_vector(config, 'data.class_probs')
  means = _check_vector(config, 'data.class_means')
  if len(probs) < 2 or min(probs) <= 0 or abs(sum(probs) - 1.0) > 1e-9:
    raise validation.ConfigError(
        f'config.data.class_probs={probs!r} must be >= 2 positive numbers '
        'summing to 1')
  if len(means) != len(probs):
    raise validation.ConfigError(
        f'config.data.class_means={means!r} needs one mean per class '
        f'({len(probs)})')
  class_entropy = float(-np.sum(np.asarray(probs) * np.log(probs)))
  validation.check_number(config, 'data.class_information',
                          strictly_positive=True, maximum=class_entropy - 1e-6)
  for part in ('encoder', 'decoder'):
    validation.check_choice(config, f'model.{part}', PARAMETERIZATIONS)
    validation.check_number(config, f'model.{part}_w_mean')
    validation.check_number(config, f'model.{part}_scale', minimum=0.0)
  validation.check_positive_int(config, 'model.num_latents')
  for key in ('num_steps', 'steps_per_dispatch', 'log_every'):
    validation.check_positive_int(config, f'train.{key}')
  validation.check_number(config, 'train.learning_rate',
                          strictly_positive=True)
  validation.check_choice(config, 'train.lr_schedule', SCHEDULES)
  validation.check_number(config, 'train.final_lr_fraction', minimum=0.0,
                          maximum=1.0)
  validation.check_number(config, 'train.adam_eps', strictly_positive=True)
  spec = create_data_spec(config)
  objectives.validate(config, data_entropy=spec.entropy)
  return spec


def _check_vector(config, key: str) -> tuple[float, ...]:
  value = validation.get(config, key)
  if (not isinstance(value, (tuple, list)) or
      not all(isinstance(v, (int, float)) and not isinstance(v, bool)
              for v in value)):
    raise validation.ConfigError(
        f'config.{key}={value!r} must be a tuple of numbers')
  return tuple(float(v) for v in value)


def train_and_eval(config: ml_collections.ConfigDict,
                   workdir: str) -> dict[str, float]:
  """Trains a toy model on the exact p*(x) and measures it exactly.

  `rdvae.train_and_eval` dispatches here when `config.dataset.name` is
  'toy'. See `fit`, which also returns the trained model's tables.
  """
  return fit(config, workdir)[0]


def fit(config: ml_collections.ConfigDict,
        workdir: str) -> tuple[dict[str, float], Tables]:
  """Trains a toy model on the exact p*(x) and measures it exactly.

  Leaves config.json, metrics.jsonl (+ TensorBoard), an orbax checkpoint of
  the TrainState, results.json and the model's Fig. 2 column (figure.png) in
  `workdir`; a rerun in the same workdir resumes from the checkpoint.

  Returns:
    (results, tables): the results of `evaluate` (rate, distortion, elbo,
    entropy, mutual_information, kl_data_generative, kl_data_reconstruction,
    latent_alignment, cluster_mass_*, the generative bounds E and G and the
    bound gaps) plus `step`; and the trained model's float64 tables.
  """
  run = _start(config, workdir)
  [state] = _train_loop(run, [run.state], [workdir])
  return _finish(run._replace(state=state), workdir)


def population_key(config: ml_collections.ConfigDict) -> str:
  """What must be equal for two toy configs to train as one population:
  the config without the seed and the objective's numbers (which the step
  takes as arrays, `objectives.Hyperparameters`)."""
  flat = run_files.flatten(run_files.config_to_dict(config))
  flat.pop('seed', None)
  for field in objectives.Hyperparameters._fields:
    flat.pop(f'objective.{field}', None)
  return repr(sorted(flat.items()))


def fit_population(configs: Sequence[ml_collections.ConfigDict],
                   workdirs: Sequence[str]
                   ) -> list[tuple[dict[str, float], Tables]]:
  """Trains several toy runs as one population, each as `fit` would.

  The runs must share `population_key` (they may differ in seed and in the
  objective's numbers: targets, betas, multiplier settings). Their states
  are stacked on a leading population axis and `train_steps` trains them
  all per dispatch; every member keeps its own
  workdir (config.json, metrics.jsonl, checkpoint, results.json, figure),
  resumes from its own checkpoint, and ends bitwise equal to its run alone
  (a population of one; tests/test_toy.py). Members restored at different
  steps train in different populations, and a population holds at most
  MAX_POPULATION members (more train in several, one after another). Each
  population's files are written on a second thread while the next one
  trains.

  Returns:
    `fit`'s (results, tables) for each member, in order; results gain
    'population_size', the number of members its program trained.
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError(f'{len(configs)} configs and {len(workdirs)} workdirs: '
                     'expected one (or more) workdir per config')
  keys = [population_key(c) for c in configs]
  for config, workdir, key in zip(configs, workdirs, keys):
    if key != keys[0]:
      raise ValueError(f'the toy run in {workdir!r} differs from the one in '
                       f'{workdirs[0]!r} in more than the seed and the '
                       "objective's numbers; it cannot share their program")
  runs = [_start(c, w) for c, w in zip(configs, workdirs)]
  by_step: dict[int, list[int]] = {}
  for index, run in enumerate(runs):
    by_step.setdefault(int(run.state.step), []).append(index)
  finished = {}
  # A population's files (checkpoint, float64 evaluation, figure: Python
  # work, mostly) are written on a second thread while the next population
  # trains (XLA, without the GIL), so the two overlap on two cores.
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as files:
    for same_step in by_step.values():
      for start in range(0, len(same_step), MAX_POPULATION):
        members = same_step[start:start + MAX_POPULATION]
        states = _train_loop(runs[members[0]],
                             [runs[i].state for i in members],
                             [workdirs[i] for i in members])
        for i, state in zip(members, states):
          runs[i] = runs[i]._replace(state=state)
          finished[i] = files.submit(_finish, runs[i], workdirs[i],
                                     len(members))
  return [finished[i].result() for i in range(len(runs))]


# The most members trained by one program. Any size gives every member
# bitwise as its run alone; on a 2-core CPU the whole toy_rd sweep is no
# faster with populations of 16 or 64 than of 8 (the files of a population,
# drawn in Python, 0.2-0.3 s a point, are written while the next population
# trains, and bound the sweep; benchmarks/toy_population.py).
MAX_POPULATION = 8


class _Run(NamedTuple):
  """A toy run between its start (restored state) and its finish."""

  config: ml_collections.ConfigDict
  spec: DataSpec
  model: ToyModel
  objective: objectives.Objective
  options: TrainOptions
  state: TrainState
  manager: object


def _start(config, workdir) -> _Run:
  """Validates, prepares `workdir` and restores (or creates) the state."""
  spec = validate(config)
  run_files.prepare_workdir(workdir, config)
  model = create_model(config, spec)
  objective = objectives.create_objective(config)
  options = create_train_options(config)
  state = init_state(model, options, objectives.create_state(config),
                     int(config.seed))
  manager = checkpointing.create_manager(workdir)
  if checkpointing.latest_step(manager) is not None:
    state = checkpointing.restore(manager, state)
  return _Run(config, spec, model, objective, options, state, manager)


def _finish(run: _Run, workdir: str, population_size: int = 0
            ) -> tuple[dict[str, float], Tables]:
  """Checkpoints the trained state, measures it, writes results and figure."""
  step = int(run.state.step)
  if checkpointing.latest_step(run.manager) != step:
    checkpointing.save(run.manager, step, run.state)
  tables = model_tables(run.model, run.state.params)
  results = evaluate(run.spec, tables)
  results['step'] = step
  if population_size:
    results['population_size'] = population_size
  run_files.write_results(workdir, results)
  _write_figure(run.config, run.spec, tables,
                os.path.join(workdir, FIGURE_FILE))
  return results, tables


def _train_loop(run: _Run, states: Sequence[TrainState],
                workdirs: Sequence[str]) -> list[TrainState]:
  """Trains `states` (all at one step) as one population, dispatching
  `steps_per_dispatch` steps at a time and logging to each member's
  workdir."""
  t = run.config.train
  p_data = jnp.asarray(run.spec.p_data, jnp.float32)
  step = int(states[0].step)
  population = stack(states)
  with contextlib.ExitStack() as stack_:
    metric_writers = [
        stack_.enter_context(metric_files.MetricWriter(w, start_step=step))
        for w in workdirs]
    while step < t.num_steps:
      length = min(t.steps_per_dispatch, t.num_steps - step,
                   t.log_every - step % t.log_every)
      population, aux = train_steps(population, p_data, model=run.model,
                                    objective=run.objective,
                                    options=run.options, length=length)
      step += length
      if step % t.log_every == 0 or step == t.num_steps:
        aux = jax.device_get(aux)
        for i, (workdir, writer) in enumerate(zip(workdirs, metric_writers)):
          scalars = {f'train/{k}': float(v[i]) for k, v in aux.items()}
          if not all(np.isfinite(list(scalars.values()))):
            raise FloatingPointError(
                f'non-finite metrics at step {step} in {workdir}: {scalars}')
          writer.write_scalars(step, scalars)
  return unstack(population)


def figure_column(title: str, spec: DataSpec,
                  tables: Tables) -> figures.ToyColumn:
  """One model's column of Fig. 2 (`figures.plot_toy_columns`)."""
  return figures.ToyColumn(
      title=title, p_data=spec.p_data, centres=spec.centres,
      class_joint=spec.class_probs[:, None] * spec.class_likelihood,
      encoder=np.asarray(tables.encoder), decoder=np.asarray(tables.decoder),
      marginal=np.asarray(tables.marginal))


def _write_figure(config, spec, tables, path) -> None:
  c = config.objective
  title = f'{config.model.encoder}/{config.model.decoder}: {c.kind}'
  if c.kind in ('target_rate', 'rate_constraint'):
    title += f' {c.rate:g}'
  figures.plot_toy_columns([figure_column(title, spec, tables)], path)
