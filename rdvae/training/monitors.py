"""What the host loop watches between dispatches: non-finite steps, the
training speed, and the progress line a person reads."""

from __future__ import annotations

import time

import ml_collections
import numpy as np

from rdvae.files import checkpointing
from rdvae.runtime import distributed
from rdvae.training import steps


class NonFinite:
  """Acts on the per-step `nonfinite` flags of each dispatch (train.nonfinite).

  'stop': the first flagged step raises FloatingPointError naming the step
  and the quantities (loss, rate, distortion, grad_norm, state), before the
  state is checkpointed. 'skip': the step body already dropped the update;
  flagged steps are counted (`skipped`, logged as train/skipped) and
  `train.max_skipped` consecutive ones raise the same error. The count of
  consecutive skips restarts when a run resumes.
  """

  def __init__(self, config: ml_collections.ConfigDict, manager):
    self.mode, self.limit = config.train.nonfinite, config.train.max_skipped
    self.manager, self.consecutive = manager, 0

  def check(self, flags: np.ndarray, end_step: int) -> int:
    """Returns the number of skipped steps among `flags` (steps up to
    `end_step`), or raises FloatingPointError."""
    first = end_step - len(flags) + 1
    for i, flag in enumerate(np.asarray(flags).tolist()):
      self.consecutive = self.consecutive + 1 if flag else 0
      if flag and (self.mode == 'stop' or self.consecutive >= self.limit):
        self._stop(first + i, steps.names_of_flags(flag))
    skipped = int(np.count_nonzero(flags))
    if skipped and distributed.is_primary():
      print(f'skipped {skipped} non-finite update(s) in steps {first}..'
            f'{end_step}', flush=True)
    return skipped

  def _stop(self, step: int, names: list[str]) -> None:
    why = (f'{self.consecutive} consecutive non-finite steps (train.nonfinite='
           f"'skip', train.max_skipped={self.limit})"
           if self.mode == 'skip' else "train.nonfinite='stop'")
    last = checkpointing.latest_step(self.manager)
    kept = (f'the last good checkpoint is step {last} in '
            f'{self.manager.directory}' if last is not None else
            'no checkpoint was saved before it')
    raise FloatingPointError(
        f'non-finite {", ".join(names)} at step {step} ({why}); {kept} '
        '(lower optim.learning_rate, check the data, or set '
        "train.nonfinite='skip')")


class Speed:
  """Training steps per second, excluding the first (compiling) dispatch and
  everything outside the dispatches (evaluation, checkpoints)."""

  def __init__(self):
    self.steps, self.seconds, self.first = 0, 0.0, None

  def add(self, steps_done: int, seconds: float) -> None:
    if self.first is None:
      self.first = steps_done / max(seconds, 1e-9)
    else:
      self.steps, self.seconds = (self.steps + steps_done,
                                  self.seconds + seconds)

  def steps_per_second(self) -> float:
    return self.steps / self.seconds if self.steps else self.first


def print_progress(step: int, total: int, metrics, speed: Speed,
              examples_per_step: int) -> None:
  per_second = speed.steps_per_second()
  eta = (total - step) / max(per_second, 1e-9)
  images = (f' {per_second * examples_per_step:.1f} images/s'
            if examples_per_step else '')
  print(f'step {step}/{total} | loss {metrics["loss"]:.3f} '
        f'R {metrics["rate"]:.3f} D {metrics["distortion"]:.3f} | '
        f'{per_second:.2f} steps/s{images} | '
        f'ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}', flush=True)
