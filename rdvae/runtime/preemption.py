"""How a run stops early: on a signal, and the exit statuses that say why.

Schedulers of preemptible TPU/GPU machines send SIGTERM some seconds before
they take a machine back, and Ctrl-C sends SIGINT. Inside `SignalWatch` both
only set a flag; the training loop (`train.train_and_eval`) looks at it after
every dispatch, writes a checkpoint at the step reached, flushes the metrics
and raises `Preempted`. `python -m experiments.main` turns that into the exit
status `EXIT_PREEMPTED`, which a sweep runner or shell script can tell from a
failure; running the same command again resumes from that step. A second
signal while the first is being handled restores the previous handler and
delivers the signal again (a second Ctrl-C stops at once).

Exit statuses of `python -m experiments.main`:

  0                the run finished (results.json written);
  1                a bug or an unexpected failure (with its traceback);
  EXIT_USAGE       a bad config value, data file or workdir (the message
                   alone, naming the key or file; nothing was written);
  EXIT_NONFINITE   training produced NaN/inf (`train.nonfinite`); the last
                   checkpoint holds the last good state;
  EXIT_CORRUPT     no checkpoint of the workdir could be restored;
  EXIT_PREEMPTED   stopped by SIGTERM/SIGINT (Ctrl-C too) in any phase: in
                   training after saving a checkpoint, elsewhere with what
                   was kept (`StopOnSignal`); rerun to resume.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

EXIT_USAGE = 2
EXIT_NONFINITE = 3
EXIT_CORRUPT = 4
EXIT_PREEMPTED = 75  # EX_TEMPFAIL of sysexits.h: "try again later"

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
  """The run stopped on a signal after checkpointing `step`."""

  def __init__(self, signum: Optional[int], step: int, workdir: str):
    # signum is None on a process that stopped because another one was
    # signalled (runs across processes stop together).
    self.signum, self.step, self.workdir = signum, step, workdir
    cause = (signal.Signals(signum).name if signum is not None
             else "another process's signal")
    super().__init__(
        f'stopped by {cause} at step {step} after '
        f'saving a checkpoint in {workdir!r}; run the same command again to '
        'resume')


class SignalWatch:
  """A context in which SIGTERM and SIGINT set `received` instead of
  stopping the process; the previous handlers come back on exit.

  Outside the main thread (where Python cannot install handlers) it watches
  nothing and `received` stays None.
  """

  def __init__(self, signals: tuple[int, ...] = SIGNALS,
               pass_on: bool = False):
    # pass_on: a signal received but not acted on when the context ends
    # normally is raised again for the handler outside (`StopOnSignal`).
    self._signals, self._pass_on = signals, pass_on
    self._previous: dict[int, object] = {}
    self.received: Optional[int] = None

  def _handle(self, signum, frame):
    if self.received is not None:  # a second signal: do what it did before
      self._restore()
      signal.raise_signal(signum)
      return
    del frame
    self.received = signum
    print(f'received {signal.Signals(signum).name}: finishing the current '
          'dispatch, then checkpointing and stopping', flush=True)

  def _restore(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def __enter__(self) -> 'SignalWatch':
    if threading.current_thread() is threading.main_thread():
      for signum in self._signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, exc_type, *exc) -> None:
    self._restore()
    if self._pass_on and self.received is not None and exc_type is None:
      signal.raise_signal(self.received)


class Interrupted(BaseException):
  """SIGTERM or SIGINT outside the training loop's `SignalWatch` (a
  BaseException, like KeyboardInterrupt, so that no `except Exception` in
  a library or a sweep's failure record takes it for an error)."""

  def __init__(self, signum: int):
    self.signum = signum
    super().__init__(f'stopped by {signal.Signals(signum).name}')


class StopOnSignal(SignalWatch):
  """A context in which SIGTERM and SIGINT raise `Interrupted` where the
  program is (between Python bytecodes: a compiled call runs to its end
  first), for the entry points to turn into one line and EXIT_PREEMPTED.
  Files that must not be half-written are written atomically (results.json
  last, checkpoints by orbax's rename, the compilation cache by
  `runtime.compilation`). The training loop's `SignalWatch` takes over
  inside it. The first signal restores the previous handlers, so a second
  one does what it did before (a second Ctrl-C stops at once)."""

  def _handle(self, signum, frame):
    del frame
    self._restore()
    raise Interrupted(signum)

  def __exit__(self, *exc) -> None:
    self._restore()
