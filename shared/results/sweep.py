"""Best grid point per swept variant (shared/config/sweep.py), the sweep table, and metric-vs-hyperparameter plots.

For each swept variant, every member (grid point) gets the mean over seeds of the selection metric; a member with
any missing or non-finite value (a diverged seed) ranks below every complete member, so a learning rate that
diverges on one seed of three is never "best". The best member's runs then stand in for the variant: their rows are
copied into the runs table under the variant's own name, with ``selected_member`` naming the source.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from shared.config.sweep import SWEEP_OF, SWEEP_PARAMS, select_rule, swept_variants
from shared.results import plots, tables

SENSITIVITY = "sweep_sensitivity"  # the per-run column `with_sensitivity` adds
SWEEP_COLUMNS = ["variant", "member", "param", "value", "metric", "mode", "mean", "std", "n", "n_runs",
                 "n_missing", "selected"]


def _values(runs: pd.DataFrame, member: str, metric: str) -> list[float]:
    if metric not in runs.columns:
        return [math.nan] * int((runs["variant"] == member).sum())
    return pd.to_numeric(runs.loc[runs["variant"] == member, metric], errors="coerce").tolist()


def sweep_frame(cfg: dict, runs: pd.DataFrame, members: list[str] | None = None) -> pd.DataFrame:
    """One row per grid point: its selection metric over seeds and whether it is its variant's best. ``members``:
    the grid points the profile runs (``profile_variants``; default all), so a point the profile leaves out is no
    row, while one it runs but has no finished run yet is a row with n = 0."""
    rows, keep = [], None if members is None else set(members)
    for variant in swept_variants(cfg):
        rule = select_rule(cfg, variant)
        members_of = [m for m, v in cfg[SWEEP_OF].items() if v == variant and (keep is None or m in keep)]
        if not members_of:
            continue
        stats = []
        for member in members_of:
            values = _values(runs, member, rule["metric"])
            finite = [x for x in values if math.isfinite(x)]
            mean = sum(finite) / len(finite) if finite else math.nan
            std = pd.Series(finite).std(ddof=1) if len(finite) > 1 else math.nan
            stats.append((member, mean, std, len(finite), len(values)))
        best = _best(stats, rule["mode"])
        for member, mean, std, n, n_runs in stats:
            point = cfg[SWEEP_PARAMS][member]
            param = ", ".join(point)
            value = next(iter(point.values())) if len(point) == 1 else ", ".join(map(str, point.values()))
            rows.append({"variant": variant, "member": member, "param": param, "value": value,
                         "metric": rule["metric"], "mode": rule["mode"], "mean": mean, "std": std, "n": n,
                         "n_runs": n_runs, "n_missing": n_runs - n, "selected": member == best})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def _best(stats: list[tuple], mode: str) -> str | None:
    """Complete members (no missing values, ≥ 1 run) first, then by mean in the rule's direction."""
    ranked = [s for s in stats if s[4] > 0 and s[3] == s[4]] or [s for s in stats if s[3] > 0]
    if not ranked:
        return None
    sign = -1.0 if mode == "max" else 1.0
    return min(ranked, key=lambda s: sign * s[1])[0]


def with_best(runs: pd.DataFrame, sweep: pd.DataFrame) -> pd.DataFrame:
    """``runs`` plus, for each swept variant, its best member's rows renamed to the variant (``selected_member``)."""
    runs = runs.copy()
    runs["selected_member"] = ""
    extra = []
    for _, row in sweep[sweep["selected"]].iterrows():
        part = runs[runs["variant"] == row["member"]].copy()
        part["selected_member"], part["variant"] = row["member"], row["variant"]
        extra.append(part)
    return pd.concat([runs] + extra, ignore_index=True) if extra else runs


