#!/usr/bin/env bash
# Set up, then run the whole test suite. Fails if no test was collected (pytest exit 5).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${REPRO_VENV:-$ROOT/.venv}"
cd "$ROOT"
set +e
"$VENV/bin/python" -m pytest "$@"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "[test] pytest collected no tests: failing on purpose" >&2
    exit 1
fi
exit $rc
