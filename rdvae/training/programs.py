"""A run built from its config: the task's data and model, the compiled
training loop, the evaluator and the initial state.

`create_run` is where a run's kind is decided, once (`tasks.for_config`:
the image models or the toy); everything after it asks the run's task and
layout, never the config's dataset name. The jitted loops are keyed by a
`ProgramSpec`, so runs that differ only in numbers the step takes as arrays
(the objective's, the optimizer's, the number of steps) share one compiled
program in a process: a sweep compiles once per architecture.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import ml_collections

from rdvae import types
from rdvae import validation
from rdvae.objectives import losses as objectives
from rdvae.objectives import settings
from rdvae.runtime import backends
from rdvae.training import optim
from rdvae.training import steps
from rdvae.training import tasks


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
  """Everything that determines the compiled training loop (hashable)."""

  task: Any
  model: Any
  optimizer: optim.Settings
  objective: objectives.Objective
  skip_nonfinite: bool
  seed: int
  num_train: int
  batch_size: int
  steps_per_dispatch: int
  scan_unroll: bool
  layout: Any


@dataclasses.dataclass(frozen=True)
class Programs:
  optimizer: Any
  train_loop: Callable   # steps_per_dispatch steps per call
  short_loop: Callable   # length -> a loop of that many steps


@functools.lru_cache(maxsize=16)
def _programs(spec: ProgramSpec) -> Programs:
  # The defaults' numbers, the same for every run of this spec (so is the
  # initialisation program that takes it); each run's own numbers are put
  # into its state (create_run), and the step reads them from there.
  optimizer = optim.create_optimizer_of(spec.optimizer)
  body = steps.make_train_step(
      spec.model, optimizer, spec.objective, spec.layout.axis_name,
      skip_nonfinite=spec.skip_nonfinite,
      terms_fn=spec.task.terms_fn(spec.model))

  def loop(length):
    indices_fn, gather_fn = spec.task.batches(spec.seed, spec.num_train,
                                              spec.batch_size, length)
    return spec.layout.train_loop(body, indices_fn, gather_fn,
                                  spec.batch_size, unroll=spec.scan_unroll,
                                  summarize=steps.dispatch_metrics)

  return Programs(
      optimizer=optimizer, train_loop=loop(spec.steps_per_dispatch),
      # The last dispatch, and the first after a resume at a step that is
      # not a multiple of steps_per_dispatch (e.g. a run preempted on another
      # backend, whose choice differed), run fewer steps.
      short_loop=functools.cache(loop))


def programs(spec: ProgramSpec) -> Programs:
  """The loops of `spec`, built once per spec in a process (a model that
  cannot be hashed gets loops of its own)."""
  try:
    return _programs(spec)
  except TypeError:
    return _programs.__wrapped__(spec)


@dataclasses.dataclass(frozen=True)
class Run:
  """What the host loop needs, built once from the config.

  Attributes:
    config: the config with the backend's choices resolved.
    task: the run's kind (`tasks.Task`).
    data: the task's data.
    model: the Flax model.
    layout: where the arrays live (`runtime.parallel`, `runtime.populations`).
    num_steps: T.
    schedule: the learning rate by step (for the logs).
    train_loop, short_loop: the compiled loops (`Programs`).
    init_state: the TrainState at step 0, with this run's numbers.
    evaluator: the task's evaluator of this run.
    backend: the backend's choices (`backends.resolve`).
  """

  config: ml_collections.ConfigDict
  task: Any
  data: Any
  model: Any
  layout: Any
  num_steps: int
  schedule: Callable[[int], Any]
  train_loop: Callable
  short_loop: Callable
  init_state: types.TrainState
  evaluator: Any
  backend: dict[str, Any]


def validate(config: ml_collections.ConfigDict,
             components: Any = None) -> tasks.Task:
  """Checks every key of `config`, and the `components` that replace
  parts of its model (see `create_run`), before any work; returns its
  task."""
  task = tasks.for_config(config)
  validation.check_all_finite(config)
  task.validate(config, components)
  tasks.validate_training(config)
  return task


def program_spec(config: ml_collections.ConfigDict, task: Any, data: Any,
                 model: Any, layout: Any) -> ProgramSpec:
  """The `ProgramSpec` of a run of `config` (its backend's choices resolved,
  `backends.resolved_config`) with the given task, data, model and layout."""
  c = config.train
  return ProgramSpec(
      task=task, model=model, optimizer=optim.settings(config),
      objective=settings.create_objective(config),
      skip_nonfinite=c.nonfinite == 'skip',
      # A program draws its batches with a key from the seed, if any.
      seed=c.seed if task.batches_depend_on_seed else 0,
      num_train=task.num_train(data), batch_size=task.batch_size(config),
      steps_per_dispatch=c.steps_per_dispatch, scan_unroll=c.scan_unroll,
      layout=layout)


def create_run(config: ml_collections.ConfigDict, data: Any = None,
               layout: Any = None, components: Any = None) -> Run:
  """Builds the model, the compiled loops and the initial state (loading
  and checking the data unless `data` is given). `components`
  ({'encoder' | 'decoder' | 'marginal': linen module}) replace the config's
  parts of the model (rdvae/models/custom.py).

  `train.scan_unroll`, `train.steps_per_dispatch` and
  `model.pseudo_input_batch` left to the backend are resolved first
  (`backends`; `Run.config` holds the resolved values, `Run.backend` the
  summary). `layout` is the task's default for the config unless given (a
  population's, for one member of a population).
  """
  task = tasks.for_config(config)
  config, chosen = backends.resolved_config(config, jax.default_backend())
  if data is None:
    data = task.load_data(config, components)
  model = task.create_model(config, data, components)
  layout = layout or task.layout(config)
  c = config.train
  num_steps = task.num_steps(config, data)
  loops = programs(program_spec(config, task, data, model, layout))
  init_state = task.init_state(model, loops.optimizer,
                               settings.create_state(config), c.seed, data)
  # This run's learning rate, schedule and Adam settings, as arrays.
  init_state = init_state.replace(opt_state=optim.set_numbers(
      init_state.opt_state, config, num_steps))
  o = config.optim
  return Run(
      config=config, task=task, data=data, model=model, layout=layout,
      num_steps=num_steps,
      schedule=optim.make_learning_rate_schedule(
          o.learning_rate, num_steps, o.hold_fraction, o.final_fraction,
          o.schedule),
      train_loop=loops.train_loop, short_loop=loops.short_loop,
      init_state=init_state,
      evaluator=task.create_evaluator(config, data, model, layout),
      backend=chosen)
