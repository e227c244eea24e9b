r"""Which settings XLA:CPU sizes its thread pool by, measured.

  python benchmarks/xla_cpu_threads.py

Runs a convolution (batch 64, 28x28x32 -> 64 channels, 3x3, jitted) in a
fresh process under each setting below, then counts the process's threads
by name (/proc/self/task/*/comm; XLA:CPU's intra-op pool is the
`tf_XLAEigen` threads) and prints the cores that process kept busy while
it ran the convolution (its CPU seconds per wall second,
benchmarks/_timing.py):

  default                          nothing set
  NPROC=1                          XLA's thread-pool size (what
                                   `experiments.sweep --workers` sets)
  affinity 1 core                  os.sched_setaffinity to one core
  --xla_cpu_multi_thread_eigen=false   the XLA flag of that name

Linux only (/proc, affinity masks). Timings depend on the machine's load;
the load average is printed with them.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

_PROBE = r'''
import collections, json, os, sys, time
if sys.argv[1] == 'affinity':
  os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import jax, jax.numpy as jnp
x = jnp.ones((64, 28, 28, 32)); w = jnp.ones((3, 3, 32, 64))
conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')).sum())
conv(x, w).block_until_ready()
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(int(sys.argv[2])):
  conv(x, w).block_until_ready()
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
names = collections.Counter()
for tid in os.listdir('/proc/self/task'):
  with open(f'/proc/self/task/{tid}/comm') as f:
    names[f.read().strip().rstrip('0123456789_-')] += 1
print(json.dumps({'threads': dict(names), 'wall': wall, 'cpu': cpu}))
'''

SETTINGS = {
    'default': ({}, 'none'),
    'NPROC=1': ({'NPROC': '1'}, 'none'),
    'affinity 1 core': ({}, 'affinity'),
    '--xla_cpu_multi_thread_eigen=false': (
        {'XLA_FLAGS': '--xla_cpu_multi_thread_eigen=false'}, 'none'),
}


def main() -> None:
  calls = int(sys.argv[1]) if len(sys.argv) > 1 else 100
  print(f'{os.cpu_count()} CPUs, {calls} calls a setting; load average '
        f'{os.getloadavg()}', flush=True)
  for name, (variables, how) in SETTINGS.items():
    env = dict(os.environ, JAX_PLATFORMS='cpu', **variables)
    if 'NPROC' not in variables:  # a value set outside would mislead
      env.pop('NPROC', None)
    out = subprocess.run([sys.executable, '-c', _PROBE, how, str(calls)],
                         cwd=REPO, env=env, capture_output=True, text=True,
                         check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    threads = probe['threads']
    print(f'{name:36s} tf_XLAEigen threads {threads.get("tf_XLAEigen", 0)}, '
          f'all threads {sum(threads.values()):3d}; {probe["wall"]:6.2f} s, '
          f'cores busy {probe["cpu"] / probe["wall"]:.2f}', flush=True)
  print(f'load average after {os.getloadavg()}')


if __name__ == '__main__':
  main()
