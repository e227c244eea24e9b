"""A trained image model, loaded from its run: encode, decode, reconstruct,
sample, and measure new data by rate, distortion and the IWAE bound.

`load(workdir)` rebuilds the run from its config.json (`training.programs`,
as `reevaluate` does) and restores its last or best parameters. Every
method of `TrainedModel` is jitted once and runs over its inputs in batches
of the run's `eval.batch_size` B (the last one padded). Example i draws with
its own key, `parallel.example_keys(rng, i // B, B)[i % B]`, the keys of the
run's evaluation (`evaluation.steps`): with the run's evaluation key (the
default `rng`) on the run's evaluation subset (`eval_subset`),
`rate_distortion` and `log_likelihood` give the per-example terms whose
means are results.json's R, D and IWAE.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from rdvae.data import batching
from rdvae.evaluation import steps as eval_steps
from rdvae.runs import reevaluate
from rdvae.runtime import parallel
from rdvae.training import programs


def _encode_sample(module, x):
  return module.encoder(x).sample(seed=module.make_rng('sample'))  # [B, Z]


def _decode(module, z):
  return module.decode(z, 1)[0][0]  # [B, H, W, C]


def _latent(module, index):
  m = module.marginal(module.encoder)
  return m.sample(seed=module.make_rng('sample'), sample_shape=index.shape)


def _encoder(module, x):
  return module.encoder(x)


class TrainedModel:
  """The model of a finished (or checkpointed) run and its parameters.

  Attributes:
    config: the run's config (backend choices resolved).
    model: the `RDModel`.
    params: its parameters (on the default device).
    dataset: the run's data (`validation`, `test`, `train` uint8 splits).
    step: the training step of the parameters.
    eval_key: the run's evaluation key (typed), the default `rng`.
    batch_size: B, examples per compiled call (`eval.batch_size`).
  """

  def __init__(self, config, model, params, dataset, step: int,
               eval_rng: jax.Array):
    self.config, self.model, self.dataset, self.step = (config, model,
                                                        dataset, step)
    self.params = jax.device_put(params)
    self.eval_key = jax.random.wrap_key_data(jnp.asarray(eval_rng))
    self.batch_size = int(config.eval.batch_size)
    self._programs: dict[Any, Callable] = {}

  def eval_subset(self, split: str = 'test') -> np.ndarray:
    """The examples of `split` the run's evaluation measured, in its order
    (`batching.eval_subset`), as float32 [N, H, W, C]."""
    c = self.config.eval
    images = batching.eval_subset(getattr(self.dataset, split),
                                  c.max_examples, c.subset_seed)
    return np.asarray(images, np.float32)

  def _program(self, name: Any, method: Callable) -> Callable:
    """The jitted batch program of `method` (per-example keys, vmapped)."""
    if name not in self._programs:
      size = self.batch_size

      def program(params, x, rng, index):
        keys = parallel.example_keys(rng, index, size)
        return method(params, x, keys)

      self._programs[name] = jax.jit(program)
    return self._programs[name]

  def _key(self, rng: Optional[jax.Array]) -> jax.Array:
    """`rng` as a typed key (the run's evaluation key if None)."""
    rng = self.eval_key if rng is None else rng
    if not jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
      rng = jax.random.wrap_key_data(rng)
    return rng

  def _batched(self, name: Any, method: Callable, x: Any,
               rng: Optional[jax.Array]) -> Any:
    """`method` over `x` [N, ...] in batches of B; outputs [N, ...]."""
    data = jax.random.key_data(self._key(rng))
    program = self._program(name, method)
    outs = []
    for index, (batch, mask) in enumerate(
        batching.eval_batches(np.asarray(x), self.batch_size)):
      out = program(self.params, jnp.asarray(batch, jnp.float32), data,
                    jnp.int32(index))
      outs.append(jax.tree.map(
          lambda a, n=int(mask.sum()): np.asarray(a)[:n], out))
    return jax.tree.map(lambda *a: np.concatenate(a), *outs)

  def _per_example(self, method: Callable) -> Callable:
    return lambda params, x, keys: parallel.apply_per_example(
        self.model, params, x, keys, method)

  def encode(self, x: Any, rng: Optional[jax.Array] = None,
             sample: bool = False) -> Any:
    """e(z|x) of images x [N, H, W, C]: the encoder's distrax distribution
    (batch (N,), event (Z,); one call, not jitted, `rng` unused), or with
    `sample` one z ~ e(z|x) per image, [N, Z]."""
    if sample:
      return self._batched('encode', self._per_example(_encode_sample), x,
                           rng)
    return self.model.apply({'params': self.params},
                            jnp.asarray(x, jnp.float32), method=_encoder)

  def decode(self, z: Any, rng: Optional[jax.Array] = None) -> np.ndarray:
    """One x ~ d(x|z) per latent z [N, Z]: images [N, H, W, C] (exact
    sequential samples for an autoregressive decoder)."""
    return self._batched('decode', self._per_example(_decode), z, rng)

  def reconstruct(self, x: Any,
                  rng: Optional[jax.Array] = None) -> np.ndarray:
    """z ~ e(z|x), then x' ~ d(x'|z), per image: [N, H, W, C]; with
    (k1, k2) = split(rng), `decode(encode(x, k1, sample=True), k2)`."""
    k1, k2 = jax.random.split(self._key(rng))
    return self.decode(self.encode(x, k1, sample=True), k2)

  def sample(self, num_images: int,
             rng: Optional[jax.Array] = None) -> np.ndarray:
    """`num_images` draws of the generative model, z ~ m(z), x ~ d(x|z):
    [num_images, H, W, C]; with (k1, k2) = split(rng),
    `decode(sample_latent(num_images, k1), k2)`."""
    k1, k2 = jax.random.split(self._key(rng))
    return self.decode(self.sample_latent(num_images, k1), k2)

  def sample_latent(self, num_latents: int,
                    rng: Optional[jax.Array] = None) -> np.ndarray:
    """`num_latents` z ~ m(z): [num_latents, Z]."""
    index = np.arange(num_latents, dtype=np.int32)
    return self._batched('latent', self._per_example(_latent), index, rng)

  def rate_distortion(self, x: Any, rng: Optional[jax.Array] = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per-example rate log e(z|x) - log m(z) and distortion -log d(x|z)
    (Eqs. 5, 4) at one z ~ e(z|x) each: ([N], [N]) in nats."""
    out = self._batched('rd', eval_steps.make_per_example_fn(self.model), x,
                        rng)
    return out['rate'], out['distortion']

  def log_likelihood(self, x: Any, num_samples: Optional[int] = None,
                     rng: Optional[jax.Array] = None) -> np.ndarray:
    """The IWAE bound log (1/K) sum_k w_k <= log p(x) per example, [N] in
    nats, with K = `num_samples` (default: the run's eval.iwae_samples)
    proposals z_k ~ e(z|x)."""
    k = int(num_samples or self.config.eval.iwae_samples)
    fn = eval_steps.make_per_example_fn(self.model, iwae_samples=k)
    return self._batched(('iwae', k), fn, x, rng)['iwae']


def load(workdir: str, params: str = 'last',
         components: Optional[Mapping[str, Any]] = None,
         data: Any = None) -> TrainedModel:
  """The trained model of the image run in `workdir`.

  Args:
    workdir: a run's directory (config.json and checkpoints).
    params: 'last' (the newest checkpoint, whose figures results.json
      holds) or 'best' (the best by validation ELBO).
    components: the modules passed to `train_and_eval` in place of the
      config's parts, if any (docs/models.md).
    data: the splits passed to `train_and_eval` as `data=`, for a run of
      source 'arrays'.

  Raises:
    FileNotFoundError: no run or no such checkpoint in `workdir`.
    ValueError: a toy run (its model is a table, measured exactly).
  """
  config = reevaluate.saved_config(workdir, {})
  task = programs.validate(config, components)
  run = programs.create_run(
      config, task.load_data(config, components, data), components=components)
  state, step = reevaluate.restore_params(run, workdir, params)
  return TrainedModel(run.config, run.model, state.params, run.data, step,
                      run.evaluator.eval_rng)
