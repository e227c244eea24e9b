"""Several runners of one sweep started and watched by one process.

`experiments.sweep --workers=N` checks the sweep once, then starts N runner
processes (`supervise`), the same command with `ENV` set, which share the
points through the claims of `rdvae.sweeps.claims` exactly as runners
started by hand do. The starting process (the parent):

  - gives each runner its share of the cores: `worker_environment` sets
    NPROC, which XLA:CPU sizes its thread pools by (when unset, by the
    process's CPU affinity mask), and the usual thread counts of BLAS and
    OpenMP libraries, to cores // N (at least 1). Measured with jaxlib
    0.10.2 on 2 cores: one `tf_XLAEigen` thread with NPROC=1 (or with the
    affinity mask cut to one core) against two without it; the flag
    `--xla_cpu_multi_thread_eigen=false` leaves two. Runners are not pinned
    to cores: on a machine shared with other work the kernel places them;
  - prints one line per point: of each runner's output only the lines that
    report a point (`[sweep] <point name>: ...`, `is_point_line`) pass
    through, whole; the rest is kept (its last `TAIL_LINES` lines) and shown
    only for a runner that ended abnormally;
  - forwards SIGTERM and SIGINT: a signal to the parent (Ctrl-C included:
    runners run in a process group of their own, so the terminal's SIGINT
    reaches the parent alone) is sent once to every runner, which
    checkpoints and exits 75 as a lone runner does; the parent then raises
    `Interrupted` for the entry point's one line. Runners stay in the
    parent's session, so where the kernel groups a session's processes for
    scheduling (autogroup) the sweep keeps one group's share of a busy
    machine, whatever N;
  - takes its runners with it: a runner dies with its parent
    (`die_with_parent`: PR_SET_PDEATHSIG on Linux, a watching thread
    elsewhere), so a SIGKILLed parent leaves no runner behind, and its
    points' flocks are free at once for the rerun.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Mapping, Optional, Sequence, TextIO

from rdvae.runtime import preemption

# Set in a runner's environment: '<parent pid>,<index>,<count>'.
ENV = 'RDVAE_SWEEP_WORKER'
# The thread-count variables a runner's share of the cores goes into; NPROC
# is XLA:CPU's (xla/pjrt/utils.cc, DefaultThreadPoolSize).
THREAD_VARIABLES = ('NPROC', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
                    'MKL_NUM_THREADS')
TAIL_LINES = 40
_PR_SET_PDEATHSIG = 1
# Popen's arguments that start a runner in a process group of its own.
_OWN_PROCESS_GROUP = ({'process_group': 0} if sys.version_info >= (3, 11)
                      else {'preexec_fn': os.setpgrp})


@dataclasses.dataclass(frozen=True)
class Worker:
  """Who this runner is: its parent's pid, its index and how many there are."""
  parent: int
  index: int
  count: int


def this_worker() -> Optional[Worker]:
  """The `Worker` this process was started as (from `ENV`), or None."""
  value = os.environ.get(ENV)
  if not value:
    return None
  try:
    parent, index, count = (int(v) for v in value.split(','))
  except ValueError:
    raise ValueError(f'{ENV}={value!r}; expected "<parent pid>,<index>,'
                     '<count>" (set by experiments.sweep --workers)') from None
  return Worker(parent, index, count)


