"""Marginals m(z): linen modules returning the variational marginal over z.

Contract: `marginal(encoder)` returns a distrax distribution with event shape
(Z,) and batch shape (). The encoder is passed because the VampPrior
m(z) = sum_i w_i e(z|phi_i) (F.3) evaluates it at learned pseudo-inputs; other
marginals ignore it.
"""

from __future__ import annotations

from typing import Optional

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from rdvae.models import flows


class StandardNormal(nn.Module):
  """The simple marginal `(-)` of F.3: m(z) = N(z; 0, I), fixed, no parameters.

  log m(z) = -Z/2 log(2 pi) - |z|^2 / 2.

  Attributes:
    latent_dim: Z (64 in the paper).
  """

  latent_dim: int = 64

  def __call__(self, encoder: Optional[nn.Module] = None
               ) -> distrax.MultivariateNormalDiag:
    del encoder  # fixed marginal
    return distrax.MultivariateNormalDiag(
        loc=jnp.zeros((self.latent_dim,), jnp.float32),
        scale_diag=jnp.ones((self.latent_dim,), jnp.float32))


class MAFMarginal(nn.Module):
  """The complex marginal `(+)` of F.3: N(0, I) transformed by 4 MAF steps.

  z = f(u), u ~ N(0, I), with f = s_4 o R o s_3 o R o s_2 o R o s_1 a
  mean-only masked autoregressive flow (Papamakarios et al., 2017; see
  rdvae/models/flows.py): s_k(u)_i = u_i + mu^k_i(s_k(u)_<i), R the reversal. The
  density needs one MADE pass per step and no determinant (unit Jacobian):

    log m(z) = log N(f^{-1}(z); 0, I).

  Sampling is sequential (64 MADE passes per step in a `lax.fori_loop`) and
  jit-compiles. The MADEs start at mu = 0, so at init m(z) = N(0, I).

  Attributes:
    latent_dim: Z (64 in the paper).
    flow_steps: number of MAF steps (4).
    made_hidden: MADE units per hidden layer (640).
    made_layers: MADE hidden layers (3).
  """

  latent_dim: int = 64
  flow_steps: int = 4
  made_hidden: int = 640
  made_layers: int = 3

  @nn.compact
  def __call__(self, encoder: Optional[nn.Module] = None
               ) -> distrax.Transformed:
    del encoder  # the MAF marginal does not share the encoder
    flow = flows.MeanOnlyFlow(
        latent_dim=self.latent_dim, direction='maf', steps=self.flow_steps,
        hidden=self.made_hidden, layers=self.made_layers, name='flow')
    base = distrax.MultivariateNormalDiag(
        loc=jnp.zeros((self.latent_dim,), jnp.float32),
        scale_diag=jnp.ones((self.latent_dim,), jnp.float32))
    return distrax.Transformed(base, flow())


def gaussian_stage(posterior: distrax.Distribution) -> distrax.Distribution:
  """The distribution the VampPrior mixes: e(z|x), or its Gaussian stage.

  A diagonal Gaussian is returned as it is. A `distrax.Transformed` of a
  diagonal Gaussian (the IAF encoder) gives its base, the Gaussian before the
  flow. (`MultivariateNormalDiag` is itself a `Transformed` in distrax, so it
  must be recognised first.) Any other distribution is returned as it is.
  """
  if isinstance(posterior, distrax.MultivariateNormalDiag):
    return posterior
  if (isinstance(posterior, distrax.Transformed)
      and isinstance(posterior.distribution, distrax.MultivariateNormalDiag)):
    return posterior.distribution
  return posterior


def _pseudo_input_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """N(0.05, 0.01^2), the VampPrior code's initialisation for binary MNIST."""
  return 0.05 + 0.01 * jax.random.normal(key, shape, dtype)


