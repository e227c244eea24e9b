"""Checkpoints of the whole training state; the only module that imports orbax.

A checkpoint holds everything a run needs to continue bit for bit: the
parameters, the optimizer state, the objective state (Lagrange multiplier),
the step and the RNG key; the data order is a pure function of (seed, step),
so it needs no state of its own.

Two orbax `CheckpointManager`s live in a workdir:
  checkpoints/       the latest `max_to_keep` periodic checkpoints;
  checkpoints_best/  the best one by a metric (validation ELBO: higher is
                     better), for users who want the early-stopped model;
                     kept by runs that evaluate during training
                     (train.eval_every > 0): without such evaluations the
                     best is the last, and `params='best'` reads it.
Orbax writes each checkpoint to a temporary directory and renames it when
complete, so a run killed mid-save leaves the previous checkpoints intact
(and the temporary directory, removed when the next manager opens). A
checkpoint damaged on disk afterwards (a truncated or deleted file) fails to
restore; `restore_latest_good` then moves it aside as `<step>.corrupt` and
falls back to the one before, with a warning naming both.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint._src.path import atomicity

from rdvae.runtime import distributed
from rdvae.runtime import faults

LATEST_DIR = 'checkpoints'
BEST_DIR = 'checkpoints_best'


def create_manager(workdir: str, max_to_keep: int = 2,
                   best_metric: Optional[str] = None,
                   subdir: Optional[str] = None) -> ocp.CheckpointManager:
  """A checkpoint manager under `workdir`.

  Args:
    workdir: the run's directory.
    max_to_keep: how many checkpoints to keep.
    best_metric: when given, the manager keeps the `max_to_keep` checkpoints
      with the highest value of this metric (passed to `save`), in
      `checkpoints_best/` unless `subdir` says otherwise.
    subdir: the directory name under workdir.
  """
  if subdir is None:
    subdir = BEST_DIR if best_metric else LATEST_DIR
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep,
      best_fn=(lambda metrics: float(metrics[best_metric]))
      if best_metric else None,
      best_mode='max',
      keep_checkpoints_without_metrics=best_metric is None,
      # Synchronous saves: a save that returned is on disk, which keeps
      # resume-after-kill simple and exact on a single host.
      enable_async_checkpointing=False,
      # A save killed before its rename leaves a temporary directory.
      cleanup_tmp_directories=True,
      temporary_path_class=(_FaultyRenamePath if faults.active('checkpoint')
                            else None),
  )
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, subdir)), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         metrics: Optional[Mapping[str, float]] = None) -> None:
  """Saves the pytree `state` (arrays fetched from devices) at `step`.

  A step already saved is left as it is: runs are deterministic, so a resumed
  run that reaches a step again (e.g. killed between an evaluation and the
  next periodic checkpoint) would write the same state.
  """
  if int(step) in manager.all_steps():
    return
  state = jax.device_get(state)
  manager.save(int(step), args=ocp.args.StandardSave(state),
               metrics=dict(metrics) if metrics else None, force=True)
  manager.wait_until_finished()


def latest_step(manager: ocp.CheckpointManager) -> Optional[int]:
  return manager.latest_step()


def restore(manager: ocp.CheckpointManager, template: Any = None,
            step: Optional[int] = None) -> Any:
  """Restores the checkpoint at `step` (latest by default).

  With a `template` the result has its structure, dtypes and shapes (e.g. a
  `types.TrainState`); without one, the stored tree of numpy arrays (dicts
  and lists), for inspection.
  """
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(
        f'no checkpoint in {manager.directory} to restore')
  if template is None:
    return manager.restore(step, args=ocp.args.StandardRestore())
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


class NoGoodCheckpointError(RuntimeError):
  """Every checkpoint of a workdir failed to restore."""


def _all_finite(tree: Any) -> bool:
  return all(bool(np.all(np.isfinite(a))) for a in jax.tree.leaves(tree)
             if np.issubdtype(np.asarray(a).dtype, np.inexact))


def restore_latest_good(manager: ocp.CheckpointManager, template: Any
                        ) -> Optional[Any]:
  """Restores the newest checkpoint that reads back whole and finite.

  A checkpoint that fails (missing or truncated files, wrong structure, a
  non-finite value) is renamed `<step>.corrupt` in the same directory, so
  that a resumed run saves that step afresh, and the one before is tried,
  with a warning naming both.

  Returns:
    The restored state (with `template`'s structure), or None when the
    manager holds no checkpoint.

  Raises:
    NoGoodCheckpointError: there were checkpoints and none restored.
  """
  tried = []
  _drop_closed_loop_callbacks()
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      state = restore(manager, template, step)
      if not _all_finite(state):
        raise ValueError('it holds NaN or inf')
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and tensorstore raise many types for damaged files.
      path = os.path.join(str(manager.directory), str(step))
      _SET_ASIDE.add(path)
      tried.append(f'{path} ({type(e).__name__}: {str(e)[:200]})')
      # Across processes the workdir is shared: process 0 moves the
      # checkpoint aside while the others wait, then all of them reload.
      if distributed.is_primary():
        os.replace(path, f'{path}.corrupt')
        print(f'WARNING: checkpoint {path} cannot be restored '
              f'({type(e).__name__}: {_first_line(e)}); moved it to '
              f'{path}.corrupt and falling back to the previous one',
              flush=True)
      distributed.barrier(f'checkpoint-{step}-set-aside')
      manager.reload()
      continue
    if tried and distributed.is_primary():
      print(f'resuming from the checkpoint of step {step} in '
            f'{manager.directory}', flush=True)
    return state
  if tried:
    raise NoGoodCheckpointError(
        'no checkpoint could be restored: ' + '; '.join(tried) +
        '; they were renamed *.corrupt: remove the workdir to start afresh')
  return None


def _first_line(error: BaseException, limit: int = 160) -> str:
  text = str(error).strip().splitlines()[0] if str(error).strip() else ''
  return text if len(text) <= limit else text[:limit] + '...'


# The checkpoints `restore_latest_good` failed to read and set aside.
_SET_ASIDE: set[str] = set()


class _SetAsideReadErrors(logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' for the reads of
  a checkpoint that was set aside (see `_drop_closed_loop_callbacks`)."""

  def filter(self, record: logging.LogRecord) -> bool:
    text = record.getMessage()
    return not (text.startswith('Task exception was never retrieved') and
                any(path + os.sep in text for path in _SET_ASIDE))


def _drop_closed_loop_callbacks() -> None:
  """Keeps tensorstore's late callbacks of a failed restore off stderr.

  When one read of a damaged checkpoint fails, orbax's restore raises and
  closes its event loop while tensorstore's other reads of that checkpoint
  are still in flight; as each finishes, its callback's
  `loop.call_soon_threadsafe` raises RuntimeError('Event loop is closed')
  in a tensorstore thread, which Python reports through
  `sys.unraisablehook` (a bare traceback each, dozens per checkpoint), and
  the reads that failed too end as asyncio tasks whose exception nobody
  retrieved, which asyncio logs with a traceback each when they are
  collected. Those reports, and only those (the ones naming a checkpoint
  set aside), are dropped: they say nothing the warning of
  `restore_latest_good` does not. Installed once per process.
  """
  previous = sys.unraisablehook
  if getattr(previous, '_rdvae_drops_closed_loop', False):
    return
  logging.getLogger('asyncio').addFilter(_SetAsideReadErrors())

  def hook(unraisable):
    error = unraisable.exc_value
    if (unraisable.object is None and isinstance(error, RuntimeError)
        and str(error) == 'Event loop is closed'):
      return
    previous(unraisable)

  hook._rdvae_drops_closed_loop = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


class _FaultyRenamePath(atomicity.AtomicRenameTemporaryPath):
  """Orbax's rename protocol with the `checkpoint` fault point (tests): the
  checkpoint's files are complete in the temporary directory, not renamed."""

  async def finalize(self, *args, **kwargs):
    name = os.path.basename(str(self.get_final()))
    if name.isdigit():
      faults.point('checkpoint', int(name))
    return await super().finalize(*args, **kwargs)
