"""Run directories → ``runs.csv`` (one row per run), ``summary.csv`` (mean/std/n per variant × metric),
``claims.csv`` (one verdict per claim) and learning curves from ``metrics.jsonl``.

Layout (docs/design.md): ``<runs_dir>/<slug>/<profile>/<variant>/seed<S>/`` holding ``meta.json``,
``metrics.jsonl`` and, once finished, ``final.json``. A run without ``final.json`` is unfinished and skipped.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from shared.config import run_dir
from shared.results import probes
from shared.results.verdict import judge, judge_paired, judge_threshold

log = logging.getLogger(__name__)

# provenance columns of runs.csv, in order; metrics from final.json follow
ID_COLUMNS = ["paper", "profile", "variant", "seed"]
PROVENANCE_COLUMNS = ["step", "diverged", "wall_time_s", "git_commit", "git_dirty", "config_hash", "device",
                      "precision", "dataset", "data_variant", "tokenizer", "start_time", "run_dir"]
SUMMARY_COLUMNS = ["variant", "metric", "mean", "std", "n", "n_runs"]
DERIVED = "derived.json"  # a paper's per-run analysis output, beside final.json
# what a diverged run still has: every other metric (end-of-training evaluations, probe scalars, probe_metrics,
# derived analyses) describes weights from before or after the blow-up, not the end of training, and is missing
KEPT_AFTER_DIVERGENCE = ("diverged", "steps_to_target", "optimizer_state_bytes_per_param")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read JSON: {exc}") from exc


def load_run(path: str | Path, probe_specs: dict | None = None) -> dict:
    """One finished run as a flat row: ids, provenance from ``meta.json``, metrics from ``final.json`` (and a
    paper's ``derived.json``), plus the paper's ``probe_metrics`` (``probe_specs``) from its probe records. A
    diverged run keeps only ``KEPT_AFTER_DIVERGENCE`` and the best-so-far ``best_*`` values; its other metrics are
    NaN, so a claim on them reports the run as missing."""
    path = Path(path)
    final = _read_json(path / "final.json")
    meta = _read_json(path / "meta.json") if (path / "meta.json").is_file() else {}
    data = meta.get("data") or {}
    row = {
        "paper": meta.get("paper", path.parents[2].name),
        "profile": meta.get("profile", path.parents[1].name),
        "variant": meta.get("variant", path.parent.name),
        "seed": int(meta.get("seed", path.name.removeprefix("seed"))),
        "step": final.get("step"),
        "diverged": int(bool(final.get("diverged", 0))),
        "wall_time_s": final.get("wall_time_s", meta.get("wall_time_s")),
        "git_commit": meta.get("git_commit"),
        "git_dirty": meta.get("git_dirty"),
        "config_hash": meta.get("config_hash"),
        "device": meta.get("device"),
        "precision": meta.get("precision"),
        "dataset": data.get("dataset"),
        "data_variant": data.get("variant"),
        "tokenizer": data.get("tokenizer") if isinstance(data.get("tokenizer"), (str, type(None)))
        else json.dumps(data.get("tokenizer"), sort_keys=True),
        "start_time": meta.get("start_time"),
        "run_dir": str(path),
    }
    # metrics of a paper's own per-run analysis (its rules.smk; config `analysis: {derived: true}`)
    derived = _read_json(path / DERIVED)["metrics"] if (path / DERIVED).is_file() else {}
    for name, value in {**(final.get("metrics") or {}), **derived}.items():
        if name not in row or name == "diverged":
            row[name] = math.nan if value is None else value
    for name, value in probes.probe_metrics(path, probe_specs or {}).items():
        row.setdefault(name, value)
    if row["diverged"]:
        for name in set(row) - set(ID_COLUMNS + PROVENANCE_COLUMNS):
            if name not in KEPT_AFTER_DIVERGENCE and not name.startswith("best_"):
                row[name] = math.nan
    return row


def find_runs(runs_dir: str | Path, slug: str, profile: str, variants: list[str], seeds: list[int]) -> list[Path]:
    """Finished run directories of the given variants × seeds; unfinished or absent ones are logged and skipped."""
    found = []
    for variant in variants:
        for seed in seeds:
            path = run_dir(runs_dir, slug, profile, variant, seed)
            if (path / "final.json").is_file():
                found.append(path)
            else:
                log.warning("no finished run at %s (missing final.json); skipped", path)
    return found


def runs_frame(paths: list[Path], probe_specs: dict | None = None) -> pd.DataFrame:
    rows = [load_run(p, probe_specs) for p in paths]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=ID_COLUMNS + PROVENANCE_COLUMNS)
    metrics = [c for c in df.columns if c not in ID_COLUMNS + PROVENANCE_COLUMNS]
    return df[ID_COLUMNS + metrics + PROVENANCE_COLUMNS].sort_values(["variant", "seed"], kind="stable")


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """Numeric result columns: every metric from final.json, then wall time."""
    skip = set(ID_COLUMNS + PROVENANCE_COLUMNS) | {"selected_member"}  # the sweep's source column (sweep.py)
    return [c for c in runs.columns if c not in skip] + ["wall_time_s"]


def summarize(runs: pd.DataFrame, variants: list[str]) -> pd.DataFrame:
    """Long table: per variant (in config order) × metric, mean and sample std over finite values, n, n_runs."""
    rows = []
    for variant in variants:
        sub = runs[runs["variant"] == variant]
        for metric in metric_columns(runs):
            values = pd.to_numeric(sub[metric], errors="coerce")
            finite = values[values.map(lambda x: math.isfinite(x))]
            rows.append({"variant": variant, "metric": metric,
                         "mean": finite.mean() if len(finite) else math.nan,
                         "std": finite.std(ddof=1) if len(finite) > 1 else math.nan,
                         "n": int(len(finite)), "n_runs": int(len(sub))})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _single(runs: pd.DataFrame, column: str) -> str:
    values = sorted({str(v) for v in runs.get(column, pd.Series(dtype=object)).dropna()})
    return ", ".join(values) if values else "unknown"


def claims_frame(paper_cfg: dict, slug: str, profile: str, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per claim that applies to ``profile``: paper's number, both sides' statistics, the verdict."""
    rows = []
    for claim in paper_cfg.get("claims", []):
        if claim.get("profiles") and profile not in claim["profiles"]:
            continue
        metric, a = claim["metric"], claim["compare"]["a"]
        threshold, b_metric = claim["compare"].get("threshold"), claim["compare"].get("b_metric")

        def values(variant, column=metric):
            if column not in runs.columns:
                return [math.nan] * int((runs["variant"] == variant).sum())
            return runs.loc[runs["variant"] == variant, column].tolist()

        margin = claim.get("margin", 0.0)
        if threshold is not None:
            b = f"threshold {threshold:g}"
            v = judge_threshold(values(a), threshold, claim["direction"], margin)
        elif b_metric is not None:  # two metrics of the same runs: row i of each list is run i
            b = f"{a}: {b_metric}"
            v = judge_paired(values(a), values(a, b_metric), claim["direction"], margin)
        elif claim["compare"].get("paired"):  # a's and b's runs of the same seed form a pair
            b = f"{claim['compare']['b']} (paired by seed)"
            a_seed, b_seed = (dict(zip(runs.loc[runs["variant"] == v, "seed"], values(v)))
                              for v in (a, claim["compare"]["b"]))
            seeds = sorted(set(a_seed) | set(b_seed))  # a seed run on one side only counts as a missing value
            v = judge_paired([a_seed.get(s, math.nan) for s in seeds], [b_seed.get(s, math.nan) for s in seeds],
                             claim["direction"], margin)
        else:
            b = claim["compare"]["b"]
            v = judge(values(a), values(b), claim["direction"], margin)
        rows.append({"paper": slug, "profile": profile, "claim": claim["id"], "text": claim["text"],
                     "paper_value": claim.get("paper_value") or "", "metric": metric, "a": a, "b": b,
                     "direction": claim["direction"], "margin": margin, **v.as_dict(),
                     "data_variant": _single(runs, "data_variant"), "tokenizer": _single(runs, "tokenizer"),
                     "precision": _single(runs, "precision"),
                     "device": _single(runs, "device")})
    return pd.DataFrame(rows)


def learning_curves(paths: list[Path]) -> pd.DataFrame:
    """Long table of train and eval losses: variant, seed, kind, split, step, loss (from ``metrics.jsonl``)."""
    rows = []
    for path in paths:
        row = load_run(path)
        file = path / "metrics.jsonl"
        if not file.is_file():
            continue
        for line in file.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("kind") in ("train", "eval") and rec.get("loss") is not None:
                rows.append({"variant": row["variant"], "seed": row["seed"], "kind": rec["kind"],
                             "split": rec.get("split", "train"), "step": int(rec["step"]),
                             "loss": float(rec["loss"])})
    return pd.DataFrame(rows, columns=["variant", "seed", "kind", "split", "step", "loss"])
