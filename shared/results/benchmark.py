"""A benchmark grid's report (a paper config's ``benchmark`` block): per task, every method at its best swept
hyperparameter, side by side.

Columns (``benchmark.csv`` / ``benchmark.md``), for each task and variant (its best grid point when swept):

- ``metric``: the sweep's selection metric, mean ± std over seeds.
- ``sensitivity_gap``: best minus worst grid-point mean of that metric (0 when unswept), and how many grid points
  lost a seed to divergence.
- ``sweep_sensitivity`` (only for a task with ``init_value``, the metric at initialization): the "LR sensitivity" of
  Wortsman et al. (2023, §3.1), the mean over grid points of how much worse than the seed's best point each ends, a
  diverged run or one that ends worse than at initialization counting as ``init_value``; mean ± std over seeds
  (``sweep.sweep_sensitivity``; the runs table carries it per seed, see ``sweep.with_sensitivity``).
- ``steps_to_baseline``: first evaluation step at which the eval loss (val split if any, else test) is at or below the
  baseline variant's final eval loss (mean over its seeds), averaged over seeds; missing when any seed never gets
  there (``reached`` says how many did). Resolution is the profile's ``train.eval_every``.
- ``time_per_step_rel``: mean wall time per step divided by the time-reference variant's (measured in the same
  workflow on the same machine; includes evaluation and data-dependent init, so it is an upper bound on the
  optimizer's own overhead).
- ``state_bytes_per_param``: ``optimizer_state_bytes_per_param`` from ``final.json`` (tensors in the optimizer's
  state, bytes per trainable parameter).
- one column per name in ``benchmark.columns`` (optional): any per-run metric, e.g. a ``probe_metrics`` entry such
  as the largest attention logit, as mean ± std over the seeds of the reported grid point (``<name>``,
  ``<name>_std``, ``<name>_n`` in the CSV).

A task none of whose variants ran at the profile (one whose ``variants:`` list leaves it out) gets no rows and no
figures, and a variant that did not run gets no row; a profile that runs no task gets a header-only
``benchmark.csv`` and a one-line ``benchmark.md`` that says so.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from shared.config.sweep import select_rule
from shared.results import plots, tables
from shared.results.sweep import SENSITIVITY, plot_sweep, sensitivity

STATE_METRIC = "optimizer_state_bytes_per_param"


# benchmark.csv's columns before any ``benchmark.columns`` (an empty frame still gets its header)
COLUMNS = ["task", "variant", "selected_member", "metric", "mean", "std", "n", "sensitivity_gap", "grid_points",
           "grid_points_with_missing", "target_loss", "steps_to_baseline", "reached", "time_per_step_rel",
           "state_bytes_per_param", "baseline", "time_reference"]


def _member(runs: pd.DataFrame, variant: str) -> str:
    part = runs[runs["variant"] == variant]
    chosen = part["selected_member"].iloc[0] if "selected_member" in part and len(part) else ""
    return chosen or variant


def _mean(values) -> tuple[float, float, int]:
    finite = [float(v) for v in pd.to_numeric(pd.Series(values), errors="coerce") if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan, 0
    s = pd.Series(finite)
    return float(s.mean()), float(s.std(ddof=1)) if len(s) > 1 else math.nan, len(s)


def eval_split(curves: pd.DataFrame) -> str:
    evals = curves[curves["kind"] == "eval"]
    return "val" if (evals["split"] == "val").any() else "test"


def benchmark_frame(cfg: dict, runs: pd.DataFrame, sweep: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per task × variant (module docstring). ``curves`` from ``aggregate.learning_curves`` (member names)."""
    sens = sensitivity(sweep).set_index("variant") if len(sweep) else pd.DataFrame()
    rows = []
    for task, spec in cfg["benchmark"]["tasks"].items():
        if not runs["variant"].isin(spec["variants"]).any():
            continue  # a task none of whose variants this profile runs (its `variants:` list) has no row
        # each task's own eval split (an LM task has val, a CIFAR task only test)
        task_curves = curves[curves["variant"].isin([_member(runs, v) for v in spec["variants"]])] \
            if len(curves) else curves
        split = eval_split(task_curves) if len(task_curves) else "test"
        evals = task_curves[(task_curves["kind"] == "eval") & (task_curves["split"] == split)] \
            if len(task_curves) else task_curves
        base = runs[runs["variant"] == spec["baseline"]]
        target, _, _ = _mean(base.get(f"{split}_loss", pd.Series(dtype=float)))
        ref = runs[runs["variant"] == spec["time_reference"]]
        ref_time, _, _ = _mean(ref["wall_time_s"] / ref["step"]) if len(ref) else (math.nan, 0, 0)
        for variant in spec["variants"]:
            part = runs[runs["variant"] == variant]
            if not len(part):
                continue  # a variant this profile does not run (its `variants:` list) has no row either
            rule = select_rule(cfg, variant) or (cfg.get("sweep") or {}).get("select") or {"metric": f"{split}_loss"}
            mean, std, n = _mean(part.get(rule["metric"], pd.Series(dtype=float)))
            member = _member(runs, variant)
            steps, reached = [], 0
            for seed in sorted(part["seed"]):
                c = evals[(evals["variant"] == member) & (evals["seed"] == seed)].sort_values("step")
                hit = c[c["loss"] <= target] if math.isfinite(target) else c.iloc[0:0]
                if len(hit):
                    reached += 1
                    steps.append(int(hit["step"].iloc[0]))
            time_rel, _, _ = _mean(part["wall_time_s"] / part["step"]) if len(part) else (math.nan, 0, 0)
            state, _, _ = _mean(part.get(STATE_METRIC, pd.Series(dtype=float)))
            s = sens.loc[variant] if variant in sens.index else None
            extra = {}
            if "init_value" in spec:
                extra[SENSITIVITY], extra[f"{SENSITIVITY}_std"], extra[f"{SENSITIVITY}_n"] = _mean(
                    part.get(SENSITIVITY, pd.Series(dtype=float)))
                extra["init_value"] = float(spec["init_value"])
            for column in cfg["benchmark"].get("columns", []):
                extra[column], extra[f"{column}_std"], extra[f"{column}_n"] = _mean(
                    part.get(column, pd.Series(dtype=float)))
            rows.append({
                "task": task, "variant": variant, "selected_member": member, "metric": rule["metric"],
                "mean": mean, "std": std, "n": n,
                "sensitivity_gap": float(s["gap"]) if s is not None else 0.0,
                "grid_points": int(s["points"]) if s is not None else 1,
                "grid_points_with_missing": int(s["points_with_missing"]) if s is not None else 0,
                "target_loss": target, "steps_to_baseline": (sum(steps) / len(steps)) if reached == len(part)
                and len(part) else math.nan, "reached": f"{reached}/{len(part)}",
                "time_per_step_rel": time_rel / ref_time if ref_time else math.nan,
                "state_bytes_per_param": state, "baseline": spec["baseline"],
                "time_reference": spec["time_reference"], **extra})
    return pd.DataFrame(rows, columns=None if rows else COLUMNS)


