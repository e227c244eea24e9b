"""The host loop: `train_and_eval(config, workdir) -> results`.

Nothing here is traced; the device programs come from `steps` (bodies) and
`parallel` (their jit / pmap wrappers). One run:

  1. validates the whole config (data, model, objective, optimizer, training,
     evaluation, device count) and raises ConfigError before any work;
  2. prepares the workdir (config.json; a different config there raises
     WorkdirConflictError), restores the latest checkpoint or initialises;
  3. dispatches `train.steps_per_dispatch` steps per call (a `lax.scan` over
     on-device data), checks every dispatch's metrics for NaN/inf (stopping
     with FloatingPointError, so the last checkpoint saved stays the last
     good one), logs `train/*` every `log_every` steps with a progress line,
     evaluates the validation set every `eval_every` steps (R, D, ELBO,
     bits/dim, exact masked means; with the Fig. 4 image grid), checkpoints
     every `checkpoint_every` steps and keeps the best by validation ELBO;
  4. at the end evaluates validation and test with the IWAE bound
     (`eval.iwae_samples`) and writes results.json.

The data order and every sample are functions of (seed, step), and the
checkpoint holds the whole TrainState, so a killed run restarted in the same
workdir ends with the same parameters and metrics as one never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rdvae import backends
from rdvae import bounds
from rdvae import checkpointing
from rdvae import compilation
from rdvae import data
from rdvae import model as model_lib
from rdvae import objectives
from rdvae import optim
from rdvae import parallel
from rdvae import steps
from rdvae import validation
from rdvae import writers


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
  tail_loop: Any
  eval_loop: Any
  final_eval_loop: Any
  sample_fn: Any
  init_state: Any
  eval_rng: Any
  sample_key: Any
  backend: dict[str, Any]


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
  check(config, 'eval.iwae_samples')
  check(config, 'eval.max_examples', allow_zero=True)
  check(config, 'eval.num_grid_images', allow_zero=True)
  check(config, 'eval.num_decodes')


def num_train_steps(config: ml_collections.ConfigDict, num_examples: int) -> int:
  """`train.num_steps` if > 0, else num_epochs full epochs of batches."""
  if config.train.num_steps > 0:
    return config.train.num_steps
  per_epoch = data.steps_per_epoch(num_examples, config.train.batch_size)
  return max(1, int(math.ceil(config.train.num_epochs * per_epoch)))


def _static_objective(objective: objectives.Objective) -> objectives.Objective:
  """`objective` without the numbers the step reads from the TrainState
  (`steps.TrainState.beta`): what the compiled step depends on."""
  return dataclasses.replace(objective, beta=1.0)


@dataclasses.dataclass(frozen=True)
class _ProgramSpec:
  """Everything that determines the compiled programs of a run (hashable).

  Runs with equal specs (e.g. sweep points that differ only in
  objective.beta, which the step receives as an array) share one set of
  jitted functions, so a process compiles them once.
  """

  model: Any
  optim: ml_collections.FrozenConfigDict
  num_steps: int
  objective: objectives.Objective
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


@dataclasses.dataclass(frozen=True)
class _Programs:
  mesh: Any
  optimizer: Any
  train_loop: Any
  tail_loop: Any
  eval_loop: Any
  final_eval_loop: Any
  sample_fn: Any


@functools.lru_cache(maxsize=16)
def _programs(spec: _ProgramSpec) -> _Programs:
  """The jitted loops of `spec`, built once per spec in a process."""
  optimizer = optim.create_optimizer(
      ml_collections.ConfigDict({'optim': spec.optim.as_configdict()}),
      spec.num_steps)
  mesh = parallel.create_mesh()
  axis = parallel.AXIS if spec.mode == 'pmap' else None
  data_key = jax.random.split(jax.random.key(spec.seed), 4)[1]
  body = steps.make_train_step(spec.model, optimizer, spec.objective, axis)

  def loop(length):
    return parallel.make_train_loop(
        body, lambda start: data.batch_index_block(
            data_key, start, length, spec.num_train, spec.batch_size),
        data.gather_batch, spec.batch_size, length, mesh, spec.mode,
        unroll=spec.scan_unroll)

  def eval_loop(iwae_samples):
    return parallel.make_eval_loop(
        steps.make_eval_step(spec.model, iwae_samples, axis),
        spec.eval_batch_size, mesh, spec.mode)

  return _Programs(
      mesh=mesh, optimizer=optimizer,
      train_loop=loop(spec.steps_per_dispatch),
      tail_loop=loop(spec.num_steps % spec.steps_per_dispatch or 1),
      eval_loop=eval_loop(0),
      final_eval_loop=eval_loop(spec.iwae_samples),
      sample_fn=jax.jit(steps.make_sample_fn(
          spec.model, spec.num_grid_images, spec.num_decodes)))


def create_run(config: ml_collections.ConfigDict) -> Run:
  """Loads the data and builds the model, optimizer and compiled loops.

  `train.scan_unroll` and `train.steps_per_dispatch` left to the backend
  are resolved first (`backends`; `Run.config` holds the resolved values,
  `Run.backend` the summary). The jitted loops are shared with earlier runs
  of this process that have the same `_ProgramSpec`.
  """
  config, chosen = backends.resolved_config(config, jax.default_backend())
  dataset = data.create_dataset(config)
  model = model_lib.create_model(config, dataset.image_shape)
  objective = objectives.create_objective(config)
  c = config.train
  num_steps = num_train_steps(config, len(dataset.train))
  spec = _ProgramSpec(
      model=model, optim=ml_collections.FrozenConfigDict(config.optim),
      num_steps=num_steps, objective=_static_objective(objective),
      seed=c.seed, num_train=len(dataset.train), batch_size=c.batch_size,
      steps_per_dispatch=c.steps_per_dispatch, scan_unroll=c.scan_unroll,
      mode=c.parallel, devices=tuple(d.id for d in jax.devices()),
      eval_batch_size=config.eval.batch_size,
      iwae_samples=config.eval.iwae_samples,
      num_grid_images=config.eval.num_grid_images,
      num_decodes=config.eval.num_decodes)
  try:
    programs = _programs(spec)
  except TypeError:  # an unhashable model: programs of this run alone
    programs = _programs.__wrapped__(spec)
  init_key, _, eval_key, sample_key = jax.random.split(
      jax.random.key(c.seed), 4)
  example = jnp.asarray(dataset.train[:1], jnp.float32)
  init_state = steps.create_train_state(
      model, programs.optimizer, _static_objective(objective), init_key,
      example).replace(beta=jnp.asarray(objective.beta, jnp.float32))
  return Run(
      config=config, dataset=dataset, model=model, mesh=programs.mesh,
      mode=c.parallel, num_steps=num_steps,
      schedule=optim.make_learning_rate_schedule(
          config.optim.learning_rate, num_steps, config.optim.hold_fraction,
          config.optim.final_fraction),
      train_loop=programs.train_loop, tail_loop=programs.tail_loop,
      eval_loop=programs.eval_loop,
      final_eval_loop=programs.final_eval_loop,
      sample_fn=programs.sample_fn, init_state=init_state,
      eval_rng=jax.random.key_data(eval_key), sample_key=sample_key,
      backend=chosen)


def evaluate(run: Run, params: Any, images: np.ndarray, final: bool
             ) -> dict[str, float]:
  """Exact means over `images` (capped at eval.max_examples) of R, D, ELBO,
  bits/dim and, when `final`, the IWAE bound (`bounds.iwae`)."""
  limit = run.config.eval.max_examples
  images = images[:limit] if limit else images
  loop = run.final_eval_loop if final else run.eval_loop
  rng = parallel.put_replicated(run.eval_rng, run.mesh, run.mode)
  totals: dict[str, float] = {}
  for index, (x, mask) in enumerate(
      data.eval_batches(images, run.config.eval.batch_size)):
    x, mask = parallel.put_sharded((x, mask), run.mesh, run.mode)
    sums = parallel.get_replicated(loop(params, x, mask, rng, index), run.mode)
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(np.asarray(v, np.float64))
  count = totals.pop('count')
  means = {k: v / count for k, v in totals.items()}
  num_dims = int(np.prod(images.shape[1:]))
  means['bpd'] = float(bounds.bits_per_dim(-means['elbo'], num_dims))
  if 'iwae' in means:
    means['iwae_bpd'] = float(bounds.bits_per_dim(-means['iwae'], num_dims))
  return means


def _restore_or_init(run: Run, manager) -> Any:
  if checkpointing.latest_step(manager) is None:
    return jax.device_get(run.init_state)
  return checkpointing.restore(manager, jax.device_get(run.init_state))


def _check_finite(metrics: dict[str, float], step: int, manager) -> None:
  bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
  if bad:
    raise FloatingPointError(
        f'non-finite training metrics {bad} in the steps up to {step}; the '
        f'last good checkpoint is step {checkpointing.latest_step(manager)} '
        'in the workdir (lower optim.learning_rate or check the data)')


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
  results = {}
  splits = ('validation', 'test') if final else ('validation',)
  for split in splits:
    means = evaluate(run, params, getattr(run.dataset, split), final)
    results.update({f'{split}/{k}': v for k, v in means.items()})
  writer.write_scalars(step, results)
  if run.config.eval.num_grid_images:
    x = jnp.asarray(run.dataset.validation[:run.config.eval.num_grid_images],
                    jnp.float32)
    samples = run.sample_fn(params_host, x,
                            jax.random.fold_in(run.sample_key, step))
    writers.write_sample_grid(writer.workdir, writer, step,
                              jax.device_get(samples))
  return results


def train_and_eval(config: ml_collections.ConfigDict, workdir: str
                   ) -> dict[str, Any]:
  """Trains `config`'s model in `workdir` (resuming) and evaluates it.

  Returns:
    The test-set `rate`, `distortion`, `elbo`, `iwae` (nats per image) and
    `bpd`, and every `validation/*` and `test/*` figure, as in results.json.
  """
  compilation.setup()  # the persistent compilation cache (rdvae.compilation)
  if validation.get(config, 'dataset.name') == 'toy':
    from rdvae import toy  # pylint: disable=g-import-not-at-top
    return toy.train_and_eval(config, workdir)
  validate(config)
  writers.prepare_workdir(workdir, config)
  done = os.path.join(workdir, writers.RESULTS_FILE)
  if os.path.exists(done):  # written last: the run is complete
    return writers.read_json(done)
  counter = compilation.Counter()
  run = create_run(config)
  print(backends.describe(run.backend), flush=True)
  c = run.config.train
  manager = checkpointing.create_manager(workdir, c.max_checkpoints_to_keep)
  best = checkpointing.create_manager(workdir, 1, best_metric='elbo')
  state = _restore_or_init(run, manager)
  start_step = step = int(state.step)
  # Records after the restored step are rewritten; so is a final evaluation
  # (the record with test/*) that a killed run left without results.json.
  writer = writers.MetricWriter(
      workdir, start_step,
      keep=lambda r: r['step'] <= start_step and 'test/elbo' not in r)
  state = parallel.put_replicated(state, run.mesh, run.mode)
  train_data = parallel.put_replicated(run.dataset.train, run.mesh, run.mode)
  speed = _Speed()
  while step < run.num_steps:
    full = step + c.steps_per_dispatch <= run.num_steps
    length = c.steps_per_dispatch if full else run.num_steps - step
    tic = time.perf_counter()
    state, metrics = (run.train_loop if full else run.tail_loop)(
        state, train_data)
    metrics = parallel.scalar_metrics(metrics, run.mode)  # waits for the steps
    speed.add(length, time.perf_counter() - tic)
    step += length
    _check_finite(metrics, step, manager)
    if step % c.log_every == 0 or step == run.num_steps:
      metrics['learning_rate'] = float(run.schedule(step - 1))
      writer.write_scalars(step, {f'train/{k}': v for k, v in metrics.items()})
      _progress(step, run.num_steps, metrics, speed, c.batch_size)
    if c.eval_every and step % c.eval_every == 0 and step < run.num_steps:
      host = parallel.get_replicated(state, run.mode)
      means = _evaluate_and_log(run, writer, host.params, state.params,
                                step, final=False)
      checkpointing.save(best, step, host,
                         {'elbo': means['validation/elbo']})
    if c.checkpoint_every and step % c.checkpoint_every == 0:
      checkpointing.save(manager, step, parallel.get_replicated(state,
                                                                run.mode))
  if speed.first is not None:
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
  results.update({k: results[f'test/{k}'] for k in
                  ('rate', 'distortion', 'elbo', 'iwae', 'bpd')
                  if f'test/{k}' in results})
  results.update(step=step, num_steps=run.num_steps,
                 num_parameters=sum(int(np.size(p)) for p in
                                    jax.tree.leaves(host.params)))
  if speed.first is not None:
    results['train_images_per_second'] = speed.rate() * c.batch_size
  results['backend'] = run.backend
  results['compile'] = counter.report()
  print(compilation.describe(results['compile']), flush=True)
  writers.write_results(workdir, results)
  return results
