"""The report of a sweep: its points tabulated and drawn into DIR/report/.

`write_report(workdir)` reads the points with `rdvae.analysis.sweep_results`
(their files only, so it works on a sweep still running) and writes
`workdir/report/`:

  points.csv     every point: status, family, objective, swept keys, R, D,
                 ELBO, IWAE, H-hat - D, E, G, active units, frontier marks,
                 and from ais.json (experiments/ais.py) AIS log p(x), the
                 BDMC gap and the bounds on I_gen;
  frontier.csv   the monotone Pareto frontier (name, rate, distortion), by
                 rate; hull.csv the vertices of the lower convex hull;
  rd_plane.png   Fig. 3a(i); rd_panels.png Fig. 3a(ii-iv) (family points);
                 elbo_rate.png Fig. 3b; grids_*.png Fig. 4 (chosen points);
                 rd_curves_ais.png the decoder RD curves of chosen points
                 with ais.json (the frontier's by default);
  report.md      the figures, the table of every point, and the error of
                 each failed point (type and message) and damaged point
                 (the file and what is wrong);
  tensorboard/   one HParams run per finished point.

Every file is written through a temporary file and `os.replace`.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from typing import Any, Optional, Sequence

import numpy as np

from rdvae.analysis import ais_figures
from rdvae.analysis import figures
from rdvae.analysis import frontier
from rdvae.analysis import sweep_results
from rdvae.files import ais_files
from rdvae.files import atomic_files
from rdvae.files import metric_files
from rdvae.files import sweep_files

Points = Sequence[sweep_results.PointResults]

COLUMNS = ('name', 'status', 'family', 'objective', 'setting', 'rate',
           'distortion', 'elbo', 'iwae', 'h_hat_minus_d', 'generative_lower',
           'generative_upper', 'active_units', 'ais_log_px', 'bdmc_gap',
           'i_gen_lower', 'i_gen_upper', 'frontier')
HEADERS = ('name', 'status', 'family (e,d,m)', 'objective', 'beta / target',
           'R', 'D', 'ELBO', 'IWAE', 'H-hat - D', 'E', 'G', 'active units',
           'AIS log p(x)', 'BDMC gap', 'I_gen lower', 'I_gen upper',
           'frontier')


def rows(points: Points, h_hat: Optional[float]) -> list[dict]:
  """One dict per point with every column of `COLUMNS` (None: blank)."""
  marks = sweep_results.frontier_marks(points)
  table = []
  for p in points:
    d = p.measure('distortion')
    row = {'name': p.name, 'status': p.status, 'family': p.family,
           'objective': p.kind, 'setting': p.setting,
           'h_hat_minus_d': None if h_hat is None or d is None else h_hat - d,
           'frontier': marks.get(p.name, '')}
    row.update({key: p.measure(key) for key in sweep_results.MEASURES})
    row['i_gen_lower'], row['i_gen_upper'] = (
        ais_files.generative_information(p.ais))
    row.update(ais_log_px=p.ais_measure('log_px'),
               bdmc_gap=p.ais_measure('bdmc_gap'))
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


def _csv(header: Sequence[str], records: Sequence[Sequence[Any]]) -> str:
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(header)
  for record in records:
    writer.writerow(['' if v is None else v for v in record])
  return out.getvalue()


def _grid_path(p: sweep_results.PointResults) -> Optional[str]:
  """The grid's path relative to the sweep directory."""
  return p.grid and os.path.relpath(p.grid, os.path.dirname(p.directory))


def points_csv(points: Points, h_hat: Optional[float]) -> str:
  """Every column of `rows`, the swept keys, the error and the grid path
  (relative to the sweep directory)."""
  swept = sorted({k for p in points for k in p.overrides})
  header = list(COLUMNS) + swept + ['error', 'grid']
  records = [[row[c] for c in COLUMNS]
             + [p.overrides.get(k) for k in swept] + [p.error, _grid_path(p)]
             for p, row in zip(points, rows(points, h_hat))]
  return _csv(header, records)


def frontier_csv(points: Points, hull: bool = False) -> str:
  return _csv(('name', 'rate', 'distortion'),
              [(p.name, repr(p.measure('rate')),
                repr(p.measure('distortion')))
               for p in sweep_results.frontier_points(points, hull)])


