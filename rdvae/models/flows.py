"""Mean-only Gaussian autoregressive flows (IAF and MAF) as distrax bijectors.

One flow step shifts each dimension by a MADE output (rdvae/models/made.py), with
unit scale ("mean-only", Appendix F.1 and F.3 of the paper):

  IAF step (Kingma et al., 2016), forward x -> y, one MADE pass:
      y_i = x_i + mu_i(x_<i)
    inverse y -> x, sequential over the D dimensions:
      x_i = y_i - mu_i(x_<i)
  MAF step (Papamakarios et al., 2017), forward u -> x, sequential:
      x_i = u_i + mu_i(x_<i)
    inverse x -> u, one MADE pass (the density direction):
      u_i = x_i - mu_i(x_<i)

The Jacobian of either step is unit lower triangular in the step's order, so
log|det J| = 0: mean-only steps preserve volume. It is still computed through
the bijector interface (`forward_and_log_det`) and tested against
`slogdet(jax.jacfwd(f))`.

The sequential direction is a fixed-point iteration run as a `lax.fori_loop`
of D full MADE passes: after pass k the first k dimensions are exact, because
mu_i reads only x_<i. It compiles once, whatever D.

A flow of K steps is `distrax.Chain` of the steps with a fixed reversal of the
event dimensions between consecutive steps (no reversal after the last), so
that the dimension conditioned on nothing in one step is conditioned on
everything in the next.

Linen and distrax. `MeanOnlyFlow` is a linen module whose `__call__` builds
and returns the bijector. Each step's conditioner is a *pure* function of x:
the step's MADE is unbound (`Module.unbind`) and closes over its own parameter
arrays, read from the enclosing module's variables. Parameters are created by
one eager MADE call at init, outside any loop; afterwards the bijector can be
vmapped, looped over and differentiated like any JAX function (gradients reach
the parameters through the closed-over arrays), and stays valid after
`apply` returns.
"""

from __future__ import annotations

from typing import Callable, Optional

import distrax
from flax import linen as nn
import jax
import jax.numpy as jnp

from rdvae.models import made

DIRECTIONS = ('iaf', 'maf')

ShiftFn = Callable[[jax.Array], jax.Array]  # x [..., D] -> mu(x) [..., D]


def _solve_sequentially(base: jax.Array, sign: float,
                        shift_fn: ShiftFn) -> jax.Array:
  """Solves v = base + sign * mu(v) for v, one dimension per MADE pass."""
  dim = base.shape[-1]
  return jax.lax.fori_loop(0, dim, lambda _, v: base + sign * shift_fn(v),
                           base)


def _zero_log_det(x: jax.Array) -> jax.Array:
  return jnp.zeros(x.shape[:-1], x.dtype)


class IAFStep(distrax.Bijector):
  """Mean-only IAF step: y = x + mu(x); inverse is sequential."""

  def __init__(self, shift_fn: ShiftFn):
    """Args: shift_fn, an autoregressive map x [..., D] -> mu(x) [..., D]."""
    super().__init__(event_ndims_in=1, is_constant_log_det=True)
    self._shift_fn = shift_fn

  def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """y = x + mu(x) in one MADE pass; log|det dy/dx| = 0."""
    self._check_forward_input_shape(x)
    return x + self._shift_fn(x), _zero_log_det(x)

  def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x_i = y_i - mu_i(x_<i) in D MADE passes; log|det dx/dy| = 0."""
    self._check_inverse_input_shape(y)
    return _solve_sequentially(y, -1.0, self._shift_fn), _zero_log_det(y)


class MAFStep(distrax.Bijector):
  """Mean-only MAF step: x_i = u_i + mu_i(x_<i); inverse u = x - mu(x)."""

  def __init__(self, shift_fn: ShiftFn):
    """Args: shift_fn, an autoregressive map x [..., D] -> mu(x) [..., D]."""
    super().__init__(event_ndims_in=1, is_constant_log_det=True)
    self._shift_fn = shift_fn

  def forward_and_log_det(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sampling direction, D MADE passes; log|det dx/du| = 0."""
    self._check_forward_input_shape(u)
    return _solve_sequentially(u, 1.0, self._shift_fn), _zero_log_det(u)

  def inverse_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Density direction u = x - mu(x), one MADE pass; log|det du/dx| = 0."""
    self._check_inverse_input_shape(x)
    return x - self._shift_fn(x), _zero_log_det(x)


class Reverse(distrax.Bijector):
  """Reverses the event dimensions: a fixed permutation, |det J| = 1."""

  def __init__(self):
    super().__init__(event_ndims_in=1, is_constant_jacobian=True)

  def forward_and_log_det(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    self._check_forward_input_shape(x)
    return x[..., ::-1], _zero_log_det(x)

  def inverse_and_log_det(self, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    self._check_inverse_input_shape(y)
    return y[..., ::-1], _zero_log_det(y)


class MeanOnlyFlow(nn.Module):
  """K mean-only autoregressive steps with reversals, as a distrax.Chain.

  Attributes:
    latent_dim: D, the event size the flow acts on (paper: 64).
    direction: 'iaf' (one-pass forward, for the encoder) or 'maf' (one-pass
      inverse, for the marginal).
    steps: K, the number of flow steps (paper: 4).
    hidden: MADE units per hidden layer (paper: 640).
    layers: MADE hidden layers (paper: 3).
    zero_init_output: each MADE starts with mu = 0, so the flow starts as
      the fixed permutation (identity up to reversal).
  """

  latent_dim: int = 64
  direction: str = 'iaf'
  steps: int = 4
  hidden: int = 640
  layers: int = 3
  zero_init_output: bool = True

  @nn.compact
  def __call__(self, context: Optional[jax.Array] = None) -> distrax.Chain:
    """Builds the flow f = s_K o R o ... o R o s_1 (s_1 applied first).

    Args:
      context: optional [..., C] conditioning input for every step's MADE
        (the IAF encoder passes its trunk features, [B, C]); its leading shape
        must broadcast against the flow's input [..., D].

    Returns:
      A `distrax.Chain` with event_ndims 1 over [..., D].
    """
    if self.direction not in DIRECTIONS:
      raise ValueError(f'direction={self.direction!r} is not one of '
                       f'{DIRECTIONS}')
    step_class = IAFStep if self.direction == 'iaf' else MAFStep
    bijectors = []
    for k in range(self.steps):
      network = made.MADE(hidden=self.hidden, layers=self.layers,
                          zero_init_output=self.zero_init_output,
                          name=f'made_{k}')
      if k > 0:
        bijectors.append(Reverse())
      bijectors.append(step_class(self._shift_fn(network, context)))
    # distrax.Chain applies its *last* bijector first.
    return distrax.Chain(bijectors[::-1])

  def _shift_fn(self, network: made.MADE,
                context: Optional[jax.Array]) -> ShiftFn:
    """A pure x -> mu(x) closing over the MADE's parameter arrays."""
    if self.is_initializing():
      lead = () if context is None else context.shape[:-1]
      network(jnp.zeros(lead + (self.latent_dim,)), context)
    module, variables = network.unbind()
    return lambda x: module.apply(variables, x, context)