def sensitivity(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per swept variant: best and worst grid-point means, their gap (the metric's units), grid points that lost
    seeds to divergence. A small gap means the method is forgiving about its hyperparameter."""
    rows = []
    for variant, part in sweep.groupby("variant", sort=False):
        finite = part[part["n_missing"] == 0]["mean"].dropna()
        rows.append({"variant": variant, "metric": part["metric"].iloc[0],
                     "best": finite.max() if part["mode"].iloc[0] == "max" else finite.min(),
                     "worst": finite.min() if part["mode"].iloc[0] == "max" else finite.max(),
                     "gap": (finite.max() - finite.min()) if len(finite) else math.nan,
                     "points": len(part), "points_with_missing": int((part["n_missing"] > 0).sum())})
    return pd.DataFrame(rows)


def sweep_sensitivity(sweep: pd.DataFrame, runs: pd.DataFrame, init_value: float) -> pd.DataFrame:
    """Per swept variant and seed, the "LR sensitivity" of Wortsman et al. (2023, §3.1, arXiv:2309.14322), for
    whatever the grid sweeps:

        sensitivity = E_η [ min(ℓ(η), ℓ0) − min_η' min(ℓ(η'), ℓ0) ]

    the mean over the grid points η of how much worse than the seed's best point each ends, where ℓ0
    (``init_value``) is the metric at initialization and caps every run: a run that ends worse than ℓ0, or diverged
    (no finite value), counts as ℓ0. For a ``max`` metric the cap and the excess flip sign (max(ℓ, ℓ0), best − ℓ).
    Per seed, as the paper's single-seed curves; a grid point without that seed's run yet is left out (``points``).
    Unlike ``sensitivity``'s best-to-worst gap, a diverged grid point counts, at the cost of the metric at init."""
    rows = []
    for variant, part in sweep.groupby("variant", sort=False):
        metric, mode = part["metric"].iloc[0], part["mode"].iloc[0]
        better = min if mode == "min" else max
        by_seed: dict[int, list[float]] = {}
        for member in part["member"]:
            seeds = runs.loc[runs["variant"] == member, "seed"]  # in the order `_values` returns the values
            for seed, v in zip(seeds, _values(runs, member, metric)):
                by_seed.setdefault(int(seed), []).append(better(v, init_value) if math.isfinite(v) else init_value)
        for seed, capped in sorted(by_seed.items()):
            best = better(capped)
            rows.append({"variant": variant, "seed": seed, SENSITIVITY: sum(abs(c - best) for c in capped)
                         / len(capped), "points": len(capped)})
    return pd.DataFrame(rows, columns=["variant", "seed", SENSITIVITY, "points"])


def with_sensitivity(cfg: dict, runs: pd.DataFrame, sweep: pd.DataFrame) -> pd.DataFrame:
    """``runs`` (after ``with_best``) plus a ``sweep_sensitivity`` column on the rows that stand for a swept variant
    of a benchmark task whose config gives ``init_value`` (the metric at initialization): that seed's sensitivity,
    a per-run metric like any other, so a claim can compare it. Other rows get NaN; without such a task, no column."""
    tasks = [spec for spec in ((cfg.get("benchmark") or {}).get("tasks") or {}).values() if "init_value" in spec]
    if not tasks or not len(sweep):
        return runs
    runs = runs.copy()
    runs[SENSITIVITY] = math.nan
    for spec in tasks:
        part = sweep[sweep["variant"].isin(spec["variants"])]
        for _, r in sweep_sensitivity(part, runs, spec["init_value"]).iterrows():
            at = (runs["variant"] == r["variant"]) & (runs["seed"] == r["seed"])
            runs.loc[at, SENSITIVITY] = r[SENSITIVITY]
    return runs


def sweep_table(sweep: pd.DataFrame) -> str:
    """Markdown: one row per grid point, the selected one in bold."""
    rows = []
    for _, r in sweep.iterrows():
        cell = tables.mean_std(r["mean"], r["std"], r["n"])
        cell += f", {int(r['n_missing'])} missing" if r["n_missing"] else ""
        member = f"**`{r['member']}`** (best)" if r["selected"] else f"`{r['member']}`"
        rows.append([f"`{r['variant']}`", member, f"{r['param']} = {r['value']}",
                     f"{r['metric']} ({r['mode']})", cell])
    return tables.markdown_table(["variant", "grid point", "setting", "selected by", "value over seeds"], rows)


