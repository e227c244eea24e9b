"""What kind of run a config asks for, decided once: the image models or
the toy.

A task is the part of a run that depends on its kind of data and model;
the training step, the optimizer, the layouts, the host loop, checkpoints
and run files are shared. A task answers, for its configs:

  validate(config, components)
                            every key and passed module, before any work
                            (ConfigError)
  load_data(config)         the data, checked against the config
  create_model(config, data, components)
                            the model; components: {part: linen module}
                            in place of the config's (models/custom.py)
  layout(config)
  num_steps(config, data), num_train(data), batch_size(config)
  examples_per_step(config) images a step trains on (0: not images)
  train_data(data)          the array the training loop reads batches from
  batches(seed, num_train, batch_size, length)
                            traceable (indices_fn, gather_fn) of a dispatch
  batches_depend_on_seed    whether `batches` uses its seed (if not, runs of
                            any seed share one program)
  terms_fn(model)           the step's (RDTerms, weights) of a batch
  init_state(model, optimizer, objective_state, seed, data)
  create_evaluator(config, data, model, layout)
  evaluate(run, params_host, params, step, final, writer)
                            the measures of an evaluation (a dict)
  selection_key             the key of `evaluate`'s dict that picks the best
                            checkpoint (higher is better)
  summarize(results, config), finish(run, results, workdir)
  populations               whether runs can train as one population
                            (`loop.population_key`)
  multiprocess              whether a run may span several processes

`ImageTask` (below) runs the paper's image models on binary or 8-bit images;
`toy.task.ToyTask` the discrete toy of Appendix E, computed exactly.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae import validation
from rdvae.data import batching
from rdvae.data import sources
from rdvae.evaluation import evaluator as evaluator_lib
from rdvae.evaluation import measures
from rdvae.files import metric_files
from rdvae.models import model as model_lib
from rdvae.objectives import settings
from rdvae.runtime import backends
from rdvae.runtime import distributed
from rdvae.runtime import parallel
from rdvae.toy import task as toy_task
from rdvae.training import optim
from rdvae.training import steps

NONFINITE_MODES = ('stop', 'skip')


class Task(Protocol):
  """The interface of the module doc (ImageTask and toy.task.ToyTask)."""

  name: str
  selection_key: str
  multiprocess: bool


def for_config(config: ml_collections.ConfigDict) -> Any:
  """The task of `config`: the toy when `dataset.name` is 'toy', else the
  image models."""
  if validation.get(config, 'dataset.name') == 'toy':
    return toy_task.TASK
  return IMAGE_TASK


def validate_training(config: ml_collections.ConfigDict) -> None:
  """Checks the `train` keys every task shares and the optimizer."""
  check = validation.check_positive_int
  check(config, 'train.seed', allow_zero=True)
  backends.validate(config)  # steps_per_dispatch, scan_unroll, *_every
  check(config, 'train.max_checkpoints_to_keep')
  validation.check_choice(config, 'train.nonfinite', NONFINITE_MODES)
  check(config, 'train.max_skipped')
  optim.validate(config)


def num_train_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """`train.num_steps` if > 0, else num_epochs full epochs of batches."""
  if config.train.num_steps > 0:
    return config.train.num_steps
  per_epoch = batching.steps_per_epoch(num_examples, config.train.batch_size)
  return max(1, int(math.ceil(config.train.num_epochs * per_epoch)))


class ImageTask:
  """The paper's image models (the twelve families) on binary or 8-bit
  images."""

  name = 'image'
  selection_key = 'validation/elbo'
  multiprocess = True
  batches_depend_on_seed = True
  # On the CPU a vmapped population of convolutional models is slower per
  # member than the members one after another (benchmarks/image_population.py).
  populations = False

  def validate(self, config: ml_collections.ConfigDict,
               components=None) -> None:
    sources.validate(config)
    # The checks that need the data's image shape and values wait for the
    # data (`load_data`) unless the config declares them.
    shape, values = sources.declared(config)
    model_lib.validate(config, shape, components, values)
    settings.validate(config)
    parallel.validate(config, len(self.devices(config)))
    validation.check_positive_int(config, 'train.num_steps', allow_zero=True)
    validation.check_number(config, 'train.num_epochs',
                            strictly_positive=True)
    measures.validate(config)

  def load_data(self, config: ml_collections.ConfigDict, components=None,
                data=None) -> sources.Dataset:
    """The dataset (`data`: the splits of source 'arrays'), checked against
    the config and the model (`components` in place of its parts).

    Raises:
      ConfigError: bad data (`sources.create_dataset`), a model that cannot
        take the data's images or values, train.batch_size exceeds the
        training split (no full batch per epoch), eval.num_grid_images the
        validation split, or eval.max_examples the smaller evaluated split.
    """
    dataset = sources.create_dataset(config, data)
    model_lib.validate(config, dataset.image_shape, components,
                       dataset.values)
    where = sources.describe_source(config)
    for key, split in (('train.batch_size', 'train'),
                       ('eval.num_grid_images', 'validation')):
      size = len(getattr(dataset, split))
      if validation.get(config, key) > size:
        raise validation.ConfigError(
            f'config.{key}={validation.get(config, key)} is larger than the '
            f'{split} split of {where} ({size} images); use at most {size}')
    # The subset is drawn from each evaluated split: the smaller one bounds it.
    size, split = min((len(dataset.validation), 'validation'),
                      (len(dataset.test), 'test'))
    if validation.get(config, 'eval.max_examples') > size:
      raise validation.ConfigError(
          f'config.eval.max_examples={config.eval.max_examples} is larger '
          f'than the {split} split of {where} ({size} images); use at most '
          f'{size}, or 0 for the whole split')
    return dataset

  def create_model(self, config, dataset, components=None):
    return model_lib.create_model(config, dataset.image_shape, components,
                                  dataset.values)

  def devices(self, config) -> list:
    """The devices of the run's data-parallel layout (`run_devices`)."""
    return parallel.run_devices(config,
                                model_lib.splits_over_devices(config))

  def layout(self, config):
    return parallel.create_layout(config.train.parallel,
                                  self.devices(config))

  def num_steps(self, config, dataset) -> int:
    return num_train_steps(config, len(dataset.train))

  def num_train(self, dataset) -> int:
    return len(dataset.train)

  def batch_size(self, config) -> int:
    return config.train.batch_size

  def examples_per_step(self, config) -> int:
    return config.train.batch_size

  def train_data(self, dataset) -> np.ndarray:
    return dataset.train

  def batches(self, seed: int, num_train: int, batch_size: int, length: int):
    data_key = jax.random.split(jax.random.key(seed), 4)[1]

    def indices_fn(start):
      return batching.batch_index_block(data_key, start, length, num_train,
                                        batch_size)

    return indices_fn, batching.gather_batch

  def terms_fn(self, model):
    return steps.per_example_terms(model)

  def init_state(self, model, optimizer, objective_state, seed, dataset):
    init_key = jax.random.split(jax.random.key(seed), 4)[0]
    example = jnp.asarray(dataset.train[:1], jnp.float32)
    return steps.create_train_state(model, optimizer, objective_state,
                                    init_key, example)

  def create_evaluator(self, config, dataset, model, layout):
    return evaluator_lib.create_evaluator(config, dataset, model, layout)

  def evaluate(self, run, params_host: Any, params: Any, step: int,
               final: bool, writer: Any) -> dict[str, Any]:
    """Validation (and when `final` test) measures, and the image grid; a
    final evaluation's results hold 'eval_seconds' (each part's and the
    total wall time)."""
    start = time.monotonic()
    splits = ('validation', 'test') if final else ('validation',)
    results = measures.evaluate_splits(run.evaluator, params_host, params,
                                       final, splits)
    if run.config.eval.num_grid_images and distributed.is_primary():
      grid_start = time.monotonic()
      samples = measures.sample_grid(run.evaluator, params_host, step)
      metric_files.write_sample_grid(writer.workdir, writer, step, samples)
      if final:
        results[measures.SECONDS_KEY]['grid'] = time.monotonic() - grid_start
    if final:
      results[measures.SECONDS_KEY]['total'] = time.monotonic() - start
    return results

  def summarize(self, results: dict[str, Any],
                config: ml_collections.ConfigDict) -> None:
    measures.summarize(results, config, 'last')

  def finish(self, run, results: dict[str, Any], params_host: Any,
             workdir: str) -> None:
    del run, results, params_host, workdir


IMAGE_TASK = ImageTask()
