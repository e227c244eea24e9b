"""A sweep's points as their files describe them: status, setting, measures.

Each point of a sweep lives in `workdir/<point>/`, as a sweep writes it:
config.json, sweep_point.json {'name', 'overrides'}, results.json (written
last, atomically), failure.json for a point that raised, and the sample grids
images/grid_<step>.png. Only those files are read, so a sweep still running
can be read at any time.

A point is `done` when results.json exists, else `failed` when failure.json
exists, else `pending`. H-hat, the sweep's estimate of the data entropy H
(the paper's 80.2 nats), is the exact entropy where results.json has one (the
toy), else the lowest -IWAE of the finished points (each an upper bound on the
cross-entropy, hence on H), else the lowest -ELBO. Then H - D <= I(X; Z) <= R
(Eq. 3) makes each point's H-hat - D a lower bound on I only where H-hat is H
itself (the toy), an estimate otherwise.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import re
from typing import Any, Optional, Sequence

from rdvae.analysis import frontier
from rdvae.files import writers

REPORT_DIR = 'report'
FAILURE_FILE = 'failure.json'
SWEEP_POINT_FILE = 'sweep_point.json'
POINT_FILES = (writers.CONFIG_FILE, writers.RESULTS_FILE, SWEEP_POINT_FILE,
               FAILURE_FILE)
BETA_KINDS = ('elbo', 'beta_vae')
RATE_KINDS = ('target_rate', 'rate_constraint')
DISTORTION_KINDS = ('target_distortion', 'distortion_constraint')
# results.json keys of each measure, first found wins: image models write
# test/* and top-level copies; the toy writes its exact bounds.
MEASURES = {
    'rate': ('rate', 'test/rate'),
    'distortion': ('distortion', 'test/distortion'),
    'elbo': ('elbo', 'test/elbo'),
    'iwae': ('iwae', 'test/iwae'),
    'generative_lower': ('test/generative_lower', 'generative_lower',
                         'generative_lower_bound_E'),
    'generative_upper': ('test/generative_upper', 'generative_upper',
                         'generative_upper_bound_G'),
    'active_units': ('test/active_units', 'active_units'),
}


@dataclasses.dataclass(frozen=True)
class Point:
  """One point of a sweep, as its files describe it."""

  name: str
  directory: str
  status: str                    # 'done', 'pending' or 'failed'
  dataset: Optional[str]         # config.dataset.name
  family: Optional[str]          # '-+v', 'toy bump/tabular', or None
  kind: Optional[str]            # objective.kind
  beta: Optional[float]          # the final beta of elbo / beta_vae
  target: Optional[float]        # sigma (rate kinds) or delta (distortion)
  schedule: str                  # '' or the beta / rate schedule
  overrides: dict                # sweep_point.json's swept keys
  results: dict                  # results.json ({} unless done)
  error: str = ''
  grid: Optional[str] = None     # the highest-step images/grid_*.png

  def measure(self, key: str) -> Optional[float]:
    """A measure of `MEASURES` from results.json, or None when absent."""
    for name in MEASURES[key]:
      value = _number(self.results.get(name))
      if value is not None:
        return value
    return None

  @property
  def setting(self) -> str:
    """'beta=0.1', 'sigma=5', 'delta=80' (with the schedule), or ''."""
    text = ''
    if self.beta is not None:
      text = f'beta={self.beta:g}'
    elif self.target is not None:
      symbol = 'sigma' if self.kind in RATE_KINDS else 'delta'
      text = f'{symbol}={self.target:g}'
    return f'{text} ({self.schedule})' if self.schedule else text


def _number(value: Any) -> Optional[float]:
  if isinstance(value, bool) or not isinstance(value, (int, float, str)):
    return None
  try:
    value = float(value)  # writers store NaN and inf as strings
  except ValueError:
    return None
  return value if math.isfinite(value) else None


def _read(path: str) -> tuple[Optional[dict], str]:
  """(json, '') or (None, why) for a missing or unreadable file."""
  if not os.path.exists(path):
    return None, ''
  try:
    return writers.read_json(path), ''
  except (OSError, ValueError) as e:
    return None, f'{os.path.basename(path)} unreadable: {e}'


def latest_grid(directory: str) -> Optional[str]:
  """The images/grid_<step>.png of the highest step, or None."""
  paths = glob.glob(os.path.join(directory, 'images', 'grid_*.png'))
  steps = {int(m.group(1)): p for p in paths
           if (m := re.fullmatch(r'grid_(\d+)\.png', os.path.basename(p)))}
  return steps[max(steps)] if steps else None


def _objective(config: dict) -> tuple:
  """(kind, beta, target, schedule) of a config.json's objective."""
  objective = config.get('objective', {})
  kind = objective.get('kind')
  beta = target = None
  schedule = ''
  if kind in BETA_KINDS:
    beta = 1.0 if kind == 'elbo' else _number(objective.get('beta'))
    if objective.get('beta_schedule', 'constant') != 'constant':
      schedule = f"beta {objective['beta_schedule']}"
  elif kind in RATE_KINDS + DISTORTION_KINDS:
    target = _number(objective.get(
        'rate' if kind in RATE_KINDS else 'distortion'))
    if objective.get('rate_schedule', 'constant') != 'constant':
      schedule = f"rate {objective['rate_schedule']}"
  return kind, beta, target, schedule


