"""Evaluation of an image model: the measures of a run, and evaluating again.

`evaluate` gives exact means over a split (or over a fixed seeded random
subset of it, `batching.eval_subset`) of R, D, ELBO, bits/dim and, in the final
evaluation, the IWAE bound, the active units and the rate per latent
dimension; `generative_bounds` gives E and G (Appendix C, Eqs. 9-11) by Monte
Carlo over pairs drawn from the model. `evaluate_workdir` loads a finished
run's config and checkpoint (last or best by validation ELBO), applies
`eval.*` overrides and writes the measures to a separate results file.

Config keys (section `eval`, declared by `default_config`):

  eval.batch_size          examples (and generated pairs) per device call.
  eval.iwae_samples        K of the final IWAE bound, and of the model's own
                           log q(x) in G.
  eval.max_examples        0: the whole split; N > 0: a fixed random subset of
                           N examples of each split (the same for every run).
  eval.subset_seed         the seed of that subset.
  eval.num_grid_images     images of the Fig. 4 grid (the first of
                           validation); 0 for none.
  eval.num_decodes         decodes per z in the grid ('mean of 5').
  eval.generative_samples  pairs z ~ m(z), x ~ d(x|z) for E and G; 0 skips
                           them (sampling a PixelCNN++ decoder is sequential).
                           With eval.max_examples = N > 0, at most N pairs:
                           a run evaluated on a subset gets E and G at the
                           same scale of effort (`evaluator.generative_pairs`).

The final evaluation prints what each phase computes and its progress
(`progress.Phase`) and writes each phase's wall time to results.json under
'eval_seconds'.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae.objectives import bounds
from rdvae.data import batching
from rdvae.evaluation import evaluator as evaluator_lib
from rdvae.evaluation import progress
from rdvae import validation
from rdvae.files import metric_files
from rdvae.files import run_files

PARAMS = ('last', 'best')
# Copied from test/* to the top level of results.json.
TOP_LEVEL_KEYS = ('rate', 'distortion', 'elbo', 'iwae', 'bpd',
                  'distortion_bpd', 'iwae_bpd', 'generative_lower',
                  'generative_upper', 'active_units')
# results.json's wall seconds of each part of the final evaluation.
SECONDS_KEY = 'eval_seconds'
# Files of a run that an evaluation again must not overwrite.
RUN_FILES = (run_files.CONFIG_FILE, metric_files.METRICS_FILE,
             run_files.RESULTS_FILE)


def default_config() -> ml_collections.ConfigDict:
  """Every key of the `eval` section (see the module docstring)."""
  return ml_collections.ConfigDict({
      'batch_size': 500,
      'iwae_samples': 100,
      'max_examples': 0,
      'subset_seed': 0,
      'num_grid_images': 10,
      'num_decodes': 5,
      # 1000 pairs: the Monte Carlo standard error of E and G is then about
      # 3% of their spread over pairs.
      'generative_samples': 1000,
  })


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks `config.eval`, naming the bad key and value."""
  check = validation.check_positive_int
  check(config, 'eval.batch_size')
  check(config, 'eval.iwae_samples')
  check(config, 'eval.max_examples', allow_zero=True)
  check(config, 'eval.subset_seed', allow_zero=True)
  check(config, 'eval.num_grid_images', allow_zero=True)
  check(config, 'eval.num_decodes')
  check(config, 'eval.generative_samples', allow_zero=True)


def subset_description(config: ml_collections.ConfigDict) -> dict[str, int]:
  """results.json's 'eval_subset': {'max_examples': N (0 = whole split),
  'seed': the subset's seed}."""
  return {'max_examples': int(config.eval.max_examples),
          'seed': int(config.eval.subset_seed)}


def _accumulate(totals: dict[str, Any], sums: Mapping[str, Any]) -> None:
  for k, v in sums.items():
    totals[k] = totals.get(k, 0.0) + np.asarray(v, np.float64)


