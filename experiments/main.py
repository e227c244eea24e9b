r"""python -m experiments.main --config=configs/mnist.py --workdir=runs/mnist

Runs one experiment: parses the flags and calls
`rdvae.train.train_and_eval(config, workdir)`. Any config key can be
overridden, e.g. `--config.objective.beta=10`; a config variant is chosen
after a colon, e.g. `--config=configs/mnist.py:smoke`.

Devices: all local devices are used (`config.train.parallel` = 'jit' or
'pmap'). `--jax_platforms=cpu` picks the backend; `--cpu_devices=4` emulates
4 CPU devices (it sets XLA_FLAGS before JAX starts). On several hosts, pass
`--multihost` on every process: it calls `jax.distributed.initialize()`
(coordinator address, process count and id come from the cluster
environment, e.g. SLURM or Cloud TPU, or from JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID).

Compiled programs are kept in a persistent cache (rdvae/compilation.py;
`--compilation_cache=DIR` or `off`). `--dry_run [--backend=gpu]` prints the
train settings the backend would get (rdvae/backends.py) and exits; it needs
no such device.
"""

import json

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rdvae import cpu_devices

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (configs/*.py[:variant]).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the run.')
_PLATFORMS = flags.DEFINE_string(
    'jax_platforms', None, 'JAX backends to use, e.g. "cpu".')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 0, 'Emulate this many CPU devices (0: leave as is).')
_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Call jax.distributed.initialize() first.')
_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None,
    'Persistent compilation cache directory, or "off" (default: '
    '$RDVAE_COMPILATION_CACHE, else ~/.cache/rdvae/jax).')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Print the train settings chosen for the backend '
    '(train.scan_unroll, train.steps_per_dispatch) and exit.')
_BACKEND = flags.DEFINE_string(
    'backend', None, 'With --dry_run: the backend to choose for (cpu, gpu, '
    'tpu), without needing one; default: JAX\'s default backend.')
flags.mark_flag_as_required('config')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _DRY_RUN.value:
    from rdvae import backends  # pylint: disable=g-import-not-at-top
    backend = _BACKEND.value
    if not backend:
      import jax  # pylint: disable=g-import-not-at-top
      backend = jax.default_backend()
    print(backends.describe(backends.resolve(_CONFIG.value, backend)))
    return
  if _BACKEND.value:
    raise app.UsageError('--backend only names a backend for --dry_run; '
                         'use --jax_platforms to pick the one to run on')
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required (except with --dry_run)')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  if _CPU_DEVICES.value:
    cpu_devices.use_emulated_devices(_CPU_DEVICES.value)
  import jax  # pylint: disable=g-import-not-at-top
  if _PLATFORMS.value:
    jax.config.update('jax_platforms', _PLATFORMS.value)
  if _MULTIHOST.value:
    jax.distributed.initialize()
  from rdvae import compilation  # pylint: disable=g-import-not-at-top
  from rdvae import train  # pylint: disable=g-import-not-at-top
  compilation.setup(_COMPILATION_CACHE.value)
  results = train.train_and_eval(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print(json.dumps(results, indent=2, sort_keys=True, default=str))


if __name__ == '__main__':
  app.run(main)
