"""The host loop: `train_and_eval(config, workdir) -> results`.

Nothing here is traced; the device programs come from `steps` (bodies) and
`parallel` (their jit / pmap wrappers). One run:

  1. validates the whole config (data, model, objective, optimizer, training,
     evaluation, device count), loads and checks the data and checks the
     config against the split sizes, raising ConfigError before anything is
     written;
  2. prepares the workdir (config.json; a different config there raises
     WorkdirConflictError), restores the newest checkpoint that reads back
     whole (falling back past damaged ones) or initialises;
  3. dispatches `train.steps_per_dispatch` steps per call (a `lax.scan` over
     on-device data), acts on each step's NaN/inf flags as
     `train.nonfinite` says ('stop': FloatingPointError naming the step, so
     the last checkpoint saved stays the last good one; 'skip': the update
     was dropped on the device, counted as train/skipped), logs `train/*`
     every `log_every` steps with a progress line, evaluates the validation
     set every `eval_every` steps (R, D, ELBO, bits/dim, exact masked means;
     with the Fig. 4 image grid), checkpoints every `checkpoint_every` steps
     and keeps the best by validation ELBO; on SIGTERM/SIGINT it checkpoints
     after the dispatch and raises `preemption.Preempted`;
  4. at the end evaluates validation and test with the IWAE bound
     (`eval.iwae_samples`), the generative bounds E and G, the active units
     and the rate per dimension (`evaluation`), and writes results.json.

Evaluation (the measures, the seeded evaluation subsets, evaluating a
finished run again) lives in `evaluation`.

The data order and every sample are functions of (seed, step), and the
checkpoint holds the whole TrainState, so a killed run restarted in the same
workdir ends with the same parameters and metrics as one never stopped
(tests/test_faults.py kills one between dispatches, during an evaluation and
during a checkpoint save).

Across processes (`rdvae.runtime.distributed`) every process runs this loop on its
share of the global batch; process 0 alone writes config.json, metrics,
images and results.json, and all of them save each checkpoint together.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae.evaluation import steps as eval_steps
from rdvae.runtime import backends
from rdvae.files import checkpointing
from rdvae.runtime import compilation
from rdvae.data import sources as data
from rdvae.data import batching
from rdvae.runtime import distributed
from rdvae.runtime import faults
from rdvae.evaluation import measures as evaluation
from rdvae.models import model as model_lib
from rdvae.objectives import losses as objectives
from rdvae.training import optim
from rdvae.runtime import parallel
from rdvae.runtime import preemption
from rdvae.training import steps
from rdvae import validation
from rdvae.files import metric_files
from rdvae.files import run_files

NONFINITE_MODES = ('stop', 'skip')


@dataclasses.dataclass(frozen=True)
class Run:
  """What the loop needs, built once from the config."""

  config: ml_collections.ConfigDict
  dataset: data.Dataset
  model: Any
  mesh: Any
  mode: str
  num_steps: int
  schedule: Any
  train_loop: Any
  short_loop: Any  # length -> a loop of that many steps (compiled once each)
  eval_loop: Any
  final_eval_loop: Any
  sample_fn: Any
  init_state: Any
  eval_rng: Any
  sample_key: Any
  backend: dict[str, Any]
  latent_loop: Any = None
  generative_step: Any = None
  generative_key: Any = None


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every section of an image experiment's config before any work."""
  data.validate(config)
  model_lib.validate(config, data.IMAGE_SHAPE)
  objectives.validate(config)
  optim.validate(config)
  parallel.validate(config)
  check = validation.check_positive_int
  check(config, 'train.seed', allow_zero=True)
  check(config, 'train.num_steps', allow_zero=True)
  validation.check_number(config, 'train.num_epochs', strictly_positive=True)
  backends.validate(config)  # steps_per_dispatch, scan_unroll, *_every
  check(config, 'train.max_checkpoints_to_keep')
  validation.check_choice(config, 'train.nonfinite', NONFINITE_MODES)
  check(config, 'train.max_skipped')
  evaluation.validate(config)


def check_splits(config: ml_collections.ConfigDict,
                 dataset: data.Dataset) -> None:
  """Checks the config against the loaded splits, before anything is written.

  Raises:
    ConfigError: train.batch_size exceeds the training split (no full batch
      per epoch), or eval.num_grid_images the validation split.
  """
  where = data.describe_source(config)
  for key, split in (('train.batch_size', 'train'),
                     ('eval.num_grid_images', 'validation')):
    size = len(getattr(dataset, split))
    if validation.get(config, key) > size:
      raise validation.ConfigError(
          f'config.{key}={validation.get(config, key)} is larger than the '
          f'{split} split of {where} ({size} images); use at most {size}')


