#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the pinned dependencies.
# Idempotent: re-installs only when pyproject.toml changed. Override the location with REPRO_VENV.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${REPRO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"repro needs Python 3.11, found {sys.version.split()[0]}"'
STAMP="$VENV/.repro-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "[setup] creating virtual environment in $VENV" >&2
    "$PY" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
    echo "[setup] installing pinned dependencies (first time: a few minutes)" >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
    echo "$WANT" > "$STAMP"
fi
