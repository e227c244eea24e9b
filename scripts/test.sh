#!/usr/bin/env bash
# Installs what the tests need (into .venv) and runs the whole test suite.
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -k toy     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec "$PYTHON_BIN" -m pytest "$@"
