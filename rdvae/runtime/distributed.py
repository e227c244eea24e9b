"""Training across processes: JAX's multi-process runtime, set up from flags
or the environment.

One process runs per host (TPU pod slice) or per GPU or node (SLURM); every
process runs the same program. `jax.distributed.initialize` connects them to
a coordinator (process 0's address), after which `jax.devices()` lists every
process's devices and one jit-compiled program spans them all; on CPU the
cross-process collectives are JAX's default, gloo over TCP.

Where the settings come from, first match wins for each of the three:
  1. the arguments (experiments/main.py's --coordinator_address,
     --num_processes, --process_id);
  2. the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
     JAX_PROCESS_ID (JAX itself reads only the first);
  3. JAX's cluster auto-detection (Cloud TPU, SLURM, Open MPI, ...) for what
     is still unset.

After initialisation, files are written once: `is_primary()` (process 0)
writes config.json, metrics, TensorBoard events, images and results.json;
checkpoints are saved by every process together (orbax coordinates them).
`barrier` makes the other processes wait for process 0's writes.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional

import jax
from jax.experimental import multihost_utils
import numpy as np

COORDINATOR_ENV = 'JAX_COORDINATOR_ADDRESS'
NUM_PROCESSES_ENV = 'JAX_NUM_PROCESSES'
PROCESS_ID_ENV = 'JAX_PROCESS_ID'


def _int_setting(value, env_name: str, flag_name: str,
                 environ: Mapping[str, str]) -> tuple[Optional[int], str]:
  """The flag's value if set, else the environment's, as an int (or None),
  and where it came from ('--flag=value' or 'VARIABLE=value')."""
  source = f'--{flag_name}'
  if value is None and environ.get(env_name, '') != '':
    value, source = environ[env_name], env_name
  if value is None:
    return None, ''
  try:
    number = int(value)
  except (TypeError, ValueError):
    raise ValueError(f'{source}={value!r} is not an integer') from None
  if number < 0:
    raise ValueError(f'{source}={value!r} must be >= 0')
  return number, f'{source}={number}'


def settings(coordinator_address: Optional[str] = None,
             num_processes: Optional[int] = None,
             process_id: Optional[int] = None,
             environ: Optional[Mapping[str, str]] = None) -> dict:
  """The keyword arguments for `jax.distributed.initialize`.

  Arguments win over the JAX_* environment variables; what neither sets is
  None, left to JAX's cluster auto-detection.

  Raises:
    ValueError: a value is not an integer, the count is below 1, the id is
      not below the count, or the address has no port; the message names
      the flag or variable.
  """
  environ = os.environ if environ is None else environ
  address = coordinator_address or environ.get(COORDINATOR_ENV) or None
  count, count_source = _int_setting(num_processes, NUM_PROCESSES_ENV,
                                     'num_processes', environ)
  index, index_source = _int_setting(process_id, PROCESS_ID_ENV,
                                     'process_id', environ)
  if count is not None and count < 1:
    raise ValueError(f'{count_source}: the number of processes must be >= 1')
  if count is not None and index is not None and index >= count:
    raise ValueError(f'{index_source} is not below {count_source} (process '
                     f'ids run from 0 to {count - 1})')
  if address is not None and ':' not in address:
    raise ValueError(f'coordinator address {address!r} must be HOST:PORT')
  return dict(coordinator_address=address, num_processes=count,
              process_id=index)


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> None:
  """Connects this process to the others (`jax.distributed.initialize`).

  Must run before any JAX computation or `jax.devices()` call.
  """
  jax.distributed.initialize(
      **settings(coordinator_address, num_processes, process_id))


def is_primary() -> bool:
  """True on the one process that writes the run's files (process 0)."""
  return jax.process_index() == 0


def any_process(flag: bool) -> bool:
  """True when `flag` is True on any process (every process gets the same
  answer; e.g. a stop signal that reached only some of them)."""
  if jax.process_count() == 1:
    return bool(flag)
  flags = multihost_utils.process_allgather(np.asarray(flag, np.int32))
  return bool(np.max(flags))


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier `name` (no-op alone)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def primary_first(name: str, fn: Callable[..., Any], *args) -> Any:
  """Runs `fn(*args)` on process 0 while the others wait at a barrier.

  Process 0 passes the barrier even when `fn` raises (then re-raises), so
  the others go on to find what it left (e.g. check the config.json it
  refused) instead of waiting forever. Returns fn's result on process 0 and
  None on the others.
  """
  if not is_primary():
    barrier(name)
    return None
  try:
    return fn(*args)
  finally:
    barrier(name)
