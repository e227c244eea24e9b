"""What every entry point does with a user's mistake and with a signal.

A mistake (a bad flag, config file, config value, data file or directory)
prints one line naming the bad value or file and what was expected, and exits
with status 2 (`preemption.EXIT_USAGE`) before anything is written. SIGTERM
and SIGINT (Ctrl-C) in any phase (start-up, compiling, training, evaluating,
writing files, between sweep points) print one line saying what was kept and
how to resume, and exit with status 75 (`preemption.EXIT_PREEMPTED`, for
Ctrl-C too). A bug still shows its traceback.

Nothing here imports JAX: `--cpu_devices` must be applied before it starts.
Every entry point also collects garbage less often (`collect_less`).
"""

import gc
import os
import re
import sys
from typing import Callable, Optional

from absl import app
from absl import flags

from rdvae.runtime import preemption

EXIT_USAGE = preemption.EXIT_USAGE


def fail(message: str, status: int = EXIT_USAGE) -> None:
  """Prints `message` as one line on stderr and exits with `status`."""
  print(' '.join(message.split('\n')), file=sys.stderr, flush=True)
  sys.exit(status)


def expected_errors() -> tuple[type[BaseException], ...]:
  """The exceptions that are outcomes, not bugs: shown without traceback."""
  # pylint: disable=g-import-not-at-top
  from rdvae import validation
  from rdvae.files import atomic_files
  from rdvae.files import checkpointing
  from rdvae.files import run_files
  from rdvae.runtime import compilation
  # pylint: enable=g-import-not-at-top
  return (validation.ConfigError, run_files.WorkdirConflictError,
          atomic_files.DamagedFileError, FloatingPointError,
          checkpointing.NoGoodCheckpointError, preemption.Preempted,
          compilation.CacheDirectoryError)


def exit_status(error: BaseException) -> int:
  from rdvae.files import checkpointing  # pylint: disable=g-import-not-at-top
  if isinstance(error, preemption.Preempted):
    return preemption.EXIT_PREEMPTED
  if isinstance(error, FloatingPointError):
    return preemption.EXIT_NONFINITE
  if isinstance(error, checkpointing.NoGoodCheckpointError):
    return preemption.EXIT_CORRUPT
  return EXIT_USAGE


def report(error: BaseException) -> None:
  """Exits with `error`'s one line and its status (see `exit_status`)."""
  fail(f'{type(error).__name__}: {error}', exit_status(error))


# ----------------------------------------------------------------- flags


def parse_flags(argv: list[str], shown_as: str = '--config',
                example: str = 'configs/mnist.py[:variant]') -> list[str]:
  """absl's flag parsing, with every mistake one line and status 2: a bad
  flag, an unknown `--config.<key>` (which ml_collections raises as
  AttributeError), a missing config file and one that does not compile
  (`shown_as` is the flag the user typed for it)."""
  path = _config_path(argv)
  if path is not None and not os.path.isfile(path):
    what = 'a directory' if os.path.isdir(path) else 'no such file'
    fail(f'FATAL Flags parsing error: {shown_as}={path!r}: {what}; expected '
         f'a Python file, e.g. {example}')
  try:
    return flags.FLAGS(argv)
  except SyntaxError as e:
    fail(f'FATAL Flags parsing error: {shown_as}: config file '
         f'{e.filename!r}, line {e.lineno}: {e.msg}')
  except flags.Error as e:
    _flags_error(_without_config_traceback(str(e)))
  except (AttributeError, KeyError) as e:
    while e.args and isinstance(e.args[0], BaseException):
      e = e.args[0]
    _flags_error('unknown key in a --config.<key> override: ' +
                 str(e.args[0] if e.args else e))
  return []  # not reached


def _config_path(argv: list[str]) -> Optional[str]:
  """The file part of --config=PATH[:variant] in `argv`, if given."""
  for i, arg in enumerate(argv[1:], 1):
    match = re.match(r'^--?config(?:=(.*))?$', arg)
    if match:
      value = match.group(1)
      if value is None:
        value = argv[i + 1] if i + 1 < len(argv) else ''
      return value.split(':', 1)[0]
  return None


def _without_config_traceback(message: str) -> str:
  """A config file's ValueError (e.g. an unknown variant) without the
  traceback ml_collections puts in the message; other errors keep it."""
  lines = [line for line in message.splitlines() if line.strip()]
  if ('Traceback (most recent call last):' in message
      and lines[-1].startswith('ValueError: ')):
    return f'{lines[0]} {lines[-1]}'
  return message


def _flags_error(message: str) -> None:
  fail(f'FATAL Flags parsing error: {message} (see --helpshort)')


# ------------------------------------------------------------ CPU devices

CPU_DEVICES_HELP = ('Emulate this many CPU devices (0: one per core, '
                    'rdvae/runtime/cpu_devices.py; 1: one device).')


def use_cpu_devices(count: int) -> None:
  """Applies --cpu_devices before JAX starts: `count` emulated devices, or
  for 0 rdvae's default (`cpu_devices.use_default`)."""
  from rdvae.runtime import cpu_devices  # pylint: disable=g-import-not-at-top
  if count:
    try:
      cpu_devices.use_emulated_devices(count)
    except ValueError as e:
      raise app.UsageError(f'--cpu_devices={count}: {e}; expected a number '
                           'of devices > 0') from None
    return
  try:
    cpu_devices.use_default()
  except ValueError as e:
    raise app.UsageError(str(e)) from None


# ----------------------------------------------------------------- running


# CPython's default (700, 10, 10): a young collection every 700 allocations
# and a full one every 100 young ones.
GC_THRESHOLDS = (10_000, 20, 20)


def collect_less() -> None:
  """Raises the garbage collector's thresholds to GC_THRESHOLDS.

  Tracing and lowering JAX programs allocate millions of short-lived
  objects; at CPython's defaults the collector runs hundreds of times in a
  short run and its full collections walk every object of the imported
  libraries each time. Collection stays automatic, only rarer (BUILD.md,
  "Start-up").
  """
  gc.set_threshold(*GC_THRESHOLDS)


def run(main: Callable[[list[str]], Optional[int]],
        kept: Callable[[], str],
        flags_parser: Callable[[list[str]], list[str]] = parse_flags) -> None:
  """`app.run(main)` with the mistakes and signals of the module doc.

  Args:
    main: the entry point's main(argv).
    kept: says, when a signal stops the program, what it kept and how to
      resume (e.g. "the workdir 'W' keeps its checkpoints; run the same
      command again to resume").
    flags_parser: absl's flags_parser.
  """
  def guarded(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      fail(f'FATAL: {e}')
    except expected_errors() as e:
      report(e)

  collect_less()
  with preemption.StopOnSignal():
    try:
      app.run(guarded, flags_parser=flags_parser)
    except preemption.Interrupted as e:
      fail(f'{e}; {kept()}', preemption.EXIT_PREEMPTED)
