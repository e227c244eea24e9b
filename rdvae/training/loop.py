"""The host loop: `train_and_eval(config, workdir) -> results`, and the same
loop for a population of runs (`train_population`).

Nothing here is traced; the device programs come from `training.programs`
(built from the run's task, `training.tasks`). One run:

  1. validates the whole config and loads and checks the data, raising
     ConfigError before anything is written;
  2. prepares the workdir (config.json; a different config there raises
     WorkdirConflictError), restores the newest checkpoint that reads back
     whole (falling back past damaged ones) or initialises;
  3. dispatches `train.steps_per_dispatch` steps per call (a `lax.scan` over
     on-device data), acts on each step's NaN/inf flags as
     `train.nonfinite` says ('stop': FloatingPointError naming the step, so
     the last checkpoint saved stays the last good one; 'skip': the update
     was dropped on the device, counted as train/skipped), logs `train/*`
     every `log_every` steps with a progress line, evaluates every
     `eval_every` steps (the task's measures) and keeps the best checkpoint
     by the task's selection measure, checkpoints every `checkpoint_every`
     steps; on SIGTERM/SIGINT it checkpoints after the dispatch and raises
     `preemption.Preempted`;
  4. at the end evaluates with the task's final measures and writes
     results.json (and whatever the task leaves beside it).

A population (runs whose configs differ only in numbers the step takes as
arrays: seed, objective and optimizer numbers) runs the loop once for all its
members, each with its own workdir, checkpoints, metrics and results.

The data order and every sample are functions of (seed, step), and the
checkpoint holds the whole TrainState, so a killed run restarted in the same
workdir ends with the same parameters and metrics as one never stopped
(tests/test_faults.py kills one in a dispatch, evaluation or save).

Across processes (`runtime.distributed`) every process runs this loop on its
share of the global batch; process 0 alone writes the run's files, and all of
them save each checkpoint together.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from typing import Any, Mapping, Optional, Sequence

import jax
import ml_collections
import numpy as np

from rdvae import validation
from rdvae.files import checkpointing
from rdvae.files import metric_files
from rdvae.files import run_files
from rdvae.objectives import losses as objectives
from rdvae.runtime import backends
from rdvae.runtime import compilation
from rdvae.runtime import distributed
from rdvae.runtime import faults
from rdvae.runtime import populations
from rdvae.runtime import preemption
from rdvae.training import monitors
from rdvae.training import optim
from rdvae.training import programs
from rdvae.training import tasks


@dataclasses.dataclass
class Member:
  """One run of a population: its build, workdir and host-side state."""

  run: programs.Run
  workdir: str
  state: Any          # the host TrainState it starts (or resumed) from
  writer: Any
  manager: Any
  best: Any  # the best-checkpoint manager; None without train.eval_every
  nonfinite: monitors.NonFinite


def _prepare(config: ml_collections.ConfigDict,
             workdir: str) -> Optional[dict[str, Any]]:
  """Writes config.json into `workdir` (or checks the one there: another
  config raises WorkdirConflictError); returns the run's results when it is
  finished (results.json is written last), else None."""
  distributed.primary_first('config.json', run_files.prepare_workdir, workdir,
                            config)
  run_files.check_workdir(workdir, config)
  return run_files.read_results(workdir)


def _start(config: ml_collections.ConfigDict, workdir: str, data: Any = None,
           layout: Any = None, components: Any = None) -> Member:
  """Builds the run of a prepared `workdir` (`_prepare`), restoring its
  newest good checkpoint (or the initial state)."""
  run = programs.create_run(config, data, layout, components)
  c = run.config.train
  manager = checkpointing.create_manager(workdir, c.max_checkpoints_to_keep)
  best = (checkpointing.create_manager(workdir, 1, best_metric='elbo')
          if c.eval_every else None)  # else the best is the last
  init = jax.device_get(run.init_state)
  state = checkpointing.restore_latest_good(manager, init)
  state = init if state is None else state
  start_step = int(state.step)
  # Records after the restored step are rewritten; so is a final evaluation
  # (the record at the last step without train/*) that a killed run left
  # without results.json.
  def keep(record):
    final = record['step'] == run.num_steps and not any(
        k.startswith('train/') for k in record)
    return record['step'] <= start_step and not final

  writer = metric_files.MetricWriter(
      workdir, start_step, keep=keep
  ) if distributed.is_primary() else metric_files.NullWriter(workdir)
  return Member(run, workdir, state, writer, manager, best,
                monitors.NonFinite(run.config, manager))


def _dispatch(run: programs.Run, state, train_data, step: int,
              speed: monitors.Speed):
  """One call of the compiled loop from `step`: (state, each member's step
  metrics averaged over its good steps, each member's nonfinite flags [S],
  the new step) (`steps.dispatch_metrics`)."""
  c = run.config.train
  # Up to the next multiple of steps_per_dispatch (where logs, evaluations
  # and checkpoints fall), or to the end.
  length = min(c.steps_per_dispatch - step % c.steps_per_dispatch,
               run.num_steps - step)
  loop = (run.train_loop if length == c.steps_per_dispatch
          else run.short_loop(length))
  tic = time.perf_counter()
  state, metrics = loop(state, train_data)
  metrics = run.layout.get_replicated(metrics)  # waits for the steps
  speed.add(length, time.perf_counter() - tic)
  means, all_flags = [], []
  for member_metrics in run.layout.member_metrics(metrics):
    all_flags.append(np.asarray(member_metrics.pop('nonfinite')))
    means.append({k: float(v) for k, v in member_metrics.items()})
  return state, means, all_flags, step + length


def _evaluate(member: Member, host_state, state, step: int, final: bool
              ) -> dict[str, Any]:
  """The task's measures of one member, logged as one metrics record (the
  final one is the one with test/* for the image models)."""
  params = None if state is None else state.params
  results = member.run.task.evaluate(member.run, host_state.params, params,
                                     step, final, member.writer)
  member.writer.write_scalars(step, {k: v for k, v in results.items()
                                     if not isinstance(v, (list, dict))})
  return results


def _train(members: Sequence[Member], state, step: int,
           speed: monitors.Speed) -> tuple[Any, int]:
  """Steps `step`..num_steps of every member: dispatch, check for NaN/inf,
  log, evaluate, checkpoint. On SIGTERM/SIGINT it finishes the dispatch,
  checkpoints every member, flushes the metrics and raises
  `preemption.Preempted`.

  Returns:
    (state, step) at the end of training, the state on the devices.
  """
  run = members[0].run
  c, layout = run.config.train, run.layout
  train_data = layout.put_replicated(run.task.train_data(run.data))

  def host_states():
    return layout.member_states(layout.get_replicated(state))

  with preemption.SignalWatch(pass_on=True) as watch:
    while step < run.num_steps:
      state, metrics, flags, step = _dispatch(run, state, train_data, step,
                                              speed)
      faults.point('dispatch', step)
      for member, means, member_flags in zip(members, metrics, flags):
        skipped = member.nonfinite.check(member_flags, step)
        if c.nonfinite == 'skip':
          means['skipped'] = skipped
        if step % c.log_every == 0 or step == run.num_steps:
          means['learning_rate'] = float(member.run.schedule(step - 1))
          member.writer.write_scalars(step, {f'train/{k}': v
                                             for k, v in means.items()})
      if ((step % c.log_every == 0 or step == run.num_steps)
          and len(members) == 1 and distributed.is_primary()):
        monitors.print_progress(step, run.num_steps, metrics[0], speed,
                  run.task.examples_per_step(run.config))
      # Every process stops at the same step, or none does (a save is
      # collective).
      if distributed.any_process(watch.received is not None):
        for member, host in zip(members, host_states()):
          checkpointing.save(member.manager, step, host)
          member.writer.close()
        raise preemption.Preempted(watch.received, step,
                                   members[0].workdir)
      if c.eval_every and step % c.eval_every == 0 and step < run.num_steps:
        # The state on the devices is one run's only for a run alone.
        on_device = state if len(members) == 1 else None
        for member, host in zip(members, host_states()):
          means = _evaluate(member, host, on_device, step, final=False)
          checkpointing.save(member.best, step, host,
                             {'elbo': means[run.task.selection_key]})
      if c.checkpoint_every and step % c.checkpoint_every == 0:
        for member, host in zip(members, host_states()):
          checkpointing.save(member.manager, step, host)
  return state, step


def _finish(member: Member, host, state, step: int, speed: monitors.Speed,
            counter: compilation.Counter, population_size: int = 0
            ) -> dict[str, Any]:
  """Checkpoints a trained member, evaluates it and writes its results."""
  run = member.run
  if checkpointing.latest_step(member.manager) != step:
    checkpointing.save(member.manager, step, host)
  results = _evaluate(member, host, state, step, final=True)
  if member.best is not None:
    checkpointing.save(member.best, step, host,
                       {'elbo': results[run.task.selection_key]})
  member.writer.close()
  run.task.summarize(results, run.config)
  results.update(step=step, num_steps=run.num_steps, num_parameters=sum(
      int(np.size(p)) for p in jax.tree.leaves(host.params)))
  if population_size:
    results['population_size'] = population_size
  examples = run.task.examples_per_step(run.config)
  if examples:  # image runs: their speed and the split of their batch
    results['layout'] = run.layout.split(examples)
    if speed.first is not None:
      results['train_images_per_second'] = speed.steps_per_second() * examples
  results['backend'] = run.backend
  results['compile'] = counter.report()
  if distributed.is_primary():
    run_files.write_results(member.workdir, results)
    run.task.finish(run, results, host.params, member.workdir)
  return results


def _check_processes(task) -> None:
  if jax.process_count() > 1 and not task.multiprocess:
    raise validation.ConfigError(
        f'a {task.name} run trains in one process; start it without '
        '--multihost')


def train_and_eval(config: ml_collections.ConfigDict, workdir: str,
                   components: Optional[Mapping[str, Any]] = None,
                   data: Any = None) -> dict[str, Any]:
  """Trains `config`'s model in `workdir` (resuming) and evaluates it.

  `components` ({'encoder' | 'decoder' | 'marginal': linen module}) replace
  those parts of the config's model (docs/models.md); config.json does not
  record them, so resuming or `rdvae.load` needs the same ones again.
  `data`, the splits as uint8 image arrays (train, validation, test),
  replaces the config's source (`dataset.source='arrays'`, not recorded).

  Returns:
    The results written to results.json. For the image models: the test-set
    `rate`, `distortion`, `elbo`, `iwae` (nats per image), `bpd`,
    `generative_lower`, `generative_upper`, `active_units`, every
    `validation/*` and `test/*` figure, 'eval_subset' and 'params' ('last':
    the parameters at the end of training); for the toy, its exact measures
    (`toy.measures.evaluate`).
  """
  compilation.setup()  # the persistent compilation cache (runtime.compilation)
  if data is not None and config.dataset.get('source') != 'arrays':
    config = config.copy_and_resolve_references()
    with config.unlocked():
      config.dataset.source = 'arrays'
  task = programs.validate(config, components)
  _check_processes(task)
  data = task.load_data(config, components, data)  # bad data stops here,
  done = _prepare(config, workdir)  # before anything is written
  if done is not None:
    return done
  counter = compilation.Counter()
  member = _start(config, workdir, data, components=components)
  run = member.run
  if distributed.is_primary():
    print(backends.describe(run.backend), flush=True)
  start_step = step = int(member.state.step)
  state = run.layout.put_states([member.state])
  speed = monitors.Speed()
  state, step = _train([member], state, step, speed)
  if speed.first is not None and distributed.is_primary():
    examples = run.task.examples_per_step(run.config)
    images = (f', {speed.steps_per_second() * examples:.1f} images/s'
              if examples else '')
    print(f'trained steps {start_step}..{step}: '
          f'{speed.steps_per_second():.2f} steps/s{images} (compile '
          'excluded)', flush=True)
  [host] = run.layout.member_states(run.layout.get_replicated(state))
  results = _finish(member, host, state, step, speed, counter)
  if distributed.is_primary():
    print(compilation.describe(results['compile']), flush=True)
  return results


def population_key(config: ml_collections.ConfigDict) -> Optional[str]:
  """What must be equal for two configs to train as one population: the
  config without the seed and the numbers the step takes as arrays (the
  objective's, `objectives.Hyperparameters`, and the optimizer's,
  `optim.numbers`); None when the config's task trains one run at a time."""
  if not getattr(tasks.for_config(config), 'populations', False):
    return None
  flat = run_files.flatten(run_files.config_to_dict(config))
  flat.pop('train.seed', None)
  for field in objectives.Hyperparameters._fields:
    flat.pop(f'objective.{field}', None)
  for field in optim.NUMBER_KEYS:
    flat.pop(f'optim.{field}', None)
  return repr(sorted(flat.items()))


# The most members trained by one program. Any size gives every member
# bitwise as its run alone; on a 2-core CPU a toy sweep is no faster with
# populations of 16 or 64 than of 8 (BUILD.md, "Populations").
MAX_POPULATION = 8


def train_population(configs: Sequence[ml_collections.ConfigDict],
                     workdirs: Sequence[str]) -> list[dict[str, Any]]:
  """Trains several runs as populations, each as `train_and_eval` would.

  The runs must share `population_key`. Their states are stacked on a
  leading member axis (`runtime.populations`) and trained by one program;
  every member keeps its own workdir (config.json, metrics.jsonl,
  checkpoints, results.json and the task's files), resumes from its own
  checkpoint, and ends bitwise equal to its run alone. Members restored at
  different steps train in different populations, and a population holds
  at most MAX_POPULATION members (more train in several, one after
  another). Each population's members are finished (evaluated, their files
  written) on a second thread while the next population trains.

  Returns:
    Each run's results, in order; results gain 'population_size', the
    number of members its program trained.
  """
  if len(configs) != len(workdirs) or not configs:
    raise ValueError(f'{len(configs)} configs and {len(workdirs)} workdirs: '
                     'expected one (or more) workdir per config')
  keys = [population_key(c) for c in configs]
  for workdir, key in zip(workdirs, keys):
    if key is None or key != keys[0]:
      raise ValueError(f'the run in {workdir!r} differs from the one in '
                       f'{workdirs[0]!r} in more than the seed and the '
                       "numbers the step takes as arrays; it cannot share "
                       'their program')
  compilation.setup()
  for config in configs:
    _check_processes(programs.validate(config))
  counter = compilation.Counter()
  data = tasks.for_config(configs[0]).load_data(configs[0])
  # Each unfinished run's saved step decides its population.
  finished = {i: _prepare(c, w)
              for i, (c, w) in enumerate(zip(configs, workdirs))}
  starts = {i: _start(configs[i], workdirs[i], data)
            for i, done in finished.items() if done is None}
  by_step: dict[int, list[int]] = {}
  for index, member in starts.items():
    by_step.setdefault(int(member.state.step), []).append(index)
  with concurrent.futures.ThreadPoolExecutor(max_workers=1) as files:
    for step, same_step in by_step.items():
      for first in range(0, len(same_step), MAX_POPULATION):
        indices = same_step[first:first + MAX_POPULATION]
        layout = populations.PopulationLayout(len(indices))
        members = [
            starts[i] if len(indices) == 1 else
            _rebuild(starts[i], layout) for i in indices]
        run = members[0].run
        state = run.layout.put_states([m.state for m in members])
        speed = monitors.Speed()
        state, end = _train(members, state, step, speed)
        hosts = run.layout.member_states(run.layout.get_replicated(state))
        for i, member, host in zip(indices, members, hosts):
          finished[i] = files.submit(_finish, member, host, None, end, speed,
                                     counter, len(indices))
  return [finished[i] if isinstance(finished[i], dict)
          else finished[i].result() for i in range(len(configs))]


def _rebuild(member: Member, layout) -> Member:
  """`member` with the programs of a population's layout, keeping its run's
  build, restored state and files."""
  run = member.run
  loops = programs.programs(programs.program_spec(
      run.config, run.task, run.data, run.model, layout))
  run = dataclasses.replace(run, layout=layout, train_loop=loops.train_loop,
                            short_loop=loops.short_loop)
  return dataclasses.replace(member, run=run)
