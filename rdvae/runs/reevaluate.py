"""Evaluating a finished run again from its checkpoint, without retraining.

Sits above training and evaluation: it rebuilds the run from its saved
config.json (`training.programs.create_run`), restores the last or best
parameters and runs the final evaluation (`evaluation.measures`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import jax
import ml_collections

from rdvae import validation
from rdvae.evaluation import measures
from rdvae.files import checkpointing
from rdvae.files import atomic_files
from rdvae.files import run_files
from rdvae.training import programs


def saved_config(workdir: str,
                  overrides: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """The run's config.json with `eval.*` overrides applied.

  Eval keys a run's config predates take their `default_config` values.

  Raises:
    ConfigError: an override of a key outside `eval`, or of an unknown key.
  """
  eval_keys = measures.default_config()
  for key in overrides:
    section, _, name = key.partition('.')
    if section != 'eval' or name not in eval_keys:
      raise validation.ConfigError(
          f'cannot override config.{key} when evaluating again: only the '
          f'evaluation keys {sorted("eval." + k for k in eval_keys)} can '
          'change without retraining')
  path = os.path.join(workdir, run_files.CONFIG_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} does not exist: {workdir!r} holds no run')
  saved = run_files.read_config(workdir)
  if saved.get('dataset', {}).get('name') == 'toy':
    raise validation.ConfigError(
        f'{workdir!r} holds a toy run, whose measures are exact already '
        '(nothing to evaluate again)')
  merged = dict(eval_keys.to_dict())
  merged.update(saved.get('eval', {}))
  merged.update({k.partition('.')[2]: v for k, v in overrides.items()})
  saved['eval'] = merged
  return ml_collections.ConfigDict(saved)


def restore_params(run: programs.Run, workdir: str,
                   params: str) -> tuple[Any, int]:
  """The TrainState of the run's last checkpoint, or of its best by
  validation ELBO (`checkpoints_best/`; the last for a run that did not
  evaluate during training, train.eval_every = 0), and its step."""
  if params not in measures.PARAMS:
    raise ValueError(f'params={params!r}; expected one of {measures.PARAMS}')
  if params == 'best' and run.config.train.eval_every:
    manager = checkpointing.create_manager(workdir, 1, best_metric='elbo')
    step = manager.best_step()
  else:
    manager = checkpointing.create_manager(
        workdir, run.config.train.max_checkpoints_to_keep)
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(
        f'no {params} checkpoint in {manager.directory} to evaluate')
  state = checkpointing.restore(manager, jax.device_get(run.init_state), step)
  return state, int(step)


def evaluate_workdir(workdir: str, params: str = 'last',
                     overrides: Optional[Mapping[str, Any]] = None,
                     output: str = 'results_eval.json',
                     splits: tuple[str, ...] = ('validation', 'test')
                     ) -> dict[str, Any]:
  """Evaluates a finished run again, without retraining.

  Loads `workdir`'s config.json and checkpoint (`params` 'last' or 'best'),
  applies `overrides` ({'eval.<key>': value}, only eval keys), runs the
  final evaluation (every measure of results.json) and writes it atomically
  to `workdir/output`. The run's own files (config.json, metrics.jsonl,
  results.json) are not touched, and the workdir's config check does not
  apply: the saved config is read, not compared.

  Returns:
    The results, as written: results.json's keys for these evaluation
    settings, with 'params', 'step' and 'eval_overrides'.

  Raises:
    ConfigError: an override outside `eval`, or a bad eval value.
    ValueError: an output name that is a run file or not a plain .json name.
  """
  overrides = dict(overrides or {})
  if (output in measures.RUN_FILES or os.path.basename(output) != output
      or not output.endswith('.json')):
    raise ValueError(
        f'output={output!r} must be a file name ending in .json, other than '
        f'the run files {measures.RUN_FILES}')
  config = saved_config(workdir, overrides)
  programs.validate(config)
  run = programs.create_run(config)
  state, step = restore_params(run, workdir, params)
  placed = run.layout.put_replicated(state.params)
  results = measures.evaluate_splits(run.evaluator, state.params, placed,
                                     True, splits)
  measures.summarize(results, config, params)
  results.update(step=step, eval_overrides=overrides)
  atomic_files.write_json_atomic(os.path.join(workdir, output), results)
  return results
