"""Config-file sweeps: expand, name, claim, run and summarise points.

A sweep file (configs/sweeps/NAME.py) defines

  get_config()  the base config (e.g. configs/mnist.py's), and
  get_sweep()   a list of points, each a dict from dotted config keys to
                values, e.g. {'model.family': '-+v', 'objective.beta': 0.15};
                products and zips of axes are plain Python.

`run(sweep, workdir)` trains every point through `rdvae.train_and_eval` in
`workdir/<point name>/` (in this process, one point after another, or as a
population, below), so each
point directory is a complete single run (config.json, metrics.jsonl,
checkpoints, images, results.json) plus `sweep_point.json` {'name',
'overrides'}. `workdir/summary.csv` has one row per point: its name, every
swept key, its status and the test rate, distortion, elbo and iwae.

Point names (`point_name`): `label=value` pairs joined by ',' in the point's
key order, the label being the last part of the dotted key ('model.family'
-> 'family'), or the whole key where two of the point's keys end alike.
Floats print as Python's shortest repr without a trailing '.0' (0.15, 1, 1e-05),
tuples join their items with '_', and any character other than letters,
digits and '+-._' is %-escaped, so '=' and ',' only separate. The point with
no overrides is 'base'. E.g. {'model.family': '-+v', 'objective.beta': 0.15}
-> 'family=-+v,beta=0.15'. Two points with the same name, or with the same
config, are an error.

Before anything runs, every point's config is built and validated exactly as
`train_and_eval` validates it (toy or image), and a point directory that
already holds another config is refused; errors name the point and the key.

Restarts and concurrent runners. A point is `done` when its results.json
exists (written last by `train_and_eval`), `failed` when its failure.json
exists (error type, message, traceback), `running` while a live runner owns
it (`rdvae.sweeps.claims`), else `pending`. A runner claims a point (an flock that
dies with its owner), re-reads its status under the claim, trains it (an
interrupted point resumes from its checkpoints; metrics.jsonl drops the
records past the restored step), records success or failure, and releases
it. So any number of runners, started together or one after a kill, train
every point to completion exactly once. A point that raises is recorded once
and the others go on; `retry_failed` retries the points that had failed when
the runner started (once each). With `wait`, a runner that finds no free
point waits for the points other runners hold, and takes over any whose
owner dies, so the sweep ends complete while one runner survives.

Populations. Points whose programs differ only in numbers the training step
takes as arrays (seed, beta, target rates, multiplier settings) can train as
one population: their states stacked on a leading axis, one `jax.vmap`'d
program for all of them, each point still in its own directory with its own
files, ending bitwise equal to its run alone. `population` = 'auto' (the
default) does so for the toy: faster than its points one after another (on
this project's 2-core CPU the toy's 60-point sweep 1.4x, its points' own
figures being most of what is left; BUILD.md), and one dispatch for all
where dispatches cost. Image models train one point at a time ('auto' and
'off'): population training of image models is not built, so 'on' refuses
them (on XLA:CPU a vmapped convolution step becomes a grouped convolution: a
population of the simple family is 3-4x slower per member than its members
one after another, benchmarks/image_population.py). A population that fails
trains its points again one at a time, so one bad point is recorded alone.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import socket
import time
import traceback
import types
import uuid
from typing import Any, Mapping, Optional, Sequence, Union


from rdvae.sweeps import claims
from rdvae.sweeps import sweep_file
from rdvae.runtime import preemption
from rdvae.files import writers

POINT_FILE = 'sweep_point.json'
FAILURE_FILE = 'failure.json'
SUMMARY_FILE = 'summary.csv'
SWEEP_FILE = 'sweep.json'
STATUSES = ('done', 'failed', 'running', 'pending')
POPULATION_MODES = ('auto', 'on', 'off')
RESULT_KEYS = ('rate', 'distortion', 'elbo', 'iwae')


# ------------------------------------------------------------------ expansion


# ------------------------------------------------------------------- status


def check_workdir(workdir: str, points: Sequence[sweep_file.Point]) -> None:
  """Refuses a sweep directory whose point directories hold other configs."""
  for point in points:
    path = os.path.join(workdir, point.name, writers.CONFIG_FILE)
    existing = claims.read_json(path)
    if existing is None:
      continue
    wanted = writers.flatten(writers.config_to_dict(point.config))
    existing = writers.flatten(existing)
    changed = sorted(k for k in set(wanted) | set(existing)
                     if wanted.get(k) != existing.get(k))
    if changed:
      raise sweep_file.SweepError(
          f'sweep point {point.name!r}: {path} holds a run with another config'
          f' (keys that differ: {changed}); use another --workdir, or the '
          'same base config overrides as before')


def status(directory: str) -> str:
  """One of STATUSES for the point directory `directory`."""
  if os.path.exists(os.path.join(directory, FAILURE_FILE)):
    return 'failed'
  if os.path.exists(os.path.join(directory, writers.RESULTS_FILE)):
    return 'done'
  if claims.live_owner(directory) is not None:
    return 'running'
  return 'pending'


def summarise(workdir: str, points: Sequence[sweep_file.Point]) -> list[dict[str, Any]]:
  """One row per point, from the directory's state: name, swept keys,
  status, test rate, distortion, elbo, iwae and (failed points) error."""
  rows = []
  for point in points:
    directory = os.path.join(workdir, point.name)
    row = {'name': point.name, **point.overrides,
           'status': status(directory)}
    if row['status'] == 'done':
      results = claims.read_json(
          os.path.join(directory, writers.RESULTS_FILE)) or {}
      row.update({k: results.get(k) for k in RESULT_KEYS})
    if row['status'] == 'failed':
      failure = claims.read_json(os.path.join(directory, FAILURE_FILE)) or {}
      row['error'] = (f'{failure.get("type")}: {failure.get("message")}'
                      if failure else 'unreadable failure.json')
    rows.append(row)
  return rows


def _csv_value(value: Any) -> str:
  if value is None:
    return ''
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if isinstance(value, (list, tuple)):
    return json.dumps(list(value))
  return str(value)


def write_summary(workdir: str, points: Sequence[sweep_file.Point]
                  ) -> list[dict[str, Any]]:
  """Recomputes summary.csv from the directory and writes it atomically.

  Writers take an flock on summary.lock, so the file's last version is the
  last state computed, also with several runners.
  """
  keys = []
  for point in points:
    keys += [k for k in point.overrides if k not in keys]
  columns = ['name', *keys, 'status', *RESULT_KEYS, 'error']
  fd = os.open(os.path.join(workdir, 'summary.lock'), os.O_RDWR | os.O_CREAT,
               0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    rows = summarise(workdir, points)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator='\n')
    writer.writerow(columns)
    for row in rows:
      writer.writerow([_csv_value(row.get(c)) for c in columns])
    writers.write_text_atomic(os.path.join(workdir, SUMMARY_FILE),
                             text.getvalue())
  finally:
    os.close(fd)  # drops the lock
  return rows


# ------------------------------------------------------------------ running


def _record_failure(directory: str, error: BaseException) -> None:
  claims.write_json_atomic(os.path.join(directory, FAILURE_FILE), {
      'type': type(error).__name__, 'message': str(error),
      'traceback': traceback.format_exc(), 'token': uuid.uuid4().hex,
      'time': time.time(), 'pid': os.getpid(), 'host': socket.gethostname()})


def _failure_token(directory: str) -> Optional[str]:
  failure = claims.read_json(os.path.join(directory, FAILURE_FILE))
  return None if failure is None else failure.get('token', '')


def _figures(results: Mapping[str, Any]) -> str:
  """The log's summary of a point's results, e.g. 'rate 5.2 distortion 183'."""
  return ' '.join(f'{k} {results[k]:.4g}' for k in RESULT_KEYS
                  if isinstance(results.get(k), (int, float)))


def run_point(point: sweep_file.Point, directory: str) -> Optional[dict[str, Any]]:
  """Trains one point in `directory` (the caller holds its claim).

  Returns its results, or None when it raised: then failure.json holds the
  error type, message and traceback.
  """
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  claims.write_json_atomic(os.path.join(directory, POINT_FILE), {
      'name': point.name, 'overrides': point.overrides})
  tic = time.time()
  try:
    results = train.train_and_eval(point.config, directory)
  except preemption.Preempted:
    raise  # not a failure: the point resumes when a runner is started again
  except Exception as e:  # pylint: disable=broad-except
    _record_failure(directory, e)
    print(f'[sweep] {point.name}: FAILED after {time.time() - tic:.1f} s: '
          f'{type(e).__name__}: {e}', flush=True)
    return None
  print(f'[sweep] {point.name}: done in {time.time() - tic:.1f} s: '
        f'{_figures(results)}', flush=True)
  return results


def population_key(point: sweep_file.Point, mode: str) -> Optional[str]:
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


def run_population(points: Sequence[sweep_file.Point], directories: Sequence[str]
                   ) -> None:
  """Trains points as populations (the caller holds every claim); if that
  raises, trains them again one at a time (`run_point`), so each point's
  own success or failure is what gets recorded."""
  from rdvae.training import loop as train  # pylint: disable=g-import-not-at-top
  for point, directory in zip(points, directories):
    claims.write_json_atomic(os.path.join(directory, POINT_FILE), {
        'name': point.name, 'overrides': point.overrides})
  tic = time.time()
  try:
    outputs = train.train_population([p.config for p in points],
                                     directories)
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


def run(sweep: Union[str, types.ModuleType], workdir: str,
        overrides: Optional[Mapping[str, Any]] = None,
        retry_failed: bool = False, wait: bool = True,
        poll_seconds: float = 10.0,
        heartbeat_seconds: float = claims.HEARTBEAT_SECONDS,
        population: str = 'auto') -> list[dict[str, Any]]:
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

  Returns:
    The summary rows (as in summary.csv), after this runner's last point.
  """
  points = sweep_file.expand(sweep, overrides)
  keys = {p.name: population_key(p, population) for p in points}
  check_workdir(workdir, points)
  os.makedirs(workdir, exist_ok=True)
  claims.write_json_atomic(os.path.join(workdir, SWEEP_FILE), {
      'sweep': sweep if isinstance(sweep, str) else sweep.__name__,
      'overrides': dict(overrides or {}),
      'points': [{'name': p.name, 'overrides': p.overrides} for p in points]})
  retry = {}
  if retry_failed:
    for point in points:
      token = _failure_token(os.path.join(workdir, point.name))
      if token is not None:
        retry[point.name] = token
  write_summary(workdir, points)
  print(f'[sweep] {len(points)} points in {workdir}', flush=True)

  def runnable(directory, name):
    """Whether the point needs this runner (read again under its claim)."""
    token = _failure_token(directory)
    if token is not None:
      return retry.get(name) == token
    return not os.path.exists(os.path.join(directory, writers.RESULTS_FILE))

  while True:
    held_elsewhere = False
    for point in points:
      if not runnable(os.path.join(workdir, point.name), point.name):
        continue
      group = [point] if keys[point.name] is None else [
          p for p in points if keys[p.name] == keys[point.name]]
      with contextlib.ExitStack() as held:
        members = []
        for member in group:
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
          if _failure_token(directory) is not None:
            os.remove(os.path.join(directory, FAILURE_FILE))
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