def benchmark_table(bench: pd.DataFrame, columns: list[str] = ()) -> str:
    """Markdown, one table per task; ``columns``: the config's ``benchmark.columns``, appended as mean ± std."""
    if not len(bench):
        return "No benchmark task ran at this profile (its `variants:` list holds no variant of any task)."
    parts = []
    for task, part in bench.groupby("task", sort=False):
        # the paper's sensitivity, for a task whose config gives the metric at initialization
        sens = "init_value" in part and part["init_value"].notna().any()
        rows = [[f"`{r['variant']}`", f"`{r['selected_member']}`", f"{r['metric']}: "
                 + tables.mean_std(r["mean"], r["std"], r["n"]),
                 f"{tables.fmt(r['sensitivity_gap'], 3)} over {r['grid_points']}"
                 + (f" ({r['grid_points_with_missing']} lost seeds)" if r["grid_points_with_missing"] else ""),
                 *([tables.mean_std(r[SENSITIVITY], r[f"{SENSITIVITY}_std"], r[f"{SENSITIVITY}_n"])] if sens else []),
                 f"{tables.fmt(r['steps_to_baseline'])} ({r['reached']})", tables.fmt(r["time_per_step_rel"], 3),
                 tables.fmt(r["state_bytes_per_param"], 3)]
                + [tables.mean_std(r[c], r[f"{c}_std"], r[f"{c}_n"]) for c in columns]
                for _, r in part.iterrows()]
        first = part.iloc[0]
        parts.append(f"**Task `{task}`** — baseline `{first['baseline']}` (target eval loss "
                     f"{tables.fmt(first['target_loss'])}), time reference `{first['time_reference']}`.\n\n"
                     + tables.markdown_table(
                         ["method", "best grid point", "best metric (mean ± std)", "sensitivity gap",
                          *([f"sweep sensitivity (init {tables.fmt(first['init_value'])})"] if sens else []),
                          "steps to baseline (seeds reaching)", "time/step (rel.)", "state bytes/param", *columns],
                         rows))
    return "\n\n".join(parts)


def write_benchmark(cfg: dict, runs: pd.DataFrame, sweep: pd.DataFrame, curves: pd.DataFrame, out: Path,
                    title: str) -> str:
    """benchmark.csv, benchmark.md and per task: curves_<task>.png (best grid points), sweep_<task>.png; returns the
    Markdown table, for the paper's table.md."""
    bench = benchmark_frame(cfg, runs, sweep, curves)
    bench.to_csv(out / "benchmark.csv", index=False)
    table = benchmark_table(bench, cfg["benchmark"].get("columns", []))
    (out / "benchmark.md").write_text(f"## {title}: benchmark\n\n{table}\n")
    ran = set(bench["task"])
    for task, spec in cfg["benchmark"]["tasks"].items():
        if task not in ran:
            continue
        rename = {_member(runs, v): v for v in spec["variants"]}
        part = curves[curves["variant"].isin(rename)].assign(variant=lambda d: d["variant"].map(rename))
        plots.learning_curves(part, spec["variants"], out / f"curves_{task}.png",
                              f"{title} · {task} · best grid point per method")
        plot_sweep(sweep[sweep["variant"].isin(spec["variants"])], out / f"sweep_{task}.png",
                   f"{title} · {task} · metric vs swept value")
    return table
