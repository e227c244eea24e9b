"""CPU devices: how many the trainer uses by default, and emulating them.

XLA can present one CPU as N devices (`--xla_force_host_platform_device_count`),
so the data-parallel layouts (`runtime.parallel`) run without accelerators.
On the CPU that is also the trainer's fastest layout: XLA:CPU leaves part
of the cores idle in one training step of the paper's models, and the batch
split over one device per core keeps them busy (BUILD.md, "Both cores").
`default_count` is that number: one device per core this process may use
(its `NPROC` share under `experiments.sweep --workers`, else its CPU
affinity), at most `MAX_DEFAULT_DEVICES`; `RDVAE_CPU_DEVICES` overrides it.
A run whose batch sizes do not split over all of them uses the largest
number that divides them, and a run with a part that repeats its work on
every device (the VampPrior's pseudo-inputs) one device (`usable_count`);
a count the user asked for (`--cpu_devices`) is used as it is, or refused.

The N devices share the cores: on a loaded machine one device can reach a
collective (the gradient all-reduce) long after the others, and XLA:CPU ends
the process (SIGABRT) when a collective waits past its termination timeout.
Emulated devices therefore get a 10-minute collective timeout.

The flags are read when JAX starts its CPU backend, so `use_emulated_devices`
and `use_default` must run before the first `jax.devices()` or computation
(the commands of experiments/ call them first; a program that calls
`rdvae.train_and_eval` does so itself, or gets the devices JAX started
with). This module does not import JAX.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Iterable, Optional

COLLECTIVE_TIMEOUT_SECONDS = 600
MAX_DEFAULT_DEVICES = 8
# The default count, when set: a positive int ('1': one device, as JAX
# starts without rdvae).
ENV = 'RDVAE_CPU_DEVICES'
# Set by `use_default` to the count it chose, so that the layout may use
# fewer devices when the batch does not split (`usable_count`); cleared by
# `use_emulated_devices` (a count the user chose).
CHOSEN_ENV = 'RDVAE_DEFAULT_CPU_DEVICES'
_COUNT_FLAG = '--xla_force_host_platform_device_count'
_FLAGS = (_COUNT_FLAG, '--xla_cpu_collective_call_terminate_timeout_seconds',
          '--xla_cpu_collective_timeout_seconds')


def xla_flags(num_devices: int) -> str:
  """XLA_FLAGS for `num_devices` emulated CPU devices."""
  if not isinstance(num_devices, int) or num_devices < 1:
    raise ValueError(f'num_devices={num_devices!r} must be a positive int')
  timeout = COLLECTIVE_TIMEOUT_SECONDS
  return (f'{_COUNT_FLAG}={num_devices} '
          f'--xla_cpu_collective_call_terminate_timeout_seconds={timeout} '
          f'--xla_cpu_collective_timeout_seconds={timeout}')


def _set_flags(num_devices: int) -> None:
  kept = [f for f in os.environ.get('XLA_FLAGS', '').split()
          if f.split('=', 1)[0] not in _FLAGS]
  os.environ['XLA_FLAGS'] = ' '.join(kept + [xla_flags(num_devices)])


def use_emulated_devices(num_devices: int) -> None:
  """Makes JAX's CPU backend start with `num_devices` devices (replacing a
  count already in XLA_FLAGS), as the user asked: every run uses them all."""
  _set_flags(num_devices)
  os.environ.pop(CHOSEN_ENV, None)


def flagged_count() -> Optional[int]:
  """The device count XLA_FLAGS asks for, or None."""
  match = re.search(rf'{_COUNT_FLAG}=(\d+)', os.environ.get('XLA_FLAGS', ''))
  return int(match.group(1)) if match else None


def core_share() -> int:
  """The cores this process may use: its `NPROC` share (set for each runner
  of `experiments.sweep --workers`, and read by XLA:CPU for its thread
  pool), else its CPU affinity mask."""
  share = os.environ.get('NPROC', '')
  if share.isdigit() and int(share) > 0:
    return int(share)
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # no affinity masks on this OS
    return os.cpu_count() or 1


def default_count() -> int:
  """One device per available core, at most MAX_DEFAULT_DEVICES, or the
  count in RDVAE_CPU_DEVICES."""
  value = os.environ.get(ENV, '')
  if value:
    if not value.isdigit() or int(value) < 1:
      raise ValueError(f'{ENV}={value!r}; expected a number of devices > 0')
    return int(value)
  return min(core_share(), MAX_DEFAULT_DEVICES)


def _backend_started() -> bool:
  """Whether JAX has started its backends in this process (then the device
  count is fixed)."""
  if 'jax' not in sys.modules:
    return False
  try:
    from jax._src import xla_bridge  # pylint: disable=g-import-not-at-top
    return bool(xla_bridge._backends)  # pylint: disable=protected-access
  except (ImportError, AttributeError):
    return True


def use_default() -> int:
  """Gives JAX's CPU backend `default_count()` devices unless XLA_FLAGS
  names a count already or JAX has started; returns the count the backend
  will have (as far as XLA_FLAGS says)."""
  flagged = flagged_count()
  if flagged is not None or _backend_started():
    return flagged or 1
  count = default_count()
  if count > 1:
    _set_flags(count)
    os.environ[CHOSEN_ENV] = str(count)
  return count


def usable_count(num_devices: int, batch_sizes: Iterable[int],
                 splits: bool = True) -> int:
  """How many of `num_devices` devices a run with `batch_sizes` uses: all
  of them, unless their count was the default (`use_default`); then one
  when its work does not divide over devices (`splits` False: a part
  repeats work on every device, which would only slow it), else the
  largest count that divides every batch size."""
  if os.environ.get(CHOSEN_ENV) != str(num_devices):
    return num_devices
  if not splits:
    return 1
  sizes = [int(b) for b in batch_sizes]
  return max(d for d in range(1, num_devices + 1)
             if all(b % d == 0 for b in sizes))
