"""Bidirectional Monte Carlo (BDMC): log p(x) sandwiched between forward and
reverse AIS on data simulated from the model (Grosse et al., 2015).

For x ~ d(x|z*), z* ~ m(z), z* is an exact sample of q_1(z|x). Chains
started at z* run the schedule backwards (b_T, ..., b_0) with the same
updates, so their log weights add (b_{t-1} - b_t) log d(x|z)
(the forward increments with the sign flipped) and E[w_rev] = Z_0 / Z_1 =
1 / p(x). The log-mean-exp of log w_rev is then (Jensen) a stochastic lower
bound on -log p(x), and its negation a stochastic UPPER bound on log p(x).
On simulated data the gap between the two bounds bounds either's error.
Both runs end at b = 1 (a schedule past it is cut there, `up_to_one`).

The reverse chains use the forward run's step sizes (`ais`): kernels fixed
in advance keep both bounds exact. Values are in nats; shapes: [B]
examples, [K] chains, [Z] latents.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rdvae.evaluation import ais
from rdvae.evaluation import hmc

Array = jax.Array
SampleLikelihood = Callable[[Array, Array], Array]  # (key, z [Z]) -> x_i


class ReverseAISResult(NamedTuple):
  """Reverse AIS from exact posterior samples, in nats: the stochastic upper
  bound log_px_upper [B] on log Z_{b_T}(x), its delta-method log_px_stderr
  [B] (as in AISResult) and the mean acceptance probability [B]."""

  log_px_upper: Array
  log_px_stderr: Array
  acceptance: Array


class BDMCResult(NamedTuple):
  """Forward and reverse AIS on data simulated from the model, in nats:
  lower [B] and upper [B] (stochastic bounds on log p(x)), gap = upper -
  lower [B], the data x [B, ...], the latents z [B, Z] that generated them,
  and the forward run with its rate-distortion curve."""

  lower: Array
  upper: Array
  gap: Array
  x: Array
  z: Array
  forward: ais.AISResult


def up_to_one(betas: Array) -> Array:
  """The schedule's knots up to b = 1: BDMC's path from m(z) to p(z|x)."""
  ones = np.flatnonzero(np.asarray(betas) == 1.0)
  if not ones.size:
    raise ValueError(f'the schedule has no knot at b = 1 (it ends at '
                     f'{float(np.asarray(betas)[-1])})')
  return jnp.asarray(betas)[:ones[0] + 1]


def reverse_ais(key: Array, x: Array, z_exact: Array,
                log_likelihood: ais.LogLikelihood,
                log_marginal: ais.LogMarginal, *,
                betas: Array, num_chains: int,
                step_sizes: Optional[Array] = None,
                first_index: int | Array = 0, **settings) -> ReverseAISResult:
  """Reverse AIS: a stochastic upper bound on log Z_{b_T}(x).

  The K chains of example i all start at z_exact[i] [Z], an exact sample of
  q_{b_T}(z|x_i), and anneal along b_T, ..., b_0, their log weights adding
  (b_{t-1} - b_t) log d(x|z). E[w_rev] = Z_0 / Z_{b_T} (= 1 / p(x) for
  b_T = 1), so log_px_upper = -log mean_k w_rev,k >= log Z_{b_T}(x) in
  expectation.

  The arguments are those of `ais.ais` (betas is the forward schedule; settings
  are leapfrog_steps, initial_step_size, target_acceptance, step_size_range,
  chunk_size; warmup_steps is ignored: the chains start at b_T, not at 0),
  except that step_sizes [B, T] or [T] are those of the FORWARD
  transitions at b_1..b_T (e.g. `AISResult.step_sizes`): the reverse
  transition at b_t uses the forward one's, that at b_0 the one at b_1.
  None: adapt.
  """
  settings = hmc.Settings(log_likelihood, log_marginal, num_chains,
                          **settings)
  path = jnp.asarray(betas, jnp.float32)[::-1]
  if step_sizes is not None:
    forward = jnp.broadcast_to(step_sizes, (x.shape[0], path.shape[0] - 1))
    step_sizes = jnp.concatenate([forward[:, -2::-1], forward[:, :1]], 1)
  initial = lambda _, z: jnp.broadcast_to(z, (num_chains,) + z.shape)
  out = ais.run_chains(settings, key, x, path, initial, z_exact, step_sizes,
                       first_index)
  return ReverseAISResult(log_px_upper=-out['log_z'][:, -1],
                          log_px_stderr=out['stderr'],
                          acceptance=out['acceptance'])


def bdmc(key: Array, log_likelihood: ais.LogLikelihood,
         log_marginal: ais.LogMarginal, sample_marginal: ais.SampleMarginal,
         sample_likelihood: SampleLikelihood, num_examples: int, *,
         betas: Array, num_chains: int, **settings) -> BDMCResult:
  """BDMC: log p(x) between forward and reverse AIS on simulated data.

  Draws z_i ~ m(z), x_i ~ sample_likelihood(key, z_i) = one draw of
  d(x|z_i), for i < num_examples (B). Forward AIS (`ais.ais`, its step sizes
  set by its pilot) gives lower <= log p(x), reverse AIS (`reverse_ais` from
  z_i with the forward run's step sizes, the same kernels, fixed in advance)
  gives upper >= log p(x), both in expectation. The other arguments and
  settings are those of `ais.ais`.
  """
  z_key, x_key, forward_key, reverse_key = jax.random.split(key, 4)
  z = sample_marginal(z_key, num_examples)
  x = jax.vmap(sample_likelihood)(jax.random.split(x_key, num_examples), z)
  forward = ais.ais(forward_key, x, log_likelihood, log_marginal,
                    sample_marginal, betas=betas, num_chains=num_chains,
                    **settings)
  settings.pop('pilot_steps', None)
  reverse = reverse_ais(reverse_key, x, z, log_likelihood, log_marginal,
                        betas=betas, num_chains=num_chains,
                        step_sizes=forward.step_sizes, **settings)
  return BDMCResult(lower=forward.log_px, upper=reverse.log_px_upper,
                    gap=reverse.log_px_upper - forward.log_px, x=x, z=z,
                    forward=forward)
