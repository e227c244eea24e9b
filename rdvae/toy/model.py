"""The toy's model: encoder, decoder and marginal as probability tables.

K = 30 latent states; marginal m(z_i) = softmax(c)_i; encoder e(z|x) and
decoder d(x|z) each either

  bump     Appendix E's form: e(z_i|x_j) ∝ exp(-(w_i x_j - b_i)^2), normalised
           over i (the appendix prints a stray minus sign before the exp);
           the decoder likewise, d(x_j|z_i) ∝ exp(-(w'_i x_j - b'_i)^2),
           normalised over j: one discretised Gaussian per latent state;
  tabular  free logits per (x, z) pair, normalised the same way.

Config keys (section `model`): encoder, decoder ('bump' | 'tabular'),
num_latents (K), encoder_w_mean, encoder_scale, decoder_w_mean,
decoder_scale (the initialisation, see `ToyModel`).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae import validation
from rdvae.toy import data


PARAMETERIZATIONS = ('bump', 'tabular')


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
                 spec: data.DataSpec) -> ToyModel:
  m = config.model
  return ToyModel(
      encoder=m.encoder, decoder=m.decoder, num_latents=int(m.num_latents),
      centres=tuple(float(c) for c in spec.centres),
      encoder_w_mean=float(m.encoder_w_mean),
      encoder_scale=float(m.encoder_scale),
      decoder_w_mean=float(m.decoder_w_mean),
      decoder_scale=float(m.decoder_scale))


def true_process_tables(spec: data.DataSpec, num_latents: int) -> Tables:
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


def model_tables(model: ToyModel, params) -> Tables:
  """The model's tables evaluated in float64 (parameters cast up)."""
  with jax.enable_x64(True):
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    return Tables(*(np.asarray(t) for t in model.apply({'params': params})))


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the `model` keys of a toy config."""
  for part in ('encoder', 'decoder'):
    validation.check_choice(config, f'model.{part}', PARAMETERIZATIONS)
    validation.check_number(config, f'model.{part}_w_mean')
    validation.check_number(config, f'model.{part}_scale', minimum=0.0)
    if config.model[part] == 'tabular':
      validation.warn_no_effect(
          config, (f'model.{part}_w_mean',), default_config(),
          f"a tabular {part} has no bump weights (model.{part}='tabular')")
  validation.check_positive_int(config, 'model.num_latents')


def default_config() -> ml_collections.ConfigDict:
  """Every key of a toy config's `model` section: the Fig. 2 reading."""
  return ml_collections.ConfigDict({
      'encoder': 'bump',
      'decoder': 'tabular',
      'num_latents': 30,
      # Bump: w ~ N(w_mean, scale^2), b ~ w U(0, 1) + N(0, scale^2); tabular:
      # logits ~ N(0, scale^2). A small encoder scale starts near R = 0,
      # which the target rate needs (its optimum is degenerate above sigma).
      'encoder_w_mean': 0.0,
      'encoder_scale': 0.01,
      'decoder_w_mean': 0.0,
      'decoder_scale': 0.01,
  })
