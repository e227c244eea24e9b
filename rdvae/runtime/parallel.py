"""Where a program's arrays live: one step body, several layouts.

A `Layout` is chosen once per run (`create_layout`) and answers every
question that depends on it: how a pytree is placed on the devices and read
back, which rows of a global batch a device holds inside a traced step, and
how a step body is compiled into a loop. The step bodies themselves
(`training.steps`, `evaluation.steps`) never ask which layout runs them.

`JitLayout` ('jit', the default): the program is global. A 1-d mesh with axis 'data'
spans the run's devices (`run_devices`: all of them, or on the CPU, when
their count was rdvae's default, the most that split the batch); the training state and the device-resident training split
are replicated, the batch and its per-example keys are sharded along 'data'
by a sharding constraint, and XLA inserts the gradient all-reduce. The state
argument is donated, so an update reuses its buffers.

`PmapLayout` ('pmap'): the same step body under `jax.pmap(axis_name='data')`. Every
device computes the global batch indices and keys from (seed, step) and takes
its own contiguous slice, so device d sees examples [d B/D, (d+1) B/D) just as
it does under the jit sharding; the objective's batch means are psum'ed over
'data' (`objectives.loss_fn(..., axis_name='data')`), each device
differentiates them through its own examples only (`objectives.batch_mean`),
and the gradients are summed, so both layouts take the same gradient.

`populations.PopulationLayout`: several runs of one program, their states
stacked on a leading member axis and trained side by side by `jax.vmap`,
each device training a share of the members (the toy's sweeps).

In every layout `steps_per_dispatch` updates run inside one `lax.scan` per
host call, fetching their batches from the on-device split, so the host only
dispatches and logs.

Several processes (`rdvae.runtime.distributed`; tests/test_multiprocess.py runs two
on one machine): the mesh spans `jax.devices()`, every process's devices, in
process order, so one jit program trains on one global batch. Each process
loads the whole training split and `put_replicated` builds global arrays with
`jax.make_array_from_callback`, each process supplying only its own devices'
copies. Batch indices and keys are pure functions of (seed, step), so no
process ever needs another's data: the sharding constraint hands each device
its slice of the global batch, and the results equal one process's with the
same global batch and device count. Host-fed evaluation batches go through
`put_sharded`: every process computes the same global batch and transfers
only the rows of its devices. Under pmap, arrays carry a leading axis of the
*local* devices and each process feeds the rows of its devices (pmap's axis
index counts the devices of all processes, in process order). Host copies of
replicated arrays (`get_replicated`) come from a shard this process holds.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rdvae import validation
from rdvae.runtime import cpu_devices

AXIS = 'data'
NAMES = ('jit', 'pmap')


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



def create_mesh(devices: Optional[list] = None) -> Mesh:
  """A 1-d mesh named 'data' over `devices` (all devices by default)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (AXIS,))


def check_batch_size(config, key: str, num_devices: int) -> int:
  """Raises ConfigError unless config[key] is a positive multiple of D."""
  value = validation.check_positive_int(config, key)
  if value % num_devices:
    raise validation.ConfigError(
        f'config.{key}={value} is not divisible by the number of devices '
        f'({num_devices}); use a multiple of {num_devices}')
  return value


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(AXIS))


def _local_devices(mesh: Mesh) -> list:
  """The mesh's devices that belong to this process, in mesh order."""
  index = jax.process_index()
  return [d for d in mesh.devices.flat if d.process_index == index]


def _put_stacked(a: np.ndarray, mesh: Mesh) -> jax.Array:
  """A [D_local, ...] host array with row d on this process's device d
  (pmap's layout)."""
  return jax.device_put(a, batch_sharded(create_mesh(_local_devices(mesh))))


def _host_copy(a: Any) -> Any:
  """A numpy copy of a replicated array from a shard this process holds
  (`jax.device_get` would gather from every process)."""
  if not isinstance(a, jax.Array):
    return a
  if a.is_fully_addressable:
    return np.asarray(a)
  if not a.sharding.is_fully_replicated:
    raise ValueError(f'an array of shape {a.shape} sharded as {a.sharding} '
                     'is not replicated; its host copy would need every '
                     'process')
  return np.asarray(a.addressable_shards[0].data)


def process_rows(global_batch_size: int) -> slice:
  """The rows of a global batch that belong to this process: the devices of
  the mesh, like `jax.devices()`, are ordered by process."""
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def stacked(metrics: Any) -> Any:
  """The step metrics of a dispatch as they come: [S] arrays."""
  return metrics


