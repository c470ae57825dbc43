#!/usr/bin/env bash
# Set up, then run the tiny reproduction of every paper: results/<slug>/tiny/, the paper READMEs and results/LEDGER.md.
# Extra arguments go to snakemake (e.g. `--config profile=cpu`, `-n`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${REPRO_VENV:-$ROOT/.venv}"
cd "$ROOT"
exec "$VENV/bin/snakemake" -c "${REPRO_CORES:-2}" --config profile=tiny "$@"
