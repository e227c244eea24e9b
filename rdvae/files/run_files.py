"""A run's whole files in its workdir: config.json, results.json and
failure.json, each with its writer and its reader.

  config.json    the run's full config, written first (`prepare_workdir`); a
                 workdir that holds another config is refused.
  results.json   the run's measures, written last: a run is finished exactly
                 when its results.json exists. `read_results` checks it
                 holds at least `REQUIRED_RESULTS` as finite numbers.
  failure.json   written by a sweep runner when a point's run raised: the
                 error's type, message and traceback.

Every file is written atomically (`atomic_files.write_json_atomic`). Each
reader returns None for a missing file and raises
`atomic_files.DamagedFileError` for one that is not what its writer writes.
metrics.jsonl and the images belong to `rdvae.files.metrics`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import Any, Mapping, Optional

import ml_collections

from rdvae.files import atomic_files

CONFIG_FILE = 'config.json'
RESULTS_FILE = 'results.json'
FAILURE_FILE = 'failure.json'
# What a finished run's results.json holds at least, as finite numbers.
REQUIRED_RESULTS = ('rate', 'distortion', 'elbo')
FAILURE_KEYS = ('type', 'message')


class WorkdirConflictError(RuntimeError):
  """The workdir cannot hold this run: it holds a run of another config, or
  is a file, or cannot be written."""


# --------------------------------------------------------------- config.json


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
  """A nested dict as {dotted key: leaf}, e.g. {'a': {'b': 1}} -> {'a.b': 1}."""
  if not isinstance(tree, Mapping):
    return {prefix[:-1]: tree}
  flat = {}
  for key, value in tree.items():
    flat.update(flatten(value, f'{prefix}{key}.'))
  return flat


def read_config(workdir: str) -> Optional[dict[str, Any]]:
  """workdir's config.json as a nested dict, or None when absent.

  Raises:
    atomic_files.DamagedFileError: it is not a JSON object.
  """
  return atomic_files.read_json(os.path.join(workdir, CONFIG_FILE))


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Creates the workdir and its config.json, or checks the one there.

  Returns:
    True when the workdir already held a run of the same config (a resume).

  Raises:
    WorkdirConflictError: config.json exists with a different config or is
      unreadable, or the workdir is a file or cannot be written; what is
      there is left untouched.
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise WorkdirConflictError(
        f'workdir {workdir!r} is a file, not a directory; choose another '
        'workdir')
  path = os.path.join(workdir, CONFIG_FILE)
  if os.path.exists(path):
    check_workdir(workdir, config)
    return True
  try:
    os.makedirs(workdir, exist_ok=True)
    atomic_files.write_json_atomic(path, config_to_dict(config))
  except OSError as e:  # e.g. a read-only file system, a parent that is a file
    raise WorkdirConflictError(
        f'workdir {workdir!r} cannot be written ({e.strerror or e}); choose '
        'a writable directory') from None
  return False


def check_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises WorkdirConflictError unless workdir's config.json is `config`
  (e.g. on the processes that wait for process 0's `prepare_workdir`)."""
  try:
    existing = read_config(workdir)
  except atomic_files.DamagedFileError as e:
    raise WorkdirConflictError(
        f'workdir {workdir!r} holds a {CONFIG_FILE} that cannot be read '
        f'({e.reason}); it is not a run of this config: choose another '
        'workdir or remove it yourself') from None
  if existing is None:
    raise WorkdirConflictError(f'workdir {workdir!r} has no {CONFIG_FILE}')
  changed = changed_keys(existing, config_to_dict(config))
  if changed:
    raise WorkdirConflictError(
        f'workdir {workdir!r} holds a run with a different config '
        f'(keys that differ: {changed}); choose another workdir or remove '
        'it yourself')


