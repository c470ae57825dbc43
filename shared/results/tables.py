"""Markdown tables for ``table.md``, the paper READMEs and the ledger; numbers as mean ± std (n)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only in annotations: this module does not need pandas at run time
    import pandas as pd


def fmt(x, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; missing → "–"."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "–"
    if math.isnan(x):
        return "–"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.{digits}g}"


def mean_std(mean, std, n) -> str:
    if n == 0 or (isinstance(mean, float) and math.isnan(mean)):
        return f"– (n={int(n)})"
    spread = "" if std is None or (isinstance(std, float) and math.isnan(std)) else f" ± {fmt(std, 2)}"
    return f"{fmt(mean)}{spread} (n={int(n)})"


def values_mean_std(values) -> str:
    """Per-seed values as "mean ± sample std" (4 and 2 significant digits; the mean alone for one value), over the
    finite ones; "–" if none is finite. For the papers' own analysis sections (a list of values, not a summary)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.4g} ± {v.std(ddof=1):.2g}" if len(v) > 1 else f"{v.mean():.4g}"


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table; pipes and newlines inside cells are escaped."""
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_table(summary: pd.DataFrame, metrics: list[str] | None = None) -> str:
    """Variants as rows, metrics as columns, each cell "mean ± std (n=...)"."""
    if metrics is None:
        metrics = list(dict.fromkeys(summary["metric"]))
    variants = list(dict.fromkeys(summary["variant"]))
    rows = []
    for variant in variants:
        row = [f"`{variant}`"]
        for metric in metrics:
            hit = summary[(summary["variant"] == variant) & (summary["metric"] == metric)]
            row.append(mean_std(*hit.iloc[0][["mean", "std", "n"]]) if len(hit) else "–")
        rows.append(row)
    return markdown_table(["variant"] + metrics, rows)


def claims_table(claims: pd.DataFrame, with_profile: bool = False) -> str:
    """One row per claim: comparison, both sides, signed effect with its 95% CI, verdict and reason."""
    headers = (["profile"] if with_profile else []) + [
        "claim", "metric", "a", "b", "mean a", "mean b", "effect (95% CI)", "p", "verdict"]
    rows = []
    for _, c in claims.iterrows():
        direction = ">" if c["direction"] == "greater" else "<"
        margin = f" by ≥ {fmt(c['margin'])}" if float(c.get("margin") or 0) else ""
        rows.append(([f"`{c['profile']}`"] if with_profile else []) + [
            f"`{c['claim']}`", f"{c['metric']} ({direction}{margin})", f"`{c['a']}`", f"`{c['b']}`",
            side_stats(c, "a"), side_stats(c, "b"),
            effect_ci(c), fmt(c["p_value"], 2), f"**{c['verdict']}**"])
    return markdown_table(headers, rows)


def side_stats(c, side: str) -> str:
    """mean ± std (n=finite values) of one side of a claims row, noting values that were missing."""
    if side == "b" and str(c["b"]).startswith("threshold"):
        return fmt(c["mean_b"]) + " (fixed)"
    missing = int(c.get(f"missing_{side}", 0) or 0)
    text = mean_std(c[f"mean_{side}"], c[f"std_{side}"], int(c[f"n_{side}"]) - missing)
    return text + (f", {missing} missing" if missing else "")


def effect_ci(c) -> str:
    if isinstance(c["effect"], float) and math.isnan(c["effect"]):
        return "–"
    if isinstance(c["ci_low"], float) and math.isnan(c["ci_low"]):
        return fmt(c["effect"])
    return f"{fmt(c['effect'])} [{fmt(c['ci_low'])}, {fmt(c['ci_high'])}]"
