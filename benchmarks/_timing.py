"""Wall time and cores busy of a timed region, for the benchmarks.

"Cores busy" is the CPU-seconds spent per wall-second of the region:
`time.process_time()` deltas (every thread of this process) over
`time.perf_counter()` deltas, or, for work done in subprocesses
(`children=True`), the user + system time of the children waited for in
the region (`resource.getrusage(RUSAGE_CHILDREN)`). About 1 means one core
kept busy; the machine's core count is its ceiling.
"""

from __future__ import annotations

import resource
import time


def _cpu(children: bool) -> float:
  if children:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
  return time.process_time()


class Timer:
  """Accumulates the wall and CPU seconds of every `with timer:` block.

  `last_wall`, `last_cpu` are the latest block's; `wall`, `cpu` the sums.
  """

  def __init__(self, children: bool = False):
    self.children = children
    self.wall = self.cpu = self.last_wall = self.last_cpu = 0.0

  def __enter__(self) -> 'Timer':
    self._wall, self._cpu = time.perf_counter(), _cpu(self.children)
    return self

  def __exit__(self, *exc) -> None:
    self.last_wall = time.perf_counter() - self._wall
    self.last_cpu = _cpu(self.children) - self._cpu
    self.wall += self.last_wall
    self.cpu += self.last_cpu

  @property
  def cores_busy(self) -> float:
    """CPU-seconds per wall-second over every block so far."""
    return self.cpu / self.wall if self.wall else float('nan')

  @property
  def last_cores_busy(self) -> float:
    return self.last_cpu / self.last_wall if self.last_wall else float('nan')