def _scan_loop(train_step: Callable, indices_fn: Callable, gather_fn: Callable,
               batch_size: int, local: Callable, gather_local: bool,
               unroll: bool, summarize: Callable) -> Callable:
  """`loop(state, data) -> (state, summarize(metrics [S]))`: the steps of
  one dispatch under one `lax.scan`, each on the batch its indices name."""

  def loop(state, data):
    block = indices_fn(state.step)  # [S, B_global]

    def body(state, indices):
      if gather_local:  # gather this device's rows only
        x = gather_fn(data, local(indices))
      else:
        x = local(gather_fn(data, indices))
      keys = local(example_keys(state.rng, state.step, batch_size))
      return train_step(state, x, keys)

    state, metrics = jax.lax.scan(body, state, block, unroll=unroll)
    return state, summarize(metrics)

  return loop


@dataclasses.dataclass(frozen=True)
class JitLayout:
  """One global program over a 1-d mesh (the module doc's first layout)."""

  mesh: Mesh
  name: str = 'jit'
  axis_name: Optional[str] = None
  members: int = 1

  def split(self, batch_size: int) -> dict[str, Any]:
    """How a global batch of `batch_size` examples is split (results.json's
    'layout'): the layout's name, its devices and processes, and each
    device's share."""
    devices = int(self.mesh.devices.size)
    return {'name': self.name, 'devices': devices,
            'processes': jax.process_count(),
            'device_batch_size': batch_size // devices}

  def put_replicated(self, tree: Any) -> Any:
    """Global arrays with a replicated sharding, from host or device arrays."""
    sharding = replicated(self.mesh)

    def put(a):
      a = np.asarray(_host_copy(a))
      return jax.make_array_from_callback(a.shape, sharding,
                                          lambda idx: a[idx])

    return jax.tree.map(put, tree)

  def put_sharded(self, tree: Any) -> Any:
    """Global arrays sharded along 'data' from the same global host batch
    on every process (each process transfers its devices' rows only)."""
    sharding = batch_sharded(self.mesh)

    def put(a):
      a = np.asarray(a)
      return jax.make_array_from_callback(a.shape, sharding,
                                          lambda idx: a[idx])

    return jax.tree.map(put, tree)

  def put_states(self, states: Any) -> Any:
    """The loop's state of a run's members (a run is one member)."""
    [state] = states
    return self.put_replicated(state)

  def get_replicated(self, tree: Any) -> Any:
    """The host copy of a replicated pytree, from a shard this process
    holds."""
    return jax.tree.map(_host_copy, tree)

  def local(self, x: jax.Array) -> jax.Array:
    """Inside a traced step: a global [B, ...] array laid out by rows."""
    return jax.lax.with_sharding_constraint(x, batch_sharded(self.mesh))

  def train_loop(self, train_step: Callable, indices_fn: Callable,
                 gather_fn: Callable, batch_size: int,
                 unroll: bool = True,
                 summarize: Callable = stacked) -> Callable:
    """`steps_per_dispatch` train steps per call, compiled once.

    Args:
      train_step: a `training.steps.make_train_step` body, built with this
        layout's `axis_name`.
      indices_fn: traceable `indices_fn(start_step) -> [S, B_global]` int32,
        the training examples of steps start_step .. start_step + S - 1
        (e.g. `batching.batch_index_block`); S is the scan's length.
      gather_fn: traceable `gather_fn(data, indices [B]) -> x [B, ...]` from
        the device-resident training data (e.g. `batching.gather_batch`).
      batch_size: B_global.
      unroll: unroll the scan into straight-line code. Keep it on XLA:CPU,
        where convolutions inside a rolled loop take a far slower path; turn
        it off on GPU/TPU to compile one step body for long scans.
      summarize: traceable, of the step metrics stacked as [S] arrays: what
        the loop returns of them (e.g. `training.steps.dispatch_metrics`);
        by default the stacked metrics themselves.

    Returns:
      `loop(state, data) -> (state, summarize(metrics))` (a leading device
      axis too under pmap). The state is donated; place it and `data` with
      `put_replicated`.
    """
    loop = _scan_loop(train_step, indices_fn, gather_fn, batch_size,
                      self.local, False, unroll, summarize)
    return jax.jit(loop, donate_argnums=0)

  def eval_loop(self, eval_step: Callable, batch_size: int) -> Callable:
    """The compiled `evaluate(params, x, mask, rng, index) -> sums`."""
    return jax.jit(_eval_body(eval_step, batch_size, self.local))

  def member_states(self, host_state: Any) -> list[Any]:
    """The members' host states: a run is one member."""
    return [host_state]

  def member_metrics(self, metrics: Any) -> list[Any]:
    """Each member's metrics from a dispatch's (a run is one member)."""
    return [metrics]


@dataclasses.dataclass(frozen=True)
class PmapLayout(JitLayout):
  """The step body under `jax.pmap(axis_name='data')` (the module doc's
  second layout): arrays carry a leading axis of this process's devices."""

  name: str = 'pmap'
  axis_name: Optional[str] = AXIS

  def put_replicated(self, tree: Any) -> Any:
    num_local = len(_local_devices(self.mesh))
    return jax.tree.map(
        lambda a: _put_stacked(np.stack([np.asarray(a)] * num_local),
                               self.mesh),
        jax.tree.map(_host_copy, tree))

  def put_sharded(self, tree: Any) -> Any:
    num_devices = self.mesh.devices.size
    rows = process_rows(num_devices)

    def put_local(a):
      a = np.asarray(a).reshape((num_devices, -1) + np.shape(a)[1:])
      return _put_stacked(a[rows], self.mesh)

    return jax.tree.map(put_local, tree)

  def get_replicated(self, tree: Any) -> Any:
    tree = jax.tree.map(lambda a: a.addressable_shards[0].data[0], tree)
    return jax.tree.map(_host_copy, tree)

  def local(self, x: jax.Array) -> jax.Array:
    """This device's contiguous rows of a global [B, ...] array computed on
    every device."""
    size = x.shape[0] // self.mesh.devices.size
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(AXIS) * size,
                                        size)

  def train_loop(self, train_step: Callable, indices_fn: Callable,
                 gather_fn: Callable, batch_size: int,
                 unroll: bool = True,
                 summarize: Callable = stacked) -> Callable:
    loop = _scan_loop(train_step, indices_fn, gather_fn, batch_size,
                      self.local, True, unroll, summarize)
    return jax.pmap(loop, axis_name=AXIS, donate_argnums=0)

  def eval_loop(self, eval_step: Callable, batch_size: int) -> Callable:
    return jax.pmap(_eval_body(eval_step, batch_size, self.local),
                    axis_name=AXIS, in_axes=(0, 0, 0, 0, None))


