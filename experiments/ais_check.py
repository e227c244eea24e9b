r"""python -m experiments.ais_check --workdirs=runs/simple,runs/vamp \
     --examples=20 --chains=16 --steps=500 --bdmc_examples=20

The checks of AIS on trained image models, one table
row per run. For each run it calls `ais_workdir` (as `experiments.ais`
does; a run whose ais.json has these settings is not computed again) and
then, on the same seeded test images:

  IWAE(K)   log mean_k w_k, w_k = d(x|z_k) m(z_k) / e(z_k|x), z_k ~ e(z|x),
            per image, with its delta-method standard error
            sqrt((K sum_k wbar_k^2 - 1) / (K - 1)); the mean over N images
            has se sqrt(sum_i se_i^2) / N (the Monte Carlo error on these
            images, as AIS's log_px_stderr).
  model R, D  the model's own rate E[log e(z|x) - log m(z)] and distortion
            E[-log d(x|z)], z ~ e(z|x), means over `--encoder_draws` draws.

and checks:

  ais>=iwae  mean AIS log p(x) >= mean IWAE(K) - its se;
  monotone   along the decoder's curve (R_b, D_b), b = 0 .. 1, D never
             rises and R never falls, beyond float32 rounding (ROUNDING
             nats): the curve is a convex minorant's
             (`evaluation.ais.monotone_curve`), so this checks what was
             written. The sampled D_b of the chains (ais.json's
             sampled_distortion) is compared with it: its distance from
             the curve's D at b_t (the interval between the minorant's
             slopes on either side), the largest and the root-mean-square
             over the knots, in units of the sampled D's standard error
             (below 1 where the curve follows the samples within their
             noise);
  R+D@1      |R_1 + D_1 + log p(x)| <= AIS's se at b = 1;
  above      the model's point lies on or above the curve: for every b,
             R_model + b D_model >= R_b + b D_b = -log Z_b - AIS's se
             (q_b minimises KL(q || m) + b E_q[-log d] over all encoders,
             the model's among them); the smallest slack is printed, and
             D_curve(R_model), the curve's D interpolated where its R
             first reaches the model's R (if it does);
  bdmc<1     the BDMC gap on the simulated images is under 1 nat.

Cost (`--cost`): the seconds per image of this run's AIS, divided by its
decoder evaluations per image (chains x leapfrog steps x (steps + pilot
steps)), times those of the shipped defaults (ais_workdir.Settings: 16 x
10 x (500 + 50)): the defaults' seconds per image, extrapolated linearly
(the chains are one batch, so a larger batch may cost less per chain);
against the model's loss and gradient on one training batch, timed in the
same process (a training step without the optimizer's update).

`--jax_platforms=cpu` picks the backend.
"""

import dataclasses
import json
import math
import time

from absl import app
from absl import flags
from absl import logging

from experiments import ais_flags
from experiments import cli

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Trained runs to check.')
# The checks' images and BDMC images: 20 each; the rest as experiments.ais.
_SETTINGS = ais_flags.define(
    ('examples', 'chains', 'steps', 'leapfrog_steps', 'pilot_steps',
     'bdmc_examples', 'chunk', 'seed'), examples=20, bdmc_examples=20)
_IWAE = flags.DEFINE_integer('iwae_samples', 100, 'K of the IWAE bound.')
_DRAWS = flags.DEFINE_integer('encoder_draws', 16,
                              'Draws of e(z|x) for the model\'s own R, D.')
_COST = flags.DEFINE_bool('cost', True,
                          'Time a training step and state the cost of the '
                          'AIS defaults.')
_FORCE = flags.DEFINE_bool('force', False, 'Recompute ais.json.')
_PLATFORMS = flags.DEFINE_string('jax_platforms', None,
                                 'JAX backends to use, e.g. "cpu".')
flags.mark_flags_as_required(['workdirs'])
# Nats: float32 rounding of the curve's R (-log Z_i + b_i s, log Z ~ 1e2).
ROUNDING = 1e-4


