"""The traced functions of training: one train step, one eval step, sampling.

Everything here is pure and traceable; `parallel.py` wraps these bodies for
one or many devices and `train.py` drives them from the host.

Randomness is per example: the step draws one key per example of the *global*
batch from (state.rng, state.step),

  keys = split(fold_in(rng, step), B_global)        # [B_global] keys

and the model is applied to each example with its own key (vmapped over the
batch). The draws therefore do not depend on how the batch is laid out over
devices, which is what lets the sharded, pmapped and single-device runs follow
the same trajectory.

`TrainState` holds no Python-side state, only arrays (the step, the parameters,
the optimizer state, the objective's state with its numbers -- beta, the
target rate, the multiplier and its settings -- and the raw RNG key data), so
runs that differ only in those numbers share one compiled step, and a
population of them can be stacked along a leading axis and trained under
`jax.vmap` (tested in tests/test_steps.py). Only the objective's kind and
schedule kinds are static.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rdvae import bounds
from rdvae import objectives
from rdvae import types


@flax.struct.dataclass
class TrainState:
  """Everything a run needs to continue bit for bit.

  Attributes:
    step: int32 scalar, the number of updates applied so far.
    params: the model's parameter pytree.
    opt_state: the optax state of `params`.
    objective_state: the objective's numbers (`objectives.Hyperparameters`:
      beta, sigma, ...) and its Lagrange multiplier; members of a vmapped
      population can differ in any of them.
    rng: uint32 [2] raw key data (`jax.random.key_data`), so checkpoints and
      device transfers see a plain array; wrapped by `jax.random.wrap_key_data`
      where keys are drawn.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  objective_state: objectives.ObjectiveState
  rng: jax.Array


def _init_state(model: nn.Module, optimizer: optax.GradientTransformation,
                objective_state: objectives.ObjectiveState,
                key: types.PRNGKey, example_x: jax.Array) -> TrainState:
  init_key, sample_key, train_key = jax.random.split(key, 3)
  params = model.init({'params': init_key, 'sample': sample_key},
                      example_x)['params']
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      opt_state=optimizer.init(params),
      objective_state=objective_state,
      rng=jax.random.key_data(train_key))


# Initialisation runs once per run, so on the CPU it is compiled for compile
# speed: every parameter's initializer is a Threefry kernel, and optimised
# XLA:CPU code generation is slow on them. Measured on the full-size simple
# family (quiet 2-core CPU): 10.9 s to initialise op by op, 3.9 s compiled
# with the default options, 1.7 s with these.
_CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0,
                              'xla_llvm_disable_expensive_passes': True}


@functools.cache
def _compiled_init(backend: str) -> Callable[..., TrainState]:
  options = _CPU_INIT_COMPILER_OPTIONS if backend == 'cpu' else None
  return jax.jit(_init_state, static_argnums=(0, 1),
                 compiler_options=options)


def create_train_state(model: nn.Module, optimizer: optax.GradientTransformation,
                       objective_state: objectives.ObjectiveState,
                       key: types.PRNGKey, example_x: jax.Array) -> TrainState:
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