class VampPrior(nn.Module):
  """The marginal `(v)` of F.3: a VampPrior with learned mixture weights.

    m(z) = sum_i w_i e(z|phi_i),   w = softmax(a),   i = 1..N

  (Tomczak & Welling, 2017, with the paper's learned weights w; the VampPrior
  paper fixes w_i = 1/N.) The N pseudo-inputs phi_i have the image shape and
  are learned, as are the logits a (initialised to 0: uniform weights).

  Pseudo-inputs, as in the VampPrior code for binary MNIST: the parameter p_i
  is initialised N(0.05, 0.01^2) per pixel and phi_i = hardtanh(p_i) =
  clip(p_i, 0, 1), so pseudo-inputs stay in the images' range [0, 1].

  The marginal shares the encoder's parameters: `__call__(encoder)` runs the
  model's own encoder on the pseudo-inputs, so rate gradients reach the
  encoder through m(z) too. log m(z) is an exact logsumexp over the N
  components (`distrax.MixtureSameFamily` of diagonal Gaussians).

  !!! With the IAF encoder `(+)` the components are the encoder's GAUSSIAN
  STAGE e_0(z|phi_i) = N(z; mu(phi_i), diag sigma(phi_i)^2), NOT the full IAF
  density e(z|phi_i). Evaluating the IAF density at an arbitrary z needs the
  sequential inverse for every (z, phi_i) pair, about B * N * 64 MADE passes
  per flow step and training step: too expensive. The mixture of Gaussian
  stages is still a normalised density over z, so the rate log e(z|x) -
  log m(z) is a valid rate for a valid marginal and every bound still holds;
  it is just not exactly "e at the pseudo-inputs" for this family. See
  `gaussian_stage` for the rule.

  Sampling draws i ~ Categorical(w), then z ~ e(z|phi_i) (the Gaussian stage
  for the IAF encoder), and works under jit.

  The pseudo-inputs go through the encoder in batches of at most
  `encode_batch` (the same values: each image's features are computed alone;
  only the gradient's sum over the pseudo-inputs is added in another order).
  The batch is a speed setting, chosen per backend by the caller
  (`model.pseudo_input_batch`, resolved before `create_model`).

  Attributes:
    image_shape: the pseudo-inputs' shape, the encoder's input shape.
    num_pseudo_inputs: N (500, as in the VampPrior paper).
    encode_batch: the most pseudo-inputs per encoder call; 0 encodes all N
      at once.
  """

  image_shape: tuple[int, int, int]
  num_pseudo_inputs: int = 500
  encode_batch: int = 0

  @nn.compact
  def __call__(self, encoder: nn.Module) -> distrax.MixtureSameFamily:
    """m(z): batch (), event (Z,).

    Args:
      encoder: the model's encoder module, x [N, *image_shape] -> a diagonal
        Gaussian (or a `distrax.Transformed` of one) with batch (N,).
    """
    if encoder is None:
      raise ValueError('VampPrior needs the encoder: call marginal(encoder)')
    pseudo = self.param('pseudo_inputs', _pseudo_input_init,
                        (self.num_pseudo_inputs,) + tuple(self.image_shape))
    logits = self.param('logits', nn.initializers.zeros,
                        (self.num_pseudo_inputs,))
    components = self._encode(encoder, jnp.clip(pseudo, 0.0, 1.0))
    return distrax.MixtureSameFamily(
        mixture_distribution=distrax.Categorical(logits=logits),
        components_distribution=components)

  def _encode(self, encoder: nn.Module,
              images: jax.Array) -> distrax.Distribution:
    """gaussian_stage(encoder(images)), in batches of `encode_batch`."""
    size = self.encode_batch
    n = images.shape[0]
    if not size or size >= n:
      return gaussian_stage(encoder(images))
    parts = [gaussian_stage(encoder(images[start:start + size]))
             for start in range(0, n, size)]
    if not all(isinstance(p, distrax.MultivariateNormalDiag) for p in parts):
      return gaussian_stage(encoder(images))  # no rule to join them
    return distrax.MultivariateNormalDiag(
        loc=jnp.concatenate([p.loc for p in parts]),
        scale_diag=jnp.concatenate([p.scale_diag for p in parts]))

  def weights(self) -> jax.Array:
    """w = softmax(a) [N], the mixture weights (they sum to one)."""
    return jax.nn.softmax(self.get_variable('params', 'logits'))
