"""Every figure of rdvae (the paper's Figs. 2, 3 and 4), from arrays.

The toy's Fig. 2 is drawn by `toy_figures`. No training code is imported: callers pass numpy arrays and strings, so a
report can draw a sweep from its results files alone. Drawn with matplotlib's
object API on the Agg canvas (no pyplot, no global state); each PNG is written
through a temporary file and `os.replace`, so a crash leaves the old figure.

  plot_rd_plane      Fig. 3a(i): every run in the RD plane with the stepwise
                     Pareto frontier, the lower convex hull and D = H-hat - R.
  plot_rd_panels     Fig. 3a(ii-iv): the frontier of each encoder, decoder
                     and marginal kind.
  plot_elbo_rate     Fig. 3b: -ELBO = R + D against R.
  plot_grids         Fig. 4: the sample grids of chosen runs side by side.

Families are the paper's triples (e, d, m), written as 3-letter strings such
as '-+v': encoder '-' Gaussian or '+' IAF; decoder '-' deconvolutional or '+'
PixelCNN++; marginal '-' standard normal, '+' MAF or 'v' VampPrior. As in the
caption of Fig. 3, shape encodes the marginal, lightness of colour the
decoder (dark: deconvolutional, light: PixelCNN++) and fill the encoder
(filled: Gaussian, open: IAF). Runs of other models (the toy) are grey,
one marker per model name.
"""

from __future__ import annotations

import os
import textwrap
from typing import TYPE_CHECKING, NamedTuple, Optional, Sequence

import numpy as np

from rdvae.analysis import frontier

if TYPE_CHECKING:
  from matplotlib import figure as mpl_figure

ENCODERS = {'-': 'Gaussian', '+': 'IAF'}
DECODERS = {'-': 'deconv', '+': 'PixelCNN++'}
MARGINALS = {'-': 'normal', '+': 'MAF', 'v': 'VampPrior'}
MARGINAL_MARKERS = {'-': 'o', '+': 's', 'v': 'v'}
DECODER_COLOURS = {'-': '#08306b', '+': '#6baed6'}  # dark and light blue
OTHER_MARKERS = ('X', 'P', 'D', '*', 'h')
GROUP_COLOURS = ('#1f77b4', '#2ca02c', '#d62728')
NATS = '(nats)'
LEGEND_TITLE = '(e, d, m): fill e, shade d, shape m'
HAT_H = r'$\hat{H}$'
RD_TITLE = ('Fig. 3a: rate and distortion of each run (lower left is '
            'better), with their Pareto frontier')
ELBO_TITLE = 'Fig. 3b: -ELBO = R + D of each run against its rate R'
PANELS_TITLE = 'Fig. 3a(ii-iv): the frontier of each kind of {parts}'
# The column labels of a run's sample grid (metric_files.write_sample_grid):
# data | x ~ d(x|z), z ~ e(z|x) | mean of decodes, then z ~ m(z): x | mean.
GRID_COLUMNS = ('data', 'recon', 'mean', 'gen', 'mean')
GRID_CAPTION = ('data | recon: x ~ d(x|z), z ~ e(z|x) | mean of its decodes'
                '  ||  gen: x ~ d(x|z), z ~ m(z) | mean of its decodes')


def new_figure(width: float, height: float) -> mpl_figure.Figure:
  """A figure on its own Agg canvas (no pyplot state).

  matplotlib is imported here, on the first figure, not with the package: it
  is a second of every command's start-up, and most commands (a rejected
  config, a run's training) draw nothing.
  """
  # pylint: disable=g-import-not-at-top
  from matplotlib import figure as mpl_figure
  from matplotlib.backends import backend_agg
  fig = mpl_figure.Figure(figsize=(width, height))
  backend_agg.FigureCanvasAgg(fig)
  return fig


def save(fig: mpl_figure.Figure, path: str, dpi: int = 100) -> None:
  """Writes `fig` to the PNG `path` through a temporary file."""
  tmp = f'{path}.tmp.png'
  fig.savefig(tmp, dpi=dpi, format='png')
  os.replace(tmp, path)


# Fig. 3: the RD plane.


class PlanePoint(NamedTuple):
  """One run in the RD plane."""

  name: str
  rate: float                 # R, nats
  distortion: float           # D, nats
  family: Optional[str]       # (e, d, m) as '-+v', or None (e.g. the toy)
  note: str = ''              # drawn beside the point, e.g. a target rate


