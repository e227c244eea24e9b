"""Benchmark of the PixelCNN++ decoder network (F.2): sampling and training speed.

  python benchmarks/pixelcnn_sampling.py                 # paper sizes
  python benchmarks/pixelcnn_sampling.py --num_samples=10 --train_steps=5
  python benchmarks/pixelcnn_sampling.py --causal_conv=lax,windowed,lax,windowed

Prints the parameter count; the time to draw `num_samples` images as one
compiled program (`PixelCNN.sample`: a `lax.fori_loop` over the 784 pixels),
compile time separately; and training images/s of a forward + backward pass of
the teacher-forced distortion -log d(x|z) at batch 64 (compile time again
separate). Also prints the load average, since timings on a shared machine are
provisional. Real MNIST images are used where the repository's data file is
found (`../shared/data/binarized_mnist.npz` or the package copy), random bits
otherwise; the speed does not depend on which. `--causal_conv` runs all of
it once for each form of the stride-1 causal convolutions in the list, in
order, in one process (benchmarks/causal_conv_forms.py; `windowed` is what
the network computes, `lax` the `lax.conv_general_dilated` form before it).
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from rdvae.data import sources as data
from rdvae.models import pixelcnn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position
import causal_conv_forms  # pylint: disable=g-import-not-at-top,wrong-import-position

_NUM_SAMPLES = flags.DEFINE_integer('num_samples', 100, 'images to sample')
_BATCH = flags.DEFINE_integer('batch', 64, 'training batch size')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 10, 'timed training steps')
_FEATURES = flags.DEFINE_integer('features', 64, 'pixelcnn features')
_RESNETS = flags.DEFINE_integer('resnets_per_block', 2, 'resnet layers a block')
_LATENT = flags.DEFINE_integer('latent', 64, 'latent dimensions Z')
_SKIP_SAMPLING = flags.DEFINE_bool('skip_sampling', False,
                                   'only time training')
_CAUSAL_CONV = flags.DEFINE_list(
    'causal_conv', ['windowed'], 'Forms of the stride-1 causal convolutions '
    f'to time, in order, each one of {causal_conv_forms.FORMS}.')


def _images(batch: int) -> jax.Array:
  root = pathlib.Path(__file__).resolve().parents[1]
  for path in (root.parent / 'shared' / 'data' / 'binarized_mnist.npz',
               root / 'rdvae' / 'data' / 'binarized_mnist.npz'):
    if path.exists():
      packed = np.load(path)['train'][:batch]
      bits = np.unpackbits(packed, axis=1)[:, :784].reshape(-1, 28, 28, 1)
      return jnp.asarray(bits, jnp.float32)
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.random((batch, 28, 28, 1)) < 0.13, jnp.float32)


def _timed(fn, *args):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, time.perf_counter() - start


def main(argv):
  del argv
  forms = _CAUSAL_CONV.value
  for form in forms:
    if form not in causal_conv_forms.FORMS:
      raise app.UsageError(f'--causal_conv={form!r}: expected forms from '
                           f'{causal_conv_forms.FORMS}')
  for form in forms:
    if len(forms) > 1:
      print(f'--- causal convolutions: {form}')
    with causal_conv_forms.causal_conv_form(form):
      _benchmark()


def _benchmark():
  print(f'devices: {jax.devices()}; load average: {os.getloadavg()}')
  net = pixelcnn.PixelCNN(image_shape=data.IMAGE_SHAPE,
                          features=_FEATURES.value,
                          resnets_per_block=_RESNETS.value)
  x = _images(_BATCH.value)
  z = jax.random.normal(jax.random.key(1), (_BATCH.value, _LATENT.value))
  params, seconds = _timed(jax.jit(net.init), jax.random.key(0), x, z)
  count = sum(p.size for p in jax.tree.leaves(params))
  print(f'parameters: {count:,} (init {seconds:.1f} s)')

  def distortion(params, x, z):
    logits = net.apply(params, x, z)
    terms = x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(
        -logits)
    return -terms.sum(axis=(1, 2, 3)).mean()

  grad_fn = jax.jit(jax.value_and_grad(distortion))
  lowered = grad_fn.lower(params, x, z)
  compiled, seconds = _timed(lowered.compile)
  print(f'train step compile: {seconds:.1f} s')
  _timed(compiled, params, x, z)
  with _timing.Timer() as timed:
    for _ in range(_TRAIN_STEPS.value):
      loss, _ = compiled(params, x, z)
    jax.block_until_ready(loss)
  seconds = timed.wall / _TRAIN_STEPS.value
  print(f'train forward+backward, batch {_BATCH.value}: {seconds:.3f} s/step, '
        f'{_BATCH.value / seconds:.1f} images/s (distortion {float(loss):.1f} '
        f'nats at init), cores busy {timed.cores_busy:.2f}')

  if _SKIP_SAMPLING.value:
    return
  sample_fn = jax.jit(lambda p, z, key: net.apply(
      p, z, method=net.sample, rngs={'sample': key}))
  zs = jax.random.normal(jax.random.key(2), (_NUM_SAMPLES.value, _LATENT.value))
  compiled, seconds = _timed(
      sample_fn.lower(params, zs, jax.random.key(3)).compile)
  print(f'sampling compile: {seconds:.1f} s')
  with _timing.Timer() as timed:
    samples = jax.block_until_ready(compiled(params, zs, jax.random.key(3)))
  print(f'sampling {_NUM_SAMPLES.value} images (784 steps, one program): '
        f'{timed.wall:.1f} s, mean pixel {float(samples.mean()):.3f}, cores '
        f'busy {timed.cores_busy:.2f}')
  print(f'load average after: {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
