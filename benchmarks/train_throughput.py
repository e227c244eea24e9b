"""Training and evaluation throughput of the simple family (-,-,-) on this machine.

  python benchmarks/train_throughput.py                  # batch 64 and 256
  python benchmarks/train_throughput.py --batch_sizes=64 --reference
  python benchmarks/train_throughput.py --batch_sizes=64 --rounds=3
      # JAX, PyTorch eager and torch.compile alternated A B A B, with the
      # ratios of every round (PyTorch: pip install -e ".[benchmarks]")

Prints, per batch size: compile time (excluded from the rates), training
images/s of an Adam step on the ELBO (value_and_grad of
`objectives.loss_fn` on the model's RDTerms + `optax.adam`, jitted, donated
state, `--steps_per_dispatch` steps per call via `lax.scan` over a
pre-stacked device batch; the model's arithmetic alone, not the trainer's
step of `rdvae.training`, but in the trainer's layout: each batch split over
the trainer's default CPU devices, one per core, `--cpu_devices` to choose), with its training images per CPU-second and the
cores busy meanwhile (CPU seconds of every thread of the process per wall
second, benchmarks/_timing.py), the achieved GFLOP/s at 719.6 MFLOP per
image per step beside XLA's own count (`compiled.cost_analysis()`), and
evaluation images/s (RDTerms, forward only). `--reference` adds the direct
Flax version (`lax.conv_transpose` deconvolutions, as `nn.ConvTranspose`),
and the same architecture in PyTorch (fp32, eager and under
`torch.compile`, in this process) is timed when torch is installed, right
after JAX in each of `--rounds` rounds, with the same three figures.

The scan is fully unrolled (`unroll=True`): XLA:CPU runs convolutions inside
a while loop through a slow generic path (jax-ml/jax#12868); measured here,
a rolled 2-step scan took 28 s per step against 1.2 s unrolled.

Flops per image per training step, forward + backward = 3x forward, counting a
multiply-add as 2 and each transposed convolution by its input positions
(the dense work, without the zeros of dilation): encoder 85.9 M, decoder
154.0 M, total forward 239.9 M, so 719.6 M per training step.

Timings depend on the machine's load; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys

from rdvae.runtime import cpu_devices


def _parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch_sizes', default='64,256')
  parser.add_argument('--steps_per_dispatch', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--cpu_devices', type=int, default=0,
                      help='CPU devices the JAX batch is split over (0: the '
                      "trainer's default, one per core; "
                      'rdvae/runtime/cpu_devices.py)')
  parser.add_argument('--reference', action='store_true',
                      help='also time the direct lax.conv_transpose version')
  parser.add_argument('--torch', default='eager,compile',
                      help="PyTorch modes beside JAX: 'eager', 'compile' "
                      "(torch.compile), both, or '' for none")
  parser.add_argument('--torch_steps', type=int, default=10)
  parser.add_argument('--rounds', type=int, default=1,
                      help='alternate JAX and each PyTorch mode this many '
                      'times (A B A B) and print the ratios of each round')
  args = parser.parse_args()
  if args.cpu_devices:  # before JAX starts
    cpu_devices.use_emulated_devices(args.cpu_devices)
  else:
    cpu_devices.use_default()
  return args


ARGS = _parse_args() if __name__ == '__main__' else None

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import optax  # pylint: disable=g-import-not-at-top,wrong-import-position
from jax.sharding import Mesh, NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top,wrong-import-position

from rdvae.data import sources as data
from rdvae.models import decoders
from rdvae.models import encoders
from rdvae.models import marginals
from rdvae.models import model as model_lib
from rdvae.objectives import losses as objectives

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _timing  # pylint: disable=g-import-not-at-top,wrong-import-position

MFLOP_PER_IMAGE_STEP = 719.6


def forward_mflop_per_image() -> float:
  """Forward MFLOP per image of (-,-,-) (multiply-add = 2), from F.1/F.2."""
  def conv(out_hw, k, cin, cout):
    return 2 * out_hw**2 * k * k * cin * cout
  encoder = (conv(28, 5, 1, 64) + conv(14, 5, 32, 64) + conv(14, 5, 32, 128)
             + conv(7, 5, 64, 128) + conv(1, 7, 64, 512) + 2 * 2 * 256 * 64)
  # Transposed convolutions: input positions x kernel taps x channels.
  decoder = (conv(1, 7, 64, 128) + conv(7, 5, 64, 128) + conv(7, 5, 64, 128)
             + conv(14, 5, 64, 64) + conv(14, 5, 32, 64) + conv(28, 4, 32, 64)
             + conv(28, 5, 32, 1))
  return (encoder + decoder) / 1e6


def load_images(count: int) -> np.ndarray:
  """`count` static binarized MNIST training images, or Bernoulli(0.13) noise."""
  root = pathlib.Path(__file__).resolve().parents[1]
  for path in (root.parent / 'shared' / 'data' / 'binarized_mnist.npz',
               root / 'rdvae' / 'data' / 'binarized_mnist.npz'):
    if path.exists():
      with np.load(path) as data:
        bits = np.unpackbits(data['train'][:count], axis=1)[:, :784]
      return bits.reshape(-1, 28, 28, 1).astype(np.float32)
  rng = np.random.default_rng(0)
  return (rng.random((count, 28, 28, 1)) < 0.13).astype(np.float32)


def build_model(fast: bool) -> model_lib.RDModel:
  return model_lib.RDModel(
      encoders.GaussianEncoder(image_shape=data.IMAGE_SHAPE, fast=fast),
      decoders.DeconvDecoder(image_shape=data.IMAGE_SHAPE, fast=fast),
      marginals.StandardNormal())


def make_train_steps(model, optimizer, objective):
  """(state, images [S, B, ...]) -> (state, losses [S]): S Adam steps."""
  objective_state = objectives.init_state(objectives.hyperparameters())

  def loss(params, images, key):
    terms = model.apply({'params': params}, images, rngs={'sample': key})
    return objectives.loss_fn(objective, terms, objective_state, 0)[0]

  def step(state, images):
    params, opt_state, key = state
    key, sample_key = jax.random.split(key)
    value, grads = jax.value_and_grad(loss)(params, images, sample_key)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state, key), value

  def steps(state, batches):
    return jax.lax.scan(step, state, batches, unroll=True)

  return jax.jit(steps, donate_argnums=0)


def _timed(fn, *args, repeats):
  """Median (wall, process CPU) seconds of `repeats` calls after a warm-up,
  and the cores busy over all of them.

  Process CPU time (all threads) is less sensitive than wall time to other
  processes sharing the cores: on a loaded machine it bounds what the same
  work would take alone (wall >= CPU / cores).
  """
  jax.block_until_ready(fn(*args))
  timer, walls, cpus = _timing.Timer(), [], []
  for _ in range(repeats):
    with timer:
      jax.block_until_ready(fn(*args))
    walls.append(timer.last_wall)
    cpus.append(timer.last_cpu)
  return statistics.median(walls), statistics.median(cpus), timer.cores_busy


def bench_jax(batch: int, steps: int, repeats: int, fast: bool) -> dict:
  model = build_model(fast)
  key = jax.random.key(0)
  images = jnp.asarray(load_images(steps * batch)).reshape(
      steps, batch, 28, 28, 1)
  params = model.init({'params': key, 'sample': key}, images[0])['params']
  optimizer = optax.adam(3e-4)
  train = make_train_steps(model, optimizer, objectives.Objective())
  # The trainer's layout (runtime.parallel.JitLayout): the state replicated,
  # each batch split over the devices, the gradient all-reduced by XLA.
  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  images = jax.device_put(images, NamedSharding(mesh, PartitionSpec(None,
                                                                    'data')))
  params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))

  with _timing.Timer() as compiling:
    compiled = train.lower(
        (params, optimizer.init(params), jax.random.key(1)), images).compile()
  compile_s = compiling.wall
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  # The cost of the program one device runs: its share of the batch.
  xla_mflop = (cost.get('flops', float('nan')) * jax.device_count()
               / (steps * batch) / 1e6)

  state = (params, optimizer.init(params), jax.random.key(1))
  def run(images):
    nonlocal state
    state, losses = compiled(state, images)
    return losses
  train_s, train_cpu_s, cores_busy = _timed(run, images, repeats=repeats)

  evaluate = jax.jit(lambda params, x, key: model.apply(
      {'params': params}, x, rngs={'sample': key}))
  eval_images = images.reshape(-1, 28, 28, 1)[:256]
  eval_s, _, _ = _timed(evaluate, state[0], eval_images, jax.random.key(1),
                        repeats=repeats)
  rate = steps * batch / train_s
  return {'compile_s': compile_s, 'train_images_per_s': rate,
          'train_images_per_cpu_s': steps * batch / train_cpu_s,
          'train_cores_busy': cores_busy,
          'gflop_per_s': rate * MFLOP_PER_IMAGE_STEP / 1e3,
          'xla_mflop_per_image_step': xla_mflop,
          'eval_images_per_s': eval_images.shape[0] / eval_s}


def make_torch_bench(batch: int, mode: str):
  """`time(steps) -> (images/s, images/CPU-s, cores busy)` of the same model
  trained in
  PyTorch (fp32; mode 'eager', or 'compile': the loss under
  `torch.compile`), after two warm-up steps; None without torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  from torch import nn as tnn  # pylint: disable=g-import-not-at-top
  functional = torch.nn.functional

  class Gated(tnn.Module):
    def __init__(self, layer, pad=None, crop=None):
      super().__init__()
      self.layer, self.pad, self.crop = layer, pad, crop

    def forward(self, x):
      if self.pad is not None:
        x = functional.pad(x, self.pad)
      h = self.layer(x)
      if self.crop is not None:
        h = h[..., :self.crop, :self.crop]
      a, b = h.chunk(2, dim=1)
      return a * torch.sigmoid(b)

  # TF 'SAME' for 5x5 stride 2 on an even size pads (1, 2); 4x4 'same'
  # transposed convolution: pad 1 and crop the extra row/column.
  encoder = tnn.Sequential(
      Gated(tnn.Conv2d(1, 64, 5, padding=2)),
      Gated(tnn.Conv2d(32, 64, 5, stride=2), pad=(1, 2, 1, 2)),
      Gated(tnn.Conv2d(32, 128, 5, padding=2)),
      Gated(tnn.Conv2d(64, 128, 5, stride=2), pad=(1, 2, 1, 2)),
      Gated(tnn.Conv2d(64, 512, 7)), tnn.Flatten(), tnn.Linear(256, 128))
  decoder = tnn.Sequential(
      tnn.Unflatten(1, (64, 1, 1)),
      Gated(tnn.ConvTranspose2d(64, 128, 7)),
      Gated(tnn.ConvTranspose2d(64, 128, 5, padding=2)),
      Gated(tnn.ConvTranspose2d(64, 128, 5, 2, padding=2, output_padding=1)),
      Gated(tnn.ConvTranspose2d(64, 64, 5, padding=2)),
      Gated(tnn.ConvTranspose2d(32, 64, 5, 2, padding=2, output_padding=1)),
      Gated(tnn.ConvTranspose2d(32, 64, 4, padding=1), crop=28),
      tnn.Conv2d(32, 1, 5, padding=2))
  params = list(encoder.parameters()) + list(decoder.parameters())
  optimizer = torch.optim.Adam(params, lr=3e-4)
  images = torch.from_numpy(load_images(batch)).permute(0, 3, 1, 2).contiguous()

  def loss_fn(images):
    loc, raw = encoder(2 * images - 1).chunk(2, dim=1)
    scale = functional.softplus(raw) + 1e-5
    z = loc + scale * torch.randn_like(loc)
    rate = (-0.5 * ((z - loc) / scale) ** 2 - torch.log(scale)
            + 0.5 * z ** 2).sum(1)
    logits = decoder(z)
    distortion = functional.binary_cross_entropy_with_logits(
        logits, images, reduction='none').sum((1, 2, 3))
    return (rate + distortion).mean()

  if mode == 'compile':
    loss_fn = torch.compile(loss_fn)
  elif mode != 'eager':
    raise ValueError(f'torch mode {mode!r}: expected eager or compile')

  def step():
    loss = loss_fn(images)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

  for _ in range(2):
    step()

  def time_steps(steps):
    with _timing.Timer() as timed:
      for _ in range(steps):
        step()
    return (steps * batch / timed.wall, steps * batch / timed.cpu,
            timed.cores_busy)

  return time_steps


