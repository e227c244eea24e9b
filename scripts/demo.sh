#!/usr/bin/env bash
# Installs rdvae (into .venv) and runs the main job: the paper's toy experiment
# (Fig. 2), computed exactly. Prints its table and writes its figures to
# runs/toy (or the directory given as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec "$PYTHON_BIN" -m experiments.toy_report --workdir="${1:-runs/toy}"