def plane_points(points: Points) -> list[figures.PlanePoint]:
  """The finished points for the figures; targets are annotated."""
  return [figures.PlanePoint(
      name=p.name, rate=p.measure('rate'), distortion=p.measure('distortion'),
      family=p.family,
      note=p.setting if p.target is not None else '')
          for p in sweep_results.finished(points)]


def _grid_title(p: sweep_results.PointResults) -> str:
  return (f'{p.name}\n{p.family or ""} {p.kind or ""} {p.setting}\n'
          f"R={p.measure('rate'):.4g} D={p.measure('distortion'):.4g} nats")


def _read_png(path: str) -> np.ndarray:
  return metric_files.read_grid(path)


def _family_key(family: Optional[str]) -> str:
  """Sorts families simple before complex: '-' < '+' < 'v'."""
  return (family or '').translate(str.maketrans('-+v', '012'))


def _spread(items: Points, limit: int) -> list[sweep_results.PointResults]:
  """At most `limit` items, evenly spaced (first and last kept)."""
  if len(items) <= limit:
    return list(items)
  picks = np.unique(np.round(np.linspace(0, len(items) - 1, limit)))
  return [items[int(i)] for i in picks]


def choose_grids(points: Points, betas: Sequence[float] = (1.0,),
                 max_grids: int = 12, families: Sequence[str] = ()
                 ) -> dict[str, list[sweep_results.PointResults]]:
  """Fig. 4's choices: file stem -> finished points with a grid.

  'grids_frontier': the Pareto frontier by rate (Fig. 4d, 6); 'grids_beta_<b>':
  the points trained at the final beta b (Fig. 4c at b = 1), by family;
  'grids_family_<f>': the points of family f by falling rate, autoencoders
  to autodecoders (Fig. 4a, b). Each at most `max_grids`, evenly spaced.
  """
  with_grid = [p for p in sweep_results.finished(points) if p.grid]
  front = [p for p in sweep_results.frontier_points(points) if p.grid]
  chosen = {'grids_frontier': _spread(front, max_grids)}
  for beta in betas:
    same = sorted((p for p in with_grid if p.beta is not None
                   and math.isclose(p.beta, beta, rel_tol=1e-9)),
                  key=lambda p: (_family_key(p.family), p.name))
    chosen[f'grids_beta_{beta:g}'] = _spread(same, max_grids)
  for family in families:
    same = sorted((p for p in with_grid if p.family == family),
                  key=lambda p: (-p.measure('rate'), p.name))
    chosen[f'grids_family_{family}'] = _spread(same, max_grids)
  return {stem: group for stem, group in chosen.items() if group}


def choose_curves(points: Points, names: Sequence[str] = ()
                  ) -> list[sweep_results.PointResults]:
  """The finished points with ais.json whose decoder curves are drawn:
  those named, else the Pareto frontier's, else every one."""
  with_ais = [p for p in sweep_results.finished(points) if p.ais]
  if names:
    return [p for p in with_ais if p.name in names]
  front = {p.name for p in sweep_results.frontier_points(points)}
  return [p for p in with_ais if p.name in front] or with_ais


def decoder_curves(points: Points, names: Sequence[str] = ()
                   ) -> list[ais_figures.DecoderCurve]:
  plane = {q.name: q for q in plane_points(points)}
  curves = []
  for p in choose_curves(points, names):
    curve = p.ais['curve']
    own = (p.ais_measure('own_rate'), p.ais_measure('own_distortion'))
    curves.append(ais_figures.DecoderCurve(plane[p.name], *(
        np.array([c[k] for c in curve], np.float64)
        for k in ais_files.CURVE_KEYS), own=None if None in own else own))
  return curves


