#!/usr/bin/env bash
# Set up, then run the tiny reproduction of every paper: results/<slug>/tiny/, the paper READMEs and results/LEDGER.md.
# `--forcerun run` retrains every run even though results/ holds committed tables (plain `snakemake` would keep them);
# a run whose finished checkpoint is still in runs/ only re-evaluates it (same seed, same config: same numbers).
# Extra arguments go to snakemake (e.g. `--config profile=smoke`, `-n`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${REPRO_VENV:-$ROOT/.venv}"
cd "$ROOT"
exec "$VENV/bin/snakemake" -c "${REPRO_CORES:-2}" --config profile=tiny --forcerun run "$@"
