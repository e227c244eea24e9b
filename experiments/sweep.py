r"""python -m experiments.sweep --sweep=configs/sweeps/NAME.py --workdir=DIR

Runs every point of a sweep file (configs/sweeps/*.py: get_config() and
get_sweep(), see rdvae/sweeps/runner.py) in DIR/<point name>/ through
`rdvae.train_and_eval`, --workers points at a time, and keeps
DIR/summary.csv (name, swept keys, status, test rate, distortion, elbo, iwae,
error) up to date after each point. Every point's config is validated before
any runs.

A point's status is done, failed (the error's type and message in
summary.csv), damaged (one of its files is there but unreadable or
incomplete: summary.csv names the file and what is wrong; such a point is
not run until the file is removed), running or pending.

  --config.<key>=<value>  overrides the base config of every point, e.g.
                          --config.train.num_steps=100 (as in
                          experiments.main)
  --retry_failed          also rerun the points recorded as failed
  --dry_run               list the points (status, name and any error)
                          after the checks, and run nothing
  --nowait                exit when the only points left are held by other
                          runners, instead of waiting to take over any whose
                          runner dies
  --population=auto|on|off  train points that share a program as one
                          vmapped population (auto: for the toy;
                          see rdvae/sweeps/runner.py)
  --workers=N             run N runner processes at once, each with its
                          share of the cores, printing one line per point
                          and one summary (rdvae/sweeps/workers.py); the
                          default is one per core when the points run on the
                          CPU, else 1 (this process runs the points itself)
  --jax_platforms, --cpu_devices  as in experiments.main

Rerunning the command resumes: finished points are skipped, interrupted ones
resume from their checkpoints, failed ones (DIR/<point>/failure.json) are
skipped unless --retry_failed. Several runners may share DIR (e.g. one per
GPU: CUDA_VISIBLE_DEVICES=0 and 1): each point is trained by one of them.
Exits with status 0, 1 when some points are failed or damaged, 2 for a bad
flag, sweep file or sweep directory (one line, nothing run), 75 when SIGTERM
or SIGINT stopped the runner, in a point or between points (one line saying
what was kept; rdvae/runtime/preemption.py, experiments/cli.py).
"""

import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from experiments import cli
from rdvae.sweeps import workers

# The command line as typed (the runners of --workers run it again).
_COMMAND_LINE: list[str] = []

# The sweep file is also the base config (it has get_config()); defining it
# as a config file flag gives the --config.<key>=<value> overrides. --sweep
# is the name users type; `_argv` passes its value to --config as well.
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Set through --sweep; takes the --config.* overrides.',
    lock_config=True)
_SWEEP = flags.DEFINE_string('sweep', None,
                             'Sweep file (configs/sweeps/NAME.py).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory of the sweep.')
_RETRY_FAILED = flags.DEFINE_bool('retry_failed', False,
                                  'Rerun the points recorded as failed.')
_DRY_RUN = flags.DEFINE_bool(
    'dry_run', False, 'List the points and their status; run nothing.')
_WAIT = flags.DEFINE_bool(
    'wait', True, 'Wait for points other runners hold (and take over any '
    'whose runner dies) before exiting.')
_POLL_SECONDS = flags.DEFINE_float(
    'poll_seconds', 10.0, 'How often a waiting runner looks again.')
_POPULATION = flags.DEFINE_enum(
    'population', 'auto', ['auto', 'on', 'off'],
    'Train points that share a program as one population (auto: the toy; '
    'image models train one at a time).')
_PLATFORMS = flags.DEFINE_string(
    'jax_platforms', None, 'JAX backends to use, e.g. "cpu".')
_CPU_DEVICES = flags.DEFINE_integer('cpu_devices', 0, cli.CPU_DEVICES_HELP)
_WORKERS = flags.DEFINE_integer(
    'workers', None, 'Runner processes at once, each with its share of the '
    'cores (default: one per core on the CPU, else 1).')
