"""Batching on the accelerator: the training order and the evaluation batches.

Training data lives on the device as uint8 and is shuffled there: the order
of step t is a pure function of (key, t) (`batch_indices`), so a resumed run
sees the same batches. Each epoch is one permutation of the training set cut
into `num_examples // batch_size` batches; the incomplete last batch of every
epoch is dropped. `batch_index_block` gives the indices of many steps at once
for a `lax.scan`, computing each epoch's permutation once per block. With
several hosts, every process holds the whole split, computes the same global
indices and keeps its share (`process_slice`).

Evaluation runs on the host's copy in fixed-shape batches, the last one
padded and masked (`eval_batches`), so split means are exact.
"""

from __future__ import annotations

import functools
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches per epoch: num_examples // batch_size (the rest dropped)."""
  if not 0 < batch_size <= num_examples:
    raise ValueError(f'batch_size={batch_size} must lie in [1, num_examples='
                     f'{num_examples}]')
  return num_examples // batch_size


@functools.partial(jax.jit, static_argnums=2)
def epoch_permutation(key: jax.Array, epoch, num_examples: int) -> jax.Array:
  """The order of the training set in `epoch`: [num_examples] int32.

  A permutation drawn with `fold_in(key, epoch)`, so it depends only on the
  data key and the epoch number (traceable in `epoch`).
  """
  return jax.random.permutation(jax.random.fold_in(key, epoch),
                                num_examples).astype(jnp.int32)


def batch_indices(key: jax.Array, step, num_examples: int,
                  batch_size: int) -> jax.Array:
  """Indices of the training batch of `step` (0-based): [batch_size] int32.

  With S = steps_per_epoch, step t takes positions [(t mod S) B, (t mod S + 1)
  B) of `epoch_permutation(key, t // S)`. Traceable in `step`.
  """
  steps_per_epoch(num_examples, batch_size)
  return _index_block(key, step, 1, num_examples, batch_size, 1)[0]


def batch_index_block(key: jax.Array, start_step, num_steps: int,
                      num_examples: int, batch_size: int) -> jax.Array:
  """Indices of steps start_step .. start_step + num_steps - 1: [T, B] int32.

  Row i equals `batch_indices(key, start_step + i, ...)`. The permutation of
  each epoch the block may touch is computed once: (S + T - 2) // S + 1 of
  them for a traced `start_step` (one for T = 1, two for 1 < T <= S), only
  those touched for a Python int. Feed the rows to `lax.scan` with
  `gather_batch`.
  """
  per_epoch = steps_per_epoch(num_examples, batch_size)
  if isinstance(start_step, (int, np.integer)):
    first = int(start_step) % per_epoch
    num_epochs = (first + num_steps - 1) // per_epoch + 1
  else:  # the worst case over first = start_step mod S
    num_epochs = (per_epoch + num_steps - 2) // per_epoch + 1
  return _index_block(key, start_step, num_steps, num_examples, batch_size,
                      num_epochs)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5))
def _index_block(key, start_step, num_steps, num_examples, batch_size,
                 num_epochs):
  per_epoch = num_examples // batch_size
  start_step = jnp.asarray(start_step, jnp.int32)
  epochs = start_step // per_epoch + jnp.arange(num_epochs, dtype=jnp.int32)
  used = per_epoch * batch_size
  orders = jax.vmap(
      lambda e: epoch_permutation(key, e, num_examples)[:used])(epochs)
  offset = (start_step % per_epoch) * batch_size
  block = jax.lax.dynamic_slice_in_dim(orders.reshape(-1), offset,
                                       num_steps * batch_size)
  return block.reshape(num_steps, batch_size)


def gather_batch(images: jax.Array, indices: jax.Array) -> jax.Array:
  """images[indices] as float32 0/1: [..., 28, 28, 1] for indices [...]."""
  return jnp.take(images, indices, axis=0).astype(jnp.float32)


def process_slice(batch: jax.Array, axis: int = 0,
                  process_index: Optional[int] = None,
                  process_count: Optional[int] = None) -> jax.Array:
  """This process's contiguous share of a global batch along `axis`.

  Every process holds the whole training split and computes the same global
  indices from the same key; process p of P keeps rows
  [p G / P, (p + 1) G / P) of the G global rows, so the global batch does not
  depend on the number of hosts. Apply it to indices ([B] or [T, B] with
  axis=1) before `gather_batch`. Defaults: `jax.process_index()`,
  `jax.process_count()`.
  """
  if process_index is None:
    process_index = jax.process_index()
  if process_count is None:
    process_count = jax.process_count()
  size = batch.shape[axis]
  if size % process_count:
    raise ValueError(f'global batch of {size} does not split over '
                     f'{process_count} processes')
  share = size // process_count
  return jax.lax.slice_in_dim(batch, process_index * share,
                              (process_index + 1) * share, axis=axis)


def eval_batches(images: np.ndarray, batch_size: int
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """All of `images` in order, as fixed-shape batches with a mask.

  Yields (x, mask): x float32 [batch_size, 28, 28, 1], mask float32
  [batch_size], 1 for real examples and 0 for the zero padding of the last
  batch. The exact mean of a per-example value v over the split is
  sum(mask * v) / sum(mask), summed over all batches before dividing.
  """
  images = np.asarray(images)
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    x = np.zeros((batch_size,) + images.shape[1:], np.float32)
    x[:len(chunk)] = chunk
    mask = np.zeros((batch_size,), np.float32)
    mask[:len(chunk)] = 1.0
    yield x, mask


def subset_indices(num_examples: int, max_examples: int,
                   seed: int = 0) -> np.ndarray:
  """The sorted indices of a fixed seeded random subset of a split.

  A split can be ordered (the static binarized MNIST test split is sorted by
  class), so its first N images are not a sample of it. The subset is
  `max_examples` indices drawn without replacement by
  `np.random.default_rng(seed).choice`, then sorted: the same for every run
  with the same (split size, max_examples, seed), so runs stay comparable.

  Args:
    num_examples: the split's size.
    max_examples: the subset's size; 0 (or >= num_examples) means the whole
      split, in order.
    seed: the subset's seed (`eval.subset_seed`).

  Returns:
    int64 [min(max_examples, num_examples)] indices, increasing.
  """
  if not max_examples or max_examples >= num_examples:
    return np.arange(num_examples)
  rng = np.random.default_rng(seed)
  return np.sort(rng.choice(num_examples, size=max_examples, replace=False))


def eval_subset(images: np.ndarray, max_examples: int,
                seed: int = 0) -> np.ndarray:
  """`images[subset_indices(len(images), max_examples, seed)]`."""
  if not max_examples or max_examples >= len(images):
    return images
  return images[subset_indices(len(images), max_examples, seed)]