def evaluate(evaluator: evaluator_lib.Evaluator, params: Any,
             images: np.ndarray, final: bool,
             name: str = 'split') -> dict[str, Any]:
  """Exact means over a split's evaluation subset.

  The subset is `batching.eval_subset(images, eval.max_examples,
  eval.subset_seed)`. Always R, D, ELBO and bits/dim (the mean of each
  example's terms at one z ~ e(z|x)); when `final`, also the IWAE bound
  (`bounds.iwae`, K = eval.iwae_samples) and, from `run.latent_loop`,
  `active_units` (`bounds.active_units` of the variance over the subset of
  the encoder's mean, merged over batches by `bounds.merge_moments`) and,
  where the rate factorises, `rate_per_dim` (a list of Z means).

  Args:
    evaluator: the run's programs, layout and keys.
    params: the parameters, placed by the layout (`put_replicated`).
    images: the split, uint8 [N, H, W, C].
    final: add the final evaluation's measures.
    name: the split's name in the progress lines (`progress.Phase`).
  """
  c = evaluator.config.eval
  layout, programs = evaluator.layout, evaluator.programs
  images = batching.eval_subset(images, c.max_examples, c.subset_seed)
  loop = programs.final_eval_loop if final else programs.eval_loop
  rng = layout.put_replicated(evaluator.eval_rng)
  totals: dict[str, Any] = {}
  moments = (0.0, 0.0, 0.0)
  rate_per_dim = None
  what = (f'{len(images)} examples, R, D, ELBO and IWAE (K={c.iwae_samples})'
          if final else None)
  phase = progress.Phase(name, what, -(-len(images) // c.batch_size))
  batches = enumerate(batching.eval_batches(images, c.batch_size))
  with phase:
    for index, (x, mask) in batches:
      x, mask = layout.put_sharded((x, mask))
      _accumulate(totals, layout.get_replicated(
          loop(params, x, mask, rng, index)))
      if final:
        stats = layout.get_replicated(
            programs.latent_loop(params, x, mask, rng, index))
        moments = bounds.merge_moments(
            moments, (float(stats['count']), stats['mean'], stats['m2']))
        if 'rate_per_dim' in stats:
          rate_per_dim = (np.asarray(stats['rate_per_dim'], np.float64)
                          + (0.0 if rate_per_dim is None else rate_per_dim))
      phase.advance()
  count = totals.pop('count')
  means: dict[str, Any] = {k: float(v / count) for k, v in totals.items()}
  num_dims = int(np.prod(images.shape[1:]))
  # Bits per dimension (subpixel), the unit of 8-bit image work: -ELBO, D
  # and -IWAE in nats per image over H W C ln 2.
  means['bpd'] = float(bounds.bits_per_dim(-means['elbo'], num_dims))
  if 'distortion' in means:
    means['distortion_bpd'] = float(bounds.bits_per_dim(means['distortion'],
                                                        num_dims))
  if 'iwae' in means:
    means['iwae_bpd'] = float(bounds.bits_per_dim(-means['iwae'], num_dims))
  if final:
    count, _, m2 = moments
    means['active_units'] = bounds.active_units(m2 / count)
    if rate_per_dim is not None:
      means['rate_per_dim'] = [float(v) for v in rate_per_dim / count]
  return means


def generative_bounds(evaluator: evaluator_lib.Evaluator,
                      params_host: Any) -> dict[str, float]:
  """E <= I_d <= G (Eqs. 9-11) from `evaluator.generative_pairs` pairs
  (eval.generative_samples, at most eval.max_examples when that is > 0).

  Monte Carlo means over pairs z ~ m(z), x ~ d(x|z) (`steps.
  make_generative_step`, compiled once per architecture, batches of
  `generative_batch_size` on the host's parameters): E is unbiased; G uses the model's own IWAE
  estimate of log g(x) as log q(x), so it bounds I_d from above only up to
  that estimator's bias (see `bounds.generative_upper_terms`). The draws are
  functions of the run's seed and the pair index only.

  Returns:
    {'generative_lower', 'generative_upper'} in nats, or {} when there are
    no pairs.
  """
  num_pairs = evaluator_lib.generative_pairs(evaluator.config)
  if not num_pairs:
    return {}
  totals: dict[str, Any] = {}
  step = evaluator.programs.generative_step
  batch = evaluator_lib.generative_batch_size(evaluator.config)
  phase = progress.Phase(
      'generative', f'{num_pairs} pairs z ~ m(z), x ~ d(x|z) for E and G, '
      f'each x scored by IWAE (K={evaluator.config.eval.iwae_samples})',
      -(-num_pairs // batch))
  with phase:
    for start in range(0, num_pairs, batch):
      _accumulate(totals, jax.device_get(step(
          params_host, evaluator.generative_key, jnp.int32(start),
          jnp.int32(num_pairs))))
      phase.advance()
  count = totals.pop('count')
  return {k: float(v / count) for k, v in totals.items()}


def evaluate_splits(evaluator: evaluator_lib.Evaluator, params_host: Any,
                    params: Any, final: bool,
                    splits: tuple[str, ...]) -> dict[str, Any]:
  """`evaluate` on each split as '<split>/<key>'; with `final`, the
  generative bounds (which do not depend on the data) under every split,
  and 'eval_seconds': {split: .., 'generative': ..} the wall time of each."""
  results: dict[str, Any] = {}
  seconds = {}
  for split in splits:
    start = time.monotonic()
    means = evaluate(evaluator, params, getattr(evaluator.dataset, split),
                     final, split)
    seconds[split] = time.monotonic() - start
    results.update({f'{split}/{k}': v for k, v in means.items()})
  if final:
    start = time.monotonic()
    generative = generative_bounds(evaluator, params_host)
    if generative:
      seconds['generative'] = time.monotonic() - start
    for split in splits:
      results.update({f'{split}/{k}': v for k, v in generative.items()})
    results[SECONDS_KEY] = seconds
  return results


def scalars(results: Mapping[str, Any]) -> dict[str, Any]:
  """The scalar entries of `results` (for metrics.jsonl and TensorBoard)."""
  return {k: v for k, v in results.items()
          if not isinstance(v, (list, dict))}


def summarize(results: dict[str, Any], config: ml_collections.ConfigDict,
              params: str) -> dict[str, Any]:
  """Adds results.json's top-level copies of the test figures,
  'eval_subset' and 'params' ('last' or 'best') to `results`."""
  results.update({k: results[f'test/{k}'] for k in TOP_LEVEL_KEYS
                  if f'test/{k}' in results})
  results['eval_subset'] = subset_description(config)
  results['params'] = params
  return results


def sample_grid(evaluator: evaluator_lib.Evaluator, params_host: Any,
                step: int) -> dict[str, Any]:
  """The Fig. 4 grid's images at `step`: the first eval.num_grid_images of
  the validation split, reconstructed and generated (`make_sample_fn`)."""
  x = jnp.asarray(
      evaluator.dataset.validation[:evaluator.config.eval.num_grid_images],
      jnp.float32)
  return jax.device_get(evaluator.programs.sample_fn(
      params_host, x, jax.random.fold_in(evaluator.sample_key, step)))