flags.register_validator(
    'workers', lambda value: value is None or value >= 1,
    message='expected a number of runner processes >= 1')
flags.mark_flags_as_required(['sweep', 'workdir'])


def _argv(argv: list[str]) -> list[str]:
  """`argv` with --config=<the --sweep file> first, so the --config.*
  overrides apply to the sweep's base config."""
  if any(re.match(r'^--?config(=|$)', a) for a in argv[1:]):
    raise ValueError('pass the sweep file as --sweep=PATH, not --config')
  for i, arg in enumerate(argv[1:], 1):
    match = re.match(r'^--?sweep(=(.*))?$', arg)
    if match:
      path = match.group(2) if match.group(1) else (
          argv[i + 1] if i + 1 < len(argv) else '')
      return [argv[0], f'--config={path}', *argv[1:]]
  return argv


def main(argv):
  worker = workers.this_worker()
  if worker is not None:
    workers.die_with_parent(worker.parent)
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:  # orbax logs every file at INFO
    logging.set_verbosity(logging.WARNING)
  if os.path.exists(_WORKDIR.value) and not os.path.isdir(_WORKDIR.value):
    raise app.UsageError(f'--workdir={_WORKDIR.value!r} is a file; expected '
                         'the sweep directory')
  count = _WORKERS.value or workers.default_count(_PLATFORMS.value)
  if worker is not None or count == 1 or _DRY_RUN.value:  # this one trains
    cli.use_cpu_devices(_CPU_DEVICES.value)
  import jax  # pylint: disable=g-import-not-at-top
  if _PLATFORMS.value:
    jax.config.update('jax_platforms', _PLATFORMS.value)
  from rdvae.runtime import preemption  # pylint: disable=g-import-not-at-top
  from rdvae.files import sweep_files  # pylint: disable=g-import-not-at-top
  from rdvae.sweeps import runner  # pylint: disable=g-import-not-at-top
  from rdvae.sweeps import sweep_file  # pylint: disable=g-import-not-at-top
  from rdvae import validation  # pylint: disable=g-import-not-at-top
  overrides = config_flags.get_override_values(flags.FLAGS['config'])
  status = 0
  try:
    if _DRY_RUN.value:
      points = sweep_file.expand(_SWEEP.value, overrides)
      keys = [runner.population_key(p, _POPULATION.value) for p in points]
      runner.check_workdir(_WORKDIR.value, points)
      for row in runner.summarise(_WORKDIR.value, points):
        print(_listing(row))
      groups = len({k for k in keys if k is not None})
      alone = sum(k is None for k in keys)
      print(f'{len(points)} points, every config valid; '
            f'{len(points) - alone} in {groups} group(s) that train as '
            f'populations, {alone} alone (--population={_POPULATION.value})',
            flush=True)
      return 0
    if worker is None and count > 1:
      rows, status = _run_workers(count, overrides)
    else:
      rows = runner.run(_SWEEP.value, _WORKDIR.value, overrides=overrides,
                        retry_failed=_RETRY_FAILED.value, wait=_WAIT.value,
                        poll_seconds=_POLL_SECONDS.value,
                        population=_POPULATION.value,
                        runners=worker.count if worker else 1)
  except validation.ConfigError as e:  # a bad sweep: the message says it all
    print(f'FATAL: {e}', file=sys.stderr, flush=True)
    return preemption.EXIT_USAGE
  except preemption.Preempted as e:  # the point checkpointed; rerun to resume
    print(f'[sweep] {e}', file=sys.stderr, flush=True)
    return preemption.EXIT_PREEMPTED
  except OSError as e:  # e.g. a read-only file system
    if e.filename is None or not str(e.filename).startswith(_WORKDIR.value):
      raise
    print(f'FATAL: the sweep directory {_WORKDIR.value!r} cannot be written '
          f'({e.strerror}: {e.filename!r}); choose a writable --workdir',
          file=sys.stderr, flush=True)
    return preemption.EXIT_USAGE
  for row in rows:
    if row['status'] == 'damaged':
      print(f'[sweep] {_listing(row)}', flush=True)
  counts = {s: sum(r['status'] == s for r in rows) for s in runner.STATUSES}
  print('[sweep] ' + ', '.join(f'{n} {s}' for s, n in counts.items())
        + f'; see {_WORKDIR.value}/{sweep_files.SUMMARY_FILE}', flush=True)
  if status:
    return status
  return 1 if counts['failed'] or counts['damaged'] else 0


