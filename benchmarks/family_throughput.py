r"""Training throughput of the paper's twelve families at the paper's sizes,
and where each stands against XLA's own convolution rate.

  python benchmarks/family_throughput.py                     # all twelve
  python benchmarks/family_throughput.py --families=---,-+- --dispatches=3
  python benchmarks/family_throughput.py --compilation_cache=DIR   # twice:
      # the first run compiles cold into DIR, the second reads it back warm
  python benchmarks/family_throughput.py --families=--v:0,--v,--v:0,--v
      # FAMILY:N sets model.pseudo_input_batch = N (0: the VampPrior's
      # pseudo-inputs through the encoder all at once), A B A B in one run
  python benchmarks/family_throughput.py --families=-+-@lax,-+-,-+-@lax,-+-
      # FAMILY@lax: PixelCNN++'s stride-1 causal convolutions as
      # lax.conv_general_dilated (the form before nets.windowed_conv)
  python benchmarks/family_throughput.py --families=---/1,---,---/1,---
      # FAMILY/D: the batch split over D of the CPU devices (default: the
      # trainer's default layout, a device per core, or one for a family
      # whose work does not split; /1 is the layout of one device, the
      # default before), A B A B in one run
  python benchmarks/family_throughput.py --images=cifar10
      # configs/cifar10.py: 32x32x3 8-bit images, the discretized logistic
      # mixture (random 0..255 images in CIFAR-10's shape: the speed does
      # not depend on the values, and the real data needs a download)

For each family (encoder, decoder, marginal) in {-,+} x {-,+} x {-,+,v}:
builds the run exactly as `loop.train_and_eval` does (`programs.create_run`
on configs/mnist.py with the family, batch 64, static binarized MNIST (or
configs/cifar10.py, `--images=cifar10`), the
run's own `train_loop` from its layout, `train.steps_per_dispatch` Adam steps
per call), then times `--dispatches` calls after one warm-up call.
Prints per family:
- the parameter count;
- the first call's time (tracing, compiling or reading the persistent cache,
  and one dispatch) with the cache hits and misses;
- training images/s (the batch split over the devices of the layout,
  `/D`), and the cores busy while the timed calls ran (CPU
  seconds of every thread of the process per wall second,
  benchmarks/_timing.py);
- FLOP per training image, from XLA's cost analysis of the compiled loop
  (every op of a forward+backward step and the Adam update, divided by the
  loop's steps x batch), and the GFLOP/s that rate achieves;
- the ratio of that to a convolution probe timed in the same process just
  before: a lone 'SAME' 5x5 convolution, 14x14, 64 -> 64 channels at batch
  64, forward+backward (the simple family's middle layer), its FLOP counted
  by the same cost analysis: the rate XLA:CPU reaches on a convolution with
  nothing around it (the mean of a probe before and one after the family's
  timed calls).
Run it on a quiet machine: the load average is printed with the figures.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from rdvae.models.model import FAMILIES
from rdvae.runtime import cpu_devices
from rdvae.training import programs

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # configs
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position
import causal_conv_forms  # pylint: disable=g-import-not-at-top,wrong-import-position

_FAMILIES = flags.DEFINE_list(
    'families', list(FAMILIES), 'Families to time, each FAMILY, FAMILY:N '
    '(N: model.pseudo_input_batch; default the backend\'s choice) or '
    'FAMILY@lax (the causal convolutions in their lax form).')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Training batch size.')
_DISPATCHES = flags.DEFINE_integer(
    'dispatches', 2, 'Timed calls of the training loop (each runs '
    'train.steps_per_dispatch steps).')
_IMAGES = flags.DEFINE_enum(
    'images', 'mnist', ['mnist', 'cifar10'],
    'mnist: configs/mnist.py on static binarized MNIST; cifar10: '
    'configs/cifar10.py on random 8-bit images of its shape (32x32x3).')
_CACHE = flags.DEFINE_string(
    'compilation_cache', 'off', 'Persistent compilation cache directory '
    "('off': every program compiles cold).")

# The convolution probe: batch, height/width, channels in/out, kernel.
PROBE = (64, 14, 64, 64, 5)


def conv_probe_gflops(repeats: int = 5) -> float:
  """GFLOP/s of a lone 'SAME' convolution forward+backward (PROBE), FLOP
  counted by XLA's cost analysis."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  batch, size, cin, cout, k = PROBE
  x = jnp.ones((batch, size, size, cin), jnp.float32)
  w = jnp.full((k, k, cin, cout), 0.01, jnp.float32)

  def loss(w, x):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO',
                                                        'NHWC'))
    return jnp.sum(y * y)

  step = jax.jit(jax.grad(loss, argnums=(0, 1)))
  jax.block_until_ready(step(w, x))
  start = time.perf_counter()
  for _ in range(repeats):
    out = step(w, x)
  jax.block_until_ready(out)
  seconds = (time.perf_counter() - start) / repeats
  return xla_flops(step.lower(w, x)) / seconds / 1e9


def xla_flops(lowered) -> float:
  """FLOP of a lowered program by XLA's cost analysis of its compiled form
  (the same count for the probe and the families, so their ratio is fair)."""
  cost = lowered.compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', 0.0))


def time_family(spec: str) -> dict:
  """`time_family_in_form` of FAMILY[:N][@FORM][/D] (FORM of the causal
  convolutions, default windowed; D devices, default all), its programs
  traced afresh."""
  rest, _, devices = spec.partition('/')
  family, _, form = rest.partition('@')
  programs._programs.cache_clear()  # pylint: disable=protected-access
  with causal_conv_forms.causal_conv_form(form or 'windowed'):
    return dict(time_family_in_form(family, int(devices) if devices else 0),
                family=spec)


