"""Tests of what a user meets first: `rdvae.__version__` and the --help of
experiments/main.py."""

import os
import subprocess
import sys
from importlib import metadata

import rdvae

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_is_the_installed_package_s():
  try:
    expected = metadata.version('rdvae')
  except metadata.PackageNotFoundError:
    expected = '0+unknown'
  assert rdvae.__version__ == expected
  assert rdvae.__version__[0].isdigit()


def test_help_points_to_where_config_keys_are_documented():
  out = subprocess.run([sys.executable, '-m', 'experiments.main', '--help'],
                       cwd=REPO, capture_output=True, text=True, timeout=120,
                       check=False)  # absl's --help exits with 1
  out = out.stdout + out.stderr  # absl writes the usage to stderr
  assert 'configs/default.py' in out and 'BUILD.md' in out
  assert '--config.<section>.<key>=<value>' in out
