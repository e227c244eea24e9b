"""MADE: the masked autoregressive network that conditions the flows.

A MADE (Germain et al., 2015) maps x in R^D to one shift per dimension,
mu(x) in R^D, such that mu_i depends only on x_<i (natural order, 0-based:
output i sees inputs 0..i-1; output 0 is a constant). The autoregressive
property comes from masking the dense kernels with degrees:

  input degrees    d(x_j) = j + 1                        j = 0..D-1
  hidden degrees   m(h_k) = (k mod max(D - 1, 1)) + 1    without a context
                   m(h_k) =  k mod D                     with a context
  hidden mask      h_k <- u    iff  m(h_k) >= deg(u)      (input or hidden u)
  output mask      mu_i <- h_k iff  (i + 1) > m(h_k)

Hidden degrees are assigned deterministically by cycling (no random degrees,
no order resampling), the same in every hidden layer, so a given D and width
always give the same masks. Without a context they cycle through 1..D-1
(Germain et al.'s range; units of degree D would feed no output). With a
context they cycle through 0..D-1: degree-0 units see no input, only the
context, and they are what lets mu_0 (and every mu_i) depend on the context.
Any reordering of the dimensions is done outside the network, by the fixed
reversal between flow steps (rdvae/models/flows.py).

An optional context c (the IAF encoder passes the 256-d features of its conv
trunk) enters *unmasked*: a dense projection of c is added to the first
hidden layer's pre-activation of every unit, so every output may depend on
all of c while the structure in x stays autoregressive.

Paper sizes (Appendix F.1, F.3): 3 hidden layers of 640 units, ReLU.
"""

from __future__ import annotations

from typing import Optional

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def degree_masks(dim: int, hidden: int, layers: int,
                 context: bool = False) -> list[np.ndarray]:
  """The 0/1 kernel masks of a MADE, one [fan_in, fan_out] array per layer.

  Args:
    dim: D, the number of autoregressive dimensions.
    hidden: units per hidden layer.
    layers: number of hidden layers (>= 1).
    context: whether a context is added to the first hidden layer (then
      hidden degrees start at 0; see the module docstring).

  Returns:
    `layers + 1` float32 masks: input -> hidden, (hidden -> hidden) x
    (layers - 1), hidden -> output. With them output i depends only on
    inputs j < i.
  """
  in_degrees = np.arange(1, dim + 1)                       # [D]
  if context:
    hidden_degrees = np.arange(hidden) % dim                # [H]
  else:
    hidden_degrees = np.arange(hidden) % max(dim - 1, 1) + 1
  masks = []
  previous = in_degrees
  for _ in range(layers):
    masks.append(hidden_degrees[None, :] >= previous[:, None])
    previous = hidden_degrees
  masks.append(in_degrees[None, :] > previous[:, None])
  return [m.astype(np.float32) for m in masks]


class MaskedDense(nn.Module):
  """A dense layer whose kernel is multiplied by a fixed 0/1 mask."""

  mask: np.ndarray  # [fan_in, fan_out]
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', self.kernel_init, self.mask.shape)
    bias = self.param('bias', nn.initializers.zeros, self.mask.shape[-1:])
    return x @ (kernel * jnp.asarray(self.mask)) + bias


class MADE(nn.Module):
  """Masked autoregressive network returning the shift mu(x) [..., D].

  Attributes:
    hidden: units per hidden layer (paper: 640).
    layers: number of hidden layers (paper: 3).
    zero_init_output: zero the output layer's kernel so mu = 0 at init and
      every flow built on this MADE starts as the identity (stable start, as
      in distrax's flow example). Set False to test the masks at init.
  """

  hidden: int = 640
  layers: int = 3
  zero_init_output: bool = True

  @nn.compact
  def __call__(self, x: jax.Array,
               context: Optional[jax.Array] = None) -> jax.Array:
    """mu_i(x_<i, c) for every i.

    Args:
      x: [..., D] inputs in the autoregressive order.
      context: optional [..., C] unmasked conditioning input; its leading
        shape must broadcast against x's.

    Returns:
      [..., D] shifts; output i is a function of x[..., :i] (and context).
    """
    dim = x.shape[-1]
    masks = degree_masks(dim, self.hidden, self.layers,
                         context=context is not None)
    h = MaskedDense(masks[0], name='masked_0')(x)
    if context is not None:
      h = h + nn.Dense(self.hidden, use_bias=False, name='context')(context)
    h = nn.relu(h)
    for k, mask in enumerate(masks[1:-1], start=1):
      h = nn.relu(MaskedDense(mask, name=f'masked_{k}')(h))
    output_init = (nn.initializers.zeros if self.zero_init_output
                   else nn.initializers.lecun_normal())
    return MaskedDense(masks[-1], kernel_init=output_init,
                       name=f'masked_{self.layers}')(h)
