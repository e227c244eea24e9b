"""Fig. 2: the discrete toy of Appendix E drawn from its probability tables.

`plot_toy_columns` draws one column per model (e.g. (a) the hand-built
model, (b) the ELBO optimum, (c) a target rate); each column's title names
the model and gives its exact R and D, each heat map has a colour bar.
Drawn with `figures`' canvas and writer; no training code is imported.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from rdvae.analysis import figures

PURPLE = '#5b2a86'
YELLOW = '#e8b10b'


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


def rate_distortion(column: ToyColumn) -> tuple[float, float]:
  """The column's exact R = sum_x p*(x) KL(e(z|x) || m(z)) and D = -sum_x
  p*(x) sum_z e(z|x) log d(x|z), in nats (Eqs. 1-2 on the tables)."""
  p = np.asarray(column.p_data, np.float64)[:, None]      # [X, 1]
  e = np.asarray(column.encoder, np.float64)              # [X, K]
  m = np.asarray(column.marginal, np.float64)[None, :]    # [1, K]
  d = np.asarray(column.decoder, np.float64).T            # [X, K] d(x|z)
  used = (e > 0) & (p > 0)
  safe = lambda a: np.where(used, a, 1.0)  # noqa: E731
  rate = np.sum(np.where(used, p * e * np.log(safe(e) / safe(m)), 0.0))
  distortion = -np.sum(np.where(used, p * e * np.log(safe(d)), 0.0))
  return float(rate), float(distortion)


def plot_toy_columns(columns: Sequence[ToyColumn], path: str,
                     title: Optional[str] = None) -> None:
  """Fig. 2: a 5-row figure with one column per model, written to path.

  Rows, as in the Fig. 2 caption: (i) data space: p*(x), g(x) = sum_z m(z)
  d(x|z) and the reconstruction distribution d(x) = sum_x' sum_z p*(x')
  e(z|x') d(x|z); (ii) latent space: m(z), e(z) = sum_x p*(x) e(z|x), and
  e(z) split by the true class, p(z, z* = 0) (purple) and p(z, z* = 1)
  (yellow), which sum to e(z); (iii) e(z|x), (iv) d(x|z), (v) p(x'|x) =
  sum_z e(z|x) d(x'|z) as images, each with a colour bar. Latent states in
  `latent_order`. Each column's title is the model's (its objective) with
  its exact R and D (`rate_distortion`); `title` heads the figure.

  A toy sweep draws one such figure per point, all of one layout, so the
  last figure drawn on each thread is kept and redrawn with the next
  columns of the same layout (the same number of columns, tables of the
  same shapes, the same `title`): the same pixels as a new figure
  (tests/test_report.py), without building its axes and ticks again.
  """
  layout = (title,) + tuple((len(c.p_data), len(c.marginal))
                            for c in columns)
  kept = getattr(_KEPT, 'figure', None)
  _KEPT.figure = None  # kept again once it is drawn and written
  if kept is not None and kept[0] == layout:
    _, fig, panels = kept
    for column, panel in zip(columns, panels):
      _draw_column(column, panel)
  else:
    fig, panels = _new_figure(columns, title)
  figures.save(fig, path, dpi=80)
  _KEPT.figure = (layout, fig, panels)


# The last toy figure drawn on this thread: (layout, figure, panels).
_KEPT = threading.local()


class _Panel(NamedTuple):
  """One column's axes and the artists that show its tables."""

  axes: Any                # [5] the column's axes, top to bottom
  bars: Any                # p*(x)
  g: Any                   # g(x)
  d_x: Any                 # d(x)
  marginal: Any            # m(z)
  e_z: Any                 # e(z)
  images: list             # e(z|x), d(x|z), p(x'|x)
  fills: list              # e(z, z*=0), e(z, z*=1): replaced at each draw


def _new_figure(columns: Sequence[ToyColumn], title: Optional[str]):
  """The figure of `columns`: its axes, artists, legends and colour
  bars."""
  width, height = 3.2 * len(columns) + 0.35, 13.0 + (0.45 if title else 0.0)
  fig = figures.new_figure(width, height)
  if title:
    fig.suptitle(title, fontsize=10)
  axes = fig.subplots(5, len(columns), squeeze=False)
  _fixed_margins(fig, width, height, len(columns), 5,
                 top=0.9 if title else 0.45)
  panels = []
  for col, column in enumerate(columns):
    data = _toy_data(column)
    bins = np.arange(len(column.p_data))
    ax = axes[0, col]
    bars = ax.bar(bins, column.p_data, color='0.8', label='p*(x)')
    [g] = ax.plot(bins, data['g'], 'C0-', label='g(x)')
    [d_x] = ax.plot(bins, data['d_x'], 'C3--', label='d(x)')
    _set_title(ax, column)
    ax.set_xlabel('x')
    latents = np.arange(len(data['m']))
    ax = axes[1, col]
    fills = _fills(ax, latents, data)
    [marginal] = ax.plot(latents, data['m'], 'k-', drawstyle='steps-mid',
                         label='m(z)')
    [e_z] = ax.plot(latents, data['e_z'], 'C2:', drawstyle='steps-mid',
                    label='e(z)')
    ax.set_xlabel('z (sorted)')
    images = []
    for row, key, label in _IMAGE_ROWS:
      shown = axes[row, col].imshow(_image(data, key), cmap='viridis',
                                    aspect='auto', interpolation='nearest')
      colour_bar = fig.colorbar(shown, ax=axes[row, col], fraction=0.08,
                                pad=0.03)
      colour_bar.ax.tick_params(labelsize=6)
      axes[row, col].set_title(label, fontsize=8)
      images.append(shown)
    if col == 0:
      axes[0, 0].legend(fontsize=7)
      axes[1, 0].legend(fontsize=7)
    panels.append(_Panel(list(axes[:, col]), bars, g, d_x, marginal, e_z,
                         images, fills))
  return fig, panels


_IMAGE_ROWS = ((2, 'encoder', 'e(z|x): z down, x across'),
               (3, 'decoder', 'd(x|z): z down, x across'),
               (4, 'kernel', "p(x'|x): x down, x' across"))


def _image(data: dict, key: str) -> np.ndarray:
  return data[key].T if key == 'encoder' else data[key]


def _fills(ax, latents: np.ndarray, data: dict) -> list:
  return [ax.fill_between(latents, 0, data['class_joint'][0], color=PURPLE,
                          alpha=0.5, step='mid', label='e(z, z*=0)'),
          ax.fill_between(latents, data['class_joint'][0], data['e_z'],
                          color=YELLOW, alpha=0.6, step='mid',
                          label='e(z, z*=1)')]


def _set_title(ax, column: ToyColumn) -> None:
  rate, distortion = rate_distortion(column)
  ax.set_title(f'{column.title}\nR = {rate:.3f}, D = {distortion:.3f} nats',
               fontsize=9)


def _draw_column(column: ToyColumn, panel: _Panel) -> None:
  """Sets `panel`'s artists to `column`'s tables, its title and its axes'
  limits (as a new figure would have them)."""
  data = _toy_data(column)
  top, latent = panel.axes[0], panel.axes[1]
  for bar, height in zip(panel.bars, column.p_data):
    bar.set_height(height)
  panel.g.set_ydata(data['g'])
  panel.d_x.set_ydata(data['d_x'])
  _set_title(top, column)
  panel.marginal.set_ydata(data['m'])
  panel.e_z.set_ydata(data['e_z'])
  # The fills' limits are not recomputed by `relim`: drawn anew after it.
  for fill in panel.fills:
    fill.remove()
  for ax in (top, latent):
    ax.relim()
  panel.fills[:] = _fills(latent, np.arange(len(data['m'])), data)
  for ax in (top, latent):
    ax.autoscale_view()
  for shown, (_, key, _) in zip(panel.images, _IMAGE_ROWS):
    image = _image(data, key)
    shown.set_data(image)
    shown.norm.autoscale(image)  # its colour bar follows


def _fixed_margins(fig, width: float, height: float, cols: int,
                   rows: int, top: float = 0.45) -> None:
  """Margins and gaps in inches that fit the toy panels' ticks, labels and
  titles, set without `tight_layout`'s measuring pass (a third of the time
  of drawing a toy column, and a toy sweep draws one per point)."""
  left, right, bottom = 0.5, 0.45, 0.4
  gap_x, gap_y = 0.55, 0.8
  axes_w = (width - left - right - (cols - 1) * gap_x) / cols
  axes_h = (height - top - bottom - (rows - 1) * gap_y) / rows
  fig.subplots_adjust(left=left / width, right=1 - right / width,
                      top=1 - top / height, bottom=bottom / height,
                      wspace=gap_x / axes_w, hspace=gap_y / axes_h)
