"""Stale results (shared/results/staleness.py): a run row whose recorded config hash is not what the paper's current
config resolves to is flagged, in the ledger and the paper README; the repository's committed results are current."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from shared.config import config_hash, load_paper, resolve_paper_run
from shared.results import ledger, readme, staleness

from test_results import PAPER, make_run, _aggregate

SWEPT = dict(PAPER, variants={"relu": {"overrides": {}}, "mish": {"overrides": {"model": {"kwargs": {"act": "mish"}}}}},
             sweep={"select": {"metric": "test_accuracy", "mode": "max"},
                           "grid": {"relu": {"optimizer.lr": [0.1, 0.3]}}})


@pytest.fixture
def toy_paper(tmp_path, monkeypatch):
    (tmp_path / "papers" / "toy").mkdir(parents=True)
    (tmp_path / "papers" / "toy" / "config.yaml").write_text(yaml.safe_dump(SWEPT))
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path / "papers"))
    return "toy"


def _row(variant, seed, h, member=None):
    return {"paper": "toy", "profile": "tiny", "variant": variant, "seed": seed, "config_hash": h,
            "selected_member": member}


def test_stale_runs_flags_changed_missing_and_unknown(toy_paper):
    current = {v: config_hash(resolve_paper_run("toy", v, "tiny", 0)) for v in ("mish", "relu.lr0.1", "relu.lr0.3")}
    assert len(set(current.values())) == 3  # the grid point's lr is in the hash
    runs = pd.DataFrame([
        _row("mish", 0, current["mish"]),                   # current
        _row("mish", 1, current["mish"]),                   # seed 1 resolves to another config: stale
        _row("relu.lr0.1", 0, current["relu.lr0.3"]),       # another grid point's config: stale
        _row("relu.lr0.3", 0, current["relu.lr0.3"]),       # current
        _row("relu", 0, current["relu.lr0.1"]),             # the swept name (a run from before the sweep): current
        _row("relu", 0, "0" * 64, member="relu.lr0.3"),     # a best-of-sweep copy: checked through its member row
        _row("gelu", 0, current["mish"]),                   # no such variant any more
        _row("mish", 2, float("nan")),                      # no hash recorded
    ])
    stale = staleness.stale_runs(runs)
    assert list(zip(stale["variant"], stale["seed"])) == [("mish", 1), ("relu.lr0.1", 0), ("gelu", 0), ("mish", 2)]
    reasons = list(stale["reason"])
    assert reasons[0] == reasons[1] == "config changed since the run"
    assert reasons[2].startswith("not in the current config") and "gelu" in reasons[2]
    assert reasons[3] == "no config hash recorded"


def test_ledger_and_readme_mark_stale_profiles_until_rerun(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    for seed in range(3):  # make_run records a made-up config hash: every run is stale
        make_run(runs_dir, "toy", "tiny", "mish", seed, 0.92)
        make_run(runs_dir, "toy", "tiny", "relu", seed, 0.90)
    out = _aggregate(tmp_path, monkeypatch, runs_dir, "tiny")
    results, readme_path = tmp_path / "results", tmp_path / "papers" / "toy" / "README.md"
    stale = staleness.stale_profiles(results)
    assert stale[["paper", "profile", "stale", "runs"]].values.tolist() == [["toy", "tiny", 6, 6]]
    text = ledger.render_ledger(results, tmp_path / "papers", results / "LEDGER.md")
    assert text.count("`tiny` (stale)") == 2 and "**Stale results.**" in text
    assert "re-run with `snakemake results/toy/tiny/claims.csv --config profile=tiny`" in text
    readme.update_readme("toy", PAPER, results, readme_path)
    assert "**Stale:** 6 of 6 runs" in readme_path.read_text()

    runs = pd.read_csv(out / readme.RUNS)  # as if re-run: the hashes the config gives now
    runs["config_hash"] = [config_hash(resolve_paper_run("toy", v, "tiny", int(s)))
                           for v, s in zip(runs["variant"], runs["seed"])]
    runs.to_csv(out / readme.RUNS, index=False)
    assert staleness.stale_profiles(results).empty
    text = ledger.render_ledger(results, tmp_path / "papers", results / "LEDGER.md")
    assert "(stale)" not in text and "Stale results" not in text
    readme.update_readme("toy", PAPER, results, readme_path)
    assert "Stale" not in readme_path.read_text()


def test_committed_results_match_the_current_configs():
    """Every committed run was trained with the config its paper states now: a config edit that changes a
    profile's runs needs that profile re-run (or a new profile) in the same change."""
    stale = staleness.stale_profiles(Path(__file__).resolve().parents[1] / "results")
    assert stale.empty, "stale results (re-run these profiles):\n" + stale.to_string(index=False)


def test_committed_tables_carry_the_current_descriptions():
    """Each committed table.md states its profile's description as the config has it now (`repro readme` refreshes
    them after a description edit): no table still says "not run yet" or an old estimate next to real numbers."""
    root = Path(__file__).resolve().parents[1]
    stale = []
    for table in sorted((root / "results").glob("*/*/table.md")):
        slug, profile = table.parts[-3], table.parts[-2]
        if not (root / "papers" / slug / "config.yaml").is_file():
            continue  # a cluster or benchmark table, not a paper profile's
        spec = load_paper(slug)["profiles"].get(profile)
        text = table.read_text()
        if spec is not None and readme.table_with_description(text, readme.profile_description(spec)) != text:
            stale.append(f"{slug}/{profile}")
    assert not stale, f"run `repro readme SLUG` for: {', '.join(stale)}"
