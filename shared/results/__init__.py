"""Results tooling: run directories → tables, figures, claim verdicts, README sections and the ledger.

No Snakemake dependency: the workflow calls these through the CLI (``shared/results/cli.py``), and each step reruns
by hand. ``verdict`` holds the one shared rule that turns seeds into ``reproduced`` / ``not reproduced`` /
``inconclusive``.
"""
from shared.results.verdict import MIN_SEEDS, Verdict, judge

__all__ = ["MIN_SEEDS", "Verdict", "judge"]