def scan_loop(train_step: Callable, indices_fn: Callable, gather_fn: Callable,
              batch_size: int, unroll: bool = True,
              summarize: Callable = stacked) -> Callable:
  """The uncompiled loop of one device holding the whole batch (for a
  layout of another module, `populations.PopulationLayout`)."""
  return _scan_loop(train_step, indices_fn, gather_fn, batch_size,
                    lambda x: x, False, unroll, summarize)


def create_layout(name: str, devices: Optional[list] = None) -> JitLayout:
  """The data-parallel layout `name` ('jit' or 'pmap', NAMES) over
  `devices` (all devices by default)."""
  mesh = create_mesh(devices)
  if name == 'pmap':
    return PmapLayout(mesh)
  if name == 'jit':
    return JitLayout(mesh)
  raise ValueError(f'layout {name!r}; expected one of {NAMES}')


def _eval_body(eval_step: Callable, batch_size: int,
               local: Callable) -> Callable:
  def evaluate(params, x, mask, rng, index):
    keys = local(example_keys(rng, index, batch_size))
    return eval_step(params, x, mask, keys)
  return evaluate


def run_devices(config, splits: bool = True) -> list:
  """The devices a run with `config` trains on: `jax.devices()`, or on the
  CPU, when their count is rdvae's default (`cpu_devices.use_default`),
  the first `cpu_devices.usable_count` of them (the most that divide
  train.batch_size and eval.batch_size; one when the run's work does not
  divide over devices, `splits` False)."""
  devices = jax.devices()
  if devices[0].platform != 'cpu' or jax.process_count() > 1:
    return devices
  sizes = [validation.check_positive_int(config, key)
           for key in ('train.batch_size', 'eval.batch_size')]
  return devices[:cpu_devices.usable_count(len(devices), sizes, splits)]


def validate(config, num_devices: Optional[int] = None) -> None:
  """Checks `train.parallel` and the batch sizes against the device count
  (default: `run_devices`'s)."""
  validation.check_choice(config, 'train.parallel', NAMES)
  num_devices = (len(run_devices(config)) if num_devices is None
                 else num_devices)
  check_batch_size(config, 'train.batch_size', num_devices)
  check_batch_size(config, 'eval.batch_size', num_devices)