def _log_mean_exp_and_se(log_w):
  """Per column of log_w [K, N]: log mean_k w and its delta-method se."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import special  # pylint: disable=g-import-not-at-top
  k = log_w.shape[0]
  value = special.logsumexp(log_w, axis=0) - math.log(k)
  normalised = np.exp(log_w - special.logsumexp(log_w, axis=0))
  se = np.sqrt(np.maximum(k * np.sum(normalised**2, 0) - 1, 0) / (k - 1))
  return value, se


def _model_terms(run, params, images, seed):
  """IWAE per image with se, and the model's mean R, D per image."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  variables = {'params': params}
  x = jax.numpy.asarray(images, jax.numpy.float32)

  @jax.jit
  def weights(variables, x, key):
    return run.model.apply(variables, x, _IWAE.value, rngs={'sample': key},
                           method='log_importance_weights')

  @jax.jit
  def terms(variables, x, key):
    out = run.model.apply(variables, x, rngs={'sample': key})
    return out.rate, out.distortion

  key = jax.random.key(seed + 1)
  log_w = np.asarray(weights(variables, x, jax.random.fold_in(key, 0)),
                     np.float64)
  iwae, iwae_se = _log_mean_exp_and_se(log_w)
  draws = [jax.device_get(terms(variables, x, jax.random.fold_in(key, 1 + d)))
           for d in range(_DRAWS.value)]
  rate = np.mean([r for r, _ in draws], 0, dtype=np.float64)
  distortion = np.mean([d for _, d in draws], 0, dtype=np.float64)
  return iwae, iwae_se, rate, distortion


def _curve_checks(record, model_rate, model_distortion):
  import numpy as np  # pylint: disable=g-import-not-at-top
  curve = record['curve']
  betas = np.array([c['beta'] for c in curve])
  rate = np.array([c['rate'] for c in curve])
  distortion = np.array([c['distortion'] for c in curve])
  # The largest step against monotonicity, R falling or D rising with b, in
  # nats; the sampled D's distance from the curve (module docstring).
  rises = np.diff(distortion)
  falls = -np.diff(rate)
  against = float(max(0.0, np.max(falls), np.max(rises)))
  sampled_units = sampled_rms = None
  if all('sampled_distortion_stderr' in c for c in curve):
    # At knot t the curve's D spans [D_{t+1}, D_t] (the minorant's slopes
    # on either side of b_t); the sampled D_t estimates the right one.
    sampled = np.array([c['sampled_distortion'] for c in curve])
    low = np.append(distortion[1:], distortion[-1])
    distance = np.maximum(np.maximum(low - sampled, sampled - distortion), 0)
    units = distance / np.array([c['sampled_distortion_stderr']
                                 for c in curve])
    sampled_units = float(np.max(units))
    sampled_rms = float(np.sqrt(np.mean(units**2)))
  end_error = abs(rate[-1] + distortion[-1] + record['log_px'])
  log_z = -(rate + betas * distortion)
  slack = model_rate + betas * model_distortion + log_z
  worst = int(np.argmin(slack))
  # Where the curve first reaches the model's rate (linear between its
  # points).
  above = np.nonzero(rate >= model_rate)[0]
  d_at_model_rate = None
  if above.size and above[0] > 0:
    t = above[0]
    f = (model_rate - rate[t - 1]) / (rate[t] - rate[t - 1])
    d_at_model_rate = float(distortion[t - 1]
                            + f * (distortion[t] - distortion[t - 1]))
  return dict(against=against, sampled_units=sampled_units,
              sampled_rms=sampled_rms,
              end_error=end_error,
              min_slack=float(slack[worst]), slack_beta=float(betas[worst]),
              d_at_model_rate=d_at_model_rate, end_rate=float(rate[-1]),
              end_distortion=float(distortion[-1]))


