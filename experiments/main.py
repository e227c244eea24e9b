r"""python -m experiments.main --config=configs/mnist.py --workdir=runs/mnist

Runs one experiment: parses the flags and calls
`rdvae.train.train_and_eval(config, workdir)`. Any config key can be
overridden, e.g. `--config.objective.beta=10`; a config variant is chosen
after a colon, e.g. `--config=configs/mnist.py:smoke`.

Config keys: every key, its default and what it does is declared in
configs/default.py (the image models; configs/toy.py for the toy), with a
pointer to the module that documents each section; BUILD.md lists the
configs, their variants and what each run costs. A run ends with a summary
(R, D, ELBO, IWAE) and the path of its results.json.

Devices: all devices are used (`config.train.parallel` = 'jit' or 'pmap').
`--jax_platforms=cpu` picks the backend; `--cpu_devices=4` emulates 4 CPU
devices (it sets XLA_FLAGS before JAX starts).

Several processes (hosts of a TPU pod slice, GPUs or nodes of a cluster):
start the same command on every process with `--multihost`. It calls
`jax.distributed.initialize` (rdvae/runtime/distributed.py) with the coordinator
address (process 0's HOST:PORT), the process count and this process's id
taken from --coordinator_address, --num_processes, --process_id, else from
the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID, else from JAX's detection of the cluster (Cloud TPU, SLURM,
Open MPI). The processes train on one global batch (`train.batch_size`,
split over every process's devices) and give the same numbers as one
process with as many devices. The workdir must be one directory that every
process sees (a shared filesystem, or a bucket mounted with gcsfuse): process
0 writes config.json, metrics, TensorBoard events, images and results.json;
every process takes part in each checkpoint save. A checkpoint resumes on
any number of processes and devices. Launch recipes: docs/multiprocess.md.
On two local CPU processes, e.g.

  JAX_COORDINATOR_ADDRESS=127.0.0.1:12345 JAX_NUM_PROCESSES=2 \
  JAX_PROCESS_ID=0 python -m experiments.main --multihost --cpu_devices=2 \
      --jax_platforms=cpu --config=configs/mnist.py:smoke --workdir=runs/mp &
  (the same with JAX_PROCESS_ID=1)

Errors: a bad flag, config file, config value, data file or workdir (one
holding another config, a damaged config.json or results.json, one that
cannot be written) prints one line (no traceback) and exits with status 2,
before anything is written; SIGTERM or SIGINT (Ctrl-C) in any phase prints
one line saying what was kept and exits with status 75 (in training after a
checkpoint; rerun to resume); see experiments/cli.py. The other statuses are
listed in rdvae/runtime/preemption.py. A bug still shows its traceback.

Compiled programs are kept in a persistent cache (rdvae/runtime/compilation.py;
`--compilation_cache=DIR` or `off`). `--dry_run [--backend=gpu]` prints the
train settings the backend would get (rdvae/runtime/backends.py) and exits; it needs
no such device.
"""

import os

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli
from rdvae.runtime import distributed

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (configs/*.py[:variant]); '
    'override any key with --config.<section>.<key>=<value>. Every key is '
    'declared and explained in configs/default.py (see also BUILD.md).',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the run.')
_PLATFORMS = flags.DEFINE_string(
    'jax_platforms', None, 'JAX backends to use, e.g. "cpu".')
_CPU_DEVICES = flags.DEFINE_integer('cpu_devices', 0, cli.CPU_DEVICES_HELP)
_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Train across processes: call '
    'jax.distributed.initialize() first.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'With --multihost: HOST:PORT of process 0 '
    '(default: $JAX_COORDINATOR_ADDRESS or the cluster\'s).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'With --multihost: the number of processes '
    '(default: $JAX_NUM_PROCESSES or the cluster\'s).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'With --multihost: this process\'s id, 0 .. '
    'num_processes - 1 (default: $JAX_PROCESS_ID or the cluster\'s).')
_COMPILATION_CACHE = flags.DEFINE_string(
    'compilation_cache', None,
    'Persistent compilation cache directory, or "off" (default: '
    '$RDVAE_COMPILATION_CACHE, else ~/.cache/rdvae/jax).')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'Print the train settings chosen for the backend '
    '(train.scan_unroll, train.steps_per_dispatch, model.pseudo_input_batch) '
    'and exit.')
_BACKEND = flags.DEFINE_string(
    'backend', None, 'With --dry_run: the backend to choose for (cpu, gpu, '
    'tpu), without needing one; default: JAX\'s default backend.')
flags.mark_flag_as_required('config')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _DRY_RUN.value:
    from rdvae.runtime import backends  # pylint: disable=g-import-not-at-top
    backend = _BACKEND.value
    if not backend:
      import jax  # pylint: disable=g-import-not-at-top
      backend = jax.default_backend()
    try:
      print(backends.describe(backends.resolve(_CONFIG.value, backend)))
    except ValueError as e:
      cli.report(e)
    return
  if _BACKEND.value:
    raise app.UsageError('--backend only names a backend for --dry_run; '
                         'use --jax_platforms to pick the one to run on')
  if not _WORKDIR.value:
    raise app.UsageError('--workdir is required (except with --dry_run)')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  process_flags = (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID)
  given = [f'--{f.name}' for f in process_flags if f.value is not None]
  if given and not _MULTIHOST.value:
    raise app.UsageError(f'{", ".join(given)} is only for --multihost')
  if _MULTIHOST.value:
    try:  # the values are checked before JAX starts
      distributed.settings(*(f.value for f in process_flags))
    except ValueError as e:
      raise app.UsageError(str(e)) from None
  cli.use_cpu_devices(_CPU_DEVICES.value)
  import jax  # pylint: disable=g-import-not-at-top
  if _PLATFORMS.value:
    jax.config.update('jax_platforms', _PLATFORMS.value)
  if _MULTIHOST.value:
    distributed.initialize(*(f.value for f in process_flags))
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  from rdvae.files import run_files  # pylint: disable=g-import-not-at-top
  compilation.setup(_COMPILATION_CACHE.value)
  finished_before = os.path.exists(
      os.path.join(_WORKDIR.value, run_files.RESULTS_FILE))
  results = train.train_and_eval(_CONFIG.value, _WORKDIR.value)
  if jax.process_index() == 0:
    print(run_files.summary(_WORKDIR.value, results, finished_before),
          flush=True)


def _kept() -> str:
  """What a signal outside the training loop leaves (see experiments.cli)."""
  from rdvae.files import run_files  # pylint: disable=g-import-not-at-top
  workdir = _WORKDIR.value if flags.FLAGS.is_parsed() else None
  if not workdir or not os.path.isfile(
      os.path.join(workdir, run_files.CONFIG_FILE)):
    return 'nothing was written; run the same command again to start'
  if os.path.isfile(os.path.join(workdir, run_files.RESULTS_FILE)):
    return f'the run in {workdir!r} is complete (results.json)'
  return (f'{workdir!r} keeps config.json, the metrics and every checkpoint '
          'saved; results.json (written last) is not there yet; run the '
          'same command again to resume')


if __name__ == '__main__':
  cli.run(main, _kept)