def num_train_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """`train.num_steps` if > 0, else num_epochs full epochs of batches."""
  if config.train.num_steps > 0:
    return config.train.num_steps
  per_epoch = batching.steps_per_epoch(num_examples, config.train.batch_size)
  return max(1, int(math.ceil(config.train.num_epochs * per_epoch)))


@dataclasses.dataclass(frozen=True)
class _ProgramSpec:
  """Everything that determines the compiled programs of a run (hashable).

  Runs with equal specs (e.g. sweep points that differ only in the
  objective's numbers, the learning rate or the number of steps, which the
  step receives as arrays in `objectives.ObjectiveState` and the optimizer
  state, `optim.create_optimizer`) share one set of jitted functions, so a
  process compiles them once.
  """

  model: Any
  normalize_gradients: bool
  objective: objectives.Objective
  skip_nonfinite: bool
  seed: int
  num_train: int
  batch_size: int
  steps_per_dispatch: int
  scan_unroll: bool
  mode: str
  devices: tuple[int, ...]
  eval_batch_size: int
  iwae_samples: int
  num_grid_images: int
  num_decodes: int
  generative_batch: int


@dataclasses.dataclass(frozen=True)
class _Programs:
  mesh: Any
  optimizer: Any
  train_loop: Any
  short_loop: Any
  eval_loop: Any
  final_eval_loop: Any
  sample_fn: Any
  latent_loop: Any
  generative_step: Any


@functools.lru_cache(maxsize=16)
def _programs(spec: _ProgramSpec) -> _Programs:
  """The jitted loops of `spec`, built once per spec in a process."""
  # The defaults' numbers, the same for every run of this spec (so is the
  # initialisation program that takes it); each run's own numbers are put
  # into its state (create_run), and the step reads them from there.
  optim_config = ml_collections.ConfigDict({'optim': optim.default_config()})
  optim_config.optim.normalize_gradients = spec.normalize_gradients
  optimizer = optim.create_optimizer(optim_config, 1)
  mesh = parallel.create_mesh()
  axis = parallel.AXIS if spec.mode == 'pmap' else None
  data_key = jax.random.split(jax.random.key(spec.seed), 4)[1]
  body = steps.make_train_step(spec.model, optimizer, spec.objective, axis,
                               skip_nonfinite=spec.skip_nonfinite)

  def loop(length):
    return parallel.make_train_loop(
        body, lambda start: batching.batch_index_block(
            data_key, start, length, spec.num_train, spec.batch_size),
        batching.gather_batch, spec.batch_size, length, mesh, spec.mode,
        unroll=spec.scan_unroll)

  def eval_loop(step_fn):
    return parallel.make_eval_loop(step_fn, spec.eval_batch_size, mesh,
                                   spec.mode)

  return _Programs(
      mesh=mesh, optimizer=optimizer,
      train_loop=loop(spec.steps_per_dispatch),
      # The last dispatch, and the first after a resume at a step that is
      # not a multiple of steps_per_dispatch (e.g. a run preempted on another
      # backend, whose choice differed), run fewer steps.
      short_loop=functools.cache(loop),
      eval_loop=eval_loop(eval_steps.make_eval_step(spec.model, 0, axis)),
      final_eval_loop=eval_loop(
          eval_steps.make_eval_step(spec.model, spec.iwae_samples, axis)),
      sample_fn=jax.jit(eval_steps.make_sample_fn(
          spec.model, spec.num_grid_images, spec.num_decodes)),
      latent_loop=eval_loop(eval_steps.make_latent_step(spec.model, axis)),
      generative_step=jax.jit(eval_steps.make_generative_step(
          spec.model, spec.generative_batch, spec.iwae_samples)))


