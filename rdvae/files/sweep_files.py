"""A sweep's own files, each with its writer and its reader, and the status
of a point as its files give it.

  DIR/sweep.json             the sweep file, base overrides and every point
                             ({'name', 'overrides'}) of the last runner;
  DIR/summary.csv            one row per point: name, every swept key,
                             status, test rate, distortion, elbo, iwae and
                             error (written under an flock on summary.lock);
  DIR/<point>/sweep_point.json   {'name', 'overrides'} of the point; the
                             rest of the point directory is a run's
                             (`run_files`, `metrics`).

A point's status from its files (`read_point_files`), the same for the sweep
runner and the report:

  damaged   a file is there but is not what its writer writes (config.json,
            sweep_point.json, failure.json or results.json): the error names
            the file and what is wrong;
  failed    failure.json: the error is 'Type: message';
  done      results.json, with finite rate, distortion and elbo;
  pending   none of these (the runner shows a pending point held by a live
            runner as 'running').
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import math
import os
from typing import Any, Iterator, Mapping, Optional, Sequence

from rdvae.files import atomic_files
from rdvae.files import run_files

POINT_FILE = 'sweep_point.json'
SWEEP_FILE = 'sweep.json'
SUMMARY_FILE = 'summary.csv'
SUMMARY_LOCK = 'summary.lock'
# The statuses `read_point_files` gives; a runner adds 'running'.
FILE_STATUSES = ('done', 'failed', 'damaged', 'pending')
# results.json keys shown in summary.csv.
RESULT_KEYS = ('rate', 'distortion', 'elbo', 'iwae')


# ---------------------------------------------------------- sweep_point.json


def write_sweep_point(directory: str, name: str,
                      overrides: Mapping[str, Any]) -> None:
  """Writes the point directory's sweep_point.json."""
  atomic_files.write_json_atomic(os.path.join(directory, POINT_FILE),
                               {'name': name, 'overrides': dict(overrides)})


def read_sweep_point(directory: str) -> Optional[dict[str, Any]]:
  """{'name', 'overrides'} of the point in `directory`, or None when absent.

  Raises:
    atomic_files.DamagedFileError: sweep_point.json is not a JSON object with
      a string 'name' and an object 'overrides'.
  """
  path = os.path.join(directory, POINT_FILE)
  record = atomic_files.read_json(path)
  if record is not None and not (isinstance(record.get('name'), str) and
                                 isinstance(record.get('overrides'), dict)):
    raise atomic_files.DamagedFileError(
        path, "not {'name': string, 'overrides': object}")
  return record


# ---------------------------------------------------------------- sweep.json


def write_sweep_record(workdir: str, sweep: str,
                       overrides: Mapping[str, Any],
                       points: Sequence[tuple[str, Mapping[str, Any]]]
                       ) -> None:
  """Writes DIR/sweep.json: the sweep's name or path, the base overrides and
  every point as (name, overrides)."""
  atomic_files.write_json_atomic(os.path.join(workdir, SWEEP_FILE), {
      'sweep': sweep, 'overrides': dict(overrides),
      'points': [{'name': n, 'overrides': dict(o)} for n, o in points]})


def read_sweep_record(workdir: str) -> Optional[dict[str, Any]]:
  """DIR/sweep.json, or None when absent.

  Raises:
    atomic_files.DamagedFileError: it is not a JSON object with 'sweep',
      'overrides' and a list 'points'.
  """
  path = os.path.join(workdir, SWEEP_FILE)
  record = atomic_files.read_json(path)
  if record is not None and not (
      isinstance(record.get('sweep'), str) and
      isinstance(record.get('overrides'), dict) and
      isinstance(record.get('points'), list)):
    raise atomic_files.DamagedFileError(
        path, "not {'sweep': string, 'overrides': object, 'points': list}")
  return record


# ------------------------------------------------------------- point status


@dataclasses.dataclass(frozen=True)
class PointFiles:
  """What the files of one point directory say."""

  status: str           # one of FILE_STATUSES
  error: str            # failed: 'Type: message'; damaged: 'path: reason'
  config: dict          # config.json ({} when absent or damaged)
  sweep_point: dict     # sweep_point.json ({} when absent or damaged)
  results: dict         # results.json ({} unless done)
  failure: dict         # failure.json ({} unless failed)


def read_point_files(directory: str) -> PointFiles:
  """The status of the point in `directory` from its files (module doc)."""
  read = {'config': {}, 'sweep_point': {}, 'results': {}, 'failure': {}}
  try:
    read['config'] = run_files.read_config(directory) or {}
    read['sweep_point'] = read_sweep_point(directory) or {}
    read['failure'] = run_files.read_failure(directory) or {}
    if not read['failure']:
      read['results'] = run_files.read_results(directory) or {}
  except atomic_files.DamagedFileError as e:
    return PointFiles('damaged', str(e), **dict(read, results={},
                                                  failure={}))
  if read['failure']:
    return PointFiles('failed', run_files.failure_text(read['failure']),
                      **read)
  return PointFiles('done' if read['results'] else 'pending', '', **read)


# --------------------------------------------------------------- summary.csv


def summary_columns(swept_keys: Sequence[str]) -> list[str]:
  """summary.csv's header for a sweep that sets `swept_keys`."""
  return ['name', *swept_keys, 'status', *RESULT_KEYS, 'error']


def summary_row(name: str, overrides: Mapping[str, Any], status: str,
                files: PointFiles) -> dict[str, Any]:
  """One point's summary.csv row (a dict by column) from its files."""
  row = {'name': name, **overrides, 'status': status, 'error': files.error}
  row.update({k: files.results.get(k) for k in RESULT_KEYS})
  return row


@contextlib.contextmanager
def summary_lock(workdir: str) -> Iterator[None]:
  """Holds an flock on DIR/summary.lock: the state read and the summary.csv
  written under it are one another's, also with several runners."""
  fd = os.open(os.path.join(workdir, SUMMARY_LOCK), os.O_RDWR | os.O_CREAT,
               0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # drops the lock


def _csv_value(value: Any) -> str:
  if value is None:
    return ''
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if isinstance(value, (list, tuple)):
    return json.dumps(list(value))
  return str(value)


def write_summary(workdir: str, columns: Sequence[str],
                  rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes DIR/summary.csv atomically (hold `summary_lock` around reading
  the state and writing it)."""
  text = io.StringIO()
  writer = csv.writer(text, lineterminator='\n')
  writer.writerow(columns)
  for row in rows:
    writer.writerow([_csv_value(row.get(c)) for c in columns])
  atomic_files.write_text_atomic(os.path.join(workdir, SUMMARY_FILE),
                               text.getvalue())


def read_summary(workdir: str) -> Optional[list[dict[str, str]]]:
  """summary.csv's rows as {column: text}, in order, or None when absent."""
  path = os.path.join(workdir, SUMMARY_FILE)
  if not os.path.exists(path):
    return None
  with open(path, newline='') as f:
    return list(csv.DictReader(f))
