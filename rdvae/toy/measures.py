"""The toy's exact measures: every quantity of section 4 by enumeration, in
float64, and the model's column of Fig. 2.

Clusters. Latent state z belongs to the cluster of the class that dominates
it, argmax_c p(z* = c | z); a cluster's mass is the aggregate posterior
e(z) = sum_x p*(x) e(z|x) summed over its states.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae.analysis import toy_figures
from rdvae.objectives import exact
from rdvae.objectives import losses as objectives
from rdvae.toy import data
from rdvae.toy import model as toy_model


def class_latent_joint(spec: data.DataSpec, encoder) -> jax.Array:
  """p(z*, z) = sum_x p(z*) p(x|z*) e(z|x) [C, K]."""
  return (spec.class_probs[:, None] * spec.class_likelihood) @ encoder


def cluster_masses(spec: data.DataSpec, encoder) -> np.ndarray:
  """Mass of e(z) in each class's cluster [C] (see the module docstring)."""
  joint = np.asarray(class_latent_joint(spec, encoder))  # [C, K]
  owner = np.argmax(joint, axis=0)
  return np.array([joint[:, owner == c].sum() for c in range(joint.shape[0])])


def evaluate(spec: data.DataSpec, tables: toy_model.Tables) -> dict[str, float]:
  """Every exact metric of a toy model, in float64 nats.

  The generative upper bound G (Eq. 10) uses q(x) = p*(x), the one density
  over x we have besides the model's own g(x); with q = g it would equal
  I_d exactly (G - I_d = KL(g || q)), so `generative_mutual_information`
  reports that value directly.
  """
  with jax.enable_x64(True):
    p = jnp.asarray(spec.p_data, jnp.float64)
    e, d, m = (jnp.asarray(t, jnp.float64) for t in tables)
    h = float(exact.entropy(p))
    r = float(exact.rate(p, e, m))
    dist = float(exact.distortion(p, e, d))
    info = float(exact.mutual_information(p, e))
    info_gen = float(exact.generative_mutual_information(m, d))
    lower_gen = float(exact.generative_lower_bound(m, d, e))
    upper_gen = float(exact.generative_upper_bound(m, d, p))
    g = exact.generative_distribution(m, d)
    joint = class_latent_joint(spec, e)
    results = {
        'rate': r, 'distortion': dist, 'elbo': -(r + dist), 'entropy': h,
        'mutual_information': info,
        'kl_data_generative': float(exact.kl_divergence(p, g)),
        'kl_data_reconstruction': float(exact.kl_divergence(
            p, exact.reconstruction_distribution(p, e, d))),
        'latent_alignment': float(exact.joint_mutual_information(joint)),
        'class_information': spec.class_information,
        'generative_mutual_information': info_gen,
        'generative_lower_bound_E': lower_gen,
        'generative_upper_bound_G': upper_gen,
        'lower_bound_gap': info - (h - dist),   # I - (H - D) >= 0
        'upper_bound_gap': r - info,            # R - I >= 0
        'generative_lower_gap': info_gen - lower_gen,   # I_d - E >= 0
        'generative_upper_gap': upper_gen - info_gen,   # G - I_d >= 0
    }
  masses = cluster_masses(spec, np.asarray(e))
  for c, mass in enumerate(masses):
    results[f'cluster_mass_{c}'] = float(mass)
  results['bounds_hold'] = bool(
      min(results['lower_bound_gap'], results['upper_bound_gap']) >= -1e-12
      and min(results['generative_lower_gap'],
              results['generative_upper_gap']) >= -1e-12)
  return results


FIGURE_FILE = 'figure.png'
TABLES_FILE = 'tables.npz'


def figure_column(title: str, spec: data.DataSpec,
                  tables: toy_model.Tables) -> toy_figures.ToyColumn:
  """One model's column of Fig. 2 (`toy_figures.plot_toy_columns`)."""
  return toy_figures.ToyColumn(
      title=title, p_data=spec.p_data, centres=spec.centres,
      class_joint=spec.class_probs[:, None] * spec.class_likelihood,
      encoder=np.asarray(tables.encoder), decoder=np.asarray(tables.decoder),
      marginal=np.asarray(tables.marginal))


def write_figure(config: ml_collections.ConfigDict, spec: data.DataSpec,
                 tables: toy_model.Tables, path: str) -> None:
  """The model's Fig. 2 column, titled by its parameterisation and objective."""
  c = config.objective
  title = f'{config.model.encoder}/{config.model.decoder}: {c.kind}'
  if c.kind in objectives.RATE_TARGETED:
    title += f' {c.rate:g}'
  toy_figures.plot_toy_columns([figure_column(title, spec, tables)], path)


def write_tables(path: str, tables: toy_model.Tables) -> None:
  """Writes a model's float64 tables (encoder, decoder, marginal) to `path`
  (.npz), atomically."""
  tmp = f'{path}.tmp.npz'
  np.savez(tmp, **tables._asdict())
  os.replace(tmp, path)


def read_tables(path: str) -> toy_model.Tables:
  """The tables `write_tables` wrote."""
  with np.load(path) as f:
    return toy_model.Tables(**{k: f[k] for k in toy_model.Tables._fields})
