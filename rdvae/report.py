"""The report of a sweep: its points read from their files, tabulated, drawn.

`write_report(workdir)` reads only what each point directory `workdir/<point>`
holds (config.json, sweep_point.json, results.json, failure.json and
images/grid_<step>.png), so it works on a sweep still running, and writes
`workdir/report/`:

  points.csv     every point: status, family, objective, swept keys, R, D,
                 ELBO, IWAE, H-hat - D, E, G, active units, frontier marks;
  frontier.csv   the monotone Pareto frontier (name, rate, distortion), by
                 rate; hull.csv the vertices of the lower convex hull;
  rd_plane.png   Fig. 3a(i); rd_panels.png Fig. 3a(ii-iv) (family points);
                 elbo_rate.png Fig. 3b; grids_*.png Fig. 4 (chosen points);
  report.md      the figures and the table of every point;
  tensorboard/   one HParams run per finished point.

A point is `done` when results.json exists (it is written last), else
`failed` when failure.json exists, else `pending`. H-hat, the sweep's
estimate of the data entropy H (the paper's 80.2 nats), is the exact entropy
where results.json has one (the toy), else the lowest -IWAE of the finished
points (each an upper bound on the cross-entropy, hence on H), else the
lowest -ELBO. Then H - D <= I(X; Z) <= R (Eq. 3) gives each point's H-hat - D,
a lower bound on I only where H-hat is H itself. Every file is written through
a temporary file and `os.replace`.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import io
import math
import os
import re
import shutil
from typing import Any, Optional, Sequence

import numpy as np

from rdvae import figures
from rdvae import frontier
from rdvae import writers

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
    'rate': ('rate',), 'distortion': ('distortion',), 'elbo': ('elbo',),
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
      directory=directory, status=status, family=_family(config), kind=kind,
      beta=beta, target=target, schedule=schedule,
      overrides=dict(sweep_point.get('overrides', {})),
      results=results or {}, error=error, grid=latest_grid(directory))


def read_sweep(workdir: str) -> list[Point]:
  """Every point directory below workdir (one holding any point file)."""
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'--workdir={workdir!r} is not a directory')
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


COLUMNS = ('name', 'status', 'family', 'objective', 'setting', 'rate',
           'distortion', 'elbo', 'iwae', 'h_hat_minus_d', 'generative_lower',
           'generative_upper', 'active_units', 'frontier')
HEADERS = ('name', 'status', 'family (e,d,m)', 'objective', 'beta / target',
           'R', 'D', 'ELBO', 'IWAE', 'H-hat - D', 'E', 'G', 'active units',
           'frontier')


def rows(points: Sequence[Point], h_hat: Optional[float]) -> list[dict]:
  """One dict per point with every column of `COLUMNS` (None: blank)."""
  marks = frontier_marks(points)
  table = []
  for p in points:
    d = p.measure('distortion')
    row = {'name': p.name, 'status': p.status, 'family': p.family,
           'objective': p.kind, 'setting': p.setting,
           'h_hat_minus_d': None if h_hat is None or d is None else h_hat - d,
           'frontier': marks.get(p.name, '')}
    row.update({key: p.measure(key) for key in MEASURES})
    table.append(row)
  return table


def _cell(value: Any) -> str:
  if value is None:
    return ''
  if isinstance(value, float):
    return f'{value:.5g}'
  return str(value).replace('|', '\\|')


def markdown_table(table: Sequence[dict], columns=COLUMNS,
                   headers=HEADERS) -> str:
  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '---|' * len(headers)]
  lines += ['| ' + ' | '.join(_cell(row.get(c)) for c in columns) + ' |'
            for row in table]
  return '\n'.join(lines)


def write_text_atomic(path: str, text: str) -> None:
  tmp = f'{path}.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _csv(header: Sequence[str], records: Sequence[Sequence[Any]]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(header)
  for record in records:
    writer.writerow(['' if v is None else v for v in record])
  return out.getvalue()


def points_csv(points: Sequence[Point], h_hat: Optional[float]) -> str:
  """Every column of `rows`, the swept keys, the error and the grid path."""
  swept = sorted({k for p in points for k in p.overrides})
  header = list(COLUMNS) + swept + ['error', 'grid']
  records = [[row[c] for c in COLUMNS]
             + [p.overrides.get(k) for k in swept] + [p.error, p.grid]
             for p, row in zip(points, rows(points, h_hat))]
  return _csv(header, records)


def frontier_csv(points: Sequence[Point], hull: bool = False) -> str:
  return _csv(('name', 'rate', 'distortion'),
              [(p.name, repr(p.measure('rate')),
                repr(p.measure('distortion')))
               for p in frontier_points(points, hull)])


def plane_points(points: Sequence[Point]) -> list[figures.PlanePoint]:
  """The finished points for the figures; targets are annotated."""
  return [figures.PlanePoint(
      name=p.name, rate=p.measure('rate'), distortion=p.measure('distortion'),
      family=p.family,
      note=p.setting if p.target is not None else '')
          for p in finished(points)]


def _grid_title(p: Point) -> str:
  return (f'{p.name}\n{p.family or ""} {p.kind or ""} {p.setting}\n'
          f"R={p.measure('rate'):.4g} D={p.measure('distortion'):.4g} nats")


def _read_png(path: str) -> np.ndarray:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(path) as image:
    return np.asarray(image.convert('L'), np.float32) / 255.0


def _family_key(family: Optional[str]) -> str:
  """Sorts families simple before complex: '-' < '+' < 'v'."""
  return (family or '').translate(str.maketrans('-+v', '012'))


def _spread(items: Sequence[Point], limit: int) -> list[Point]:
  """At most `limit` items, evenly spaced (first and last kept)."""
  if len(items) <= limit:
    return list(items)
  picks = np.unique(np.round(np.linspace(0, len(items) - 1, limit)))
  return [items[int(i)] for i in picks]


def choose_grids(points: Sequence[Point], betas: Sequence[float] = (1.0,),
                 max_grids: int = 8) -> dict[str, list[Point]]:
  """Fig. 4's choices: file stem -> finished points with a grid.

  'grids_frontier': the Pareto frontier by rate (Fig. 4d, 6), at most
  `max_grids` evenly spaced; 'grids_beta_<b>': every point trained at the
  final beta b (Fig. 4c at b = 1), by family.
  """
  with_grid = [p for p in finished(points) if p.grid]
  chosen = {'grids_frontier': _spread(
      [p for p in frontier_points(points) if p.grid], max_grids)}
  for beta in betas:
    same = sorted((p for p in with_grid if p.beta is not None
                   and math.isclose(p.beta, beta, rel_tol=1e-9)),
                  key=lambda p: (_family_key(p.family), p.name))
    chosen[f'grids_beta_{beta:g}'] = _spread(same, max_grids)
  return {stem: group for stem, group in chosen.items() if group}


def write_figures(points: Sequence[Point], h_hat: Optional[float],
                  directory: str, betas: Sequence[float] = (1.0,),
                  max_grids: int = 8) -> list[str]:
  """Draws every figure of the report into directory; returns file names."""
  plane = plane_points(points)
  if not plane:
    return []
  names = ['rd_plane.png', 'elbo_rate.png']
  figures.plot_rd_plane(plane, h_hat, os.path.join(directory, names[0]))
  figures.plot_elbo_rate(plane, h_hat, os.path.join(directory, names[1]))
  if any(figures.is_family(p.family) for p in plane):
    names.append('rd_panels.png')
    figures.plot_rd_panels(plane, h_hat, os.path.join(directory, names[-1]))
  for stem, group in choose_grids(points, betas, max_grids).items():
    names.append(f'{stem}.png')
    figures.plot_grids([(_grid_title(p), _read_png(p.grid)) for p in group],
                       os.path.join(directory, names[-1]))
  return names


def _hparam_value(value: Any) -> Any:
  if isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def write_hparams(points: Sequence[Point], h_hat: Optional[float],
                  directory: str) -> None:
  """One TensorBoard HParams run per finished point, replacing the old ones.

  Hyperparameters: family, objective kind, beta, target, schedule and every
  swept key; metrics: the measures of `MEASURES` and H-hat - D.
  """
  import tensorboardX  # pylint: disable=g-import-not-at-top
  tmp, old = f'{directory}.tmp', f'{directory}.old'
  for path in (tmp, old):
    shutil.rmtree(path, ignore_errors=True)
  table = {row['name']: row for row in rows(points, h_hat)}
  with tensorboardX.SummaryWriter(tmp) as writer:
    for p in finished(points):
      hparams = {'family': p.family, 'objective': p.kind, 'beta': p.beta,
                 'target': p.target, 'schedule': p.schedule}
      hparams.update(p.overrides)
      hparams = {k: _hparam_value(v) for k, v in hparams.items()
                 if v is not None}
      metrics = {f'hparams/{k}': table[p.name][k]
                 for k in (*MEASURES, 'h_hat_minus_d')
                 if table[p.name][k] is not None}
      writer.add_hparams(hparams, metrics, name=p.name)
  if os.path.exists(directory):
    os.replace(directory, old)
  os.replace(tmp, directory)
  shutil.rmtree(old, ignore_errors=True)


def markdown(points: Sequence[Point], h_hat: Optional[float], source: str,
             figure_names: Sequence[str], title: str) -> str:
  """report.md: counts, H-hat, the figures, the frontier and every point."""
  counts = {s: sum(p.status == s for p in points)
            for s in ('done', 'pending', 'failed')}
  h_text = 'unknown' if h_hat is None else f'{h_hat:.6g} nats'
  lines = [f'# Sweep report: {title}', '',
           f"{len(points)} points: {counts['done']} done, "
           f"{counts['pending']} pending, {counts['failed']} failed.", '',
           f'H-hat = {h_text}: {source}. The dashed line is D = H-hat - R; '
           'the black staircase the Pareto frontier of the finished points, '
           'the grey line their lower convex hull. All figures in nats.', '']
  lines += [f'![{name}]({name})\n' for name in figure_names]
  front = frontier_points(points)
  lines += ['## Pareto frontier', '',
            markdown_table([{'name': p.name, 'rate': p.measure('rate'),
                             'distortion': p.measure('distortion')}
                            for p in front],
                           ('name', 'rate', 'distortion'),
                           ('name', 'R', 'D')), '',
            '## Points', '',
            'frontier: P on the Pareto frontier, H a vertex of the lower '
            'convex hull.', '', markdown_table(rows(points, h_hat)), '']
  failed = [p for p in points if p.status == 'failed']
  if failed:
    lines += ['## Failed points', '']
    lines += [f'- {p.name}: {p.error}' for p in failed]
    lines.append('')
  return '\n'.join(lines)


def write_report(workdir: str, betas: Sequence[float] = (1.0,),
                 max_grids: int = 8) -> dict[str, Any]:
  """Reads the sweep in workdir and writes workdir/report/ (module docstring).

  Returns:
    {'points': the Points, 'h_hat': H-hat or None, 'directory': the report
    directory, 'files': the names written}.
  """
  points = read_sweep(workdir)
  h_hat, source = estimate_entropy(points)
  directory = os.path.join(workdir, REPORT_DIR)
  os.makedirs(directory, exist_ok=True)
  texts = {'points.csv': points_csv(points, h_hat),
           'frontier.csv': frontier_csv(points),
           'hull.csv': frontier_csv(points, hull=True)}
  for name, text in texts.items():
    write_text_atomic(os.path.join(directory, name), text)
  names = write_figures(points, h_hat, directory, betas, max_grids)
  title = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
  write_text_atomic(os.path.join(directory, 'report.md'),
                    markdown(points, h_hat, source, names, title))
  write_hparams(points, h_hat, os.path.join(directory, 'tensorboard'))
  return {'points': points, 'h_hat': h_hat, 'directory': directory,
          'files': [*texts, *names, 'report.md', 'tensorboard']}
