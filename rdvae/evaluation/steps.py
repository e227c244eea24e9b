"""The traced functions of evaluation: masked sums of R, D, ELBO and IWAE, the
latent statistics, the generative pairs of E and G, and the sample grid.

Everything here is pure and traceable; `rdvae.runtime.parallel` wraps the
per-batch steps for one or many devices. Keys are drawn per example
(`parallel.example_keys`), so the draws do not depend on the device layout.
"""

from __future__ import annotations

from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae import types
from rdvae.objectives import bounds
from rdvae.runtime import parallel


EVAL_KEYS = ('rate', 'distortion', 'elbo', 'iwae')


def make_per_example_fn(model: nn.Module, iwae_samples: int = 0,
                        axis_name: Optional[str] = None,
                        iwae_batch: int = 1024) -> Callable[..., types.Metrics]:
  """Per-example R, D, ELBO and the IWAE bound of one batch, each [B] in nats.

  For each example, with its own key: R and D at one z ~ e(z|x) (Eqs. 4, 5),
  ELBO = -(R + D), and with K = `iwae_samples` > 0 the bound
  log (1/K) sum_k w_k (`bounds.iwae`, from `model.log_importance_weights(x,
  K)`). The K samples are drawn in chunks of C (the largest divisor of K
  with B_global C <= `iwae_batch`), one `lax.map` iteration per chunk, so
  memory stays at about `iwae_batch` decoded images (over all devices)
  whatever K is; chunk c uses the keys fold_in(key_i, c + 1) of each
  example. C depends on the global batch (B times the size of `axis_name`
  under pmap), not on the rows one device sees, so the draws do not depend
  on the layout.

  Returns:
    `per_example(params, x [B, ...], keys [B]) -> {'rate', 'distortion',
    'elbo', ('analytic_rate'), ('iwae')}`, each [B].
  """

  def per_example_fn(params, x: jax.Array, keys: jax.Array):
    terms = parallel.apply_per_example(model, params, x, keys)
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
        return parallel.apply_per_example(model, params, x, chunk_keys,
                                 _log_importance_weights, chunk)  # [B, C]

      log_w = jax.lax.map(weights, jnp.arange(iwae_samples // chunk))
      log_w = jnp.moveaxis(log_w, 1, 0).reshape(x.shape[0], -1)  # [B, K]
      per_example['iwae'] = bounds.iwae(log_w.T)  # [B]
    return per_example

  return per_example_fn


def make_eval_step(model: nn.Module, iwae_samples: int = 0,
                   axis_name: Optional[str] = None,
                   iwae_batch: int = 1024) -> Callable[..., types.Metrics]:
  """Masked per-example sums of R, D, ELBO and the IWAE bound on one batch.

  The terms of `make_per_example_fn` (same arguments), summed weighted by
  the 0/1 mask so the padded last batch counts exactly; the host divides the
  accumulated sums by the accumulated `count` once.

  Returns:
    `eval_step(params, x [B, ...], mask [B], keys [B]) -> sums` with scalar
    `rate`, `distortion`, `elbo`, (`analytic_rate`), (`iwae`), `count`.
  """
  per_example_fn = make_per_example_fn(model, iwae_samples, axis_name,
                                       iwae_batch)

  def eval_step(params, x: jax.Array, mask: jax.Array, keys: jax.Array):
    per_example = per_example_fn(params, x, keys)
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
    signature of `make_eval_step`'s step (so a layout's `eval_loop` wraps
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
      return parallel.apply_per_example(model, params, x, chunk_keys,
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
    max_value = getattr(model, 'max_value', 1)  # the data's values to [0, 1]
    return {'data': x if max_value == 1 else x / jnp.float32(max_value),
            'reconstruction': recon[0],
            'reconstruction_mean': jnp.mean(recon, axis=0),
            'generation': gen[0],
            'generation_mean': jnp.mean(gen, axis=0)}

  return sample_fn
