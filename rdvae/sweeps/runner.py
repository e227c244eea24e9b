"""Running a sweep: claim, train and record every point, keep summary.csv.

`run(sweep, workdir)` expands the sweep file (`rdvae.sweeps.sweep_file`:
its points, their names and validated configs) and trains every point
through `train_and_eval` in `workdir/<point name>/` (in this process, one
point after another, or as a population, below), so each point directory is
a complete single run (config.json, metrics.jsonl, checkpoints, images,
results.json) plus sweep_point.json. `workdir/summary.csv` has one row per
point: its name, every swept key, its status, the test rate, distortion,
elbo and iwae, and the error of a failed or damaged point
(`rdvae.files.sweep_files` owns these files).

Before anything runs, every point's config is built and validated exactly as
`train_and_eval` validates it (toy or image), and a point directory that
already holds another config is refused; errors name the point and the key.

Restarts and concurrent runners. A point's status is what its files say
(`sweep_files.read_point_files`): `failed` when its failure.json exists
(error type, message, traceback), `done` when its results.json holds the
finished run's measures, `damaged` when one of its files exists but is not
what its writer writes, `running` while a live runner owns it
(`rdvae.sweeps.claims`), else `pending`. A runner claims a point (an flock
that dies with its owner), re-reads its status under the claim, trains it
(an interrupted point resumes from its checkpoints; metrics.jsonl drops the
records past the restored step), records success or failure, and releases
it. So any number of runners, started together or one after a kill, train
every point to completion exactly once. A point that raises is recorded once
and the others go on; `retry_failed` retries the points that had failed when
the runner started (once each). A damaged point is never run: its error
names the file to remove. With `wait`, a runner that finds no free point
waits for the points other runners hold, and takes over any whose owner
dies, so the sweep ends complete while one runner survives.

Populations. Points whose programs differ only in numbers the training step
takes as arrays (seed, beta, target rates, multiplier settings) can train as
one population: their states stacked on a leading axis, one `jax.vmap`'d
program for all of them, each point still in its own directory with its own
files, ending bitwise equal to its run alone. `population` = 'auto' (the
default) does so for the toy, which is faster than its points one after
another (BUILD.md) and one dispatch for all where dispatches cost. Image
models train one point at a time ('auto' and 'off'): population training of
image models is not built, so 'on' refuses them (on XLA:CPU a vmapped
convolution step becomes a grouped convolution, slower per member than its
members one after another: benchmarks/image_population.py). A population
that fails trains its points again one at a time, so one bad point is
recorded alone.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
import types
from typing import Any, Mapping, Optional, Sequence, Union

from rdvae.files import atomic_files
from rdvae.files import run_files
from rdvae.files import sweep_files
from rdvae.runtime import preemption
from rdvae.sweeps import claims
from rdvae.sweeps import sweep_file

# A point's status: sweep_files.FILE_STATUSES, or 'running' while a live
# runner holds a pending point.
STATUSES = ('done', 'failed', 'damaged', 'running', 'pending')
POPULATION_MODES = ('auto', 'on', 'off')


# ------------------------------------------------------------------- status


def check_workdir(workdir: str,
                  points: Sequence[sweep_file.SweepPoint]) -> None:
  """Refuses a sweep directory whose point directories hold other configs
  (a damaged config.json is left to the point's status: 'damaged')."""
  for point in points:
    directory = os.path.join(workdir, point.name)
    try:
      existing = run_files.read_config(directory)
    except atomic_files.DamagedFileError:
      continue
    if existing is None:
      continue
    changed = run_files.changed_keys(
        existing, run_files.config_to_dict(point.config))
    if changed:
      path = os.path.join(directory, run_files.CONFIG_FILE)
      raise sweep_file.SweepError(
          f'sweep point {point.name!r}: {path} holds a run with another config'
          f' (keys that differ: {changed}); use another --workdir, or the '
          'same base config overrides as before')


def _status(directory: str, files: sweep_files.PointFiles) -> str:
  if files.status == 'pending' and claims.live_owner(directory) is not None:
    return 'running'
  return files.status


def status(directory: str) -> str:
  """One of STATUSES for the point directory `directory`."""
  return _status(directory, sweep_files.read_point_files(directory))


def summarise(workdir: str, points: Sequence[sweep_file.SweepPoint]
              ) -> list[dict[str, Any]]:
  """One row per point, from the directory's state: name, swept keys,
  status, test rate, distortion, elbo, iwae and error (a failed point's
  'Type: message', a damaged one's 'path: reason')."""
  rows = []
  for point in points:
    directory = os.path.join(workdir, point.name)
    files = sweep_files.read_point_files(directory)
    rows.append(sweep_files.summary_row(
        point.name, point.overrides, _status(directory, files), files))
  return rows


def write_summary(workdir: str, points: Sequence[sweep_file.SweepPoint]
                  ) -> list[dict[str, Any]]:
  """Recomputes summary.csv from the directory and writes it atomically.

  Writers hold `sweep_files.summary_lock`, so the file's last version is the
  last state computed, also with several runners.
  """
  keys = []
  for point in points:
    keys += [k for k in point.overrides if k not in keys]
  with sweep_files.summary_lock(workdir):
    rows = summarise(workdir, points)
    sweep_files.write_summary(workdir, sweep_files.summary_columns(keys),
                              rows)
  return rows


# ------------------------------------------------------------------ running


def _failure_token(directory: str) -> Optional[str]:
  """The token of the point's failure.json, or None unless it failed."""
  files = sweep_files.read_point_files(directory)
  return files.failure.get('token', '') if files.status == 'failed' else None


def _figures(results: Mapping[str, Any]) -> str:
  """The log's summary of a point's results, e.g. 'rate 5.2 distortion 183'."""
  return ' '.join(f'{k} {results[k]:.4g}' for k in sweep_files.RESULT_KEYS
                  if isinstance(results.get(k), (int, float)))


def run_point(point: sweep_file.SweepPoint, directory: str
              ) -> Optional[dict[str, Any]]:
  """Trains one point in `directory` (the caller holds its claim).

  Returns its results, or None when it raised: then failure.json holds the
  error type, message and traceback.
  """
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  sweep_files.write_sweep_point(directory, point.name, point.overrides)
  tic = time.time()
  try:
    results = train.train_and_eval(point.config, directory)
  except preemption.Preempted:
    raise  # not a failure: the point resumes when a runner is started again
  except Exception as e:  # pylint: disable=broad-except
    run_files.write_failure(directory, e, traceback.format_exc())
    print(f'[sweep] {point.name}: FAILED after {time.time() - tic:.1f} s: '
          f'{type(e).__name__}: {e}', flush=True)
    return None
  print(f'[sweep] {point.name}: done in {time.time() - tic:.1f} s: '
        f'{_figures(results)}', flush=True)
  return results


def population_key(point: sweep_file.SweepPoint, mode: str) -> Optional[str]:
  """The key of the population `point` trains in (points with equal keys
  train together), or None when it trains alone; `mode` is one of
  POPULATION_MODES (see the module doc).

  Raises:
    sweep_file.SweepError for an unknown mode, or 'on' with an image model.
  """
  if mode not in POPULATION_MODES:
    raise sweep_file.SweepError(f'population={mode!r}; expected one of '
                                f'{POPULATION_MODES}')
  if mode == 'off':
    return None
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  key = train.population_key(point.config)
  if key is None and mode == 'on':
    raise sweep_file.SweepError(
        f'sweep point {point.name!r}: population training is built for the '
        'toy only; image models train one point at a time (population=auto '
        'or off)')
  return key


def run_population(points: Sequence[sweep_file.SweepPoint],
                   directories: Sequence[str]) -> None:
  """Trains points as populations (the caller holds every claim); if that
  raises, trains them again one at a time (`run_point`), so each point's
  own success or failure is what gets recorded."""
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  for point, directory in zip(points, directories):
    sweep_files.write_sweep_point(directory, point.name, point.overrides)
  tic = time.time()
  try:
    outputs = train.train_population([p.config for p in points],
                                     directories)
  except preemption.Preempted:
    raise  # not a failure: the points resume when a runner starts again
  except Exception as e:  # pylint: disable=broad-except
    print(f'[sweep] population of {len(points)} points: {type(e).__name__}: '
          f'{e}; training them one at a time', flush=True)
    for point, directory in zip(points, directories):
      run_point(point, directory)
    return
  print(f'[sweep] population of {len(points)} points: done in '
        f'{time.time() - tic:.1f} s', flush=True)
  for point, results in zip(points, outputs):
    print(f'[sweep] {point.name}: done: {_figures(results)}', flush=True)


def prepare(sweep: Union[str, types.ModuleType], workdir: str,
            overrides: Optional[Mapping[str, Any]] = None,
            population: str = 'auto'
            ) -> tuple[list[sweep_file.SweepPoint], dict[str, Optional[str]]]:
  """The checks before any point runs, then sweep.json and summary.csv.

  Expands and validates every point, decides their populations and refuses
  a directory holding other configs (each raising `sweep_file.SweepError`
  before anything is written), then creates `workdir` and writes its
  sweep.json and summary.csv. Returns the points and their population keys
  ({point name: key or None}).
  """
  points = sweep_file.expand(sweep, overrides)
  keys = {p.name: population_key(p, population) for p in points}
  check_workdir(workdir, points)
  os.makedirs(workdir, exist_ok=True)
  sweep_files.write_sweep_record(
      workdir, sweep if isinstance(sweep, str) else sweep.__name__,
      overrides or {}, [(p.name, p.overrides) for p in points])
  write_summary(workdir, points)
  return points, keys


def claim_limit(group_size: int, runners: int) -> int:
  """The most points of a population of `group_size` one runner claims at a
  time when `runners` runners share the sweep: all of them for one runner
  (whose files are written while its next population trains), else an
  equal share, at most `training.loop.MAX_POPULATION`, so every runner gets
  work and, in a large group, each claim is one whole population."""
  if runners < 1:
    raise ValueError(f'runners={runners!r}; expected a count >= 1')
  if runners == 1:
    return group_size
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  return max(1, min(train.MAX_POPULATION, -(-group_size // runners)))


def run(sweep: Union[str, types.ModuleType], workdir: str,
        overrides: Optional[Mapping[str, Any]] = None,
        retry_failed: bool = False, wait: bool = True,
        poll_seconds: float = 10.0,
        heartbeat_seconds: float = claims.HEARTBEAT_SECONDS,
        population: str = 'auto', runners: int = 1) -> list[dict[str, Any]]:
  """Runs every point of `sweep` in `workdir` (restartable, shareable).

  Args:
    sweep: a sweep module or the path of a sweep file.
    workdir: the sweep directory; point p runs in workdir/<p.name>/.
    overrides: {dotted key: value} for the base config of every point.
    retry_failed: also rerun the points whose failure.json exists when this
      runner starts (each once).
    wait: when the only points left are held by other runners, wait for
      them (polling every `poll_seconds`) and take over any whose owner dies.
    heartbeat_seconds: how often a held claim's heartbeat is refreshed.
    population: 'auto', 'on' or 'off': whether points that share a program
      train as one population (see the module doc).
    runners: how many runners were started together on this sweep (e.g.
      by `experiments.sweep --workers`); a population's points are claimed
      in shares (`claim_limit`) so that all of them get work.

  Returns:
    The summary rows (as in summary.csv), after this runner's last point.
  """
  points, keys = prepare(sweep, workdir, overrides, population)
  retry = {}
  if retry_failed:
    for point in points:
      token = _failure_token(os.path.join(workdir, point.name))
      if token is not None:
        retry[point.name] = token
  print(f'[sweep] {len(points)} points in {workdir}', flush=True)

  def runnable(directory, name):
    """Whether the point needs this runner (read again under its claim):
    pending, or failed with the failure it had when this runner started
    and `retry_failed`; never done or damaged."""
    files = sweep_files.read_point_files(directory)
    if files.status == 'failed':
      return retry.get(name) == files.failure.get('token', '')
    return files.status == 'pending'

  while True:
    held_elsewhere = False
    for point in points:
      if not runnable(os.path.join(workdir, point.name), point.name):
        continue
      group = [point] if keys[point.name] is None else [
          p for p in points if keys[p.name] == keys[point.name]]
      with contextlib.ExitStack() as held:
        members = []
        limit = claim_limit(len(group), runners)
        for member in group:
          if len(members) == limit:
            break
          directory = os.path.join(workdir, member.name)
          if not runnable(directory, member.name):
            continue
          claim = claims.try_claim(directory, heartbeat_seconds)
          if claim is None:
            held_elsewhere = True
            continue
          held.enter_context(claim)
          if not runnable(directory, member.name):
            continue
          run_files.remove_failure(directory)
          retry.pop(member.name, None)
          members.append(member)
        if not members:
          continue
        write_summary(workdir, points)
        directories = [os.path.join(workdir, m.name) for m in members]
        if len(members) == 1:
          run_point(members[0], directories[0])
        else:
          run_population(members, directories)
      write_summary(workdir, points)
    if not (held_elsewhere and wait):
      break
    time.sleep(poll_seconds)
  return write_summary(workdir, points)
