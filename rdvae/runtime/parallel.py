"""Data parallelism over the local devices: one step body, two wrappers.

`jit` mode (the default): the program is global. A 1-d mesh with axis 'data'
spans all devices; the training state and the device-resident training split
are replicated, the batch and its per-example keys are sharded along 'data'
by a sharding constraint, and XLA inserts the gradient all-reduce. The state
argument is donated, so an update reuses its buffers.

`pmap` mode: the same step body under `jax.pmap(axis_name='data')`. Every
device computes the global batch indices and keys from (seed, step) and takes
its own contiguous slice, so device d sees examples [d B/D, (d+1) B/D) just as
it does under the jit sharding; the objective's batch means are psum'ed over
'data' (`objectives.loss_fn(..., axis_name='data')`), each device
differentiates them through its own examples only (`objectives.batch_mean`),
and the gradients are summed, so both modes take the same gradient.

In both modes `steps_per_dispatch` updates run inside one `lax.scan` per
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

from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rdvae import validation

AXIS = 'data'
MODES = ('jit', 'pmap')


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


def put_replicated(tree: Any, mesh: Mesh, mode: str = 'jit') -> Any:
  """Copies a host or device pytree onto every device of the mesh.

  jit: global arrays with a replicated sharding; pmap: arrays with a leading
  axis over this process's devices.
  """
  if mode == 'pmap':
    num_local = len(_local_devices(mesh))
    return jax.tree.map(
        lambda a: _put_stacked(np.stack([np.asarray(a)] * num_local), mesh),
        get_replicated(tree))
  sharding = replicated(mesh)

  def put(a):
    a = np.asarray(_host_copy(a))
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

  return jax.tree.map(put, tree)


def put_sharded(tree: Any, mesh: Mesh, mode: str = 'jit') -> Any:
  """Splits the leading (batch) axis of a host pytree over the devices.

  Every process passes the same global batch. jit: global arrays sharded
  along 'data' (each process transfers its devices' rows only); pmap:
  [D_local, B/D, ...] arrays of this process's devices' rows.
  """
  num_devices = mesh.devices.size
  if mode == 'pmap':
    local = process_slice(num_devices)

    def put_local(a):
      rows = np.asarray(a).reshape((num_devices, -1) + np.shape(a)[1:])
      return _put_stacked(rows[local], mesh)

    return jax.tree.map(put_local, tree)
  sharding = batch_sharded(mesh)

  def put(a):
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

  return jax.tree.map(put, tree)


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


def get_replicated(tree: Any, mode: str = 'jit') -> Any:
  """The host copy of a replicated pytree (a local device's copy under
  pmap, a locally held shard of a global array under jit)."""
  if mode == 'pmap':
    tree = jax.tree.map(lambda a: a.addressable_shards[0].data[0], tree)
  return jax.tree.map(_host_copy, tree)


def process_slice(global_batch_size: int) -> slice:
  """The rows of a global batch that belong to this process: the devices of
  the mesh, like `jax.devices()`, are ordered by process."""
  per_process = global_batch_size // jax.process_count()
  start = jax.process_index() * per_process
  return slice(start, start + per_process)


def _local(x: jax.Array, mode: str, mesh: Mesh) -> jax.Array:
  """This device's rows of a global [B, ...] array computed on every device."""
  if mode == 'pmap':
    size = x.shape[0] // mesh.devices.size
    return jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index(AXIS) * size,
                                        size)
  return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def make_train_loop(train_step: Callable, indices_fn: Callable,
                    gather_fn: Callable, batch_size: int,
                    steps_per_dispatch: int, mesh: Mesh,
                    mode: str = 'jit', unroll: bool = True) -> Callable:
  """`steps_per_dispatch` train steps per call, compiled once.

  Args:
    train_step: `training.steps.make_train_step(...)` body, built with
      axis_name='data' for pmap mode and None for jit mode.
    indices_fn: traceable `indices_fn(start_step) -> [S, B_global]` int32,
      the training examples of steps start_step .. start_step + S - 1
      (e.g. `data.batch_index_block`).
    gather_fn: traceable `gather_fn(data, indices [B]) -> x [B, ...]` from
      the device-resident split (e.g. `data.gather_batch`).
    batch_size: B_global.
    steps_per_dispatch: S, the scan length.
    mesh: from `create_mesh`.
    mode: 'jit' or 'pmap'.
    unroll: unroll the scan into straight-line code. Keep it on XLA:CPU,
      where convolutions inside a rolled loop take a path tens of times
      slower (a step of the simple family: 1.2 s unrolled, 28 s rolled);
      turn it off on GPU/TPU to compile one step body for long scans.

  Returns:
    `loop(state, data) -> (state, metrics)`, metrics stacked as [S] arrays
    (a leading device axis too under pmap). The state is donated; place it
    and `data` with `put_replicated`.
  """

  def loop(state, data):
    block = indices_fn(state.step)  # [S, B_global]

    def body(state, indices):
      if mode == 'pmap':  # gather this device's rows only
        x = gather_fn(data, _local(indices, mode, mesh))
      else:
        x = _local(gather_fn(data, indices), mode, mesh)
      keys = _local(example_keys(state.rng, state.step, batch_size),
                    mode, mesh)
      return train_step(state, x, keys)

    return jax.lax.scan(body, state, block, unroll=unroll)

  if mode == 'pmap':
    return jax.pmap(loop, axis_name=AXIS, donate_argnums=0)
  return jax.jit(loop, donate_argnums=0)


def make_eval_loop(eval_step: Callable, batch_size: int, mesh: Mesh,
                   mode: str = 'jit') -> Callable:
  """One evaluation batch per call.

  Args:
    eval_step: `evaluation.steps.make_eval_step(...)` body (axis_name='data' for pmap).
    batch_size: B_global of the evaluation batches.

  Returns:
    `evaluate(params, x, mask, rng, index) -> sums`, with x and mask placed by
    `put_sharded` and params and rng (raw key data) by `put_replicated`;
    `index` (the batch number) is folded into the keys so each batch draws
    fresh samples independently of the device layout.
  """

  def evaluate(params, x, mask, rng, index):
    keys = _local(example_keys(rng, index, batch_size), mode, mesh)
    return eval_step(params, x, mask, keys)

  if mode == 'pmap':
    return jax.pmap(evaluate, axis_name=AXIS, in_axes=(0, 0, 0, 0, None))
  return jax.jit(evaluate)


def validate(config, num_devices: Optional[int] = None) -> None:
  """Checks `train.parallel` and the batch sizes against the device count."""
  validation.check_choice(config, 'train.parallel', MODES)
  num_devices = jax.device_count() if num_devices is None else num_devices
  check_batch_size(config, 'train.batch_size', num_devices)
  check_batch_size(config, 'eval.batch_size', num_devices)


def scalar_metrics(metrics: Any, mode: str = 'jit') -> dict[str, float]:
  """Means over the scan axis of stacked step metrics, as host floats."""
  metrics = get_replicated(metrics, mode)
  return {k: float(np.mean(v)) for k, v in metrics.items()}