def is_family(family: Optional[str]) -> bool:
  """Whether `family` is an (e, d, m) string of the paper's legend."""
  return (isinstance(family, str) and len(family) == 3
          and family[0] in ENCODERS and family[1] in DECODERS
          and family[2] in MARGINALS)


def family_label(family: Optional[str]) -> str:
  """'(e,d,m)' for a family; any other name as it is; None as 'other'."""
  if is_family(family):
    return f'({",".join(family)})'
  return 'other' if family is None else str(family)


def family_style(family: Optional[str], other: int = 0) -> dict:
  """Marker keywords of a family: shape = marginal, colour = decoder, fill =
  encoder; the `other`-th kind of non-family run gets a grey marker of its
  own."""
  if not is_family(family):
    return dict(marker=OTHER_MARKERS[other % len(OTHER_MARKERS)],
                color='0.35', markersize=7, linestyle='none')
  colour = DECODER_COLOURS[family[1]]
  return dict(marker=MARGINAL_MARKERS[family[2]], color=colour,
              markeredgecolor=colour, markeredgewidth=1.3, markersize=7,
              markerfacecolor=colour if family[0] == '-' else 'white',
              linestyle='none')


def _arrays(points: Sequence[PlanePoint]) -> tuple[np.ndarray, np.ndarray]:
  return (np.array([p.rate for p in points], np.float64),
          np.array([p.distortion for p in points], np.float64))


def plane_view(points: Sequence[PlanePoint], skew: bool = False
               ) -> tuple[tuple[float, float], tuple[float, float]]:
  """The axes' limits ((R low, R high), (D low, D high)) that fit the points
  (with `skew`, R + D for D), never stretched to H-hat: R from 0 to a margin
  past the largest, D (R + D) the points' range with a margin."""
  rate, distortion = _arrays(points)
  if not len(points):
    return (0.0, 1.0), (0.0, 1.0)
  values = rate + distortion if skew else distortion
  low, high = float(values.min()), float(values.max())
  margin = 0.08 * max(high - low, 0.05 * abs(high), 1e-3)
  low = low - margin if skew else max(0.0, low - margin)
  return (0.0, 1.08 * max(float(rate.max()), 1e-3)), (low, high + margin)


def _mark_entropy(ax, h_hat: Optional[float], view, skew: bool) -> None:
  """Says where the H-hat line is when it is outside the view, rather than
  stretching the axes to it."""
  if h_hat is None:
    return
  (_, r_high), (low, high) = view
  if skew:
    above, below = h_hat > high, h_hat < low
    line = f'-ELBO = {HAT_H}'
  else:
    above, below = h_hat - r_high > high, h_hat < low
    line = f'D = {HAT_H} - R'
  if above or below:
    ax.text(0.98, 0.98 if above else 0.02,
            f'{"↑" if above else "↓"} {line} ({HAT_H} = {h_hat:.4g} nats) '
            f'lies {"above" if above else "below"} this view',
            transform=ax.transAxes, ha='right', va='top' if above else
            'bottom', fontsize=8, bbox=dict(fc='white', ec='0.6', alpha=0.9))


def _draw_points(ax, points, skew: bool = False) -> list:
  """Every point in its family's style; returns legend handles."""
  handles = {}
  others = sorted({family_label(p.family) for p in points
                   if not is_family(p.family)})
  for p in points:
    y = p.rate + p.distortion if skew else p.distortion
    label = family_label(p.family)
    style = family_style(p.family, others.index(label) if label in others
                         else 0)
    (line,) = ax.plot([p.rate], [y], **style,
                      label='_nolegend_' if label in handles else label)
    handles.setdefault(label, line)
    if p.note:
      ax.annotate(p.note, (p.rate, y), textcoords='offset points',
                  xytext=(4, 4), fontsize=7, color='0.2')
  return [handles[k] for k in sorted(handles, key=_legend_key)]


def _legend_key(label: str) -> tuple:
  """Families simple before complex ('-' < '+' < 'v'), then the others."""
  return (not label.startswith('('),
          label.translate(str.maketrans('-+v', '012')))


def _finish(ax, handles, title: str, xlabel: str, ylabel: str) -> None:
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(handles=handles, fontsize=8, loc='upper left',
            bbox_to_anchor=(1.01, 1.0), title=LEGEND_TITLE, title_fontsize=8,
            borderaxespad=0.0)