def changed_keys(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
  """The dotted keys whose values differ between two nested config dicts."""
  flat_a, flat_b = flatten(a), flatten(b)
  return sorted(k for k in set(flat_a) | set(flat_b)
                if flat_a.get(k) != flat_b.get(k))


# -------------------------------------------------------------- results.json


def write_results(workdir: str, results: Mapping[str, Any]) -> None:
  """Writes results.json (NaN and inf as strings), the run's last file."""
  atomic_files.write_json_atomic(os.path.join(workdir, RESULTS_FILE), results)


def read_results(workdir: str) -> Optional[dict[str, Any]]:
  """workdir's results.json, or None when the run has not finished.

  Raises:
    atomic_files.DamagedFileError: results.json exists but is not a JSON
      object with finite numbers under `REQUIRED_RESULTS`.
  """
  path = os.path.join(workdir, RESULTS_FILE)
  hint = ('; remove it and run again to evaluate the last checkpoint '
          'afresh')
  try:
    results = atomic_files.read_json(path)
  except atomic_files.DamagedFileError as e:
    raise atomic_files.DamagedFileError(path, e.reason + hint) from None
  if results is not None:
    atomic_files.require_numbers(path, results, REQUIRED_RESULTS, hint)
  return results


def summary(workdir: str, results: Mapping[str, Any],
            already_finished: bool = False) -> str:
  """A few lines a person reads at the end of a run: steps, the test R, D,
  ELBO and IWAE (nats per example), E and G, the evaluation's time and where
  results.json (every measure) is; `already_finished` says the run was
  complete before this command."""
  def number(key):
    value = atomic_files.finite_number(results.get(key))
    return None if value is None else f'{value:.2f}'

  head = 'already finished' if already_finished else 'finished'
  if 'step' in results:
    head += f' at step {results["step"]}'
  measures = [f'{label} {number(key)}' for label, key in (
      ('R', 'rate'), ('D', 'distortion'), ('ELBO', 'elbo'),
      ('IWAE', 'iwae')) if number(key) is not None]
  subset = results.get('eval_subset')
  where = ''
  if isinstance(subset, Mapping):
    where = (f', {subset["max_examples"]} test examples'
             if subset.get('max_examples') else ', the whole test split')
  lines = [f'{head}: {", ".join(measures)} (nats per example{where})']
  if number('generative_lower') and number('generative_upper'):
    lines.append(f'  generative bounds: E {number("generative_lower")} <= '
                 f'I <= G {number("generative_upper")}')
  seconds = results.get('eval_seconds')
  if isinstance(seconds, Mapping) and seconds:
    order = ('validation', 'test', 'generative', 'grid')
    names = sorted((k for k in seconds if k != 'total'),
                   key=lambda k: (order.index(k) if k in order else 4, k))
    parts = ', '.join(f'{k} {float(seconds[k]):.0f} s' for k in names)
    lines.append(f'  final evaluation: {float(seconds.get("total", 0)):.0f} s '
                 f'({parts})')
  lines.append(f'results: {os.path.join(workdir, RESULTS_FILE)} (every '
               'measure; metrics.jsonl, TensorBoard events and checkpoints '
               'beside it)')
  return '\n'.join(lines)


# -------------------------------------------------------------- failure.json


def write_failure(workdir: str, error: BaseException,
                  traceback_text: str) -> dict[str, Any]:
  """Records that the run in `workdir` raised `error`; returns the record:
  {'type', 'message', 'traceback', 'token' (unique per failure), 'time',
  'pid', 'host'}."""
  record = {'type': type(error).__name__, 'message': str(error),
            'traceback': traceback_text, 'token': uuid.uuid4().hex,
            'time': time.time(), 'pid': os.getpid(),
            'host': socket.gethostname()}
  atomic_files.write_json_atomic(os.path.join(workdir, FAILURE_FILE), record)
  return record


def read_failure(workdir: str) -> Optional[dict[str, Any]]:
  """workdir's failure.json, or None when the run has not failed.

  Raises:
    atomic_files.DamagedFileError: failure.json exists but is not a JSON
      object with the strings `FAILURE_KEYS`.
  """
  path = os.path.join(workdir, FAILURE_FILE)
  failure = atomic_files.read_json(path)
  if failure is None:
    return None
  missing = [k for k in FAILURE_KEYS if not isinstance(failure.get(k), str)]
  if missing:
    raise atomic_files.DamagedFileError(
        path, f'no string {" or ".join(map(repr, missing))}; remove it to '
        'run the point again')
  return failure


def failure_text(failure: Mapping[str, Any]) -> str:
  """A failure.json record as one line, 'Type: message'."""
  message = ' '.join(str(failure['message']).split())
  return f"{failure['type']}: {message}"


def remove_failure(workdir: str) -> None:
  """Removes failure.json (before the run is tried again)."""
  try:
    os.remove(os.path.join(workdir, FAILURE_FILE))
  except FileNotFoundError:
    pass