def _run_workers(count: int, overrides: dict) -> tuple[list[dict], int]:
  """Checks the sweep, runs up to `count` runner processes of this command
  (rdvae/sweeps/workers.py) and returns the summary rows and an exit status
  (0 unless a runner ended abnormally: its status, its last lines shown on
  stderr, or 75 when a runner was stopped and points are left)."""
  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import preemption
  from rdvae.sweeps import runner
  # pylint: enable=g-import-not-at-top
  workdir = _WORKDIR.value
  points, _ = runner.prepare(_SWEEP.value, workdir, overrides,
                             _POPULATION.value)
  statuses = [r['status'] for r in runner.summarise(workdir, points)]
  failed = statuses.count('failed') if _RETRY_FAILED.value else 0
  count = min(count, statuses.count('pending') + statuses.count('running')
              + failed)
  share = workers.cores_per_worker(count) if count else 0
  print(f'[sweep] {len(points)} points in {workdir}; {count} runners of '
        f'{share} core(s) each', flush=True)
  ended = []
  if count:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [root] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    try:
      ended = workers.supervise(
          [sys.executable, '-m', 'experiments.sweep', *_COMMAND_LINE[1:]],
          count, [p.name for p in points], env=env)
    except preemption.Interrupted:
      runner.write_summary(workdir, points)  # the stopped points: pending
      raise
  status = 0
  for end in ended:
    if end.abnormal():
      print(f'[sweep] runner {end.index} (pid {end.pid}) ended with status '
            f'{end.status}; its last lines:', file=sys.stderr, flush=True)
      for line in end.tail:
        print(f'  {line}', file=sys.stderr, flush=True)
      status = status or (end.status if end.status > 0 else 1)
  rows = runner.write_summary(workdir, points)
  stopped = any(e.status == preemption.EXIT_PREEMPTED for e in ended)
  if not status and stopped and any(
      r['status'] in ('pending', 'running') for r in rows):
    print('[sweep] a runner was stopped before the sweep ended; run the same '
          'command again to resume', file=sys.stderr, flush=True)
    status = preemption.EXIT_PREEMPTED
  return rows, status


def _listing(row: dict) -> str:
  """A summary row as 'status name' (and ': error' for a failed or damaged
  point)."""
  text = f'{row["status"]:8} {row["name"]}'
  return f'{text}: {row["error"]}' if row.get('error') else text


def _kept() -> str:
  """What a signal outside a point's training leaves (see experiments.cli)."""
  workdir = _WORKDIR.value if flags.FLAGS.is_parsed() else None
  if not workdir or not os.path.isdir(workdir):
    return 'nothing was written; run the same command again to start'
  return (f'{workdir!r} keeps every finished point and the checkpoints of '
          'the others (no point is recorded as failed); run the same '
          'command again to resume')


def _parse_flags(argv: list[str]) -> list[str]:
  return cli.parse_flags(argv, shown_as='--sweep',
                         example='configs/sweeps/toy_rd.py')


if __name__ == '__main__':
  _COMMAND_LINE[:] = sys.argv
  try:
    sys.argv = _argv(sys.argv)
  except ValueError as e:
    cli.fail(f'FATAL Flags parsing error: {e}')
  cli.run(main, _kept, _parse_flags)