def _draw_frontier(ax, points, h_hat, skew: bool = False) -> list:
  """Stepwise frontier, lower hull and the line D = H-hat - R."""
  rate, distortion = _arrays(points)
  handles = []
  (_, r_max), (_, d_max) = plane_view(points)
  if len(points) and skew:
    # The sheared staircase is a sawtooth that hides the points; join the
    # frontier points instead.
    front = frontier.pareto_indices(rate, distortion)
    handles += ax.plot(rate[front], rate[front] + distortion[front], 'k-',
                       lw=0.8, label='Pareto frontier points, joined')
  elif len(points):
    xs, ys = frontier.stepwise(rate, distortion, rate_max=r_max,
                               distortion_max=d_max)
    handles += ax.plot(xs, ys, 'k-', lw=1.2, label='Pareto frontier')
  if len(points):
    hull = frontier.lower_hull_indices(rate, distortion)
    hx, hy = rate[hull], distortion[hull]
    handles += ax.plot(hx, hx + hy if skew else hy, '-', color='0.6', lw=2.0,
                       alpha=0.8, label='lower convex hull', zorder=1)
  if h_hat is not None:
    label = f'{HAT_H} = {h_hat:.4g}'
    if skew:
      handles.append(ax.axhline(h_hat, color='k', ls='--', lw=1.0,
                                label=f'-ELBO = {label}'))
    else:
      handles += ax.plot([0.0, h_hat], [h_hat, 0.0], 'k--', lw=1.0,
                         label=f'D = {HAT_H} - R, {label}')
  return handles


def plot_rd_plane(points: Sequence[PlanePoint], h_hat: Optional[float],
                  path: str, title: str = RD_TITLE) -> mpl_figure.Figure:
  """Fig. 3a(i): every point, the stepwise Pareto frontier, the lower convex
  hull and the dashed line from (0, H-hat) to (H-hat, 0), written to path.

  Points above the dashed line D = H-hat - R are achievable in principle
  (H - D <= I <= R, Eq. 3, with H <= H-hat); the frontier is that of all
  points given (see rdvae/analysis/frontier.py). The axes fit the points
  (`plane_view`); a dashed line outside them is named at the edge.
  """
  fig = new_figure(9.5, 6.0)
  ax = fig.subplots()
  handles = _draw_frontier(ax, points, h_hat) + _draw_points(ax, points)
  view = plane_view(points)
  ax.set_xlim(*view[0])
  ax.set_ylim(*view[1])
  _mark_entropy(ax, h_hat, view, skew=False)
  _finish(ax, handles, title, f'Rate R {NATS}', f'Distortion D {NATS}')
  fig.tight_layout()
  save(fig, path)
  return fig


def plot_elbo_rate(points: Sequence[PlanePoint], h_hat: Optional[float],
                   path: str, title: str = ELBO_TITLE) -> mpl_figure.Figure:
  """Fig. 3b: -ELBO = R + D against R, the same points on skew axes.

  The shear (R, D) -> (R, R + D) maps the hull onto its image and the line
  D = H-hat - R onto the level -ELBO = H-hat; the Pareto points are joined
  by straight segments (the sheared staircase would be a sawtooth).
  """
  fig = new_figure(9.5, 6.0)
  ax = fig.subplots()
  handles = (_draw_frontier(ax, points, h_hat, skew=True)
             + _draw_points(ax, points, skew=True))
  view = plane_view(points, skew=True)
  ax.set_xlim(*view[0])
  ax.set_ylim(*view[1])
  _mark_entropy(ax, h_hat, view, skew=True)
  _finish(ax, handles, title, f'Rate R {NATS}', f'-ELBO = R + D {NATS}')
  fig.tight_layout()
  save(fig, path)
  return fig


PARTS = (('encoder', 0, ENCODERS), ('decoder', 1, DECODERS),
         ('marginal', 2, MARGINALS))


def panel_parts(points: Sequence[PlanePoint]) -> list[str]:
  """The components (encoder, decoder, marginal) whose kinds differ among
  the family points: the panels of `plot_rd_panels` that compare
  something."""
  families = {p.family for p in points if is_family(p.family)}
  return [part for part, pos, _ in PARTS
          if len({f[pos] for f in families}) > 1]


