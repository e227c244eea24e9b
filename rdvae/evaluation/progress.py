"""Progress lines and timings of the final evaluation's long phases.

A final evaluation on a whole split with IWAE K = 100 and 1,000 generated
pairs takes minutes on a CPU: each phase (a split, the generative bounds, the
image grid) says what it computes when it starts, prints how far it is with
an ETA at least every `INTERVAL_SECONDS` (only on the primary process), and
its wall time goes to results.json's 'eval_seconds'.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from rdvae.runtime import distributed

# At most this long between two progress lines of one phase.
INTERVAL_SECONDS = 30.0


class Phase:
  """One phase of `total` steps (batches); `advance()` after each step.

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
    if what and self._primary:
      print(f'evaluating {name}: {what}', flush=True)

  def advance(self, steps: int = 1) -> None:
    self.done += steps
    now = self._clock()
    if self._primary and now - self._last >= INTERVAL_SECONDS:
      self._last = now
      elapsed = now - self._start
      eta = elapsed / self.done * (self.total - self.done)
      print(f'  {self.name}: {self.done}/{self.total} batches '
            f'({100 * self.done / self.total:.0f}%), {elapsed:.0f} s so '
            f'far, about {eta:.0f} s left', flush=True)

  def seconds(self) -> float:
    """Wall seconds since the phase started."""
    return self._clock() - self._start
