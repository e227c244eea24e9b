"""Every figure of rdvae (the paper's Figs. 2, 3 and 4), from arrays.

No training code is imported: callers pass numpy arrays and strings, so a
report can draw a sweep from its results files alone. Drawn with matplotlib's
object API on the Agg canvas (no pyplot, no global state); each PNG is written
through a temporary file and `os.replace`, so a crash leaves the old figure.

  plot_toy_columns   Fig. 2: the toy's distributions, one column per model.
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
from typing import NamedTuple, Optional, Sequence

import numpy as np
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg

from rdvae.analysis import frontier

PURPLE = '#5b2a86'
YELLOW = '#e8b10b'
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
GRID_CAPTION = ('left, z ~ e(z|x): data | sample | mean of decodes\n'
                'right, z ~ m(z): sample | mean of decodes')


def new_figure(width: float, height: float) -> mpl_figure.Figure:
  fig = mpl_figure.Figure(figsize=(width, height))
  backend_agg.FigureCanvasAgg(fig)
  return fig


def save(fig: mpl_figure.Figure, path: str, dpi: int = 100) -> None:
  tmp = f'{path}.tmp.png'
  fig.savefig(tmp, dpi=dpi, format='png')
  os.replace(tmp, path)


# Fig. 2: the toy.


class ToyColumn(NamedTuple):
  """One model of the toy, as probability tables (numpy, float)."""

  title: str
  p_data: np.ndarray        # [X] p*(x)
  centres: np.ndarray       # [X] the value x_j the model sees of bin j
  class_joint: np.ndarray   # [C, X] p(z*, x) = p(z*) p(x | z*)
  encoder: np.ndarray       # [X, K] e(z|x)
  decoder: np.ndarray       # [K, X] d(x|z)
  marginal: np.ndarray      # [K] m(z)


def latent_order(p_data, centres, encoder) -> np.ndarray:
  """Latent indices sorted by posterior mean of x; unused states last.

  Latent states carry no order of their own, so for display only they are
  sorted by sum_x x p_e(x|z); states the encoder barely uses (e(z) <= 1e-4)
  go last.
  """
  joint = np.asarray(p_data)[:, None] * np.asarray(encoder)  # [X, K]
  mass = joint.sum(axis=0)
  mean_x = (np.asarray(centres) @ joint) / np.where(mass > 0, mass, 1.0)
  key = np.where(mass > 1e-4, mean_x, np.inf)
  return np.argsort(key, kind='stable')


def _toy_data(column: ToyColumn) -> dict:
  order = latent_order(column.p_data, column.centres, column.encoder)
  e = np.asarray(column.encoder)[:, order]          # [X, K]
  d = np.asarray(column.decoder)[order]             # [K, X]
  m = np.asarray(column.marginal)[order]            # [K]
  aggregate = np.asarray(column.p_data) @ e
  return {'g': m @ d, 'd_x': aggregate @ d, 'm': m, 'e_z': aggregate,
          'class_joint': np.asarray(column.class_joint) @ e,  # [C, K]
          'encoder': e, 'decoder': d, 'kernel': e @ d}


def plot_toy_columns(columns: Sequence[ToyColumn], path: str) -> None:
  """Fig. 2: a 5-row figure with one column per model, written to path.

  Rows, as in the Fig. 2 caption: (i) data space: p*(x), g(x) = sum_z m(z)
  d(x|z) and the reconstruction distribution d(x) = sum_x' sum_z p*(x')
  e(z|x') d(x|z); (ii) latent space: m(z), e(z) = sum_x p*(x) e(z|x), and
  e(z) split by the true class, p(z, z* = 0) (purple) and p(z, z* = 1)
  (yellow), which sum to e(z); (iii) e(z|x), (iv) d(x|z), (v) p(x'|x) =
  sum_z e(z|x) d(x'|z) as images. Latent states in `latent_order`.
  """
  width, height = 3.2 * len(columns), 13.0
  fig = new_figure(width, height)
  axes = fig.subplots(5, len(columns), squeeze=False)
  _fixed_margins(fig, width, height, len(columns), 5)
  for col, column in enumerate(columns):
    data = _toy_data(column)
    bins = np.arange(len(column.p_data))
    ax = axes[0, col]
    ax.bar(bins, column.p_data, color='0.8', label='p*(x)')
    ax.plot(bins, data['g'], 'C0-', label='g(x)')
    ax.plot(bins, data['d_x'], 'C3--', label='d(x)')
    ax.set_title(column.title, fontsize=10)
    ax.set_xlabel('x')
    latents = np.arange(len(data['m']))
    ax = axes[1, col]
    ax.fill_between(latents, 0, data['class_joint'][0], color=PURPLE,
                    alpha=0.5, step='mid', label='e(z, z*=0)')
    ax.fill_between(latents, data['class_joint'][0], data['e_z'],
                    color=YELLOW, alpha=0.6, step='mid', label='e(z, z*=1)')
    ax.plot(latents, data['m'], 'k-', drawstyle='steps-mid', label='m(z)')
    ax.plot(latents, data['e_z'], 'C2:', drawstyle='steps-mid', label='e(z)')
    ax.set_xlabel('z (sorted)')
    for row, key, label in ((2, 'encoder', 'e(z|x): z down, x across'),
                            (3, 'decoder', 'd(x|z): z down, x across'),
                            (4, 'kernel', "p(x'|x): x down, x' across")):
      image = data[key].T if key == 'encoder' else data[key]
      axes[row, col].imshow(image, cmap='viridis', aspect='auto',
                            interpolation='nearest')
      axes[row, col].set_title(label, fontsize=8)
    if col == 0:
      axes[0, 0].legend(fontsize=7)
      axes[1, 0].legend(fontsize=7)
  save(fig, path, dpi=80)


def _fixed_margins(fig, width: float, height: float, cols: int,
                   rows: int) -> None:
  """Margins and gaps in inches that fit the toy panels' ticks, labels and
  titles, set without `tight_layout`'s measuring pass (a third of the time
  of drawing a toy column, and a toy sweep draws one per point)."""
  left, right, top, bottom = 0.5, 0.1, 0.3, 0.4
  gap_x, gap_y = 0.55, 0.8
  axes_w = (width - left - right - (cols - 1) * gap_x) / cols
  axes_h = (height - top - bottom - (rows - 1) * gap_y) / rows
  fig.subplots_adjust(left=left / width, right=1 - right / width,
                      top=1 - top / height, bottom=bottom / height,
                      wspace=gap_x / axes_w, hspace=gap_y / axes_h)


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


def _limits(points, h_hat) -> tuple[float, float]:
  rate, distortion = _arrays(points)
  top = [1.0] + ([h_hat] if h_hat is not None else [])
  return (1.05 * max([*rate, *top]), 1.05 * max([*distortion, *top]))


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
  r_max, d_max = _limits(points, h_hat)
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
                  path: str, title: str = 'Rate-distortion plane') -> None:
  """Fig. 3a(i): every point, the stepwise Pareto frontier, the lower convex
  hull and the dashed line from (0, H-hat) to (H-hat, 0), written to path.

  Points above the dashed line D = H-hat - R are achievable in principle
  (H - D <= I <= R, Eq. 3, with H <= H-hat); the frontier is that of all
  points given (see rdvae/analysis/frontier.py).
  """
  fig = new_figure(9.5, 6.0)
  ax = fig.subplots()
  handles = _draw_frontier(ax, points, h_hat) + _draw_points(ax, points)
  r_max, d_max = _limits(points, h_hat)
  ax.set_xlim(0, r_max)
  ax.set_ylim(0, d_max)
  _finish(ax, handles, title, f'Rate R {NATS}', f'Distortion D {NATS}')
  fig.tight_layout()
  save(fig, path)


def plot_elbo_rate(points: Sequence[PlanePoint], h_hat: Optional[float],
                   path: str, title: str = '-ELBO against rate') -> None:
  """Fig. 3b: -ELBO = R + D against R, the same points on skew axes.

  The shear (R, D) -> (R, R + D) maps the hull onto its image and the line
  D = H-hat - R onto the level -ELBO = H-hat; the Pareto points are joined
  by straight segments (the sheared staircase would be a sawtooth).
  """
  fig = new_figure(9.5, 6.0)
  ax = fig.subplots()
  handles = (_draw_frontier(ax, points, h_hat, skew=True)
             + _draw_points(ax, points, skew=True))
  rate, distortion = _arrays(points)
  r_max, _ = _limits(points, h_hat)
  values = [*(rate + distortion)] + ([h_hat] if h_hat is not None else [])
  low, high = (min(values), max(values)) if values else (0.0, 1.0)
  margin = 0.05 * max(high - low, 1e-3)
  ax.set_xlim(0, r_max)
  ax.set_ylim(low - margin, high + margin)
  _finish(ax, handles, title, f'Rate R {NATS}', f'-ELBO = R + D {NATS}')
  fig.tight_layout()
  save(fig, path)


def plot_rd_panels(points: Sequence[PlanePoint], h_hat: Optional[float],
                   path: str) -> None:
  """Fig. 3a(ii-iv): one panel per component (encoder, decoder, marginal);
  in each, the points of every kind of that component and their own stepwise
  Pareto frontier, in one colour per kind. Only family points are drawn.
  """
  points = [p for p in points if is_family(p.family)]
  parts = (('encoder', 0, ENCODERS), ('decoder', 1, DECODERS),
           ('marginal', 2, MARGINALS))
  fig = new_figure(15.0, 5.0)
  axes = fig.subplots(1, 3, sharex=True, sharey=True)
  r_max, d_max = _limits(points, h_hat)
  for ax, (part, pos, kinds) in zip(axes, parts):
    for colour, (kind, name) in zip(GROUP_COLOURS, kinds.items()):
      group = [p for p in points if p.family[pos] == kind]
      if not group:
        continue
      rate, distortion = _arrays(group)
      xs, ys = frontier.stepwise(rate, distortion, rate_max=r_max,
                                 distortion_max=d_max)
      ax.plot(xs, ys, '-', color=colour, lw=1.5,
              label=f'{part} {kind} ({name}), {len(group)} runs')
      ax.plot(rate, distortion, 'o', color=colour, ms=4, alpha=0.6)
    if h_hat is not None:
      ax.plot([0, h_hat], [h_hat, 0], 'k--', lw=1.0,
              label=f'D = {HAT_H} - R')
    ax.set_xlim(0, r_max)
    ax.set_ylim(0, d_max)
    ax.set_xlabel(f'Rate R {NATS}')
    ax.set_title(f'frontier by {part}')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='upper right')
  axes[0].set_ylabel(f'Distortion D {NATS}')
  fig.tight_layout()
  save(fig, path)


# Fig. 4: sample grids.


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
    ax.set_title(title, fontsize=7)
  fig.suptitle(GRID_CAPTION, fontsize=8)
  fig.tight_layout()
  save(fig, path, dpi=120)

