"""An image model's evaluation programs, compiled once per architecture, and
the keys every evaluation of a run draws with.

`create_evaluator` builds an `Evaluator` for one run: the jitted evaluation,
latent-statistics and generative programs (`evaluation.steps`, wrapped by
the run's layout), the sample-grid program, the evaluation split, and keys
derived from the run's seed. Runs with equal `ProgramSpec`s in one process
share the compiled programs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import ml_collections

from rdvae.data import sources
from rdvae.evaluation import steps as eval_steps


def generative_pairs(config: ml_collections.ConfigDict) -> int:
  """The generated pairs of E and G: eval.generative_samples, at most
  eval.max_examples when that is > 0 (a run evaluated on N examples per
  split scores N pairs, each with its own IWAE, not 1,000)."""
  pairs = config.eval.generative_samples
  if config.eval.max_examples > 0:
    pairs = min(pairs, config.eval.max_examples)
  return pairs


def generative_batch_size(config: ml_collections.ConfigDict) -> int:
  """Pairs per call of the generative step: eval.batch_size, or fewer when
  there are fewer pairs (pairs past the last are drawn too)."""
  return max(1, min(config.eval.batch_size, generative_pairs(config)))


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
  """Everything that determines the evaluation programs (hashable)."""

  model: nn.Module
  layout: Any
  batch_size: int
  iwae_samples: int
  num_grid_images: int
  num_decodes: int
  generative_batch: int


@dataclasses.dataclass(frozen=True)
class Programs:
  """The compiled evaluation programs of one `ProgramSpec`."""

  eval_loop: Callable        # R, D, ELBO sums of a batch
  final_eval_loop: Callable  # the same with the IWAE bound
  latent_loop: Callable      # the encoder mean's moments, rate per dim
  generative_step: Callable  # E and G integrands of generated pairs
  sample_fn: Callable        # the Fig. 4 grid's images


@functools.lru_cache(maxsize=16)
def _programs(spec: ProgramSpec) -> Programs:
  layout, model = spec.layout, spec.model
  axis = layout.axis_name

  def eval_loop(step_fn):
    return layout.eval_loop(step_fn, spec.batch_size)

  return Programs(
      eval_loop=eval_loop(eval_steps.make_eval_step(model, 0, axis)),
      final_eval_loop=eval_loop(
          eval_steps.make_eval_step(model, spec.iwae_samples, axis)),
      latent_loop=eval_loop(eval_steps.make_latent_step(model, axis)),
      generative_step=jax.jit(eval_steps.make_generative_step(
          model, spec.generative_batch, spec.iwae_samples)),
      sample_fn=jax.jit(eval_steps.make_sample_fn(
          model, spec.num_grid_images, spec.num_decodes)))


def programs(spec: ProgramSpec) -> Programs:
  """The programs of `spec`, built once per spec in a process (a model that
  cannot be hashed gets programs of its own)."""
  try:
    return _programs(spec)
  except TypeError:
    return _programs.__wrapped__(spec)


@dataclasses.dataclass(frozen=True)
class Evaluator:
  """What evaluating one run needs.

  Attributes:
    config: the run's config (reads `eval.*`).
    dataset: its data (the validation and test splits).
    layout: its data-parallel layout (`runtime.parallel`).
    programs: the compiled programs.
    eval_rng: raw key data of the evaluation draws.
    sample_key: the key of the sample grid (folded with the step).
    generative_key: raw key data of the generated pairs.
  """

  config: ml_collections.ConfigDict
  dataset: sources.Dataset
  layout: Any
  programs: Programs
  eval_rng: jax.Array
  sample_key: jax.Array
  generative_key: jax.Array


def create_evaluator(config: ml_collections.ConfigDict,
                     dataset: sources.Dataset, model: nn.Module,
                     layout: Any) -> Evaluator:
  """The evaluator of a run of `config` (its `train.seed` gives the keys:
  the third and fourth of four split from it, as the trainer draws the
  first two)."""
  c = config.eval
  spec = ProgramSpec(
      model=model, layout=layout, batch_size=c.batch_size,
      iwae_samples=c.iwae_samples, num_grid_images=c.num_grid_images,
      num_decodes=c.num_decodes,
      generative_batch=generative_batch_size(config))
  _, _, eval_key, sample_key = jax.random.split(
      jax.random.key(config.train.seed), 4)
  return Evaluator(
      config=config, dataset=dataset, layout=layout, programs=programs(spec),
      eval_rng=jax.random.key_data(eval_key), sample_key=sample_key,
      # A key of its own, so the other draws stay as they were.
      generative_key=jax.random.key_data(jax.random.split(eval_key)[1]))
