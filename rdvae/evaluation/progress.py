"""Progress lines and timings of the final evaluation's long phases.

A final evaluation on a whole split with IWAE K = 100 and 1,000 generated
pairs takes minutes on a CPU: each phase (a split, the generative bounds)
says what it computes when it starts and then, on the primary process, how
far it is with an ETA at least every `INTERVAL_SECONDS`: after a batch, and
from a watcher thread while one batch (one device call) takes longer than
that. Each phase's wall time goes to results.json's 'eval_seconds'.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Optional

from rdvae.runtime import distributed

# At most this long between two progress lines of one phase.
INTERVAL_SECONDS = 30.0


class Phase:
  """One phase of `total` steps (batches); `advance()` after each step, and
  `close()` (or leave its `with` block) at its end.

  Args:
    name: the phase's name in results.json's 'eval_seconds' and the lines.
    what: what it computes, printed when it starts (None: print nothing but
      the progress lines).
    total: the number of steps.
    clock: seconds (tests pass a fake one).
  """

  def __init__(self, name: str, what: Optional[str], total: int,
               clock: Callable[[], float] = time.monotonic):
    self.name, self.total, self.done = name, max(1, int(total)), 0
    self._clock = clock
    self._start = self._last = clock()
    self._primary = distributed.is_primary()
    self._closed = threading.Event()
    self._lock = threading.Lock()
    if what and self._primary:
      print(f'evaluating {name}: {what}', flush=True)
    if self._primary and INTERVAL_SECONDS > 0:
      threading.Thread(target=self._watch, daemon=True).start()

  def __enter__(self) -> 'Phase':
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    self._closed.set()

  def advance(self, steps: int = 1) -> None:
    self.done += steps
    if self._clock() - self._last >= INTERVAL_SECONDS:
      self._report()

  def _watch(self) -> None:
    """Prints a line whenever none came for INTERVAL_SECONDS (a batch that
    takes longer than that), until the phase is closed."""
    while not self._closed.wait(INTERVAL_SECONDS / 4):
      if self._clock() - self._last >= INTERVAL_SECONDS:
        self._report()

  def _report(self) -> None:
    with self._lock:
      now = self._clock()
      self._last = now
      if not self._primary or self._closed.is_set():
        return
      elapsed = now - self._start
      left = ('ETA after the first batch' if not self.done else
              f'about {elapsed / self.done * (self.total - self.done):.0f} '
              's left')
      print(f'  {self.name}: {self.done}/{self.total} batches '
            f'({100 * self.done / self.total:.0f}%), {elapsed:.0f} s so '
            f'far, {left}', flush=True)

  def seconds(self) -> float:
    """Wall seconds since the phase started."""
    return self._clock() - self._start
