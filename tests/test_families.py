"""The paper's twelve families, (encoder, decoder, marginal) in
{-,+} x {-,+} x {-,+,v}, on tiny widths: one step of the real training loop
and one evaluation of the real evaluation loop, jit-compiled on one device and
on the data-parallel path over two devices (batch sharded, gradients
all-reduced by XLA), with finite R, D and IWAE, the two runs agreeing, and the
exact relations between the figures.

Two devices on the CPU need XLA_FLAGS before JAX starts, so the families run
in subprocesses (tests/family_check.py), four to a process: each process
starts JAX once for its group (about 5 s), and the group's tests share a
pytest-xdist worker, so the process runs once. The pmap wrapper runs the
same step body; it is compared with the jit paths in tests/test_parallel.py.
"""

import functools
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from configs import mnist
from rdvae.data import sources as data
from rdvae.models import model as model_lib

HERE = os.path.dirname(os.path.abspath(__file__))
FAMILIES = model_lib.FAMILIES
BETA = 0.5  # family_check.BETA
# Three processes of four families, each with two PixelCNN++ decoders (the
# costly ones) and two simple ones.
GROUPS = (('---', '-+-', '+-+', '++v'), ('--+', '-++', '+-v', '++-'),
          ('--v', '-+v', '+--', '+++'))


@functools.lru_cache(maxsize=None)
def _group_reports(group: tuple[str, ...]) -> dict:
  out = subprocess.run(
      [sys.executable, os.path.join(HERE, 'family_check.py'), *group],
      capture_output=True, text=True, timeout=1800, check=False,
      cwd=os.path.dirname(HERE))
  assert out.returncode == 0, out.stderr[-3000:]
  reports = [json.loads(line) for line in out.stdout.splitlines()
             if line.startswith('{')]
  return {r['family']: r for r in reports}


def _report(family: str) -> dict:
  group, = (g for g in GROUPS if family in g)
  return _group_reports(group)[family]


def test_groups_hold_every_family_once():
  assert sorted(f for g in GROUPS for f in g) == sorted(FAMILIES)


def test_every_family_is_registered():
  assert len(FAMILIES) == 12
  config = mnist.get_config()
  for family in FAMILIES:
    config.model.family = family
    model_lib.validate(config, data.IMAGE_SHAPE)


@pytest.mark.parametrize('family', [
    pytest.param(f, marks=pytest.mark.xdist_group(f'family_check_{i}'))
    for i, g in enumerate(GROUPS) for f in g
], ids=[f'family{f}' for g in GROUPS for f in g])
def test_family_trains_and_evaluates_on_one_and_two_devices(family):
  report = _report(family)
  assert 'error' not in report, report['error']
  assert report['family'] == family
  assert report['devices'] == 2
  one, two = report['one_device'], report['two_devices']
  for run in (one, two):
    metrics, sums = run['metrics'], run['sums']
    assert run['step'] == 1
    for key in ('rate', 'distortion', 'loss'):
      assert math.isfinite(metrics[key]), key
    np.testing.assert_allclose(
        metrics['loss'], metrics['distortion'] + BETA * metrics['rate'],
        rtol=1e-6)
    # Every component was trained (a MADE's hidden layers wait one step: its
    # output layer starts at zero so that every flow starts as the identity).
    trained = {'encoder', 'decoder'} | ({'marginal'} if family[2] != '-'
                                        else set())  # N(0, I) has none
    assert set(run['moved']) == trained
    assert all(run['moved'].values()), run['moved']
    # Three real images and one masked pad.
    assert sums['count'] == 3.0
    for key in ('rate', 'distortion', 'elbo', 'iwae'):
      assert math.isfinite(sums[key]), key
    np.testing.assert_allclose(sums['elbo'], -(sums['rate'] + sums['distortion']),
                               rtol=1e-5)
    # D of a barely trained decoder is near 784 log 2 nats per image.
    assert 0 < sums['distortion'] / 3 < 784 * math.log(2) * 1.5
  # Same global batch and per-example keys on both layouts: only the order of
  # floating-point reductions differs.
  for key in ('rate', 'distortion', 'loss', 'grad_norm'):
    np.testing.assert_allclose(two['metrics'][key], one['metrics'][key],
                               rtol=1e-5, atol=1e-4, err_msg=key)
  for key in ('rate', 'distortion', 'elbo', 'iwae'):
    np.testing.assert_allclose(two['sums'][key], one['sums'][key],
                               rtol=1e-5, atol=1e-3, err_msg=key)
  # Adam's first step moves each parameter by about lr * sign(g) (lr 3e-4),
  # so an element whose gradient is at rounding level may differ by up to a
  # step; the gradient itself is compared through grad_norm above.
  assert report['max_param_diff'] < 1e-4
