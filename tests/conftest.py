"""Shared test set-up: the repository root on sys.path (for `configs.*` and
the tiny stand-in model) and paths relative to the repository."""

import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
for path in (REPO, TESTS):
  if path not in sys.path:
    sys.path.insert(0, path)


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: takes more than ~20 s (deselect with -m "not slow")')