def available_cores() -> int:
  """The cores this process may run on (its affinity mask where known)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # no affinity masks on this OS
    return os.cpu_count() or 1


def cores_per_worker(count: int, cores: Optional[int] = None) -> int:
  """Each of `count` runners' share of `cores` (default: this process's)."""
  cores = available_cores() if cores is None else cores
  return max(1, cores // count)


def default_count(platforms: Optional[str]) -> int:
  """The default --workers: one runner per core when the points run on the
  CPU (`platforms`, the --jax_platforms value, or JAX_PLATFORMS, is 'cpu',
  or no accelerator plugin of JAX is installed), else 1 (one runner per
  accelerator is started by hand, e.g. with CUDA_VISIBLE_DEVICES)."""
  platforms = platforms or os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    on_cpu = platforms.split(',')[0].strip().lower() == 'cpu'
  else:
    on_cpu = not _accelerator_plugin_installed()
  return available_cores() if on_cpu else 1


def _accelerator_plugin_installed() -> bool:
  """Whether JAX finds a GPU or TPU plugin here (without starting JAX)."""
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  if importlib.metadata.entry_points(group='jax_plugins'):
    return True
  return any(importlib.util.find_spec(name) is not None
             for name in ('libtpu', 'jax_plugins'))


def worker_environment(index: int, count: int, cores: Optional[int] = None,
                       base: Optional[Mapping[str, str]] = None
                       ) -> dict[str, str]:
  """The environment of runner `index` of `count`: `base` (default: this
  process's) with `ENV`, the thread counts of its share of the cores and
  unbuffered output."""
  share = str(cores_per_worker(count, cores))
  env = dict(os.environ if base is None else base)
  env.update({name: share for name in THREAD_VARIABLES})
  env[ENV] = f'{os.getpid()},{index},{count}'
  env['PYTHONUNBUFFERED'] = '1'
  return env


def die_with_parent(parent: int) -> None:
  """Makes this process end (SIGKILL) when process `parent`, which started
  it, ends; ends it now if `parent` is gone already."""
  if sys.platform.startswith('linux'):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
      raise OSError(ctypes.get_errno(), 'prctl(PR_SET_PDEATHSIG) failed')
  else:
    def watch():
      while os.getppid() == parent:
        time.sleep(1.0)
      os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True, name='parent watch').start()
  if os.getppid() != parent:  # it died before the line above
    os.kill(os.getpid(), signal.SIGKILL)


def is_point_line(line: str, names: Sequence[str]) -> bool:
  """Whether `line` reports one of the points `names` ('[sweep] NAME: ...')."""
  if not line.startswith('[sweep] '):
    return False
  name, colon, _ = line[len('[sweep] '):].partition(': ')
  return bool(colon) and name in names


@dataclasses.dataclass
class Ended:
  """A runner that ended: its index, pid, exit status (negative: killed by
  that signal) and its last lines that were not point lines."""
  index: int
  pid: int
  status: int
  tail: list[str]

  def abnormal(self) -> bool:
    """Ended other than done (0), with failed points (1) or stopped (75)."""
    return self.status not in (0, 1, preemption.EXIT_PREEMPTED) or any(
        line.startswith('Traceback') for line in self.tail)


def supervise(command: Sequence[str], count: int, names: Sequence[str],
              out: TextIO = sys.stdout,
              env: Optional[Mapping[str, str]] = None) -> list[Ended]:
  """Runs `count` runners of `command` to their end (see the module doc).

  Args:
    command: the runner's command line (argv).
    count: how many runners.
    names: the sweep's point names (their lines are printed to `out`).
    out: where point lines go.
    env: the runners' environment before `worker_environment` (default:
      this process's).

  Returns:
    How each runner ended, in the order of their indices.

  Raises:
    preemption.Interrupted: on SIGTERM or SIGINT, once every runner has
      stopped (see the module doc).
  """
  output = _Output(count, names, out)
  procs: list[subprocess.Popen] = []
  try:
    try:
      for index in range(count):
        procs.append(subprocess.Popen(
            list(command), env=worker_environment(index, count, base=env),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors='replace',
            **_OWN_PROCESS_GROUP))
        output.read(index, procs[-1].stdout)
      output.relay()
    except preemption.Interrupted as stop:
      for proc in procs:
        if proc.poll() is None:
          proc.send_signal(stop.signum)
      output.relay()
      for proc in procs:
        proc.wait()
      raise
    return [Ended(i, p.pid, p.wait(), list(output.tails[i]))
            for i, p in enumerate(procs)]
  finally:
    for proc in procs:  # only after an unexpected error or a second signal
      if proc.poll() is None:
        proc.kill()
        proc.wait()


class _Output:
  """The runners' output: point lines printed whole, the others kept."""

  def __init__(self, count: int, names: Sequence[str], out: TextIO):
    self.tails = [collections.deque(maxlen=TAIL_LINES) for _ in range(count)]
    self._names, self._out = frozenset(names), out
    self._lines: queue.Queue = queue.Queue()
    self._open: set[int] = set()

  def read(self, index: int, stream: TextIO) -> None:
    """Reads runner `index`'s `stream` on a thread of its own."""
    def lines():
      for line in stream:
        self._lines.put((index, line.rstrip('\n')))
      self._lines.put((index, None))
    self._open.add(index)
    threading.Thread(target=lines, daemon=True,
                     name=f'runner {index} output').start()

  def relay(self) -> None:
    """Prints point lines and keeps the others until every runner's output
    has ended. Waits in short steps, so a signal is acted on at once."""
    while self._open:
      try:
        index, line = self._lines.get(timeout=0.2)
      except queue.Empty:
        continue
      if line is None:
        self._open.discard(index)
      elif is_point_line(line, self._names):
        print(line, file=self._out, flush=True)
      else:
        self.tails[index].append(line)
