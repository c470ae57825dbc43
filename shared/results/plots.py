"""PNG figures (matplotlib, Agg backend): the claims' metrics per variant with seed dots, and learning curves."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: runs on CI machines and cluster nodes without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def claims_bars(runs: pd.DataFrame, metrics: list[str], variants: list[str], path: str | Path,
                title: str = "") -> Path:
    """One panel per metric: a bar per variant at the mean over seeds, one dot per seed (non-finite values left out)."""
    metrics = metrics or ["wall_time_s"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.2 + 1.1 * len(variants) * len(metrics), 3.4),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, variant in enumerate(variants):
            values = pd.to_numeric(runs.loc[runs["variant"] == variant, metric], errors="coerce") \
                if metric in runs.columns else pd.Series(dtype=float)
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                ax.bar(i, sum(finite) / len(finite), color=f"C{i}", alpha=0.55, width=0.7)
                ax.scatter([i] * len(finite), finite, color="black", s=14, zorder=3)
            if len(finite) < len(values):
                ax.annotate(f"{len(values) - len(finite)} missing", (i, 0), xycoords=("data", "axes fraction"),
                            ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
        _zoom(ax, runs, metric)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def _zoom(ax, runs: pd.DataFrame, metric: str) -> None:
    """Bars start at 0, but close values (accuracies of 0.91 vs 0.92) would be invisible: zoom onto the dots."""
    if metric not in runs.columns:
        return
    values = [v for v in pd.to_numeric(runs[metric], errors="coerce") if math.isfinite(v)]
    if values and min(values) > 0:
        lo, hi = min(values), max(values)
        pad = max(hi - lo, 1e-12) * 0.5
        if lo - pad > 0:
            ax.set_ylim(lo - pad, hi + pad)


def learning_curves(curves: pd.DataFrame, variants: list[str], path: str | Path, title: str = "") -> Path:
    """Train loss (left) and eval loss (right; val split if present, else test) per variant, mean over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, kind in zip(axes, ("train", "eval")):
        sub = curves[curves["kind"] == kind] if len(curves) else curves
        if kind == "eval" and len(sub):  # one split per panel: validation when there is one, else test
            sub = sub[sub["split"] == ("val" if (sub["split"] == "val").any() else sub["split"].iloc[0])]
        for i, variant in enumerate(variants):
            part = sub[sub["variant"] == variant] if len(sub) else sub
            if not len(part):
                continue
            mean = part.groupby("step")["loss"].mean()
            ax.plot(mean.index, mean.values, marker="o" if len(mean) < 20 else None, ms=3,
                    label=f"{variant} (n={part['seed'].nunique()})", **line_style(i, len(variants)))
        split = ", ".join(sorted(set(sub["split"]))) if len(sub) else ""
        ax.set_title(f"{kind} loss" + (f" ({split})" if kind == "eval" and split else ""), fontsize=9)
        ax.set_xlabel("step")
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title, fontsize=9)
    place_legends(fig, axes)
    return save_figure(fig, path)


LEGEND_IN_AXES = 8  # more labelled lines than this: one legend beside the figure instead of one inside each panel


def line_style(i: int, n: int) -> dict:
    """Colour (and dash, past 20) of the i-th of n lines: matplotlib's 10 default colours while they suffice, else
    tab20, so that 15 variants of a benchmark task do not share colours."""
    if n <= 10:
        return {"color": f"C{i}"}
    return {"color": plt.get_cmap("tab20")(i % 20), "linestyle": "-" if i < 20 else "--"}


def place_legends(fig, axes, fontsize: int = 7) -> None:
    """A legend in each panel with data when the lines are few; with more than ``LEGEND_IN_AXES`` distinct labels,
    one legend to the right of the figure (``save_figure`` keeps it in the image)."""
    axes = [ax for ax in axes if ax is not None and ax.has_data()]
    handles = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if not handles:
        return
    if len(handles) <= LEGEND_IN_AXES:
        for ax in axes:
            if ax.get_legend_handles_labels()[1]:
                ax.legend(fontsize=fontsize)
        return
    fig.tight_layout()  # place the panels first; the legend goes outside them
    fig.legend(list(handles.values()), list(handles), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=fontsize, frameon=False)


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not fig.legends:
        fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")  # "tight": a legend beside the panels stays in the image
    plt.close(fig)
    return path