def plot_sweep(sweep: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Selection metric vs the swept value (log x when all positive), one line per variant, one panel per metric;
    the chosen point ringed. Grid points with a diverged seed are drawn hollow at their finite seeds' mean."""
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(sweep["metric"])) or ["none"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part_m = sweep[sweep["metric"] == metric]
        numeric = pd.to_numeric(part_m["value"], errors="coerce")
        groups = list(part_m.groupby("variant", sort=False))
        for i, (variant, part) in enumerate(groups):
            x = pd.to_numeric(part["value"], errors="coerce")
            if x.isna().any():  # multi-key grid points: plot in grid order
                x = pd.Series(range(len(part)), index=part.index)
            style = plots.line_style(i, len(groups))
            ax.errorbar(x, part["mean"], yerr=part["std"].fillna(0), marker="o", ms=4, capsize=2, label=variant,
                        **style)
            hollow = part[part["n_missing"] > 0]
            ax.scatter(x[hollow.index], hollow["mean"], s=60, facecolors="white", edgecolors=style["color"],
                       zorder=3)
            best = part[part["selected"]]
            ax.scatter(x[best.index], best["mean"], s=120, facecolors="none", edgecolors="black", zorder=4)
        if len(numeric.dropna()) == len(numeric) and (numeric > 0).all() and numeric.max() / numeric.min() > 1:
            ax.set_xscale("log")  # learning rates and the like: the grid's own values as ticks
            ticks = sorted(set(numeric))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel(", ".join(dict.fromkeys(part_m["param"])) or "grid point")
        ax.set_title(metric, fontsize=9)
    fig.suptitle(title, fontsize=9)
    plots.place_legends(fig, axes[0])
    return plots.save_figure(fig, path)


def plot_heatmaps(cfg: dict, sweep: pd.DataFrame, path: str | Path, title: str = "") -> Path | None:
    """For variants swept over exactly two keys (e.g. lr x weight decay, Loshchilov & Hutter's Fig. 2): one heat map
    per variant of the selection metric's mean, the best cell boxed; None when no variant has a 2-key grid."""
    import matplotlib.pyplot as plt

    grids = {v: g for v, g in (cfg.get("sweep") or {}).get("grid", {}).items() if len(g) == 2}
    if not grids or not len(sweep):
        return None
    fig, axes = plt.subplots(1, len(grids), figsize=(3.6 * len(grids), 3.2), squeeze=False)
    for ax, (variant, grid) in zip(axes[0], grids.items()):
        (ky, ys), (kx, xs) = list(grid.items())
        part = sweep[sweep["variant"] == variant].set_index("member")
        z = [[math.nan] * len(xs) for _ in ys]
        for member, point in cfg[SWEEP_PARAMS].items():
            if member in part.index and cfg[SWEEP_OF][member] == variant:
                z[ys.index(point[ky])][xs.index(point[kx])] = part.loc[member, "mean"]
        im = ax.imshow(z, origin="lower", cmap="viridis", aspect="auto")
        for i in range(len(ys)):
            for j in range(len(xs)):
                if math.isfinite(z[i][j]):
                    ax.text(j, i, f"{z[i][j]:.3g}", ha="center", va="center", fontsize=7, color="white")
        best = part[part["selected"]]
        if len(best):
            point = cfg[SWEEP_PARAMS][best.index[0]]
            ax.add_patch(plt.Rectangle((xs.index(point[kx]) - 0.5, ys.index(point[ky]) - 0.5), 1, 1, fill=False,
                                       edgecolor="red", linewidth=2))
        ax.set_xticks(range(len(xs)), [f"{x:g}" if isinstance(x, float) else x for x in xs], fontsize=7)
        ax.set_yticks(range(len(ys)), [f"{y:g}" if isinstance(y, float) else y for y in ys], fontsize=7)
        ax.set_xlabel(kx, fontsize=8)
        ax.set_ylabel(ky, fontsize=8)
        ax.set_title(f"{variant}: {part['metric'].iloc[0] if len(part) else ''}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=9)
    return plots.save_figure(fig, path)