def example_keys(rng: jax.Array, step: jax.Array, batch_size: int) -> jax.Array:
  """[batch_size] keys for the examples of the global batch at `step`.

  Args:
    rng: raw key data (as in TrainState.rng).
    step: int scalar.
    batch_size: B_global.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
  return jax.random.split(key, batch_size)


def apply_per_example(model: nn.Module, params: Any, x: jax.Array,
                      keys: jax.Array, method: Optional[Any] = None,
                      *args) -> Any:
  """`model.apply` on each example with its own 'sample' key, vmapped.

  Args:
    model: the linen model.
    params: its parameters.
    x: [B, ...] inputs.
    keys: [B] keys.
    method: the model method to apply (its `__call__` by default); it must
      take a batch first and return arrays with the batch axis first.
    *args: further (unbatched) arguments of the method.

  Returns:
    The method's output for the whole batch, as if applied to [B, ...] at once.
  """

  def one(x1, key):
    out = model.apply({'params': params}, x1[None], *args,
                      rngs={'sample': key}, method=method)
    return jax.tree.map(lambda a: a[0], out)

  return jax.vmap(one)(x, keys)


# What `nonfinite` flags, bit i for NONFINITE_KEYS[i]: 'state' is the updated
# parameters, optimizer and objective state.
NONFINITE_KEYS = ('loss', 'rate', 'distortion', 'grad_norm', 'state')


def nonfinite_flags(metrics: types.Metrics, state: TrainState) -> jax.Array:
  """int32 bit mask: bit i set when NONFINITE_KEYS[i] holds a NaN or inf."""
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


def names_of_flags(flags: int) -> list[str]:
  """The NONFINITE_KEYS named by a `nonfinite_flags` mask."""
  return [k for i, k in enumerate(NONFINITE_KEYS) if int(flags) >> i & 1]


def make_train_step(model: nn.Module, optimizer: optax.GradientTransformation,
                    objective: objectives.Objective,
                    axis_name: Optional[str] = None,
                    skip_nonfinite: bool = False
                    ) -> Callable[..., tuple[TrainState, types.Metrics]]:
  """One update of the objective (Eq. 6 and its variants) on one batch.

  The loss is `objectives.loss_fn` of the model's per-example RDTerms; its
  batch means are global (taken over `axis_name` when mapped, each device
  differentiating them through its own examples). The gradient is summed
  over devices, then normalized and applied by `optimizer`
  (`optim.create_optimizer`: Adam on block-normalized gradients).

  Args:
    model: returns RDTerms per example from `__call__(x)` ('sample' rngs).
    optimizer: the optax transformation.
    objective: the objective's kind and schedules (its numbers are in
      `state.objective_state`).
    axis_name: the pmap axis, or None under jit (where the batch may be
      sharded but the program is global).
    skip_nonfinite: when the step's loss, rate, distortion, gradient norm or
      updated state is not finite, keep the old parameters, optimizer and
      objective state (the step count still advances, so the next step takes
      the next batch).

  Returns:
    `train_step(state, x [B, ...], keys [B]) -> (state, metrics)` with scalar
    metrics `loss`, `rate`, `distortion`, `elbo`, `beta`, `multiplier`,
    (`rate_target`), (`constraint`), `analytic_rate` (when the model gives
    one), `grad_norm` (of the raw gradient) and `nonfinite`
    (`nonfinite_flags`; 0 for a good step); `learning_rate` is not included
    (the host knows the schedule).
  """

  def loss_of(params, state, x, keys):
    terms = apply_per_example(model, params, x, keys)
    loss, aux = objectives.loss_fn(objective, terms, state.objective_state,
                                   state.step, axis_name=axis_name)
    if terms.analytic_rate is not None:
      aux['analytic_rate'] = objectives.batch_mean(
          terms.analytic_rate, axis_name=axis_name)
    return loss, aux

  def train_step(state: TrainState, x: jax.Array, keys: jax.Array):
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


EVAL_KEYS = ('rate', 'distortion', 'elbo', 'iwae')


def make_eval_step(model: nn.Module, iwae_samples: int = 0,
                   axis_name: Optional[str] = None,
                   iwae_batch: int = 1024) -> Callable[..., types.Metrics]:
  """Masked per-example sums of R, D, ELBO and the IWAE bound on one batch.

  For each example: R and D at one z ~ e(z|x) (Eqs. 4, 5), ELBO = -(R + D),
  and with K = `iwae_samples` > 0 the bound log (1/K) sum_k w_k
  (`bounds.iwae`, from `model.log_importance_weights(x, K)`). Sums are
  weighted by the 0/1 mask so the padded last batch counts exactly; the host
  divides the accumulated sums by the accumulated `count` once.

  The K samples are drawn in chunks of C (the largest divisor of K with
  B_global C <= `iwae_batch`), one `lax.map` iteration per chunk, so memory
  stays at about `iwae_batch` decoded images (over all devices) whatever K
  is; chunk c uses the keys fold_in(key_i, c + 1) of each example. C depends
  on the global batch (B times the size of `axis_name` under pmap), not on
  the rows one device sees, so the draws do not depend on the layout.

  Returns:
    `eval_step(params, x [B, ...], mask [B], keys [B]) -> sums` with scalar
    `rate`, `distortion`, `elbo`, (`analytic_rate`), (`iwae`), `count`.
  """

  def eval_step(params, x: jax.Array, mask: jax.Array, keys: jax.Array):
    terms = apply_per_example(model, params, x, keys)
    per_example = {'rate': terms.rate, 'distortion': terms.distortion,
                   'elbo': -(terms.rate + terms.distortion)}
    if terms.analytic_rate is not None:
      per_example['analytic_rate'] = terms.analytic_rate
    if iwae_samples > 0:
      global_batch = x.shape[0] * (
          1 if axis_name is None else jax.lax.axis_size(axis_name))
      chunk = iwae_chunk(iwae_samples, global_batch, iwae_batch)

      def weights(c):
        chunk_keys = jax.vmap(lambda k: jax.random.fold_in(k, c + 1))(keys)
        return apply_per_example(model, params, x, chunk_keys,
                                 _log_importance_weights, chunk)  # [B, C]

      log_w = jax.lax.map(weights, jnp.arange(iwae_samples // chunk))
      log_w = jnp.moveaxis(log_w, 1, 0).reshape(x.shape[0], -1)  # [B, K]
      per_example['iwae'] = bounds.iwae(log_w.T)  # [B]
    sums = {k: jnp.sum(mask * v) for k, v in per_example.items()}
    sums['count'] = jnp.sum(mask)
    if axis_name is not None:
      sums = jax.lax.psum(sums, axis_name)
    return sums

  return eval_step


def iwae_chunk(num_samples: int, batch_size: int, iwae_batch: int) -> int:
  """The largest divisor C of K with batch_size * C <= iwae_batch (>= 1)."""
  limit = max(1, iwae_batch // max(batch_size, 1))
  return max(c for c in range(1, num_samples + 1)
             if num_samples % c == 0 and c <= limit)


def _log_importance_weights(module, x, num_samples):
  """[K, 1] -> [1, K]: batch axis first, for `apply_per_example`."""
  return jnp.moveaxis(module.log_importance_weights(x, num_samples), 0, 1)


def make_latent_step(model: nn.Module, axis_name: Optional[str] = None
                     ) -> Callable[..., types.Metrics]:
  """Per-batch moments of the encoder's mean, and the rate per dimension.

  For the examples of one batch (mask 1), with mu(x) = E_{e(z|x)}[z] (the
  Gaussian stage's mean for the IAF encoder; `model.latent_statistics`):
  `count`, `mean` [Z] (their mean) and `m2` [Z] (the sum of squared
  deviations from it), global over `axis_name`, which the host merges across
  batches with `bounds.merge_moments` into the variance over the split
  (active units, `bounds.active_units`); and, where the rate factorises,
  `rate_per_dim` [Z], the masked sum of the per-dimension KL. The encoder's
  mean is deterministic: the keys are not used.

  Returns:
    `latent_step(params, x [B, ...], mask [B], keys [B]) -> dict`, with the
    signature of `make_eval_step`'s step (so `parallel.make_eval_loop` wraps
    it).
  """

  def psum(v):
    return v if axis_name is None else jax.lax.psum(v, axis_name)

  def latent_step(params, x: jax.Array, mask: jax.Array, keys: jax.Array):
    del keys
    stats = model.apply({'params': params}, x, method='latent_statistics')
    mean_x = stats['mean']  # [B, Z]
    count = psum(jnp.sum(mask))
    mean = psum(jnp.sum(mask[:, None] * mean_x, axis=0)) / jnp.maximum(count,
                                                                        1.0)
    m2 = psum(jnp.sum(mask[:, None] * (mean_x - mean) ** 2, axis=0))
    out = {'count': count, 'mean': mean, 'm2': m2}
    if 'rate_per_dim' in stats:
      out['rate_per_dim'] = psum(
          jnp.sum(mask[:, None] * stats['rate_per_dim'], axis=0))
    return out

  return latent_step


def make_generative_step(model: nn.Module, batch_size: int,
                         iwae_samples: int, iwae_batch: int = 1024
                         ) -> Callable[..., types.Metrics]:
  """Masked sums of the integrands of E and G over one batch of generated pairs.

  Pair i (i = start .. start + B - 1) draws with its own key
  k_i = fold_in(key, i): z ~ m(z), x ~ d(x|z), scored by
  `model.generative_pairs`; log q(x) is the IWAE bound with K =
  `iwae_samples` proposals z_k ~ e(z|x) (`bounds.iwae`), drawn in chunks of C
  with keys fold_in(k_i, c + 1) as in `make_eval_step`. The draws of pair i
  depend on (key, i) only, not on the batch size or the devices. The program
  is global (jit, on the host's parameters).

  Args:
    model: an `RDModel`.
    batch_size: B, the pairs per call.
    iwae_samples: K of log q(x).
    iwae_batch: decoded images per IWAE chunk (memory bound).

  Returns:
    `generative_step(params, key_data, start, num_pairs) -> sums` with scalar
    `generative_lower` (E, Eq. 9), `generative_upper` (G, Eq. 10) and
    `count`, summed over the pairs i < num_pairs of the batch.
  """
  chunk = iwae_chunk(iwae_samples, batch_size, iwae_batch)

  def generative_step(params, key_data: jax.Array, start: jax.Array,
                      num_pairs: jax.Array):
    index = start + jnp.arange(batch_size)
    key = jax.random.wrap_key_data(key_data)
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(index)

    def one(k):
      out = model.apply({'params': params}, 1, rngs={'sample': k},
                        method='generative_pairs')
      return jax.tree.map(lambda a: a[0], out)

    pairs = jax.vmap(one)(keys)
    x = pairs['x']

    def weights(c):
      chunk_keys = jax.vmap(lambda k: jax.random.fold_in(k, c + 1))(keys)
      return apply_per_example(model, params, x, chunk_keys,
                               _log_importance_weights, chunk)  # [B, C]

    log_w = jax.lax.map(weights, jnp.arange(iwae_samples // chunk))
    log_w = jnp.moveaxis(log_w, 1, 0).reshape(batch_size, -1)  # [B, K]
    log_q = bounds.iwae(log_w.T)  # [B]
    keep = index < num_pairs  # pairs past the last are drawn, not counted
    lower = bounds.generative_lower_terms(pairs['log_e'], pairs['log_m'])
    upper = bounds.generative_upper_terms(pairs['log_d'], log_q)
    return {'generative_lower': jnp.sum(jnp.where(keep, lower, 0.0)),
            'generative_upper': jnp.sum(jnp.where(keep, upper, 0.0)),
            'count': jnp.sum(keep.astype(jnp.float32))}

  return generative_step


def make_sample_fn(model: nn.Module, num_images: int, num_decodes: int = 5
                   ) -> Callable[..., dict[str, jax.Array]]:
  """Reconstructions and generations for the Fig. 4 style grid.

  Reconstructions: z ~ e(z|x), then `num_decodes` draws x' ~ d(x'|z) with
  that same z (`model.reconstruct`); generations: z ~ m(z), likewise
  (`model.generate`). The grid shows one draw and the mean of the draws.

  Returns:
    `sample_fn(params, x [N, ...], key) -> dict` with `data` [N, ...],
    `reconstruction` and `reconstruction_mean`, `generation` and
    `generation_mean`, each [N, ...] in [0, 1], N = num_images.
  """

  def sample_fn(params, x: jax.Array, key: jax.Array):
    recon_key, gen_key = jax.random.split(key)
    x = x[:num_images]
    recon, _ = model.apply({'params': params}, x, num_decodes,
                           rngs={'sample': recon_key}, method='reconstruct')
    gen, _ = model.apply({'params': params}, num_images, num_decodes,
                         rngs={'sample': gen_key}, method='generate')
    recon = recon.astype(jnp.float32)  # [S, N, ...]
    gen = gen.astype(jnp.float32)
    return {'data': x,
            'reconstruction': recon[0],
            'reconstruction_mean': jnp.mean(recon, axis=0),
            'generation': gen[0],
            'generation_mean': jnp.mean(gen, axis=0)}

  return sample_fn