def plot_rd_panels(points: Sequence[PlanePoint], h_hat: Optional[float],
                   path: str) -> Optional[mpl_figure.Figure]:
  """Fig. 3a(ii-iv): one panel per component whose kinds differ among the
  points (`panel_parts`; nothing is drawn, and None returned, when none
  does); in each, the points of every kind of that component and their own
  stepwise Pareto frontier, in one colour per kind. Only family points are
  drawn; the axes fit them (`plane_view`).
  """
  points = [p for p in points if is_family(p.family)]
  shown = panel_parts(points)
  if not shown:
    return None
  fig = new_figure(5.0 * len(shown) + 0.5, 5.3)
  axes = np.atleast_1d(fig.subplots(1, len(shown), sharex=True, sharey=True))
  view = plane_view(points)
  parts = [part for part in PARTS if part[0] in shown]
  for ax, (part, pos, kinds) in zip(axes, parts):
    for colour, (kind, name) in zip(GROUP_COLOURS, kinds.items()):
      group = [p for p in points if p.family[pos] == kind]
      if not group:
        continue
      rate, distortion = _arrays(group)
      xs, ys = frontier.stepwise(rate, distortion, rate_max=view[0][1],
                                 distortion_max=view[1][1])
      ax.plot(xs, ys, '-', color=colour, lw=1.5,
              label=f'{part} {kind} ({name}), {len(group)} runs')
      ax.plot(rate, distortion, 'o', color=colour, ms=4, alpha=0.6)
    if h_hat is not None:
      ax.plot([0, h_hat], [h_hat, 0], 'k--', lw=1.0,
              label=f'D = {HAT_H} - R')
    ax.set_xlim(*view[0])
    ax.set_ylim(*view[1])
    _mark_entropy(ax, h_hat, view, skew=False)
    ax.set_xlabel(f'Rate R {NATS}')
    present = [name for kind, name in kinds.items()
               if any(p.family[pos] == kind for p in points)]
    ax.set_title(f'{part}: {" vs ".join(present)}', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper right')
  axes[0].set_ylabel(f'Distortion D {NATS}')
  fig.suptitle(PANELS_TITLE.format(parts=', '.join(shown)), fontsize=11)
  fig.tight_layout()
  save(fig, path)
  return fig


# Fig. 4: sample grids.


def grid_column_centres(width: int, pad: int = 1, gap: int = 4
                        ) -> list[float]:
  """The x pixel of each column's centre in a run's sample grid `width`
  pixels wide (3 + 2 tiles, `metric_files.image_grid`); [] for another
  layout."""
  tile, rest = divmod(width - 2 * pad - 3 * pad - gap - 2 * pad, 5)
  if rest or tile <= 0:
    return []
  left = [pad + j * (tile + pad) for j in range(3)]
  start = 3 * (tile + pad) + pad + gap
  left += [start + pad + j * (tile + pad) for j in range(2)]
  return [x + (tile - 1) / 2 for x in left]


def plot_grids(entries: Sequence[tuple[str, np.ndarray]], path: str,
               per_row: int = 6) -> None:
  """Fig. 4: the grids of chosen runs side by side, each under its title.

  Args:
    entries: (title, image) pairs; image a [H, W] array in [0, 1], e.g. a
      run's images/grid_<step>.png (data | sample | mean of the decodes, then
      generations sample | mean; see `metric_files.write_sample_grid`).
    path: the PNG to write.
    per_row: grids per row of the figure.
  """
  if not entries:
    raise ValueError('plot_grids needs at least one (title, image) entry')
  rows = -(-len(entries) // per_row)
  cols = -(-len(entries) // rows)
  height, width = np.shape(entries[0][1])[:2]
  panel_w = 2.8
  panel_h = panel_w * height / max(width, 1) + 0.6
  fig = new_figure(max(panel_w * cols, 3.2), panel_h * rows + 0.5)
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.ravel():
    ax.axis('off')
  for ax, (title, image) in zip(axes.ravel(), entries):
    ax.imshow(np.asarray(image), cmap='gray', vmin=0.0, vmax=1.0,
              interpolation='nearest')
    # Long point names wrap to the panel's width (about 44 characters).
    wrapped = '\n'.join(textwrap.fill(line.replace(',', ', '), 44,
                                       break_on_hyphens=False)
                         for line in title.split('\n'))
    ax.set_title(wrapped, fontsize=7, pad=12)
    for x, label in zip(grid_column_centres(np.shape(image)[1]),
                        GRID_COLUMNS):
      ax.text(x, -2, label, ha='center', va='bottom', fontsize=6)
  fig.suptitle(GRID_CAPTION, fontsize=8)
  # The caption's line stays clear of the panels' titles.
  fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.25 / fig.get_figheight()))
  save(fig, path, dpi=120)

