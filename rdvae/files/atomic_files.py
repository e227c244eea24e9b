"""Whole files written atomically, and the one reader of a JSON object file.

Every whole file a run or a sweep writes (config.json, results.json,
failure.json, sweep_point.json, summary.csv, claim.json, a report's files)
goes through a temporary file beside it, fsync and `os.replace`, then an
fsync of the directory, so a crash at any moment leaves either the old file
or the new one, and the rename itself survives a power cut. The file gets
the mode the user's umask gives a new file (0644 under the usual 022).

`read_json` is how each of those JSON files is read back. A missing file is
absent (None); a file that exists but cannot be read, is not valid JSON or
holds something other than a JSON object raises `DamagedFileError`, naming
the path and what is wrong. The owners of each format (`run_files`,
`sweep_files`) add their own checks on top and raise the same error.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any, Mapping, Optional

import numpy as np


class DamagedFileError(ValueError):
  """A file exists but does not hold what its format says.

  Attributes:
    path: the file.
    reason: what is wrong with it, e.g. 'not valid JSON (...)'.
  """

  def __init__(self, path: str, reason: str):
    super().__init__(f'{path}: {reason}')
    self.path = path
    self.reason = reason


def to_json_value(value: Any) -> Any:
  """Turns numpy/JAX scalars into floats and ints; NaN and inf as strings."""
  if isinstance(value, Mapping):
    return {str(k): to_json_value(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_json_value(v) for v in value]
  if hasattr(value, 'shape') and getattr(value, 'shape', None) != ():
    return [to_json_value(v) for v in np.asarray(value).tolist()]
  if hasattr(value, 'item'):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


def write_json_atomic(path: str, payload: Mapping[str, Any]) -> None:
  """Writes the JSON object `payload` (sorted keys, NaN and inf as strings)
  to `path` atomically (`write_text_atomic`)."""
  write_text_atomic(path, json.dumps(to_json_value(payload), indent=2,
                                     sort_keys=True) + '\n')


def write_text_atomic(path: str, text: str) -> None:
  """Writes `text` to `path` so that a crash at any moment leaves either the
  old file or the new one: a unique temporary file beside it (so several
  processes may write `path` at once), fsync, rename, fsync of the
  directory."""
  directory, base = os.path.split(path)
  fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix='.tmp',
                             dir=directory or '.')
  try:
    # mkstemp creates the file 0600; a results file is read like any other
    # file the user writes, so it gets the mode open() would give it.
    os.fchmod(fd, 0o666 & ~_umask())
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
  fsync_directory(directory or '.')


def _umask() -> int:
  """The process's umask (reading it means setting it: set it back)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def fsync_directory(path: str) -> None:
  """Makes a rename or a new file in directory `path` durable (POSIX)."""
  if os.name != 'posix':
    return
  fd = os.open(path, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def read_json(path: str) -> Optional[dict[str, Any]]:
  """The JSON object in `path`, or None when there is no such file.

  Raises:
    DamagedFileError: the file exists but cannot be read, is not valid JSON
      (e.g. cut short) or holds a JSON value other than an object.
  """
  try:
    with open(path) as f:
      text = f.read()
  except FileNotFoundError:
    return None
  except OSError as e:
    raise DamagedFileError(
        path, f'cannot be read ({type(e).__name__}: {e.strerror})') from None
  except UnicodeDecodeError as e:
    raise DamagedFileError(path, f'not valid JSON ({e})') from None
  try:
    value = json.loads(text)
  except ValueError as e:
    raise DamagedFileError(path, f'not valid JSON ({e})') from None
  if not isinstance(value, dict):
    raise DamagedFileError(
        path, f'holds a JSON {_json_type(value)}, not an object')
  return value


def _json_type(value: Any) -> str:
  for kind, name in ((list, 'list'), (str, 'string'), (bool, 'boolean'),
                     ((int, float), 'number')):
    if isinstance(value, kind):
      return name
  return 'null'


def finite_number(value: Any) -> Optional[float]:
  """`value` as a float when it is a finite JSON number (not a boolean, not
  a string), else None."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value) if math.isfinite(value) else None


def require_numbers(path: str, record: Mapping[str, Any],
                    keys: tuple[str, ...], hint: str = '') -> None:
  """Raises DamagedFileError unless every key of `keys` in `record` (read
  from `path`) is a finite number; `hint` ends the message."""
  problems = []
  for key in keys:
    if key not in record:
      problems.append(f'no {key!r}')
    elif finite_number(record[key]) is None:
      problems.append(f'{key!r} is {record[key]!r}, not a finite number')
  if problems:
    raise DamagedFileError(path, '; '.join(problems) + hint)
