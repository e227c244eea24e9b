"""rdvae/runtime/cpu_devices.py: the default count of CPU devices (one per
core of this process's share), the XLA flags that make them, and the
devices a run uses when the default does not split its batch."""

import pytest

from configs import mnist
from rdvae.models import model as model_lib
from rdvae.runtime import cpu_devices


@pytest.fixture
def fresh(monkeypatch):
  """A process whose JAX has not started, with no device flags set."""
  monkeypatch.setattr(cpu_devices, '_backend_started', lambda: False)
  for name in ('XLA_FLAGS', cpu_devices.ENV, cpu_devices.CHOSEN_ENV,
               'NPROC'):
    monkeypatch.delenv(name, raising=False)
  return monkeypatch


def test_default_is_one_device_per_core_of_the_share(fresh):
  fresh.setattr(cpu_devices.os, 'sched_getaffinity', lambda pid: {0, 1, 2})
  assert cpu_devices.default_count() == 3
  fresh.setenv('NPROC', '1')  # a runner's share under sweep --workers
  assert cpu_devices.default_count() == 1
  fresh.delenv('NPROC')
  fresh.setattr(cpu_devices.os, 'sched_getaffinity',
                lambda pid: set(range(64)))
  assert cpu_devices.default_count() == cpu_devices.MAX_DEFAULT_DEVICES == 8
  fresh.setenv(cpu_devices.ENV, '3')
  assert cpu_devices.default_count() == 3


@pytest.mark.parametrize('value', ['0', '-1', 'two', '1.5'])
def test_a_bad_default_is_named(fresh, value):
  fresh.setenv(cpu_devices.ENV, value)
  with pytest.raises(ValueError, match=f"RDVAE_CPU_DEVICES='{value}'"):
    cpu_devices.use_default()


def test_use_default_sets_the_flags_and_says_so(fresh):
  fresh.setenv('XLA_FLAGS', '--xla_cpu_enable_fast_math=false')
  fresh.setenv('NPROC', '2')
  assert cpu_devices.use_default() == 2
  flags = cpu_devices.os.environ['XLA_FLAGS'].split()
  assert flags[0] == '--xla_cpu_enable_fast_math=false'
  assert '--xla_force_host_platform_device_count=2' in flags
  assert cpu_devices.flagged_count() == 2
  assert cpu_devices.os.environ[cpu_devices.CHOSEN_ENV] == '2'


def test_use_default_keeps_a_count_already_asked_for(fresh):
  fresh.setenv('NPROC', '2')
  fresh.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
  assert cpu_devices.use_default() == 4
  assert cpu_devices.CHOSEN_ENV not in cpu_devices.os.environ
  assert cpu_devices.flagged_count() == 4


def test_use_default_leaves_a_started_backend(fresh):
  fresh.setenv('NPROC', '2')
  fresh.setattr(cpu_devices, '_backend_started', lambda: True)
  assert cpu_devices.use_default() == 1
  assert 'XLA_FLAGS' not in cpu_devices.os.environ


def test_one_device_sets_nothing(fresh):
  fresh.setenv(cpu_devices.ENV, '1')
  assert cpu_devices.use_default() == 1
  assert 'XLA_FLAGS' not in cpu_devices.os.environ


def test_an_asked_count_replaces_the_default(fresh):
  fresh.setenv('NPROC', '2')
  cpu_devices.use_default()
  cpu_devices.use_emulated_devices(4)
  flags = cpu_devices.os.environ['XLA_FLAGS'].split()
  assert [f for f in flags if 'device_count' in f] == [
      '--xla_force_host_platform_device_count=4']
  assert len(flags) == 3  # the count and two collective timeouts, once each
  assert cpu_devices.CHOSEN_ENV not in cpu_devices.os.environ


@pytest.mark.parametrize('chosen, devices, sizes, want', [
    ('2', 2, [64, 64], 2),   # the default splits the batch
    ('2', 2, [63, 64], 1),   # it does not: one device
    ('4', 4, [6, 8], 2),     # the most that divide both
    ('8', 8, [24, 40], 8),
    ('', 4, [6, 8], 4),      # asked for: all of them (the batch is refused)
    ('2', 4, [6, 8], 4),     # another count than the default's
])
def test_usable_count(fresh, chosen, devices, sizes, want):
  if chosen:
    fresh.setenv(cpu_devices.CHOSEN_ENV, chosen)
  assert cpu_devices.usable_count(devices, sizes) == want


@pytest.mark.parametrize('chosen, want', [('2', 1), ('', 2)])
def test_work_that_does_not_split_stays_on_one_default_device(fresh, chosen,
                                                              want):
  # The default gives a VampPrior run one device; a count asked for, all.
  if chosen:
    fresh.setenv(cpu_devices.CHOSEN_ENV, chosen)
  assert cpu_devices.usable_count(2, [64, 64], splits=False) == want


@pytest.mark.parametrize('family', model_lib.FAMILIES)
def test_only_the_vamp_prior_repeats_work_on_every_device(family):
  config = mnist.get_config()
  config.model.family = family
  assert model_lib.splits_over_devices(config) == (family[2] != 'v')
  # A marginal of the user's own is taken to divide.
  assert model_lib.splits_over_devices(config, {'marginal': None})
