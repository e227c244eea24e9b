"""Fig. 2 of the paper: the toy's distributions, one column per model.

Rows, as in the Fig. 2 caption:
  (i)   data space: p*(x), g(x) = sum_z m(z) d(x|z) and the reconstruction
        distribution d(x) = sum_x' sum_z p*(x') e(z|x') d(x|z);
  (ii)  latent space: m(z), e(z) = sum_x p*(x) e(z|x), and e(z) split by the
        true class, p(z, z* = 0) (purple) and p(z, z* = 1) (yellow), which sum
        to e(z);
  (iii) e(z|x), (iv) d(x|z), (v) p(x'|x) = sum_z e(z|x) d(x'|z) as images.

Latent states carry no order of their own, so for display only they are
sorted by their posterior mean of x, sum_x x p_e(x|z); states the encoder
barely uses (e(z) <= 1e-4) go last. Drawn with matplotlib's object API on the Agg canvas (no
pyplot, no global state).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from matplotlib import figure as mpl_figure
from matplotlib.backends import backend_agg

from rdvae import toy

PURPLE = '#5b2a86'
YELLOW = '#e8b10b'


def latent_order(spec: toy.DataSpec, tables: toy.Tables) -> np.ndarray:
  """Latent indices sorted by posterior mean of x; unused states last."""
  encoder = np.asarray(tables.encoder)
  joint = spec.p_data[:, None] * encoder            # [X, K]
  mass = joint.sum(axis=0)
  mean_x = (spec.centres @ joint) / np.where(mass > 0, mass, 1.0)
  key = np.where(mass > 1e-4, mean_x, np.inf)
  return np.argsort(key, kind='stable')


def _columns_data(spec: toy.DataSpec, tables: toy.Tables) -> dict:
  order = latent_order(spec, tables)
  e = np.asarray(tables.encoder)[:, order]          # [X, K]
  d = np.asarray(tables.decoder)[order]             # [K, X]
  m = np.asarray(tables.marginal)[order]            # [K]
  p = spec.p_data
  aggregate = p @ e
  return {
      'g': m @ d, 'd_x': aggregate @ d, 'm': m, 'e_z': aggregate,
      'class_joint': np.asarray(toy.class_latent_joint(spec, e)),  # [C, K]
      'encoder': e, 'decoder': d, 'kernel': e @ d}


def plot_columns(columns: Sequence[tuple[str, toy.DataSpec, toy.Tables]],
                 path: str) -> None:
  """Writes a 5-row figure with one column per (title, spec, tables) to path.
  """
  fig = mpl_figure.Figure(figsize=(3.2 * len(columns), 13.0))
  backend_agg.FigureCanvasAgg(fig)
  axes = fig.subplots(5, len(columns), squeeze=False)
  for col, (title, spec, tables) in enumerate(columns):
    data = _columns_data(spec, tables)
    bins = np.arange(len(spec.p_data))
    ax = axes[0, col]
    ax.bar(bins, spec.p_data, color='0.8', label='p*(x)')
    ax.plot(bins, data['g'], 'C0-', label='g(x)')
    ax.plot(bins, data['d_x'], 'C3--', label='d(x)')
    ax.set_title(title, fontsize=10)
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
  fig.tight_layout()
  fig.savefig(path, dpi=80)
