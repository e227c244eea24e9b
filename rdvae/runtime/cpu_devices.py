"""Emulated CPU devices for the data-parallel paths on one machine.

XLA can present one CPU as N devices (`--xla_force_host_platform_device_count`),
so the jit-sharded and pmap paths run without accelerators. The N devices
share the cores: on a loaded machine one device can reach a collective (the
gradient all-reduce) long after the others, and XLA:CPU ends the process
(SIGABRT) when a collective waits past its termination timeout. Emulated
devices therefore get a 10-minute collective timeout.

The flags are read when JAX starts its CPU backend, so `use_emulated_devices`
must run before the first `jax.devices()` or computation. This module does not
import JAX.
"""

import os

COLLECTIVE_TIMEOUT_SECONDS = 600


def xla_flags(num_devices: int) -> str:
  """XLA_FLAGS for `num_devices` emulated CPU devices."""
  if not isinstance(num_devices, int) or num_devices < 1:
    raise ValueError(f'num_devices={num_devices!r} must be a positive int')
  timeout = COLLECTIVE_TIMEOUT_SECONDS
  return (f'--xla_force_host_platform_device_count={num_devices} '
          f'--xla_cpu_collective_call_terminate_timeout_seconds={timeout} '
          f'--xla_cpu_collective_timeout_seconds={timeout}')


def use_emulated_devices(num_devices: int) -> None:
  """Appends `xla_flags(num_devices)` to the XLA_FLAGS environment variable."""
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' '
                             + xla_flags(num_devices)).strip()