def create_run(config: ml_collections.ConfigDict,
               dataset: data.Dataset | None = None) -> Run:
  """Builds the model, optimizer and compiled loops (loading the data unless
  `dataset` is given).

  `train.scan_unroll`, `train.steps_per_dispatch` and
  `model.pseudo_input_batch` left to the backend are resolved first
  (`backends`; `Run.config` holds the resolved values, `Run.backend` the
  summary). The jitted loops are shared with earlier runs
  of this process that have the same `_ProgramSpec`.
  """
  config, chosen = backends.resolved_config(config, jax.default_backend())
  if dataset is None:
    dataset = data.create_dataset(config)
    check_splits(config, dataset)
  model = model_lib.create_model(config, dataset.image_shape)
  objective = objectives.create_objective(config)
  c = config.train
  num_steps = num_train_steps(config, len(dataset.train))
  spec = _ProgramSpec(
      model=model, normalize_gradients=config.optim.normalize_gradients,
      objective=objective,
      skip_nonfinite=c.nonfinite == 'skip', seed=c.seed,
      num_train=len(dataset.train), batch_size=c.batch_size,
      steps_per_dispatch=c.steps_per_dispatch, scan_unroll=c.scan_unroll,
      mode=c.parallel, devices=tuple(d.id for d in jax.devices()),
      eval_batch_size=config.eval.batch_size,
      iwae_samples=config.eval.iwae_samples,
      num_grid_images=config.eval.num_grid_images,
      num_decodes=config.eval.num_decodes,
      generative_batch=evaluation.generative_batch_size(config))
  try:
    programs = _programs(spec)
  except TypeError:  # an unhashable model: programs of this run alone
    programs = _programs.__wrapped__(spec)
  init_key, _, eval_key, sample_key = jax.random.split(
      jax.random.key(c.seed), 4)
  example = jnp.asarray(dataset.train[:1], jnp.float32)
  init_state = steps.create_train_state(
      model, programs.optimizer, objectives.create_state(config), init_key,
      example)
  # This run's learning rate, schedule and Adam settings, as arrays.
  init_state = init_state.replace(opt_state=optim.set_numbers(
      init_state.opt_state, config, num_steps))
  return Run(
      config=config, dataset=dataset, model=model, mesh=programs.mesh,
      mode=c.parallel, num_steps=num_steps,
      schedule=optim.make_learning_rate_schedule(
          config.optim.learning_rate, num_steps, config.optim.hold_fraction,
          config.optim.final_fraction),
      train_loop=programs.train_loop, short_loop=programs.short_loop,
      eval_loop=programs.eval_loop,
      final_eval_loop=programs.final_eval_loop,
      sample_fn=programs.sample_fn, init_state=init_state,
      eval_rng=jax.random.key_data(eval_key), sample_key=sample_key,
      backend=chosen, latent_loop=programs.latent_loop,
      generative_step=programs.generative_step,
      # A key of its own, so the other draws stay as they were.
      generative_key=jax.random.key_data(jax.random.split(eval_key)[1]))


def _restore_or_init(run: Run, manager) -> Any:
  """The newest checkpoint that restores (falling back past damaged ones,
  `checkpointing.restore_latest_good`), or the initial state."""
  init = jax.device_get(run.init_state)
  state = checkpointing.restore_latest_good(manager, init)
  return init if state is None else state


class _NonFinite:
  """Acts on the per-step `nonfinite` flags of each dispatch (train.nonfinite).

  'stop': the first flagged step raises FloatingPointError naming the step
  and the quantities (loss, rate, distortion, grad_norm, state), before the
  state is checkpointed. 'skip': the step body already dropped the update;
  flagged steps are counted (`skipped`, logged as train/skipped) and
  `train.max_skipped` consecutive ones raise the same error. The count of
  consecutive skips restarts when a run resumes.
  """

  def __init__(self, config: ml_collections.ConfigDict, manager):
    self.mode, self.limit = config.train.nonfinite, config.train.max_skipped
    self.manager, self.consecutive = manager, 0

  def check(self, flags: np.ndarray, end_step: int) -> int:
    """Returns the number of skipped steps among `flags` (steps up to
    `end_step`), or raises FloatingPointError."""
    first = end_step - len(flags) + 1
    for i, flag in enumerate(np.asarray(flags).tolist()):
      self.consecutive = self.consecutive + 1 if flag else 0
      if flag and (self.mode == 'stop' or self.consecutive >= self.limit):
        self._stop(first + i, steps.names_of_flags(flag))
    skipped = int(np.count_nonzero(flags))
    if skipped and distributed.is_primary():
      print(f'skipped {skipped} non-finite update(s) in steps {first}..'
            f'{end_step}', flush=True)
    return skipped

  def _stop(self, step: int, names: list[str]) -> None:
    why = (f'{self.consecutive} consecutive non-finite steps (train.nonfinite='
           f"'skip', train.max_skipped={self.limit})"
           if self.mode == 'skip' else "train.nonfinite='stop'")
    raise FloatingPointError(
        f'non-finite {", ".join(names)} at step {step} ({why}); the last good '
        f'checkpoint is step {checkpointing.latest_step(self.manager)} in '
        f'{self.manager.directory} (lower optim.learning_rate, check the '
        "data, or set train.nonfinite='skip')")