def main():
  args = ARGS

  print(f'jax {jax.__version__} on {jax.devices()[0].platform}, '
        f'{os.cpu_count()} CPUs, load average {os.getloadavg()}; JAX splits '
        f'each batch over {jax.device_count()} device(s)')
  print(f'FLOP model: {forward_mflop_per_image():.1f} MFLOP forward per image,'
        f' {MFLOP_PER_IMAGE_STEP} MFLOP per training step (3x forward)')
  variants = [('fast', True)] + ([('direct', False)] if args.reference else [])
  torch_modes = [m for m in args.torch.split(',') if m]
  for batch in (int(b) for b in args.batch_sizes.split(',')):
    benches = {m: make_torch_bench(batch, m) for m in torch_modes}
    if any(b is None for b in benches.values()):
      print(f'[torch        ] batch {batch:4d}: PyTorch not installed '
            '(pip install -e ".[benchmarks]")')
      benches = {}
    ratios = {m: [] for m in benches}
    for round_ in range(args.rounds):
      for name, fast in variants:
        r = bench_jax(batch, args.steps_per_dispatch, args.repeats, fast)
        print(f'[jax {name:6s}  ] batch {batch:4d} round {round_}: '
              f'train {r["train_images_per_s"]:7.1f} images/s '
              f'({r["gflop_per_s"]:5.1f} GFLOP/s at {MFLOP_PER_IMAGE_STEP} '
              f'MFLOP/image; XLA counts {r["xla_mflop_per_image_step"]:.1f} '
              f'MFLOP/image), eval {r["eval_images_per_s"]:7.1f} images/s, '
              f'compile {r["compile_s"]:.1f} s '
              f'({args.steps_per_dispatch} steps per dispatch); '
              f'{r["train_images_per_cpu_s"]:.1f} train images per '
              f'CPU-second, cores busy {r["train_cores_busy"]:.2f}',
              flush=True)
        if fast:
          jax_rate = r['train_images_per_s']
      for mode, time_steps in benches.items():
        rate, per_cpu, cores_busy = time_steps(args.torch_steps)
        ratios[mode].append(jax_rate / rate)
        print(f'[torch {mode:7s}] batch {batch:4d} round {round_}: train '
              f'{rate:7.1f} images/s (fp32, '
              f'{rate * MFLOP_PER_IMAGE_STEP / 1e3:5.1f} GFLOP/s); '
              f'{per_cpu:.1f} train images per CPU-second, cores busy '
              f'{cores_busy:.2f}; JAX / torch '
              f'{mode} = {jax_rate / rate:.2f}', flush=True)
    for mode, values in ratios.items():
      print(f'batch {batch}: JAX / torch {mode} per round: '
            + ', '.join(f'{v:.2f}' for v in values)
            + f' (median {statistics.median(values):.2f})', flush=True)
  print(f'load average after: {os.getloadavg()}')


if __name__ == '__main__':
  main()