def _family(config: dict) -> Optional[str]:
  model = config.get('model', {})
  if 'family' in model:
    return str(model['family'])
  if config.get('dataset', {}).get('name') == 'toy':
    return f"toy {model.get('encoder')}/{model.get('decoder')}"
  return None


def read_point(directory: str) -> Point:
  """A point from the files in its directory (see the module docstring)."""
  config, config_error = _read(os.path.join(directory, writers.CONFIG_FILE))
  sweep_point, _ = _read(os.path.join(directory, SWEEP_POINT_FILE))
  results, results_error = _read(
      os.path.join(directory, writers.RESULTS_FILE))
  failure, _ = _read(os.path.join(directory, FAILURE_FILE))
  if results is not None:
    status, error = 'done', ''
  elif failure is not None or os.path.exists(
      os.path.join(directory, FAILURE_FILE)):
    status = 'failed'
    error = str((failure or {}).get('error', 'failure.json present'))
  else:
    status, error = 'pending', results_error or config_error
  sweep_point = sweep_point or {}
  config = config or {}
  kind, beta, target, schedule = _objective(config)
  return Point(
      name=str(sweep_point.get('name', os.path.basename(directory))),
      directory=directory, status=status,
      dataset=config.get('dataset', {}).get('name'),
      family=_family(config), kind=kind,
      beta=beta, target=target, schedule=schedule,
      overrides=dict(sweep_point.get('overrides', {})),
      results=results or {}, error=error, grid=latest_grid(directory))


def read_sweep(workdir: str) -> list[Point]:
  """Every point directory below workdir (one holding any point file)."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'sweep directory {workdir!r} does not exist')
  points = []
  for entry in sorted(os.listdir(workdir)):
    directory = os.path.join(workdir, entry)
    if entry == REPORT_DIR or not os.path.isdir(directory):
      continue
    if any(os.path.exists(os.path.join(directory, f)) for f in POINT_FILES):
      points.append(read_point(directory))
  return points


def finished(points: Sequence[Point]) -> list[Point]:
  """The done points with a finite rate and distortion."""
  return [p for p in points if p.status == 'done'
          and p.measure('rate') is not None
          and p.measure('distortion') is not None]


def estimate_entropy(points: Sequence[Point]) -> tuple[Optional[float], str]:
  """(H-hat, where it came from); (None, why) with no finished point."""
  done = finished(points)
  exact = [v for p in done if (v := _number(p.results.get('entropy')))
           is not None]
  if exact:
    return min(exact), 'the exact data entropy in results.json'
  for key, label in (('iwae', '-IWAE'), ('elbo', '-ELBO')):
    bounds = [(-p.measure(key), p.name) for p in done
              if p.measure(key) is not None]
    if bounds:
      value, name = min(bounds)
      return value, f'the lowest {label} of the sweep (point {name})'
  return None, 'no finished point yet'


def frontier_marks(points: Sequence[Point]) -> dict[str, str]:
  """name -> 'P' (Pareto frontier), 'PH' (also a hull vertex) or ''."""
  done = finished(points)
  rate = [p.measure('rate') for p in done]
  distortion = [p.measure('distortion') for p in done]
  marks = {p.name: '' for p in points}
  for i in frontier.pareto_indices(rate, distortion):
    marks[done[i].name] += 'P'
  for i in frontier.lower_hull_indices(rate, distortion):
    marks[done[i].name] += 'H'
  return marks


def frontier_points(points: Sequence[Point], hull: bool = False
                    ) -> list[Point]:
  """The finished points on the Pareto frontier (or hull), by rate."""
  done = finished(points)
  rate = [p.measure('rate') for p in done]
  distortion = [p.measure('distortion') for p in done]
  pick = frontier.lower_hull_indices if hull else frontier.pareto_indices
  return [done[i] for i in pick(rate, distortion)]


# results.json keys that must agree across points for their (R, D) to be
# comparable: which parameters were evaluated, on which examples.
SHARED_KEYS = ('params', 'eval_subset')


def disagreements(points: Sequence[Point]) -> list[str]:
  """One line per `SHARED_KEYS` key of results.json, or the dataset, that
  differs between done points (one H-hat and one frontier assume neither
  does)."""
  done = [p for p in points if p.status == 'done']
  lines = []
  for key in ('dataset',) + SHARED_KEYS:
    groups: dict[str, list[str]] = {}
    for p in done:
      value = p.dataset if key == 'dataset' else p.results.get(key)
      groups.setdefault(repr(value), []).append(p.name)
    if len(groups) > 1:
      parts = '; '.join(f'{value}: {", ".join(names[:5])}'
                        + (f' (+{len(names) - 5})' if len(names) > 5 else '')
                        for value, names in sorted(groups.items()))
      where = 'config.json' if key == 'dataset' else 'results.json'
      lines.append(f"{where} '{key}' differs between points ({parts})")
  return lines
