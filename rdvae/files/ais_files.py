"""A run's AIS files: ais.json and ais_curve.csv, the writer beside the reader.

  ais.json       written by `experiments/ais.py` (rdvae/runs/ais_workdir.py)
                 beside the run's results.json, which it never touches:
                 'settings' (what was computed: examples, chains, steps,
                 beta_max, seed, params, the test-split indices, ...), the
                 forward-AIS 'log_px' and 'log_px_stderr' (means over the
                 examples, nats), the BDMC 'bdmc_lower', 'bdmc_upper',
                 'bdmc_gap' and 'bdmc_log_d' (means over the simulated
                 examples; log_d is mean log d(x|z) of the simulated pairs,
                 so I_gen lies in [log_d - upper, log_d - lower]),
                 'seconds_per_example', 'curve', a list of
                 {'beta', 'rate', 'distortion'} (the monotone curve of the
                 examples' mean log Z, `runs.ais_workdir.
                 rate_distortion_curve`) with
                 'sampled_distortion', the chains' weighted mean of
                 -log d(x|z) at that beta, and, where it was computed (two
                 chains or more), its 'sampled_distortion_stderr' (both
                 absent from older files), and 'own_rate',
                 'own_distortion': the run's own R and D on the same
                 examples (absent from older files).
  ais_curve.csv  the curve again, one row per beta (beta, rate, distortion
                 and the optional keys that every point has).

Both are written atomically (`atomic_files`); `read_ais` returns None for a
missing ais.json and raises `atomic_files.DamagedFileError` for one that is
not what `write_ais` writes.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Mapping, Optional

from rdvae.files import atomic_files

AIS_FILE = 'ais.json'
CURVE_FILE = 'ais_curve.csv'
# What ais.json holds at least, as finite numbers.
REQUIRED = ('log_px', 'seconds_per_example')
# Finite numbers or null (no BDMC examples, or one chain: no stderr).
OPTIONAL = ('log_px_stderr', 'bdmc_lower', 'bdmc_upper', 'bdmc_gap',
            'bdmc_log_d')
CURVE_KEYS = ('beta', 'rate', 'distortion')
# Finite where present.
CURVE_OPTIONAL = ('sampled_distortion', 'sampled_distortion_stderr')


def generative_information(record: Mapping[str, Any]
                           ) -> tuple[Optional[float], Optional[float]]:
  """(lower, upper) on I_gen = E[log d(x|z) - log p(x)] over the simulated
  pairs, from BDMC's bounds on log p(x): [log_d - upper, log_d - lower];
  (None, None) without BDMC."""
  log_d = atomic_files.finite_number(record.get('bdmc_log_d'))
  lower = atomic_files.finite_number(record.get('bdmc_lower'))
  upper = atomic_files.finite_number(record.get('bdmc_upper'))
  if None in (log_d, lower, upper):
    return None, None
  return log_d - upper, log_d - lower


def curve_csv(curve: Any) -> str:
  keys = CURVE_KEYS + tuple(k for k in CURVE_OPTIONAL
                            if all(k in point for point in curve))
  out = io.StringIO()
  out.write(','.join(keys) + '\n')
  for point in curve:
    out.write(','.join(repr(float(point[k])) for k in keys) + '\n')
  return out.getvalue()


def _problems(record: Mapping[str, Any]) -> list[str]:
  problems = []
  if not isinstance(record.get('settings'), dict):
    problems.append("'settings' is not an object")
  for key in OPTIONAL:
    value = record.get(key)
    if value is not None and atomic_files.finite_number(value) is None:
      problems.append(f'{key!r} is {value!r}, not a finite number or null')
  curve = record.get('curve')
  if not isinstance(curve, list) or not curve:
    problems.append("'curve' is not a non-empty list")
  elif not all(isinstance(p, dict) and all(
      atomic_files.finite_number(p.get(k)) is not None for k in CURVE_KEYS)
               for p in curve):
    problems.append(f"'curve' has an entry without finite {CURVE_KEYS}")
  elif not all(atomic_files.finite_number(p[k]) is not None
               for p in curve for k in CURVE_OPTIONAL if k in p):
    problems.append(f"'curve' has a {CURVE_OPTIONAL} that is not a finite "
                    'number')
  return problems


def write_ais(workdir: str, record: Mapping[str, Any]) -> None:
  """Writes ais_curve.csv, then ais.json (so an ais.json always has its
  csv). NaN and infinities are written as null.

  Raises:
    ValueError: a record `read_ais` would refuse (nothing is written).
  """
  record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in record.items()}
  problems = _problems(record) + [
      f'{k!r} is {record.get(k)!r}, not a finite number' for k in REQUIRED
      if atomic_files.finite_number(record.get(k)) is None]
  if problems:
    raise ValueError(f'not an AIS record: {"; ".join(problems)}')
  atomic_files.write_text_atomic(os.path.join(workdir, CURVE_FILE),
                                 curve_csv(record['curve']))
  atomic_files.write_json_atomic(os.path.join(workdir, AIS_FILE), record)


def read_ais(workdir: str) -> Optional[dict[str, Any]]:
  """ais.json of workdir, or None when there is none.

  Raises:
    atomic_files.DamagedFileError: ais.json is not a JSON object, or lacks
      the settings, a finite log_px or a curve of finite numbers.
  """
  path = os.path.join(workdir, AIS_FILE)
  record = atomic_files.read_json(path)
  if record is None:
    return None
  hint = ' (run experiments/ais.py on the run again)'
  atomic_files.require_numbers(path, record, REQUIRED, hint)
  problems = _problems(record)
  if problems:
    raise atomic_files.DamagedFileError(path, '; '.join(problems) + hint)
  return record
