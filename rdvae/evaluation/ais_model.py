"""An image model's decoder and marginal as the functions AIS takes.

`densities(model, params)` turns an `RDModel` (rdvae/models/model.py) and its
parameters into the callables of `evaluation.ais`:

  log_likelihood(x, z)     log d(x|z) of one image x [H, W, C] at z [Z]
                           (the PixelCNN++ decoder under teacher forcing on
                           x: one network pass, differentiable in z),
  log_marginal(z)          log m(z) (standard normal, MAF or VampPrior),
  sample_marginal(key, n)  [n, Z] draws of m(z),
  sample_likelihood(key, z)  one image x ~ d(x|z) (exact sequential sampling
                           for the PixelCNN++), BDMC's simulated data.

These are the model's own terms: log d(x|z) + log m(z) - log e(z|x) at a z is
`RDModel.log_importance_weights` at that z. Call `densities` inside the
caller's jitted function, with params a traced argument: the marginal
distribution is built once per trace (a VampPrior encodes its pseudo-inputs
once, not at every leapfrog step).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class Densities(NamedTuple):
  """The model's decoder and marginal as `evaluation.ais` takes them."""

  log_likelihood: Callable[[jax.Array, jax.Array], jax.Array]
  log_marginal: Callable[[jax.Array], jax.Array]
  sample_marginal: Callable[[jax.Array, int], jax.Array]
  sample_likelihood: Callable[[jax.Array, jax.Array], jax.Array]


def _log_d(module: nn.Module, z: jax.Array, x: jax.Array) -> jax.Array:
  x = module.unit(x) if hasattr(module, 'unit') else x  # values to [0, 1]
  return module.decoder(z, x).log_prob(x)  # [B]


def _marginal(module: nn.Module):
  return module.marginal(module.encoder)


def _sample_x(module: nn.Module, z: jax.Array) -> jax.Array:
  """x ~ d(x|z) as the data's values (v = max_value x, `RDModel.unit`)."""
  if getattr(module.decoder, 'autoregressive', False):
    x = module.decoder.sample(z, 1)[0]
  else:
    x = module.decoder(z).sample(seed=module.make_rng('sample'))
  max_value = getattr(module, 'max_value', 1)
  return x if max_value == 1 else jnp.round(x * jnp.float32(max_value))


def densities(model: nn.Module, params: Any) -> Densities:
  """The `Densities` of `model` (an `RDModel`) with `params` (the 'params'
  collection, as in `TrainState.params`); values in nats."""
  variables = {'params': params}
  marginal = model.apply(variables, method=_marginal)

  def log_likelihood(x: jax.Array, z: jax.Array) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)[None]
    return model.apply(variables, z[None], x, method=_log_d)[0]

  def log_marginal(z: jax.Array) -> jax.Array:
    return marginal.log_prob(z)

  def sample_marginal(key: jax.Array, n: int) -> jax.Array:
    return marginal.sample(seed=key, sample_shape=(n,))

  def sample_likelihood(key: jax.Array, z: jax.Array) -> jax.Array:
    x = model.apply(variables, z[None], rngs={'sample': key},
                    method=_sample_x)
    return x[0].astype(jnp.float32)

  return Densities(log_likelihood, log_marginal, sample_marginal,
                   sample_likelihood)
