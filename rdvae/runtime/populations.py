"""Populations: several runs of one program trained side by side on one
device, their states stacked on a leading member axis (`jax.vmap`).

A sweep whose points differ only in numbers the step takes as arrays (the
objective's beta or target, the learning rate, the seed) can train its
points as one program. `PopulationLayout` is the layout of such a program
(`parallel` has the data-parallel ones): it pads the population and compiles
it so that every member computes bitwise what it computes alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from rdvae.runtime import compilation
from rdvae.runtime import parallel


# XLA:CPU hands a reduction over a large enough array (a population's
# [members, 30, 30] tables, from 5 members on) to YNNPACK, which sums in
# another order than XLA's own loops; without it (and with LANES below)
# every member of any population is computed bitwise as the same run alone.
# The option means nothing to other backends.
MEMBERWISE_COMPILER_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}
# XLA:CPU computes an elementwise op on arrays of a few elements by another
# path than on one element or many: an exp over 3, 5, 6, 7, 11, 13, 14 or 15
# elements differs in the last bit from the same exp one by one; over 1, 2,
# 4, 8 and every count from 16 on it does not. So a population trains padded
# to a power of two below LANES or a multiple of LANES members
# (`padded_population`).
LANES = 8


def padded_population(size: int) -> int:
  """The members a population of `size` computes: 1, 2, 4, or the next
  multiple of LANES (see LANES)."""
  if size <= 0:
    raise ValueError(f'population size {size}: expected at least 1')
  if size >= LANES:
    return -(-size // LANES) * LANES
  return 1 << (size - 1).bit_length()


def stack(states: Sequence[Any]) -> Any:
  """The population of `states`: their leaves stacked on a leading axis."""
  return jax.tree.map(lambda *a: jnp.stack(a), *states)


def unstack(states: Any) -> list[Any]:
  """The members of a population, in order (`stack`'s inverse)."""
  size = len(jax.tree.leaves(states)[0])
  return [jax.tree.map(lambda a, i=i: a[i], states) for i in range(size)]


@dataclasses.dataclass(frozen=True)
class PopulationLayout:
  """`members` runs of one program on one device, trained by `jax.vmap`
  (the module doc's third layout). A run alone is a population of one.

  The state carries a leading member axis (`stack`), the training data is
  shared. The program pads the population to `padded_population(members)`
  with copies of the first member and compiles without YNNPACK reductions
  (MEMBERWISE_COMPILER_OPTIONS), so every member ends bitwise equal to its
  run alone.
  """

  members: int
  name: str = 'population'
  axis_name: Optional[str] = None

  @property
  def mesh(self) -> Mesh:
    return parallel.create_mesh(jax.devices()[:1])

  def put_replicated(self, tree: Any) -> Any:
    return jax.device_put(tree, jax.devices()[0])

  def get_replicated(self, tree: Any) -> Any:
    return jax.device_get(tree)

  def local(self, x: jax.Array) -> jax.Array:
    return x

  def train_loop(self, train_step: Callable, indices_fn: Callable,
                 gather_fn: Callable, batch_size: int,
                 unroll: bool = True,
                 summarize: Callable = parallel.stacked
                 ) -> Callable:
    loop = parallel.scan_loop(train_step, indices_fn, gather_fn, batch_size,
                              unroll, summarize)
    return _population_program(loop, self.members)

  def member_states(self, host_state: Any) -> list[Any]:
    return unstack(host_state)

  def member_metrics(self, metrics: Any) -> list[Any]:
    return unstack(metrics)


def _population_program(loop: Callable, members: int) -> Callable:
  """jit(vmap(loop)) over `members` states padded as `padded_population`."""
  extra = padded_population(members) - members

  def population(states, data):
    states = jax.tree.map(
        lambda a: jnp.concatenate([a, jnp.repeat(a[:1], extra, 0)]), states)
    states, metrics = jax.vmap(loop, in_axes=(0, None))(states, data)
    return jax.tree.map(lambda a: a[:members], (states, metrics))

  return jax.jit(population, compiler_options=compilation.known_options(
      MEMBERWISE_COMPILER_OPTIONS))
