#!/usr/bin/env bash
# Creates .venv (if missing) and installs rdvae into it with pinned versions.
# Sourced by the other scripts; needs only Python >= 3.10 with venv and pip.
# The install is skipped when pyproject.toml, constraints.txt, the extras
# (RDVAE_EXTRAS, default test; e.g. RDVAE_EXTRAS=test,tensorboard) and the
# checkout are those of the last install into this venv.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RDVAE_VENV:-$repo_root/.venv}"
extras="${RDVAE_EXTRAS:-test}"
if [ ! -x "$venv/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
stamp_file="$venv/.rdvae-install"
stamp="$(cat "$repo_root/pyproject.toml" "$repo_root/constraints.txt" \
  | cksum | tr " " -) $extras $repo_root"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp" ] \
    || ! "$venv/bin/python" -c 'import rdvae' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet -c "$repo_root/constraints.txt" \
    -e "$repo_root[$extras]"
  echo "$stamp" > "$stamp_file"
fi
PYTHON_BIN="$venv/bin/python"
export PYTHON_BIN