def _dispatch(run: Run, state, train_data, step: int, speed: '_Speed'):
  """One call of the compiled loop from `step`: (state, step metrics
  averaged over the good steps, nonfinite flags [S], the new step)."""
  c = run.config.train
  # Up to the next multiple of steps_per_dispatch (where logs, evaluations
  # and checkpoints fall), or to the end.
  length = min(c.steps_per_dispatch - step % c.steps_per_dispatch,
               run.num_steps - step)
  loop = (run.train_loop if length == c.steps_per_dispatch
          else run.short_loop(length))
  tic = time.perf_counter()
  state, metrics = loop(state, train_data)
  metrics = parallel.get_replicated(metrics, run.mode)  # waits for the steps
  speed.add(length, time.perf_counter() - tic)
  flags = np.asarray(metrics.pop('nonfinite'))
  good = flags == 0 if flags.any() and not flags.all() else slice(None)
  means = {k: float(np.mean(np.asarray(v)[good])) for k, v in metrics.items()}
  return state, means, flags, step + length


class _Speed:
  """Training steps per second, excluding the first (compiling) dispatch and
  everything outside the dispatches (evaluation, checkpoints)."""

  def __init__(self):
    self.steps, self.seconds, self.first = 0, 0.0, None

  def add(self, steps: int, seconds: float) -> None:
    if self.first is None:
      self.first = steps / max(seconds, 1e-9)
    else:
      self.steps, self.seconds = self.steps + steps, self.seconds + seconds

  def rate(self) -> float:
    return self.steps / self.seconds if self.steps else self.first


def _progress(step: int, total: int, metrics, speed: _Speed,
              batch_size: int) -> None:
  rate = speed.rate()
  eta = (total - step) / max(rate, 1e-9)
  print(f'step {step}/{total} | loss {metrics["loss"]:.3f} '
        f'R {metrics["rate"]:.3f} D {metrics["distortion"]:.3f} | '
        f'{rate:.2f} steps/s {rate * batch_size:.1f} images/s | '
        f'ETA {time.strftime("%H:%M:%S", time.gmtime(eta))}', flush=True)


def _evaluate_and_log(run, writer, params_host, params, step, final):
  """Validation (and at the end test) metrics and the image grid; one
  metrics record per evaluation (the final one is the one with test/*)."""
  splits = ('validation', 'test') if final else ('validation',)
  results = evaluation.evaluate_splits(run, params_host, params, final, splits)
  writer.write_scalars(step, evaluation.scalars(results))
  if run.config.eval.num_grid_images and distributed.is_primary():
    x = jnp.asarray(run.dataset.validation[:run.config.eval.num_grid_images],
                    jnp.float32)
    samples = run.sample_fn(params_host, x,
                            jax.random.fold_in(run.sample_key, step))
    metric_files.write_sample_grid(writer.workdir, writer, step,
                                   jax.device_get(samples))
  return results


def _train_loop(run: Run, state, train_data, step: int, writer, managers,
                speed: _Speed, workdir: str):
  """Steps `step`..num_steps: dispatch, check for NaN/inf, log, evaluate,
  checkpoint. On SIGTERM/SIGINT it finishes the dispatch, checkpoints,
  flushes the metrics and raises `preemption.Preempted`.

  Returns:
    (state, step) at the end of training, the state on the devices.
  """
  c = run.config.train
  manager, best = managers
  nonfinite = _NonFinite(run.config, manager)
  with preemption.SignalWatch() as watch:
    while step < run.num_steps:
      state, metrics, flags, step = _dispatch(run, state, train_data, step,
                                              speed)
      faults.point('dispatch', step)
      skipped = nonfinite.check(flags, step)
      if c.nonfinite == 'skip':
        metrics['skipped'] = skipped
      if step % c.log_every == 0 or step == run.num_steps:
        metrics['learning_rate'] = float(run.schedule(step - 1))
        writer.write_scalars(step, {f'train/{k}': v
                                    for k, v in metrics.items()})
        if distributed.is_primary():
          _progress(step, run.num_steps, metrics, speed, c.batch_size)
      # Every process stops at the same step, or none does (a save is
      # collective).
      if distributed.any_process(watch.received is not None):
        checkpointing.save(manager, step, parallel.get_replicated(state,
                                                                  run.mode))
        writer.close()
        raise preemption.Preempted(watch.received, step, workdir)
      if c.eval_every and step % c.eval_every == 0 and step < run.num_steps:
        host = parallel.get_replicated(state, run.mode)
        means = _evaluate_and_log(run, writer, host.params, state.params,
                                  step, final=False)
        checkpointing.save(best, step, host,
                           {'elbo': means['validation/elbo']})
      if c.checkpoint_every and step % c.checkpoint_every == 0:
        checkpointing.save(manager, step, parallel.get_replicated(state,
                                                                  run.mode))
  return state, step