def _cost(run, params, settings, record):
  """The defaults' seconds per image, extrapolated from this run's, and the
  seconds of the model's loss and gradient on a training batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from rdvae.evaluation import ais  # pylint: disable=g-import-not-at-top
  from rdvae.runs import ais_workdir  # pylint: disable=g-import-not-at-top
  evaluations = lambda s: s.chains * s.leapfrog_steps * (
      s.steps + (ais.default_pilot_steps(s.steps) if s.pilot_steps is None
                 else min(s.pilot_steps, s.steps)))
  per_evaluation = record['seconds_per_example'] / evaluations(settings)
  per_image = per_evaluation * evaluations(ais_workdir.Settings())
  batch = run.config.train.batch_size
  train_x = jnp.asarray(run.data.train[:batch], jnp.float32)

  @jax.jit
  def loss_and_grad(params, x, key):
    def loss(params):
      out = run.model.apply({'params': params}, x, rngs={'sample': key})
      return jnp.mean(out.rate + out.distortion)
    return jax.value_and_grad(loss)(params)

  jax.block_until_ready(loss_and_grad(params, train_x, jax.random.key(0)))
  began = time.monotonic()
  for i in range(3):
    jax.block_until_ready(loss_and_grad(params, train_x, jax.random.key(i)))
  train_step = (time.monotonic() - began) / 3
  return dict(per_image=per_image, train_step=train_step, batch=batch,
              per_evaluation=per_evaluation,
              in_train_steps=per_image / train_step)


def check(workdir, settings, log):
  """The row of one run (module docstring)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from rdvae.files import ais_files  # pylint: disable=g-import-not-at-top
  from rdvae.runs import ais_workdir  # pylint: disable=g-import-not-at-top
  ais_workdir.ais_workdir(workdir, settings, log, force=_FORCE.value)
  record = ais_files.read_ais(workdir)
  run, params, step = ais_workdir.restore(workdir, settings.params)
  indices = record['settings']['indices']
  images = run.data.test[np.asarray(indices)]
  iwae, iwae_se, rate, distortion = _model_terms(run, params, images,
                                                 settings.seed)
  num = len(indices)
  ais_px = np.asarray(record['per_example']['log_px'], np.float64)
  ais_se = record['log_px_stderr']
  row = dict(
      workdir=workdir, family=run.config.model.family, step=step,
      images=num, chains=settings.chains, steps=settings.steps,
      leapfrog=settings.leapfrog_steps,
      pilot=record['settings'].get('pilot_steps'),
      ais=float(np.mean(ais_px)), ais_se=ais_se,
      acceptance=record.get('acceptance'),
      iwae=float(np.mean(iwae)), iwae_se=float(np.sqrt(np.sum(iwae_se**2))
                                               / num),
      model_rate=float(np.mean(rate)),
      model_distortion=float(np.mean(distortion)),
      bdmc_lower=record['bdmc_lower'], bdmc_upper=record['bdmc_upper'],
      bdmc_gap=record['bdmc_gap'], bdmc_examples=settings.bdmc_examples,
      seconds_per_image=record['seconds_per_example'],
      bdmc_seconds=record.get('bdmc_seconds'))
  row.update(_curve_checks(record, row['model_rate'],
                           row['model_distortion']))
  se = ais_se or 0.0
  row['checks'] = {
      'ais>=iwae': row['ais'] >= row['iwae'] - row['iwae_se'],
      'monotone': row['against'] <= ROUNDING,
      'R+D@1': row['end_error'] <= max(se, 1e-3),
      'above': row['min_slack'] >= -se,
      'bdmc<1': (row['bdmc_gap'] is not None and row['bdmc_gap'] < 1.0),
  }
  if _COST.value:
    row['cost'] = _cost(run, params, settings, record)
  return row


def _table(rows):
  fmt = lambda v, p=2: '-' if v is None else f'{v:.{p}f}'
  lines = ['| family | step | images | AIS log p(x) (se) | IWAE K=100 (se) '
           '| model R, D | curve at b=1: R, D | D_curve(R_model) '
           '| min slack (at b) | against monotone '
           '| sampled D from the curve, max (rms), se '
           '| BDMC lower, upper, gap '
           '| s per image | checks |', '|' + '---|' * 14]
  for r in rows:
    checks = ', '.join(f'{k} {"ok" if v else "FAIL"}'
                       for k, v in r['checks'].items())
    lines.append(
        f"| {r['family']} | {r['step']} | {r['images']} "
        f"| {fmt(r['ais'])} ({fmt(r['ais_se'])}) "
        f"| {fmt(r['iwae'])} ({fmt(r['iwae_se'])}) "
        f"| {fmt(r['model_rate'])}, {fmt(r['model_distortion'])} "
        f"| {fmt(r['end_rate'])}, {fmt(r['end_distortion'])} "
        f"| {fmt(r['d_at_model_rate'])} "
        f"| {fmt(r['min_slack'])} ({fmt(r['slack_beta'], 3)}) "
        f"| {fmt(r['against'], 6)} "
        f"| {fmt(r['sampled_units'])} ({fmt(r['sampled_rms'])}) "
        f"| {fmt(r['bdmc_lower'])}, {fmt(r['bdmc_upper'])}, "
        f"{fmt(r['bdmc_gap'])} ({r['bdmc_examples']} images) "
        f"| {fmt(r['seconds_per_image'], 1)} | {checks} |")
  for r in rows:
    if 'cost' in r:
      c = r['cost']
      lines.append(
          f"{r['family']}: {c['per_evaluation'] * 1e3:.1f} ms per decoder "
          "evaluation of one chain; the defaults (16 chains x 10 leapfrog x "
          f"(500 + 50 pilot) steps) about {c['per_image']:.0f} s per image "
          f"= {c['in_train_steps']:.0f} training steps of batch "
          f"{c['batch']} ({c['train_step']:.3f} s each, loss and gradient)")
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=g-import-not-at-top
  if _PLATFORMS.value:
    jax.config.update('jax_platforms', _PLATFORMS.value)
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  compilation.setup()
  settings = _SETTINGS()
  log = lambda line: print(line, flush=True)
  log(f'settings: {json.dumps(dataclasses.asdict(settings))}')
  rows = [check(workdir, settings, log) for workdir in _WORKDIRS.value]
  print(_table(rows), flush=True)


if __name__ == '__main__':
  cli.collect_less()
  app.run(main)
