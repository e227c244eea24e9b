"""The decoders' rate-distortion curves from AIS, drawn beside their runs.

  plot_decoder_curves  every finished run in the RD plane (as in Fig. 3a(i))
                       and, for each chosen run, the curve (R_b, D_b),
                       b in [0, beta_max], of its decoder d(x|z) with the
                       marginal m(z) (Huang et al., 2020; ais.json), in the
                       colour of the run's marker. At b = 1 the curve's R + D is -log p(x);
                       the run's own (R, D) lies on or above that line
                       (-ELBO >= -log p(x)), and above the decoder's curve,
                       the best any encoder can do with this decoder.

Arrays and strings in, a PNG out (`figures.new_figure`, `figures.save`).
"""

from __future__ import annotations

import textwrap
from typing import NamedTuple, Optional, Sequence

import numpy as np

from rdvae.analysis import figures

CURVE_COLOURS = ('#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e',
                 '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f')


class DecoderCurve(NamedTuple):
  """A run's decoder curve: beta, rate, distortion [T + 1] in nats."""

  point: figures.PlanePoint
  beta: np.ndarray
  rate: np.ndarray
  distortion: np.ndarray
  # The run's own (R, D) on the curve's images, where ais.json has it.
  own: Optional[tuple[float, float]] = None


def curve_label(point: figures.PlanePoint, width: int = 34) -> str:
  """The legend's name of a run's curve: its family, then the rest of its
  point name (the family's key dropped), wrapped at `width` characters."""
  parts = [part for part in point.name.split(',')
           if not part.startswith('family=')]
  rest = textwrap.fill(', '.join(parts), width, subsequent_indent='  ')
  return f'{figures.family_label(point.family)} {rest}'.strip()


def plot_decoder_curves(points: Sequence[figures.PlanePoint],
                        curves: Sequence[DecoderCurve],
                        h_hat: Optional[float], path: str,
                        title: str = 'Decoder RD curves (AIS)') -> None:
  """The points (small, grey, as results.json has them), each curve in a
  colour of its own with its run marked large in the same colour (the
  family's shape and fill) at its own (R, D) on the curve's images where
  ais.json has it, the b = 1 end marked by a cross, and the line
  D = H-hat - R; written to path."""
  fig = figures.new_figure(9.5, 6.0)
  ax = fig.subplots()
  for p in points:
    ax.plot([p.rate], [p.distortion], 'o', color='0.75', markersize=4,
            zorder=1)
  handles = []
  for k, c in enumerate(curves):
    # A colour per curve (runs of one family would share the family's);
    # shape and fill keep the family's meaning.
    colour = CURVE_COLOURS[k % len(CURVE_COLOURS)]
    style = figures.family_style(c.point.family, k)
    filled = style.get('markerfacecolor', colour) != 'white'
    style.update(color=colour, markeredgecolor=colour,
                 markerfacecolor=colour if filled else 'white', markersize=9)
    label = curve_label(c.point)
    (line,) = ax.plot(c.rate, c.distortion, '-', color=colour, lw=1.3,
                      label=label)
    # The run on the curve's own images where known (its results.json
    # point, on the evaluation's images, stays grey).
    own_rate, own_distortion = c.own or (c.point.rate, c.point.distortion)
    ax.plot([own_rate], [own_distortion], **style, zorder=3)
    at_one = np.flatnonzero(np.isclose(c.beta, 1.0))
    if at_one.size:
      i = at_one[0]
      ax.plot([c.rate[i]], [c.distortion[i]], 'x', color=colour,
              markersize=8)
    handles.append(line)
  # The points' view, widened to the curves where they pass among the
  # points: a curve's low-b end (D far above every run) leaves at the top.
  (_, d_high) = figures.plane_view(points)[1]
  shown = [figures.PlanePoint('', r, d, None) for c in curves
           for r, d in [*zip(c.rate, c.distortion), *([c.own] if c.own else [])]
           if d <= d_high]
  (r_low, r_high), (d_low, d_high) = figures.plane_view([*points, *shown])
  if h_hat is not None:
    handles += ax.plot([0.0, h_hat], [h_hat, 0.0], 'k--', lw=1.0,
                       label=f'D = {figures.HAT_H} - R, '
                             f'{figures.HAT_H} = {h_hat:.4g}')
  ax.set_xlim(r_low, r_high)
  ax.set_ylim(d_low, d_high)
  ax.set_xlabel(f'Rate R {figures.NATS}')
  ax.set_ylabel(f'Distortion D {figures.NATS}')
  ax.set_title(f'{title}; x: b = 1, marker: the run on the same images')
  ax.grid(alpha=0.3)
  ax.legend(handles=handles, fontsize=8, loc='upper left',
            bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
  fig.tight_layout()
  figures.save(fig, path)
