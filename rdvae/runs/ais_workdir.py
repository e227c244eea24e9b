"""AIS of a finished run's decoder, or of every run of a sweep, into ais.json.

`ais_workdir(workdir, settings)` rebuilds the run from its config.json,
restores its last or best parameters (as `reevaluate` does), and runs, on the
model's decoder d(x|z) and marginal m(z) (`evaluation.ais_model`):

  forward AIS (`evaluation.ais.ais`) on a seeded random subset of the test
    split (never its first N: the split is ordered by class), in chunks of
    examples, each a call of one compiled program: log p(x) and the
    decoder's rate-distortion curve (R_b, D_b) for b in [0, beta_max];
  BDMC (`evaluation.bdmc.bdmc`) on `bdmc_examples` images simulated from the
    model, along the schedule's knots up to b = 1 (`bdmc.up_to_one`):
    stochastic lower and upper bounds on their log p(x), and the mean
    log d(x|z) of the simulated pairs (for the bounds on I_gen);
  the model's own rate and distortion on the same images (`own_terms`), so
    that its point and its decoder's curve are compared image for image.

and writes ais.json and ais_curve.csv (`files.ais_files`); results.json is
not touched. `ais_sweep(directory, settings)` does so for every run below a
sweep directory, skipping those whose ais.json has the same settings, so an
interrupted sweep continues where it stopped. Progress (the point, chunk k
of n, elapsed, ETA) is reported at least every `interval` seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rdvae.evaluation import ais
from rdvae.evaluation import ais_model
from rdvae.evaluation import bdmc
from rdvae.evaluation import measures
from rdvae.files import ais_files
from rdvae.files import atomic_files
from rdvae.files import run_files
from rdvae.runs import reevaluate
from rdvae.runs import trained
from rdvae.training import programs

Log = Callable[[str], None]
# Draws z ~ e(z|x) per image behind the model's own R and D in ais.json.
OWN_DRAWS = 8
# How the curve is estimated, recorded in the settings so that an ais.json
# of an earlier estimate (without it) is computed again.
CURVE_ESTIMATE = 'convex minorant of the mean log Z'


@dataclasses.dataclass(frozen=True)
class Settings:
  """What AIS computes; all but `chunk` are recorded in ais.json.

  examples: test images (a random subset drawn with `seed`; 0: all).
  chains: K chains per image. steps: T annealing steps. beta_max: the last
  beta (1: log p(x)). bdmc_examples: simulated images for BDMC (0: none).
  params: 'last' or 'best' checkpoint. leapfrog_steps: per HMC transition.
  chunk: images per compiled call (memory and progress; no effect on the
  numbers, since image i draws with fold_in(key, i)). pilot_steps: of the
  pilot run that fixes the step sizes (`evaluation.ais`; None: its default,
  T / 10 and at least 20; 0: adapt on the chains).
  """

  examples: int = 100
  chains: int = 16
  steps: int = 500
  beta_max: float = 1.0
  bdmc_examples: int = 10
  params: str = 'last'
  seed: int = 0
  leapfrog_steps: int = 10
  chunk: int = 10
  pilot_steps: Optional[int] = None

  def check(self) -> None:
    for name in ('examples', 'bdmc_examples'):
      if getattr(self, name) < 0:
        raise ValueError(f'{name}={getattr(self, name)} must be >= 0')
    for name in ('chains', 'steps', 'leapfrog_steps', 'chunk'):
      if getattr(self, name) < 1:
        raise ValueError(f'{name}={getattr(self, name)} must be >= 1')
    if self.pilot_steps is not None and self.pilot_steps < 0:
      raise ValueError(f'pilot_steps={self.pilot_steps} must be >= 0')
    if not self.beta_max >= 1:
      raise ValueError(f'beta_max={self.beta_max} must be >= 1: log p(x) '
                       'is log Z at b = 1, a knot of the schedule')
    if self.params not in measures.PARAMS:
      raise ValueError(f'params={self.params!r}; expected one of '
                       f'{measures.PARAMS}')


def example_indices(num_test: int, examples: int, seed: int) -> list[int]:
  """A seeded random subset of range(num_test), sorted (0: all of it)."""
  if examples == 0 or examples >= num_test:
    return list(range(num_test))
  rng = np.random.default_rng(seed)
  return sorted(int(i) for i in rng.choice(num_test, examples, replace=False))


class Progress:
  """Prints the latest state with the elapsed time every `interval` s, from
  a thread, so a long compiled call is reported too."""

  def __init__(self, log: Log, interval: float):
    self._log, self._interval = log, interval
    self._state, self._start = '', time.monotonic()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._tick, daemon=True)

  def __enter__(self) -> 'Progress':
    self._thread.start()
    return self

  def __exit__(self, *_) -> None:
    self._stop.set()
    self._thread.join()

  def elapsed(self) -> float:
    return time.monotonic() - self._start

  def update(self, state: str) -> None:
    self._state = state
    self._log(f'{state} | elapsed {self.elapsed():.0f} s')

  def _tick(self) -> None:
    while not self._stop.wait(self._interval):
      self._log(f'{self._state} (running) | elapsed {self.elapsed():.0f} s')


@functools.lru_cache(maxsize=8)
def _programs(model: Any, chains: int, leapfrog_steps: int, chunk: int,
              bdmc_examples: int, pilot_steps: Optional[int]
              ) -> tuple[Callable, Callable]:
  """The jitted forward-AIS and BDMC programs of a model (params traced)."""

  def forward(params, key, x, betas, first_index):
    d = ais_model.densities(model, params)
    return ais.ais(key, x, d.log_likelihood, d.log_marginal,
                   d.sample_marginal, betas=betas, num_chains=chains,
                   leapfrog_steps=leapfrog_steps, pilot_steps=pilot_steps,
                   first_index=first_index)

  def simulated(params, key, betas):
    d = ais_model.densities(model, params)
    out = bdmc.bdmc(key, d.log_likelihood, d.log_marginal, d.sample_marginal,
                    d.sample_likelihood, bdmc_examples, betas=betas,
                    num_chains=chains, leapfrog_steps=leapfrog_steps,
                    chunk_size=chunk, pilot_steps=pilot_steps)
    log_d = jax.vmap(d.log_likelihood)(out.x, out.z)
    return out.lower, out.upper, log_d

  return jax.jit(forward), jax.jit(simulated)


def _forward(run_forward: Callable, params: Any, key: jax.Array,
             images: np.ndarray, betas: jax.Array, chunk: int,
             progress: Progress, point: str) -> tuple[dict, float]:
  """Forward AIS of every image in chunks; per-example arrays and the
  seconds per example after the first chunk (which compiles)."""
  num = images.shape[0]
  chunks = -(-num // chunk)
  parts, timed, timed_examples, first = [], 0.0, 0, None
  for k in range(chunks):
    start = k * chunk
    index = np.minimum(np.arange(start, start + chunk), num - 1)
    if timed_examples:
      eta = f'ETA {timed / timed_examples * (num - start):.0f} s'
    elif first is not None:  # the first chunk's time includes compiling
      eta = f'ETA at most {first * (num - start):.0f} s'
    else:
      eta = 'ETA after the first chunk'
    progress.update(f'{point}: AIS chunk {k + 1} of {chunks} '
                    f'(images {start}-{min(start + chunk, num) - 1}) | {eta}')
    began = time.monotonic()
    out = run_forward(params, key, jnp.asarray(images[index], jnp.float32),
                      betas, start)
    out = jax.tree.map(np.asarray, jax.block_until_ready(out))
    seconds = time.monotonic() - began
    real = min(chunk, num - start)
    parts.append(jax.tree.map(lambda a: a[:real] if a.ndim else a, out))
    if k > 0 or chunks == 1:
      timed, timed_examples = timed + seconds, timed_examples + real
    else:
      first = seconds / real
    progress.update(f'{point}: AIS chunk {k + 1} of {chunks} took '
                    f'{seconds:.1f} s ({seconds / real:.2f} s per image)')
  joined = {name: np.concatenate([getattr(p, name) for p in parts])
            for name in ('log_px', 'log_px_stderr', 'log_z',
                         'sampled_distortion', 'sampled_distortion_stderr',
                         'acceptance')}
  return joined, timed / max(timed_examples, 1)


def _settings_record(settings: Settings, indices: list[int],
                     step: int) -> dict[str, Any]:
  record = dataclasses.asdict(settings)
  del record['chunk']
  record.update(indices=indices, step=step, split='test',
                curve=CURVE_ESTIMATE)
  return atomic_files.to_json_value(record)


def rate_distortion_curve(betas, log_z, sampled=None, sampled_stderr=None
                          ) -> list[dict[str, float]]:
  """ais.json's curve: {beta: b_t, rate: R_b, distortion: D_b} for t = 0..T,
  in nats, the curve (`ais.monotone_curve`) of the examples' mean log Z_b
  (log_z [B, T + 1], averaged in float64).

  For exact log Z that is the mean of the examples' curves (R and D are
  linear in log Z and its slope); on estimates, averaging first divides
  their noise by about sqrt(B) before the minorant pools knots, and so the
  bias of its ends (`evaluation.ais`). With the examples' sampled D [B, T +
  1] (`ais.AISResult.sampled_distortion`), also 'sampled_distortion', its
  mean; with their standard errors (finite: two chains or more),
  'sampled_distortion_stderr', sqrt(sum_i se_i^2) / B, the standard error
  of that mean."""
  betas = np.asarray(betas, np.float64)
  mean_log_z = np.mean(np.asarray(log_z, np.float64), 0)
  with jax.enable_x64(True):
    rate, distortion = map(np.asarray, ais.monotone_curve(
        jnp.asarray(betas), jnp.asarray(mean_log_z)))
  curve = [{'beta': float(b), 'rate': float(r), 'distortion': float(d)}
           for b, r, d in zip(betas, rate, distortion)]
  if sampled is not None:
    for point, d in zip(curve, np.mean(np.asarray(sampled, np.float64), 0)):
      point['sampled_distortion'] = float(d)
  stderr = (None if sampled_stderr is None
            else np.asarray(sampled_stderr, np.float64))
  if stderr is not None and np.all(np.isfinite(stderr)):
    for point, se in zip(curve, np.sqrt(np.sum(stderr**2, 0)) / len(stderr)):
      point['sampled_distortion_stderr'] = float(se)
  return curve


def _mean(values: np.ndarray) -> Optional[float]:
  value = float(np.mean(values)) if values.size else float('nan')
  return value if np.isfinite(value) else None


def own_terms(workdir: str, params: str, images: np.ndarray,
              key: jax.Array) -> tuple[float, float]:
  """The run's own mean R and D (Eqs. 5, 4) on `images`: per image the mean
  over OWN_DRAWS draws z ~ e(z|x), draw d with key fold_in(key, d)
  (`trained.TrainedModel.rate_distortion`), then the mean over images."""
  model = trained.load(workdir, params)
  draws = [model.rate_distortion(images, jax.random.fold_in(key, d))
           for d in range(OWN_DRAWS)]
  rate = np.mean([r for r, _ in draws], dtype=np.float64)
  distortion = np.mean([d for _, d in draws], dtype=np.float64)
  return float(rate), float(distortion)


def restore(workdir: str, params: str) -> tuple[Any, Any, int]:
  """(the run rebuilt from config.json, its 'last' or 'best' parameters,
  their step)."""
  config = reevaluate.saved_config(workdir, {})
  programs.validate(config)
  run = programs.create_run(config)
  state, step = reevaluate.restore_params(run, workdir, params)
  return run, state.params, step


def ais_workdir(workdir: str, settings: Settings, log: Log = print,
                interval: float = 30.0, force: bool = False
                ) -> Optional[dict[str, Any]]:
  """AIS and BDMC of one finished run (module docstring); returns the
  record written to ais.json, or None when an ais.json with these settings
  exists already (unless `force`)."""
  settings.check()
  run, params, step = restore(workdir, settings.params)
  indices = example_indices(run.data.test.shape[0], settings.examples,
                            settings.seed)
  wanted = _settings_record(settings, indices, step)
  try:
    old = ais_files.read_ais(workdir)
  except atomic_files.DamagedFileError as e:
    log(f'{workdir}: {e}; computing it again')
    old = None
  if old is not None and old.get('settings') == wanted and not force:
    log(f'{workdir}: ais.json has these settings already; skipped')
    return None
  forward, simulated = _programs(run.model, settings.chains,
                                 settings.leapfrog_steps,
                                 min(settings.chunk, len(indices)),
                                 settings.bdmc_examples, settings.pilot_steps)
  betas = ais.schedule(settings.steps, settings.beta_max)
  key = jax.random.key(settings.seed)
  point = os.path.basename(os.path.normpath(workdir))
  with Progress(log, interval) as progress:
    began = time.monotonic()
    out, per_example = _forward(
        forward, params, jax.random.fold_in(key, 0),
        run.data.test[np.asarray(indices)],
        betas, min(settings.chunk, len(indices)), progress, point)
    forward_seconds = time.monotonic() - began
    record = {'settings': wanted, 'seconds_per_example': per_example,
              'forward_seconds': forward_seconds}
    record.update(bdmc_lower=None, bdmc_upper=None, bdmc_gap=None,
                  bdmc_log_d=None)
    if settings.bdmc_examples:
      progress.update(f'{point}: BDMC on {settings.bdmc_examples} simulated '
                      'images')
      began = time.monotonic()
      # BDMC brackets log p(x) = log Z_1: its chains anneal to b = 1 (the
      # reverse ones start at the exact posterior sample), whatever beta_max.
      lower, upper, log_d = jax.tree.map(np.asarray, simulated(
          params, jax.random.fold_in(key, 1), bdmc.up_to_one(betas)))
      record.update(bdmc_lower=_mean(lower), bdmc_upper=_mean(upper),
                    bdmc_gap=_mean(upper - lower), bdmc_log_d=_mean(log_d),
                    bdmc_seconds=time.monotonic() - began)
    progress.update(f'{point}: the model\'s own R and D on these images')
    own_rate, own_distortion = own_terms(
        workdir, settings.params, run.data.test[np.asarray(indices)],
        jax.random.fold_in(key, 2))
    record.update(own_rate=own_rate, own_distortion=own_distortion)
  num = len(indices)
  stderr = out['log_px_stderr']
  if settings.beta_max != 1.0:
    # The chains end at log Z_{beta_max}; log p(x) = log Z_1 is their
    # estimate at the schedule's knot b = 1 (`ais.schedule`), without a
    # stderr.
    at_one = int(np.argmin(np.abs(np.asarray(betas) - 1.0)))
    out['log_px'] = out['log_z'][:, at_one]
    stderr = np.full_like(out['log_px'], np.nan)
  record.update(
      log_px=_mean(out['log_px']),
      log_px_stderr=(float(np.sqrt(np.sum(stderr**2)) / num)
                     if np.all(np.isfinite(stderr)) else None),
      log_px_sampling_stderr=float(np.std(out['log_px']) / np.sqrt(num)),
      acceptance=_mean(out['acceptance']),
      per_example={'index': indices, 'log_px': out['log_px'],
                   'log_px_stderr': stderr},
      curve=rate_distortion_curve(betas, out['log_z'],
                                  out['sampled_distortion'],
                                  out['sampled_distortion_stderr']))
  record = atomic_files.to_json_value(record)
  ais_files.write_ais(workdir, record)
  log(f'{point}: log p(x) = {record["log_px"]:.3f} nats over {num} images, '
      f'{per_example:.3f} s per image; wrote {ais_files.AIS_FILE}')
  return record


def sweep_runs(directory: str) -> list[str]:
  """The finished runs of a sweep directory (subdirectories with
  results.json), by name."""
  return [os.path.join(directory, entry)
          for entry in sorted(os.listdir(directory))
          if os.path.isfile(os.path.join(directory, entry,
                                         run_files.RESULTS_FILE))]


def ais_any(directory: str, settings: Settings, log: Log = print,
            interval: float = 30.0) -> dict[str, Optional[dict]]:
  """`ais_workdir` on a run, or on every finished run of a sweep directory
  (restartable: points whose ais.json has these settings are skipped).

  Returns:
    {workdir: the record written, or None for a point skipped}.
  """
  if os.path.isfile(os.path.join(directory, run_files.CONFIG_FILE)):
    return {directory: ais_workdir(directory, settings, log, interval)}
  if not os.path.isdir(directory):
    raise FileNotFoundError(f'{directory!r} does not exist')
  runs = sweep_runs(directory)
  if not runs:
    raise FileNotFoundError(f'{directory!r} holds no run and no finished '
                            'sweep point (a subdirectory with results.json)')
  done = {}
  for k, workdir in enumerate(runs, start=1):
    log(f'point {k} of {len(runs)}: {os.path.basename(workdir)}')
    done[workdir] = ais_workdir(workdir, settings, log, interval)
  return done
