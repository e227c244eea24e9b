#!/usr/bin/env bash
# Installs what the tests need (into .venv) and runs the whole test suite.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k toy     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
# One pytest-xdist worker per core (RDVAE_TEST_WORKERS to change; 0 runs in
# this process); tests marked xdist_group share a worker. The 25 slowest
# tests are listed at the end.
exec "$PYTHON_BIN" -m pytest -n "${RDVAE_TEST_WORKERS:-auto}" --dist loadgroup \
  --durations=25 "$@"
