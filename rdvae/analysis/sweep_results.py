"""A sweep's points as their files describe them: status, setting, measures.

Each point of a sweep lives in `workdir/<point>/`, as a sweep writes it:
config.json, sweep_point.json {'name', 'overrides'}, results.json (written
last, atomically), failure.json for a point that raised, and the sample grids
images/grid_<step>.png. Only those files are read, through their owners'
readers (`rdvae.files`), so a sweep still running can be read at any time,
and a point's status is the one the sweep runner gives it
(`sweep_files.read_point_files`): done, failed (with the error's type and
message), damaged (with the file and what is wrong) or pending.

H-hat, the sweep's estimate of the data entropy H (the paper's 80.2 nats), is
the exact entropy where results.json has one (the toy), else the lowest
-IWAE of the finished points (each an upper bound on the cross-entropy,
hence on H), else the lowest -ELBO; but where points have ais.json (AIS of
the decoder, experiments/ais.py), the lowest -AIS log p(x) (a stochastic
upper bound on the cross-entropy of its test images, tighter than -IWAE)
comes before -IWAE. Then H - D <= I(X; Z) <= R (Eq. 3) makes
each point's H-hat - D a lower bound on I only where H-hat is H itself (the
toy), an estimate otherwise.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from rdvae.objectives import losses as objectives
from rdvae.analysis import frontier
from rdvae.files import ais_files
from rdvae.files import atomic_files
from rdvae.files import metric_files
from rdvae.files import run_files
from rdvae.files import sweep_files

REPORT_DIR = 'report'
# A directory holding any of these is a point.
POINT_FILES = (run_files.CONFIG_FILE, run_files.RESULTS_FILE,
               run_files.FAILURE_FILE, sweep_files.POINT_FILE)
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
class PointResults:
  """One point of a sweep, as its files describe it."""

  name: str
  directory: str
  status: str                    # one of sweep_files.FILE_STATUSES
  dataset: Optional[str]         # config.dataset.name
  family: Optional[str]          # '-+v', 'toy bump/tabular', or None
  kind: Optional[str]            # objective.kind
  beta: Optional[float]          # the final beta of elbo / beta_vae
  target: Optional[float]        # sigma (rate kinds) or delta (distortion)
  schedule: str                  # '' or the beta / rate schedule
  overrides: dict                # sweep_point.json's swept keys
  results: dict                  # results.json ({} unless done)
  error: str = ''                # failed: 'Type: message'; damaged: why
  grid: Optional[str] = None     # the highest-step images/grid_*.png
  ais: dict = dataclasses.field(default_factory=dict)  # ais.json ({}: none)
  ais_error: str = ''            # why ais.json was not read (damaged)

  def measure(self, key: str) -> Optional[float]:
    """A measure of `MEASURES` from results.json, or None when absent."""
    for name in MEASURES[key]:
      value = atomic_files.finite_number(self.results.get(name))
      if value is not None:
        return value
    return None

  def ais_measure(self, key: str) -> Optional[float]:
    """A number of ais.json ('log_px', 'bdmc_gap', ...), or None."""
    return atomic_files.finite_number(self.ais.get(key))

  @property
  def setting(self) -> str:
    """'beta=0.1', 'sigma=5', 'delta=80' (with the schedule), or ''."""
    text = ''
    if self.beta is not None:
      text = f'beta={self.beta:g}'
    elif self.target is not None:
      symbol = 'sigma' if self.kind in objectives.RATE_TARGETED else 'delta'
      text = f'{symbol}={self.target:g}'
    return f'{text} ({self.schedule})' if self.schedule else text


def _objective(config: dict) -> tuple:
  """(kind, beta, target, schedule) of a config.json's objective."""
  objective = config.get('objective', {})
  kind = objective.get('kind')
  beta = target = None
  schedule = ''
  if kind in objectives.BETA_WEIGHTED:
    beta = (1.0 if kind == 'elbo'
            else atomic_files.finite_number(objective.get('beta')))
    if objective.get('beta_schedule', 'constant') != 'constant':
      schedule = f"beta {objective['beta_schedule']}"
  elif kind in objectives.RATE_TARGETED + objectives.DISTORTION_TARGETED:
    target = atomic_files.finite_number(objective.get(
        'rate' if kind in objectives.RATE_TARGETED else 'distortion'))
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


def read_point(directory: str) -> PointResults:
  """A point from the files in its directory (see the module docstring)."""
  files = sweep_files.read_point_files(directory)
  config = files.config
  kind, beta, target, schedule = _objective(config)
  try:
    ais, ais_error = ais_files.read_ais(directory) or {}, ''
  except atomic_files.DamagedFileError as e:
    ais, ais_error = {}, str(e)
  return PointResults(
      name=str(files.sweep_point.get('name', os.path.basename(directory))),
      directory=directory, status=files.status,
      dataset=config.get('dataset', {}).get('name'),
      family=_family(config), kind=kind,
      beta=beta, target=target, schedule=schedule,
      overrides=dict(files.sweep_point.get('overrides', {})),
      results=files.results, error=files.error,
      grid=metric_files.latest_grid(directory), ais=ais,
      ais_error=ais_error)


def read_sweep(workdir: str) -> list[PointResults]:
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


def finished(points: Sequence[PointResults]) -> list[PointResults]:
  """The done points (each with a finite rate and distortion)."""
  return [p for p in points if p.status == 'done']


def estimate_entropy(points: Sequence[PointResults]
                     ) -> tuple[Optional[float], str]:
  """(H-hat, where it came from); (None, why) with no finished point.

  The exact data entropy where results.json has it (the toy); else the
  tightest upper bound on H the sweep measured: every -log p(x) estimate
  is one (H <= cross-entropy <= -log p(x) bound), so the lowest of the
  points' -AIS log p(x) (ais.json, on its own test images) and -IWAE
  (-ELBO where no point has an IWAE), named with its point.
  """
  done = finished(points)
  exact = [v for p in done
           if (v := atomic_files.finite_number(p.results.get('entropy')))
           is not None]
  if exact:
    return min(exact), 'the exact data entropy in results.json'
  bounds = [(-p.ais_measure('log_px'),
             f'the lowest -AIS log p(x) of the sweep (point {p.name}, '
             f'{len(p.ais.get("settings", {}).get("indices", []))} test '
             'images, ais.json)')
            for p in done if p.ais_measure('log_px') is not None]
  for key, label in (('iwae', '-IWAE'), ('elbo', '-ELBO')):
    measured = [(-p.measure(key), f'the lowest {label} of the sweep (point '
                 f'{p.name})') for p in done if p.measure(key) is not None]
    if measured:
      bounds += measured
      break
  if bounds:
    return min(bounds)
  return None, 'no finished point yet'


def frontier_marks(points: Sequence[PointResults]) -> dict[str, str]:
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


def frontier_points(points: Sequence[PointResults], hull: bool = False
                    ) -> list[PointResults]:
  """The finished points on the Pareto frontier (or hull), by rate."""
  done = finished(points)
  rate = [p.measure('rate') for p in done]
  distortion = [p.measure('distortion') for p in done]
  pick = frontier.lower_hull_indices if hull else frontier.pareto_indices
  return [done[i] for i in pick(rate, distortion)]


# results.json keys that must agree across points for their (R, D) to be
# comparable: which parameters were evaluated, on which examples.
SHARED_KEYS = ('params', 'eval_subset')


def disagreements(points: Sequence[PointResults]) -> list[str]:
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
