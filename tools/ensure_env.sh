#!/usr/bin/env bash
# Creates (once per lock-file hash) the pinned reference environment outside the
# checkout, links it as .venv, and installs this checkout's mlff into it.
# Why outside the checkout: CI clones afresh every run; a venv keyed by the lock
# hash survives between runs on the same machine and is rebuilt when the lock changes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
lock=requirements/lock.txt
py=${MLFF_PYTHON:-python3.11}
command -v "$py" >/dev/null || py=python3
hash=$( (cat "$lock"; "$py" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)
env_root=${MLFF_ENV_ROOT:-$HOME/.cache/mlff}
venv=$env_root/venv-$hash

# pip, without the noise of find-links locations that do not exist on this machine
pipq() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; return "${PIPESTATUS[0]}"; }

if [ ! -f "$venv/.complete" ]; then
    echo "[mlff] creating the reference environment in $venv (first run only; a few minutes)"
    rm -rf "$venv"
    mkdir -p "$env_root"
    "$py" -m venv "$venv"
    pipq "$venv/bin/python" -m pip install -q --upgrade pip
    pipq "$venv/bin/python" -m pip install -q -r "$lock"
    touch "$venv/.complete"
fi

if [ "$(readlink .venv 2>/dev/null)" != "$venv" ]; then
    rm -rf .venv
    ln -s "$venv" .venv
fi

# mlff itself: editable from *this* checkout. Re-done when the venv points at another
# checkout (CI clones elsewhere) or when the build inputs changed since the last install.
stamp_src=$( (cat pyproject.toml setup.py CMakeLists.txt $(find lammps_plugin openmm_plugin python/mlff/ace/native -type f 2>/dev/null | sort) 2>/dev/null || true) | sha256sum | cut -c1-16)
where=$(.venv/bin/python -c 'import mlff, os; print(os.path.dirname(os.path.dirname(os.path.abspath(mlff.__file__))))' 2>/dev/null || true)
if [ "$where" != "$root/python" ] || [ "$(cat build/.install-stamp 2>/dev/null)" != "$stamp_src" ]; then
    echo "[mlff] installing mlff from $root into the environment"
    pipq .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . \
        || { echo "[mlff] installing mlff into the environment failed (see above)" >&2; exit 1; }
    mkdir -p build
    echo "$stamp_src" > build/.install-stamp
fi