def train_and_eval(config: ml_collections.ConfigDict, workdir: str
                   ) -> dict[str, Any]:
  """Trains `config`'s model in `workdir` (resuming) and evaluates it.

  Returns:
    The test-set `rate`, `distortion`, `elbo`, `iwae` (nats per image),
    `bpd`, `generative_lower`, `generative_upper`, `active_units`, every
    `validation/*` and `test/*` figure, 'eval_subset' and 'params' ('last':
    the parameters at the end of training), as in results.json.
  """
  compilation.setup()  # the persistent compilation cache (rdvae.compilation)
  if validation.get(config, 'dataset.name') == 'toy':
    if jax.process_count() > 1:
      raise validation.ConfigError(
          "config.dataset.name='toy' runs in one process; start it without "
          '--multihost')
    from rdvae.toy import toy  # pylint: disable=g-import-not-at-top
    return toy.train_and_eval(config, workdir)
  validate(config)
  dataset = data.create_dataset(config)  # a bad data file stops here,
  check_splits(config, dataset)          # before anything is written
  distributed.primary_first('config.json', run_files.prepare_workdir,
                            workdir, config)
  run_files.check_workdir(workdir, config)
  done = run_files.read_results(workdir)  # written last: the run is complete
  if done is not None:
    return done
  counter = compilation.Counter()
  run = create_run(config, dataset)
  if distributed.is_primary():
    print(backends.describe(run.backend), flush=True)
  c = run.config.train
  manager = checkpointing.create_manager(workdir, c.max_checkpoints_to_keep)
  best = checkpointing.create_manager(workdir, 1, best_metric='elbo')
  state = _restore_or_init(run, manager)
  start_step = step = int(state.step)
  # Records after the restored step are rewritten; so is a final evaluation
  # (the record with test/*) that a killed run left without results.json.
  writer = metric_files.MetricWriter(
      workdir, start_step,
      keep=lambda r: r['step'] <= start_step and 'test/elbo' not in r
  ) if distributed.is_primary() else metric_files.NullWriter(workdir)
  state = parallel.put_replicated(state, run.mesh, run.mode)
  train_data = parallel.put_replicated(run.dataset.train, run.mesh, run.mode)
  speed = _Speed()
  state, step = _train_loop(run, state, train_data, step, writer,
                            (manager, best), speed, workdir)
  if speed.first is not None and distributed.is_primary():
    print(f'trained steps {start_step}..{step}: {speed.rate():.2f} steps/s, '
          f'{speed.rate() * c.batch_size:.1f} images/s (compile excluded)',
          flush=True)
  host = parallel.get_replicated(state, run.mode)
  if checkpointing.latest_step(manager) != step:
    checkpointing.save(manager, step, host)
  results = _evaluate_and_log(run, writer, host.params, state.params,
                              step, final=True)
  checkpointing.save(best, step, host, {'elbo': results['validation/elbo']})
  writer.close()
  evaluation.summarize(results, config, 'last')
  results.update(step=step, num_steps=run.num_steps,
                 num_parameters=sum(int(np.size(p)) for p in
                                    jax.tree.leaves(host.params)))
  if speed.first is not None:
    results['train_images_per_second'] = speed.rate() * c.batch_size
  results['backend'] = run.backend
  results['compile'] = counter.report()
  if distributed.is_primary():
    print(compilation.describe(results['compile']), flush=True)
    run_files.write_results(workdir, results)
  return results
