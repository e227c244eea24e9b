"""The multi-process runs of tests/test_multiprocess.py, also read by
tests/test_parallel.py: configs/mnist.py:smoke in one process with 4
emulated devices, in two processes of 2 devices each (`--multihost` on
loopback), and the two-process run's step-2 checkpoint resumed by one
process. tests/conftest.py builds them once (`multiprocess_runs`); the tests
that read them share a pytest-xdist group, so one worker builds them.
"""

import os
import shutil
import socket
import subprocess
import sys

from rdvae.files import checkpointing
from rdvae.runtime import distributed
from rdvae.files import run_files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUP = 'multiprocess_runs'  # the xdist_group of the tests that read them
TIMEOUT = 900


def command(workdir, devices, *extra):
  return [sys.executable, '-m', 'experiments.main',
          '--config=configs/mnist.py:smoke', '--jax_platforms=cpu',
          f'--cpu_devices={devices}', f'--workdir={workdir}', *extra]


def environment(**variables):
  env = dict(os.environ)
  for name in (distributed.COORDINATOR_ENV, distributed.NUM_PROCESSES_ENV,
               distributed.PROCESS_ID_ENV, 'XLA_FLAGS'):
    env.pop(name, None)
  env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
  env.update({k: str(v) for k, v in variables.items()})
  return env


def _start(command_line, env):
  return subprocess.Popen(command_line, cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _finish(process):
  try:
    out, err = process.communicate(timeout=TIMEOUT)
  except subprocess.TimeoutExpired:
    process.kill()
    out, err = process.communicate()
  assert process.returncode == 0, err[-3000:]
  return out


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def build(root):
  """Runs them under `root`: their workdirs ('one', 'two', 'resumed') and
  stdout ('stdout': 'one', 'two_0', 'two_1', 'resumed')."""
  one, two, resumed = (os.path.join(root, name)
                       for name in ('one', 'two', 'resumed'))
  port = _free_port()
  processes = [_start(command(one, 4), environment())] + [
      _start(command(two, 2, '--multihost'),
             environment(JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
                         JAX_NUM_PROCESSES=2, JAX_PROCESS_ID=i))
      for i in (0, 1)]
  stdout = {name: _finish(p) for name, p in
            zip(('one', 'two_0', 'two_1'), processes)}
  # The state a two-process run killed after its step-2 checkpoint leaves.
  shutil.copytree(two, resumed)
  os.remove(os.path.join(resumed, run_files.RESULTS_FILE))
  shutil.rmtree(os.path.join(resumed, checkpointing.LATEST_DIR, '4'))
  stdout['resumed'] = _finish(_start(command(resumed, 4), environment()))
  return dict(one=one, two=two, resumed=resumed, stdout=stdout)