def write_figures(points: Points, h_hat: Optional[float],
                  directory: str, betas: Sequence[float] = (1.0,),
                  max_grids: int = 12, families: Sequence[str] = (),
                  curves: Sequence[str] = ()) -> list[str]:
  """Draws every figure of the report into directory; returns file names."""
  plane = plane_points(points)
  if not plane:
    return []
  names = ['rd_plane.png', 'elbo_rate.png']
  chosen = decoder_curves(points, curves)
  if chosen:
    names.append('rd_curves_ais.png')
    ais_figures.plot_decoder_curves(plane, chosen, h_hat,
                                    os.path.join(directory, names[-1]))
  figures.plot_rd_plane(plane, h_hat, os.path.join(directory, names[0]))
  figures.plot_elbo_rate(plane, h_hat, os.path.join(directory, names[1]))
  panels = os.path.join(directory, 'rd_panels.png')
  if figures.plot_rd_panels(plane, h_hat, panels):
    names.append('rd_panels.png')
  elif os.path.exists(panels):  # an earlier report's, of other points
    os.remove(panels)
  for stem, group in choose_grids(points, betas, max_grids,
                                  families).items():
    names.append(f'{stem}.png')
    figures.plot_grids([(_grid_title(p), _read_png(p.grid)) for p in group],
                       os.path.join(directory, names[-1]))
  return names


def _hparam_value(value: Any) -> Any:
  if isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def write_hparams(points: Points, h_hat: Optional[float],
                  directory: str) -> None:
  """One TensorBoard HParams run per finished point, replacing the old ones.

  Hyperparameters: family, objective kind, beta, target, schedule and every
  swept key; metrics: the measures of `sweep_results.MEASURES` and H-hat - D.
  """
  import tensorboardX  # pylint: disable=g-import-not-at-top
  tmp, old = f'{directory}.tmp', f'{directory}.old'
  for path in (tmp, old):
    shutil.rmtree(path, ignore_errors=True)
  table = {row['name']: row for row in rows(points, h_hat)}
  with tensorboardX.SummaryWriter(tmp) as writer:
    for p in sweep_results.finished(points):
      hparams = {'family': p.family, 'objective': p.kind, 'beta': p.beta,
                 'target': p.target, 'schedule': p.schedule}
      hparams.update(p.overrides)
      hparams = {k: _hparam_value(v) for k, v in hparams.items()
                 if v is not None}
      metrics = {f'hparams/{k}': table[p.name][k]
                 for k in (*sweep_results.MEASURES, 'h_hat_minus_d')
                 if table[p.name][k] is not None}
      writer.add_hparams(hparams, metrics, name=p.name)
  if os.path.exists(directory):
    os.replace(directory, old)
  os.replace(tmp, directory)
  shutil.rmtree(old, ignore_errors=True)


def frontier_rows(points: Points) -> list[dict]:
  """The Pareto points by rate; hull vertices with their range of beta.

  Hull vertex k of M (by rate) minimises D + beta R for beta between the
  slopes of its two edges, -dD/dR: [b_k, b_(k-1)] with b_(-1) = inf and
  b_(M-1) = 0.
  """
  hull = sweep_results.frontier_points(points, hull=True)
  rate = [p.measure('rate') for p in hull]
  distortion = [p.measure('distortion') for p in hull]
  edges = [math.inf, *frontier.hull_betas(rate, distortion), 0.0]
  ranges = {p.name: f'{edges[k + 1]:.4g} to {edges[k]:.4g}'
            for k, p in enumerate(hull)}
  return [{'name': p.name, 'rate': p.measure('rate'),
           'distortion': p.measure('distortion'),
           'betas': ranges.get(p.name, '')}
          for p in sweep_results.frontier_points(points)]


def status_counts(points: Points) -> str:
  """E.g. '8 done, 1 pending, 1 failed' (and ', 2 damaged' when any are)."""
  counts = {s: sum(p.status == s for p in points)
            for s in sweep_files.FILE_STATUSES}
  text = (f"{counts['done']} done, {counts['pending']} pending, "
          f"{counts['failed']} failed")
  return text + (f", {counts['damaged']} damaged" if counts['damaged']
                 else '')


