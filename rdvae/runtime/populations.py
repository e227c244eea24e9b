"""Populations: several runs of one program trained side by side, their
states stacked on a leading member axis (`jax.vmap`), the members shared
out over the devices.

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
import numpy as np

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


def population_devices(members: int) -> tuple:
  """The devices a population of `members` trains on: this process's
  devices, at most one per member. On the CPU these are rdvae's default
  devices, one per core (`cpu_devices`): each core then trains members of
  its own, where one device would split every small kernel of the step
  between its threads (BUILD.md, "Populations")."""
  devices = jax.local_devices()
  return tuple(devices[:max(1, min(members, len(devices)))])


def share_sizes(members: int, num_devices: int) -> tuple[int, ...]:
  """The members each device trains: ceil(members / num_devices) on every
  device but the last, which takes the rest (devices left with none are not
  used)."""
  share = -(-members // num_devices)
  return tuple(min(share, members - first)
               for first in range(0, members, share))


@dataclasses.dataclass(frozen=True)
class PopulationLayout:
  """`members` runs of one program trained by `jax.vmap` (the module doc's
  third layout), on `devices` (default `population_devices`). A run alone
  is a population of one.

  The state carries a leading member axis (`stack`); each device holds a
  contiguous share of the members (`share_sizes`) and a copy of the
  training data, and trains its share with the one-device program of that
  size, dispatched to every device before any is waited for. That program
  pads its members to `padded_population` with copies of the first and
  compiles without YNNPACK reductions (MEMBERWISE_COMPILER_OPTIONS), so
  every member ends bitwise equal to its run alone, on any number of
  devices. On several devices the arrays of the population (its state,
  its step metrics) are a tuple of the devices' shares; `get_replicated`
  joins them on the host.
  """

  members: int
  name: str = 'population'
  axis_name: Optional[str] = None
  devices: Optional[tuple] = None

  def __post_init__(self):
    devices = self.devices or population_devices(self.members)
    object.__setattr__(self, 'devices', tuple(
        devices[:len(share_sizes(self.members, len(devices)))]))

  @property
  def shares(self) -> tuple[int, ...]:
    return share_sizes(self.members, len(self.devices))

  def put_replicated(self, tree: Any) -> Any:
    """A copy of `tree` on each device (one device: the copy itself)."""
    copies = tuple(jax.device_put(tree, d) for d in self.devices)
    return copies[0] if len(copies) == 1 else copies

  def put_states(self, states: Sequence[Any]) -> Any:
    """The members' states stacked (`stack`), each device's share on it."""
    stacked = stack(states)
    if len(self.devices) == 1:
      return jax.device_put(stacked, self.devices[0])
    ends = np.cumsum(self.shares)
    return tuple(
        jax.device_put(jax.tree.map(lambda a, lo=end - n, hi=end: a[lo:hi],
                                    stacked), device)
        for n, end, device in zip(self.shares, ends, self.devices))

  def get_replicated(self, tree: Any) -> Any:
    """The host copy of the population's arrays, the shares joined."""
    host = jax.device_get(tree)
    if len(self.devices) == 1:
      return host
    return jax.tree.map(lambda *shares: np.concatenate(shares), *host)

  def local(self, x: jax.Array) -> jax.Array:
    return x

  def train_loop(self, train_step: Callable, indices_fn: Callable,
                 gather_fn: Callable, batch_size: int,
                 unroll: bool = True,
                 summarize: Callable = parallel.stacked
                 ) -> Callable:
    loop = parallel.scan_loop(train_step, indices_fn, gather_fn, batch_size,
                              unroll, summarize)
    if len(self.devices) == 1:
      return _population_program(loop, self.members)
    programs = {n: _population_program(loop, n) for n in set(self.shares)}
    shares = self.shares

    def population(states, data):
      # Each call returns as soon as its program is queued, so the devices
      # train their shares at the same time.
      results = [programs[n](s, d) for n, s, d in zip(shares, states, data)]
      return tuple(r[0] for r in results), tuple(r[1] for r in results)

    return population

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
