"""The toy's data of section 4 and Appendix E: the exact p*(x).

A class z* in {0, 1} with p(z*) = (0.7, 0.3); a hidden value
h | z* ~ N(mu_z*, s^2) with mu = (0.35, 0.65) and one shared s, solved so
that I(x; z*) = 0.5 nats; x = the bin of h among 30 equal bins over [0, 1],
the tails folded into the end bins. The model sees bin j at its centre
x_j = (j + 0.5) / 30. H(X) = 2.9140512100848532 nats.

Config keys (section `dataset`): name ('toy'), num_bins, class_probs,
class_means, class_information (I(x; z*) in nats).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import ml_collections
import numpy as np

from rdvae import validation
from rdvae.objectives import exact


class DataSpec(NamedTuple):
  """The toy's data distribution, all numpy float64."""

  class_probs: np.ndarray       # [C] p(z*)
  class_means: np.ndarray       # [C] mu_z*
  scale: float                  # s, shared by the classes
  centres: np.ndarray           # [X] what the model sees of bin j
  class_likelihood: np.ndarray  # [C, X] p(x | z*)
  p_data: np.ndarray            # [X] p*(x)
  entropy: float                # H(X), nats
  class_information: float      # I(x; z*), nats


def _class_likelihood(num_bins: int, means: np.ndarray,
                      scale: float) -> np.ndarray:
  from scipy import stats  # pylint: disable=g-import-not-at-top
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  edges[0], edges[-1] = -np.inf, np.inf  # fold the tails into the end bins
  cdf = stats.norm.cdf((edges[None, :] - means[:, None]) / scale)
  return np.diff(cdf, axis=1)  # [C, X]


def _class_information(class_probs: np.ndarray,
                       likelihood: np.ndarray) -> float:
  joint = class_probs[:, None] * likelihood
  return float(exact.joint_mutual_information(joint))


@functools.lru_cache(maxsize=16)
def compute_data_spec(num_bins: int = 30,
                      class_probs: Sequence[float] = (0.7, 0.3),
                      class_means: Sequence[float] = (0.35, 0.65),
                      class_information: float = 0.5) -> DataSpec:
  """Solves for the noise scale s with I(x; z*) = class_information (brentq).

  I(x; z*) falls monotonically from H(z*) (s -> 0, classes separated) to 0
  (s -> inf), so a root exists for 0 < class_information < H(z*).
  """
  # scipy is imported by the toy's runs alone: it is a second of the
  # start-up of every command that imports the trainer.
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  class_probs = np.asarray(class_probs, np.float64)
  class_means = np.asarray(class_means, np.float64)
  with jax.enable_x64(True):
    def gap(scale):
      return _class_information(
          class_probs, _class_likelihood(num_bins, class_means, scale)
      ) - class_information
    scale = optimize.brentq(gap, 1e-4, 10.0, xtol=1e-15, rtol=1e-15)
    likelihood = _class_likelihood(num_bins, class_means, scale)
    p_data = class_probs @ likelihood
    return DataSpec(
        class_probs=class_probs, class_means=class_means, scale=float(scale),
        centres=(np.arange(num_bins) + 0.5) / num_bins,
        class_likelihood=likelihood, p_data=p_data,
        entropy=float(exact.entropy(p_data)),
        class_information=_class_information(class_probs, likelihood))


def create_data_spec(config: ml_collections.ConfigDict) -> DataSpec:
  """The data spec of `config.dataset`."""
  c = config.dataset
  return compute_data_spec(int(c.num_bins), tuple(c.class_probs),
                           tuple(c.class_means), float(c.class_information))


def _check_vector(config, key: str) -> tuple[float, ...]:
  value = validation.get(config, key)
  if (not isinstance(value, (tuple, list)) or
      not all(isinstance(v, (int, float)) and not isinstance(v, bool)
              for v in value)):
    raise validation.ConfigError(
        f'config.{key}={value!r} must be a tuple of numbers')
  return tuple(float(v) for v in value)


def validate(config: ml_collections.ConfigDict) -> DataSpec:
  """Checks the `dataset` keys of a toy config; returns the data spec."""
  validation.check_choice(config, 'dataset.name', ('toy',))
  if validation.check_positive_int(config, 'dataset.num_bins') < 2:
    raise validation.ConfigError(
        f'config.dataset.num_bins={config.dataset.num_bins} must be >= 2')
  probs = _check_vector(config, 'dataset.class_probs')
  means = _check_vector(config, 'dataset.class_means')
  if len(probs) < 2 or min(probs) <= 0 or abs(sum(probs) - 1.0) > 1e-9:
    raise validation.ConfigError(
        f'config.dataset.class_probs={probs!r} must be >= 2 positive numbers '
        'summing to 1')
  if len(means) != len(probs):
    raise validation.ConfigError(
        f'config.dataset.class_means={means!r} needs one mean per class '
        f'({len(probs)})')
  class_entropy = float(-np.sum(np.asarray(probs) * np.log(probs)))
  validation.check_number(config, 'dataset.class_information',
                          strictly_positive=True, maximum=class_entropy - 1e-6)
  return create_data_spec(config)


def default_config() -> ml_collections.ConfigDict:
  """Every key of a toy config's `dataset` section, at Appendix E's values."""
  return ml_collections.ConfigDict({
      'name': 'toy',
      'num_bins': 30,
      'class_probs': (0.7, 0.3),
      'class_means': (0.35, 0.65),
      'class_information': 0.5,  # I(x; z*), nats
  })