def config_and_data(images: str):
  """The config of `images` and its data= splits (None: the config's own)."""
  from configs import cifar10  # pylint: disable=g-import-not-at-top
  from configs import mnist  # pylint: disable=g-import-not-at-top
  if images == 'mnist':
    return mnist.get_config(), None
  config = cifar10.get_config()
  config.dataset.source = 'arrays'
  for key in ('train_split', 'valid_split', 'test_split'):
    config.dataset[key] = ''  # TFDS's, not read from arrays
  rng = np.random.default_rng(0)
  # 1,024 training images: the data's size does not enter the step's time.
  splits = [rng.integers(0, 256, (n, 32, 32, 3), np.uint8)
            for n in (1024, 64, 64)]
  return config, splits


def time_family_in_form(spec: str, devices: int) -> dict:
  """The family's timings with its batch split over `devices` CPU devices
  (0: the trainer's default layout for it)."""
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  from rdvae.runtime import parallel  # pylint: disable=g-import-not-at-top
  config, splits = config_and_data(_IMAGES.value)
  family, _, pseudo_input_batch = spec.partition(':')
  config.model.family = family
  if pseudo_input_batch:
    config.model.pseudo_input_batch = int(pseudo_input_batch)
  config.train.batch_size = _BATCH.value
  programs.validate(config)
  counter = compilation.Counter()
  data = None
  if splits is not None:
    from rdvae.training import tasks  # pylint: disable=g-import-not-at-top
    data = tasks.for_config(config).load_data(config, data=splits)
  run = programs.create_run(config, data=data, layout=parallel.create_layout(
      config.train.parallel, jax.devices()[:devices]) if devices else None)
  layout = run.layout
  state = layout.put_replicated(run.init_state)
  data = layout.put_replicated(run.task.train_data(run.data))
  start = time.perf_counter()
  state, metrics = run.train_loop(state, data)
  jax.block_until_ready(metrics)
  first_s = time.perf_counter() - start
  compiled = counter.report()
  steps_per_call = run.config.train.steps_per_dispatch
  # XLA counts the program of one device: its share of the batch.
  devices = int(layout.mesh.devices.size)
  flop_per_image = xla_flops(run.train_loop.lower(state, data)) * devices / (
      steps_per_call * _BATCH.value)
  with _timing.Timer() as timed:
    for _ in range(_DISPATCHES.value):
      state, metrics = run.train_loop(state, data)
    jax.block_until_ready(metrics)
  seconds = timed.wall
  images = _DISPATCHES.value * steps_per_call * _BATCH.value
  return {'family': spec,
          'num_parameters': sum(int(np.size(p)) for p in
                                jax.tree.leaves(run.init_state.params)),
          'first_call_s': first_s,
          'cache_hits': compiled['cache_hits'],
          'cache_misses': compiled['cache_misses'],
          'images_per_second': images / seconds, 'devices': devices,
          'cores_busy': timed.cores_busy,
          'flop_per_image': flop_per_image,
          'gflops': flop_per_image * images / seconds / 1e9,
          'loss_finite': bool(np.all(np.isfinite(
              layout.get_replicated(metrics)['loss'])))}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  cpu_devices.use_default()  # the trainer's default, before JAX starts
  for spec in _FAMILIES.value:
    rest, _, devices = spec.partition('/')
    form = rest.partition('@')[2]
    if form and form not in causal_conv_forms.FORMS:
      raise app.UsageError(f'--families entry {spec!r}: the form after @ '
                           f'must be one of {causal_conv_forms.FORMS}')
    if devices and not (devices.isdigit()
                        and 1 <= int(devices) <= jax.device_count()):
      raise app.UsageError(f'--families entry {spec!r}: the devices after / '
                           f'must be 1..{jax.device_count()}')
  from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top
  compilation.setup(_CACHE.value)
  print(f'devices: {jax.devices()}; load average: {os.getloadavg()}')
  print(f'images: {_IMAGES.value}; batch {_BATCH.value}, '
        f'{_DISPATCHES.value} timed calls after one '
        f'warm-up call; compilation cache: {compilation.cache_path() or "off"}')
  print(f'{"family":>7} {"dev":>3} {"params":>10} {"first call s":>13} {"hits/misses":>12}'
        f' {"img/s":>7} {"cores":>5} {"GFLOP/img":>10} {"GFLOP/s":>8}'
        f' {"probe":>6} {"ratio":>6}', flush=True)
  for family in _FAMILIES.value:
    before = conv_probe_gflops()
    r = time_family(family)
    probe = (before + conv_probe_gflops()) / 2  # A B A: the load moves
    print(f'{r["family"]:>7} {r["devices"]:>3d} {r["num_parameters"]:>10,d} '
          f'{r["first_call_s"]:13.1f} '
          f'{r["cache_hits"]:>5d}/{r["cache_misses"]:<6d} '
          f'{r["images_per_second"]:7.1f} {r["cores_busy"]:5.2f} '
          f'{r["flop_per_image"] / 1e9:10.3f} '
          f'{r["gflops"]:8.1f} {probe:6.1f} {r["gflops"] / probe:6.2f}'
          + ('' if r['loss_finite'] else '  (loss not finite)'), flush=True)
  print(f'load average: {os.getloadavg()}')


if __name__ == '__main__':
  app.run(main)
