"""The traced functions of training: the train state and one train step.

Everything here is pure and traceable; a layout (`runtime.parallel`,
`runtime.populations`) compiles the step into a loop for one or many devices
or a population of runs, and `training.loop` drives it from the host.

Randomness is per example: the step draws one key per example of the *global*
batch from (state.rng, state.step),

  keys = split(fold_in(rng, step), B_global)        # [B_global] keys

and the model is applied to each example with its own key (vmapped over the
batch). The draws therefore do not depend on how the batch is laid out over
devices, which is what lets the sharded, pmapped and single-device runs follow
the same trajectory.

`types.TrainState` holds no Python-side state, only arrays (the step, the parameters,
the optimizer state, the objective's state with its numbers -- beta, the
target rate, the multiplier and its settings -- and the raw RNG key data), so
runs that differ only in those numbers share one compiled step, and a
population of them can be stacked along a leading axis and trained under
`jax.vmap` (tested in tests/test_steps.py). Only the objective's kind and
schedule kinds are static.

What a step differentiates is the objective (`objectives.loss_fn`) of the
rate and distortion terms that `terms_fn` returns for a batch: by default
the model applied to each example with its own key; the toy's exact terms
(`toy.task`) enumerate every x and z instead and weight them by p*(x).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rdvae.objectives import losses as objectives
from rdvae import types
from rdvae.runtime import parallel


def _init_state(model: nn.Module, optimizer: optax.GradientTransformation,
                objective_state: objectives.ObjectiveState,
                key: types.PRNGKey, example_x: jax.Array) -> types.TrainState:
  init_key, sample_key, train_key = jax.random.split(key, 3)
  params = model.init({'params': init_key, 'sample': sample_key},
                      example_x)['params']
  return types.TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      opt_state=optimizer.init(params),
      objective_state=objective_state,
      rng=jax.random.key_data(train_key))


# Initialisation runs once per run, so on the CPU it is compiled for compile
# speed: every parameter's initializer is a Threefry kernel, and optimised
# XLA:CPU code generation is slow on them.
_CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0,
                              'xla_llvm_disable_expensive_passes': True}


@functools.cache
def _compiled_init(backend: str) -> Callable[..., types.TrainState]:
  options = _CPU_INIT_COMPILER_OPTIONS if backend == 'cpu' else None
  return jax.jit(_init_state, static_argnums=(0, 1),
                 compiler_options=options)


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       objective_state: objectives.ObjectiveState,
                       key: types.PRNGKey, example_x: jax.Array) -> types.TrainState:
  """Initialises parameters from `key` on an example batch [B, ...].

  `objective_state` (`objectives.init_state`) is stored as given. Called
  eagerly, it is compiled once per (model, optimizer), both static; called
  inside a transformation (e.g. `jax.vmap` over keys for a population), it
  becomes part of the caller's program (and it runs op by op if the model or
  optimizer is not hashable).
  """
  traced = any(isinstance(a, jax.core.Tracer)
               for a in jax.tree.leaves((objective_state, key, example_x)))
  try:
    hash((model, optimizer))
  except TypeError:  # e.g. a module with an array attribute: run op by op
    traced = True
  if traced:
    return _init_state(model, optimizer, objective_state, key, example_x[:1])
  return _compiled_init(jax.default_backend())(model, optimizer,
                                                objective_state, key,
                                                example_x[:1])


# What `nonfinite` flags, bit i for NONFINITE_KEYS[i]: 'state' is the updated
# parameters, optimizer state and objective state.
NONFINITE_KEYS = ('loss', 'rate', 'distortion', 'grad_norm', 'state')


def nonfinite_flags(metrics: types.Metrics, state: types.TrainState) -> jax.Array:
  """int32 bit mask: bit i set when NONFINITE_KEYS[i] holds a NaN or inf.

  'state' reads every array a checkpoint keeps of the updated state: the
  parameters, the optimizer's state (Adam's moments) and the objective's.
  """
  state_ok = all_finite((state.params, state.opt_state,
                         state.objective_state))
  ok = [jnp.isfinite(metrics[k]) for k in NONFINITE_KEYS[:-1]] + [state_ok]
  return sum(jnp.where(o, 0, 1 << i) for i, o in enumerate(ok)).astype(
      jnp.int32)


def all_finite(tree: Any) -> jax.Array:
  """Whether every float in `tree` is finite: a bool scalar.

  One reduction over the leaves of each dtype concatenated, which XLA fuses
  into one kernel whatever the number of leaves (a reduction per leaf made the
  training step of the simple family 675 kernels instead of 461, and its
  compilation 8-13% more CPU time).
  """
  by_dtype = {}
  for a in jax.tree.leaves(tree):
    if jnp.issubdtype(a.dtype, jnp.inexact):
      by_dtype.setdefault(jnp.dtype(a.dtype), []).append(jnp.ravel(a))
  ok = [jnp.all(jnp.isfinite(jnp.concatenate(leaves)))
        for leaves in by_dtype.values()]
  return jnp.all(jnp.stack(ok)) if ok else jnp.asarray(True)


def dispatch_metrics(metrics: types.Metrics) -> types.Metrics:
  """What the host reads of one dispatch's step metrics (each stacked [S]).

  Every metric but `nonfinite` becomes its mean over the dispatch's good
  steps (flag 0), or over all its steps when none or all of them are good;
  `nonfinite` stays per step [S], converted to uint8 (its five bits). So
  no output of the compiled loop is one of its scan's own buffers: on
  XLA:CPU, a program whose outputs were those buffers ran the toy's
  populations markedly slower (BUILD.md, "Populations").
  """
  metrics = dict(metrics)
  flags = metrics.pop('nonfinite')
  good = flags == 0
  count = jnp.sum(good.astype(jnp.int32))
  use = jnp.where((count > 0) & (count < flags.shape[0]), good, True)
  means = {k: jnp.sum(jnp.where(use, v, 0)) / jnp.sum(use.astype(v.dtype))
           for k, v in metrics.items()}
  means['nonfinite'] = flags.astype(jnp.uint8)
  return means


def names_of_flags(flags: int) -> list[str]:
  """The NONFINITE_KEYS named by a `nonfinite_flags` mask."""
  return [k for i, k in enumerate(NONFINITE_KEYS) if int(flags) >> i & 1]


TermsFn = Callable[[Any, jax.Array, jax.Array],
                   tuple[types.RDTerms, Optional[jax.Array]]]


def per_example_terms(model: nn.Module) -> TermsFn:
  """`terms_fn(params, x [B, ...], keys [B]) -> (RDTerms [B], None)`: the
  model applied to each example with its own 'sample' key."""

  def terms_fn(params, x, keys):
    return parallel.apply_per_example(model, params, x, keys), None

  return terms_fn


def make_train_step(model: Optional[nn.Module],
                    optimizer: optax.GradientTransformation,
                    objective: objectives.Objective,
                    axis_name: Optional[str] = None,
                    skip_nonfinite: bool = False,
                    terms_fn: Optional[TermsFn] = None
                    ) -> Callable[..., tuple[types.TrainState, types.Metrics]]:
  """One update of the objective (Eq. 6 and its variants) on one batch.

  The loss is `objectives.loss_fn` of the batch's RDTerms (weighted by the
  weights `terms_fn` returns, if any); its batch means are global (taken
  over `axis_name` when mapped, each device differentiating them through
  its own examples). The gradient is summed over devices, then normalized
  and applied by `optimizer` (`optim.create_optimizer`: Adam on
  block-normalized gradients).

  Args:
    model: returns RDTerms per example from `__call__(x)` ('sample' rngs);
      unused when `terms_fn` is given.
    optimizer: the optax transformation.
    objective: the objective's kind and schedules (its numbers are in
      `state.objective_state`).
    axis_name: the pmap axis, or None under jit (where the batch may be
      sharded but the program is global).
    skip_nonfinite: when the step's loss, rate, distortion, gradient norm or
      updated state is not finite, keep the old parameters, optimizer and
      objective state (the step count still advances, so the next step takes
      the next batch).
    terms_fn: the batch's terms and weights (`TermsFn`); by default
      `per_example_terms(model)`.

  Returns:
    `train_step(state, x [B, ...], keys [B]) -> (state, metrics)` with scalar
    metrics `loss`, `rate`, `distortion`, `elbo`, `beta`, `multiplier`,
    (`rate_target`), (`constraint`), `analytic_rate` (when the model gives
    one), `grad_norm` (of the raw gradient) and `nonfinite`
    (`nonfinite_flags`; 0 for a good step); `learning_rate` is not included
    (the host knows the schedule).
  """

  terms_fn = terms_fn or per_example_terms(model)

  def loss_of(params, state, x, keys):
    terms, weights = terms_fn(params, x, keys)
    loss, aux = objectives.loss_fn(objective, terms, state.objective_state,
                                   state.step, weights=weights,
                                   axis_name=axis_name)
    if terms.analytic_rate is not None:
      aux['analytic_rate'] = objectives.batch_mean(
          terms.analytic_rate, axis_name=axis_name)
    return loss, aux

  def train_step(state: types.TrainState, x: jax.Array, keys: jax.Array):
    grad_fn = jax.value_and_grad(loss_of, has_aux=True)
    (_, aux), grads = grad_fn(state.params, state, x, keys)
    if axis_name is not None:
      # Each device differentiated the global means through its own examples
      # only (objectives.batch_mean); the full gradient is the sum over
      # devices.
      grads = jax.lax.psum(grads, axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    objective_state = objectives.update_state(objective, state.objective_state,
                                              aux)
    metrics = dict(aux)
    metrics['grad_norm'] = optax.tree.norm(grads)
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state,
                              objective_state=objective_state)
    metrics['nonfinite'] = nonfinite_flags(metrics, new_state)
    if skip_nonfinite:
      keep = state.replace(step=new_state.step)
      new_state = jax.tree.map(
          functools.partial(jnp.where, metrics['nonfinite'] == 0),
          new_state, keep)
    return new_state, metrics

  return train_step
