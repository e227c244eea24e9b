"""The toy as a task of the one training stack (`training.tasks`).

Training is on the exact p*(x) ("effectively infinite data"): a step's
terms are the per-x rate and distortion, exact expectations over the
enumerated z (`exact.terms`), which `objectives.loss_fn` averages with
weights p*(x). There is no batch to draw: the training data is p*(x) itself
and every step reads all of it. Runs train in populations
(`runtime.populations`; a run alone is a population of one), so a sweep's
points are bitwise the runs alone. Evaluation is exact, in float64
(`toy.measures`); a run leaves its tables (tables.npz) and its Fig. 2
column (figure.png) beside results.json.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae import types
from rdvae import validation
from rdvae.objectives import exact
from rdvae.objectives import settings
from rdvae.runtime import populations
from rdvae.toy import data
from rdvae.toy import measures
from rdvae.toy import model as toy_model


def _refuse(components) -> None:
  if components:
    raise validation.ConfigError(
        "the toy's model is a table: it has no encoder, decoder or marginal "
        f'modules to replace (components={sorted(components)})')


class ToyTask:
  """The discrete toy of section 4 and Appendix E."""

  name = 'toy'
  selection_key = 'elbo'
  multiprocess = False
  populations = True
  batches_depend_on_seed = False

  def validate(self, config: ml_collections.ConfigDict,
               components=None) -> None:
    """The toy's sections: dataset, model, objective (rate targets at most
    the data entropy H) and the number of steps."""
    _refuse(components)
    spec = data.validate(config)
    toy_model.validate(config)
    validation.check_positive_int(config, 'train.num_steps')
    settings.validate(config, data_entropy=spec.entropy)

  def load_data(self, config, components=None, arrays=None) -> data.DataSpec:
    _refuse(components)
    if arrays is not None:
      raise validation.ConfigError(
          "the toy's data is its exact p*(x) (dataset.name='toy'); it takes "
          'no data= arrays')
    return data.create_data_spec(config)

  def create_model(self, config, spec,
                   components=None) -> toy_model.ToyModel:
    _refuse(components)
    return toy_model.create_model(config, spec)

  def layout(self, config) -> populations.PopulationLayout:
    del config
    return populations.PopulationLayout(1)

  def num_steps(self, config, spec) -> int:
    del spec
    return int(config.train.num_steps)

  def num_train(self, spec) -> int:
    return len(spec.p_data)

  def batch_size(self, config) -> int:
    del config
    return 1

  def examples_per_step(self, config) -> int:
    del config
    return 0

  def train_data(self, spec) -> np.ndarray:
    return np.asarray(spec.p_data, np.float32)  # [X] p*(x)

  def batches(self, seed: int, num_train: int, batch_size: int, length: int):
    """Every step reads the whole p*(x): no indices to draw."""
    del seed, num_train, batch_size

    def indices_fn(start):
      del start
      return jnp.zeros((length, 1), jnp.int32)

    return indices_fn, lambda p_data, indices: p_data

  def terms_fn(self, model: toy_model.ToyModel):
    """The exact per-x terms of the model's tables, weighted by p*(x)."""

    def terms(params, p_data, keys):
      del keys
      return exact.terms(*model.apply({'params': params})), p_data

    return terms

  def init_state(self, model, optimizer, objective_state, seed, spec
                 ) -> types.TrainState:
    del spec
    key = jax.random.key(seed)
    params = model.init(key)['params']
    return types.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state=optimizer.init(params), objective_state=objective_state,
        rng=jax.random.key_data(key))

  def create_evaluator(self, config, spec, model, layout) -> None:
    del config, spec, model, layout  # evaluation is exact, on the host

  def evaluate(self, run, params_host: Any, params: Any, step: int,
               final: bool, writer: Any) -> dict[str, Any]:
    """Every exact measure (`toy.measures.evaluate`) of the parameters."""
    del params, step, final, writer
    tables = toy_model.model_tables(run.model, params_host)
    return measures.evaluate(run.data, tables)

  def summarize(self, results, config) -> None:
    del results, config

  def finish(self, run, results: dict[str, Any], params_host: Any,
             workdir: str) -> None:
    """Writes the model's tables and its Fig. 2 column."""
    del results
    tables = toy_model.model_tables(run.model, params_host)
    measures.write_tables(os.path.join(workdir, measures.TABLES_FILE), tables)
    measures.write_figure(run.config, run.data, tables,
                          os.path.join(workdir, measures.FIGURE_FILE))


TASK = ToyTask()
