"""Shared test set-up: the repository root on sys.path (for `configs.*` and
the tiny stand-in model), paths relative to the repository, and one
persistent compilation cache for the whole suite.

The cache (rdvae/compilation.py) is .pytest_cache/rdvae-jax unless
RDVAE_COMPILATION_CACHE says otherwise ('off' turns it off). It is set in
the environment here, so the pytest-xdist workers and every subprocess a test
starts (experiments.main, tests/parallel_check.py, tests/family_check.py)
share it: a program compiled by one is read back by the others and by the
next run of the suite (delete the directory for a cold start).
"""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
for path in (REPO, TESTS):
  if path not in sys.path:
    sys.path.insert(0, path)

os.environ.setdefault('RDVAE_COMPILATION_CACHE',
                      os.path.join(REPO, '.pytest_cache', 'rdvae-jax'))
from rdvae import compilation  # pylint: disable=g-import-not-at-top,wrong-import-position

compilation.setup()


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: takes more than ~20 s (deselect with -m "not slow")')
