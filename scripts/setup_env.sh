#!/usr/bin/env bash
# Creates .venv (if missing) and installs rdvae into it with pinned versions.
# Sourced by the other scripts; needs only Python >= 3.10 with venv and pip.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RDVAE_VENV:-$repo_root/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
"$venv/bin/python" -m pip install --quiet -c "$repo_root/constraints.txt" -e "$repo_root[${RDVAE_EXTRAS:-test}]"
PYTHON_BIN="$venv/bin/python"
export PYTHON_BIN
