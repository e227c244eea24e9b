"""Shared test set-up: the repository root on sys.path (for `configs.*` and
the tiny stand-in model), paths relative to the repository, and one
persistent compilation cache for the whole suite.

The cache (rdvae/runtime/compilation.py) is rdvae's default one, the user's
$XDG_CACHE_HOME/rdvae/jax (~/.cache/rdvae/jax), unless
RDVAE_COMPILATION_CACHE says otherwise ('off' turns it off; a new empty
directory gives a cold start). It is set in the environment here, so the
pytest-xdist workers and every subprocess a test starts (experiments.main,
tests/parallel_check.py, tests/family_check.py) share it: a program compiled
by one is read back by the others and by every later run of the suite, in
this clone or another one. Entries are keyed by the program, its compile
options, the devices and the JAX/XLA versions, so a changed program is
compiled again and never read stale. Where the user cache cannot be
created, the suite keeps its cache in .pytest_cache/rdvae-jax.
"""

import os
import sys
import warnings

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, 'tests')
for path in (REPO, TESTS):
  if path not in sys.path:
    sys.path.insert(0, path)

from experiments import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.runtime import compilation  # pylint: disable=g-import-not-at-top,wrong-import-position
from rdvae.runtime import cpu_devices  # pylint: disable=g-import-not-at-top,wrong-import-position


def _suite_cache() -> str:
  """rdvae's default cache directory, or one in the clone if it is not
  writable."""
  path = compilation.default_path()
  try:
    os.makedirs(path, exist_ok=True)
    if os.access(path, os.W_OK):
      return path
  except OSError:
    pass
  return os.path.join(REPO, '.pytest_cache', 'rdvae-jax')


# The suite's workers collect garbage as the commands do (`cli.collect_less`).
cli.collect_less()

if compilation.ENV not in os.environ:
  os.environ[compilation.ENV] = _suite_cache()
compilation.setup()

# One CPU device for every command a test starts, unless it asks for more
# (`--cpu_devices`, or its own environment): the suite's workers already
# fill the cores, and runs compared across processes compare one layout.
# tests/test_parallel.py runs the commands' default layout itself.
os.environ.setdefault(cpu_devices.ENV, '1')


@pytest.fixture(scope='session')
def whole_smoke_run(tmp_path_factory):
  """The workdir of the undisturbed smoke run (tests/reference_run.py)."""
  import reference_run  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('whole') / 'run')
  out = reference_run.run(workdir)
  assert out.returncode == 0, out.stderr
  return workdir


@pytest.fixture(scope='session')
def multiprocess_runs(tmp_path_factory):
  """The one-process, two-process and resumed smoke runs
  (tests/multiprocess_runs.py)."""
  import multiprocess_runs as runs  # pylint: disable=g-import-not-at-top
  return runs.build(str(tmp_path_factory.mktemp('multiprocess')))


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'slow: takes more than ~20 s (deselect with -m "not slow")')


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
  """Warns when pytest-xdist's loadgroup ignores the xdist_group marks.

  The expensive shared fixtures (the multi-process runs, the 4-device check,
  the killed runs) are session fixtures whose tests carry one xdist_group, so
  that one worker builds each. pytest-xdist marks a grouped test by a suffix
  of its node id; pytest 9.2 no longer lets it (pytest-xdist#1386), and each
  worker then builds every fixture again. Nothing fails; the suite is slower.
  """
  if not getattr(config.option, 'loadgroup', False):
    return
  lost = [item.nodeid for item in items
          if item.get_closest_marker('xdist_group') and '@' not in item.nodeid]
  if lost:
    warnings.warn(pytest.PytestWarning(
        f'pytest-xdist ignores the xdist_group of {len(lost)} tests (e.g. '
        f'{lost[0]}) with pytest {pytest.__version__}: their shared fixtures '
        'are built once per worker. Install the pinned versions '
        '(constraints.txt).'))