def vacuous_bounds(points: Points, h_hat: Optional[float]) -> list[str]:
  """A sentence for each kind of vacuous bound in the table, saying why it
  can be: E < 0 at some point, H-hat - D < 0 at some point."""
  notes = []
  lower = [p.name for p in points
           if (e := p.measure('generative_lower')) is not None and e < 0]
  if lower:
    notes.append(
        f'E < 0 at {len(lower)} point(s) ({", ".join(lower[:5])}'
        f'{", ..." if len(lower) > 5 else ""}): E is the mean over generated '
        'pairs z ~ m(z), x ~ d(x|z) of a sampled log e(z|x) - log m(z), a '
        'lower bound on the generative mutual information that can be '
        'negative (vacuous) when the encoder does not invert the decoder, '
        'as after short training.')
  if h_hat is not None:
    below = [p.name for p in points
             if (d := p.measure('distortion')) is not None and h_hat - d < 0]
    if below:
      notes.append(
          f'H-hat - D < 0 at {len(below)} point(s): H-hat is an estimate '
          '(the best -IWAE of the sweep, an upper bound on the data '
          'entropy H), not H itself, so the lower bound H - D <= I is '
          'vacuous there.')
  return notes


def markdown(points: Points, h_hat: Optional[float], source: str,
             figure_names: Sequence[str], title: str) -> str:
  """report.md: counts, H-hat, the figures, the frontier and every point."""
  h_text = 'unknown' if h_hat is None else f'{h_hat:.6g} nats'
  lines = [f'# Sweep report: {title}', '',
           f'{len(points)} points: {status_counts(points)}.', '',
           f'H-hat = {h_text}: {source}. The dashed line is D = H-hat - R; '
           'the black staircase the Pareto frontier of the finished points, '
           'the grey line their lower convex hull. All figures in nats.', '']
  lines += [f'**Not comparable**: {line}.\n'
            for line in sweep_results.disagreements(points)]
  lines += [f'{note}\n' for note in vacuous_bounds(points, h_hat)]
  lines += [f'![{name}]({name})\n' for name in figure_names]
  lines += ['## Pareto frontier', '',
            'Hull vertices minimise D + beta R (Eq. 6) for beta in the range '
            'given; the other frontier points no beta picks out.', '',
            markdown_table(frontier_rows(points),
                           ('name', 'rate', 'distortion', 'betas'),
                           ('name', 'R', 'D', 'beta range (hull)')), '',
            '## Points', '',
            'frontier: P on the Pareto frontier, H a vertex of the lower '
            'convex hull. AIS log p(x) is the mean over the test images of '
            'ais.json (a subset), the BDMC gap and the I_gen bounds are '
            'over images simulated from the model: I_gen lies in '
            '[mean log d(x|z) - upper, mean log d(x|z) - lower].', '',
            markdown_table(rows(points, h_hat)), '']
  damaged = [p for p in points if p.ais_error]
  if damaged:
    lines += ['## Damaged ais.json', '']
    lines += [f'- {p.name}: {p.ais_error}' for p in damaged] + ['']
  for status, heading in (('failed', 'Failed points'),
                          ('damaged', 'Damaged points')):
    listed = [p for p in points if p.status == status]
    if listed:
      lines += [f'## {heading}', '']
      lines += [f'- {p.name}: {p.error}' for p in listed]
      lines.append('')
  return '\n'.join(lines)


def write_report(workdir: str, betas: Sequence[float] = (1.0,),
                 max_grids: int = 12, families: Sequence[str] = (),
                 curves: Sequence[str] = ()) -> dict[str, Any]:
  """Reads the sweep in workdir and writes workdir/report/ (module docstring).

  Returns:
    {'points': the Points, 'h_hat': H-hat or None, 'directory': the report
    directory, 'files': the names written}.
  """
  points = sweep_results.read_sweep(workdir)
  h_hat, source = sweep_results.estimate_entropy(points)
  directory = os.path.join(workdir, sweep_results.REPORT_DIR)
  os.makedirs(directory, exist_ok=True)
  texts = {'points.csv': points_csv(points, h_hat),
           'frontier.csv': frontier_csv(points),
           'hull.csv': frontier_csv(points, hull=True)}
  for name, text in texts.items():
    atomic_files.write_text_atomic(os.path.join(directory, name), text)
  names = write_figures(points, h_hat, directory, betas, max_grids,
                        families, curves)
  title = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
  atomic_files.write_text_atomic(os.path.join(directory, 'report.md'),
                    markdown(points, h_hat, source, names, title))
  write_hparams(points, h_hat, os.path.join(directory, 'tensorboard'))
  return {'points': points, 'h_hat': h_hat, 'directory': directory,
          'files': [*texts, *names, 'report.md', 'tensorboard']}
