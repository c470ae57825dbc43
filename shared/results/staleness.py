"""Committed results older than their config: each run row of ``<results>/<slug>/<profile>/runs.csv`` records the
hash of the run config it trained with (``config_hash``); a row is *stale* when the paper's current ``config.yaml``
resolves the same variant, profile and seed to a different config (or no longer has that variant or profile).
Its numbers then describe a setting the config no longer states, so the ledger says so and the row's profile
needs a re-run (``snakemake results/<slug>/<profile>/claims.csv --config profile=<profile>``)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from shared.config import ConfigError, config_hash, list_papers, load_paper, resolve_paper_run
from shared.results.readme import RUNS, read_csv, trained_runs


def current_hashes(slug: str, variant: str, profile: str, seed: int) -> set[str]:
    """Hashes the current config gives this run; a swept variant named by itself (a run from before its sweep, or
    a best-of-sweep row) accepts any of its grid points'. Raises ConfigError when the variant or profile is gone."""
    cfg = load_paper(slug)
    members = [m for m, v in cfg["sweep_of"].items() if v == variant] or [variant]
    return {config_hash(resolve_paper_run(slug, m, profile, seed)) for m in members}


def stale_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of a runs table (``repro aggregate``'s runs.csv) whose recorded config hash is not the current one,
    with a ``reason``. Best-of-sweep copies (``selected_member`` set) are checked through the member rows."""
    rows = []
    for r in trained_runs(runs).itertuples(index=False):
        recorded = getattr(r, "config_hash", None)
        try:
            expected = current_hashes(r.paper, r.variant, r.profile, int(r.seed))
        except ConfigError as e:
            rows.append((r.paper, r.profile, r.variant, int(r.seed), f"not in the current config ({e})"))
            continue
        if not isinstance(recorded, str) or not recorded:
            rows.append((r.paper, r.profile, r.variant, int(r.seed), "no config hash recorded"))
        elif recorded not in expected:
            rows.append((r.paper, r.profile, r.variant, int(r.seed), "config changed since the run"))
    return pd.DataFrame(rows, columns=["paper", "profile", "variant", "seed", "reason"])


def stale_profiles(results_dir: str | Path) -> pd.DataFrame:
    """One row per ``<results_dir>/<slug>/<profile>/`` with stale runs: paper, profile, stale, runs, first reason.
    Folders of a slug with no paper config are skipped; a cluster folder's rows of other papers are checked there."""
    out = []
    papers = set(list_papers())
    for path in sorted(Path(results_dir).glob(f"*/*/{RUNS}")):
        slug = path.parent.parent.name
        runs = read_csv(path)
        if slug not in papers or not len(runs) or "paper" not in runs.columns:
            continue
        runs = runs[runs["paper"] == slug]
        stale = stale_runs(runs)
        if len(stale):
            out.append((slug, path.parent.name, len(stale), len(trained_runs(runs)), stale["reason"].iloc[0]))
    return pd.DataFrame(out, columns=["paper", "profile", "stale", "runs", "reason"])
