"""Probe records (``{"kind": "probe", ...}`` in each run's metrics.jsonl, shared/probes) -> one long table and
figures, so a reader can look at weight-norm growth, gradient spikes or variance by depth instead of raw JSON.

``probes.csv`` columns: variant, seed, probe, step, key, layer, value. A scalar value (e.g. ``total``) has an empty
``layer``; a per-layer mapping (e.g. ``variance: {"blocks.0": ..}``) gives one row per layer. A mapping over
something else, listed in ``NON_LAYER_MAPPINGS`` (e.g. grad_spikes' ``count_above: {"10": ..}``, keyed by
threshold), gives one scalar key per entry (``count_above[10]``). Figures (``probes_<probe>.png``): for each key
but the bookkeeping ones in ``UNPLOTTED_KEYS``, scalars over steps (mean over seeds per variant); per-layer values
at the last probe step by layer order and, below, the largest layer's value over steps (each mean over seeds).
"""
from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

import pandas as pd

from shared.results import plots

PROBE_COLUMNS = ["variant", "seed", "probe", "step", "key", "layer", "value"]
# probe -> its record keys whose mappings are not per layer (here, not on the probe classes: aggregation must not
# import torch); each entry becomes a scalar key ``key[entry]``
NON_LAYER_MAPPINGS = {
    "grad_spikes": ("count_above", "frac_above"),  # keyed by threshold (shared/probes/gradients.py)
    "optimizer_state": ("bytes_by_key",),  # keyed by state name, e.g. exp_avg (shared/probes/optimizer_state.py)
}
# probe -> bookkeeping keys kept in probes.csv but not drawn (a panel of a constant says nothing)
UNPLOTTED_KEYS = {
    "grad_spikes": ("steps",),  # steps folded in since the last record: the probe's cadence
}


def _number(v) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _probe_records(path: Path):
    """The run's probe records (``kind: probe``) from its ``metrics.jsonl``, in file (step) order."""
    file = Path(path) / "metrics.jsonl"
    for line in file.read_text().splitlines() if file.is_file() else []:
        rec = json.loads(line) if line.strip() else {}
        if rec.get("kind") == "probe":
            yield rec


def probe_frame(paths: list[Path], rename: dict[str, str] | None = None) -> pd.DataFrame:
    """Every probe record of the runs at ``paths`` as rows; ``rename`` maps run variants (grid points) to the
    names to report (a swept variant's best grid point)."""
    rows = []
    for path in paths:
        meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
        variant = meta.get("variant", path.parent.name)
        if rename is not None:
            if variant not in rename:
                continue
            variant = rename[variant]
        seed = int(meta.get("seed", path.name.removeprefix("seed")))
        for rec in _probe_records(path):
            flat = NON_LAYER_MAPPINGS.get(rec["probe"], ())
            for key, value in rec.items():
                if key in ("kind", "probe", "step"):
                    continue
                if isinstance(value, dict) and key in flat:  # {"key[entry]": v}, each a scalar
                    items = [(f"{key}[{entry}]", "", v) for entry, v in value.items()]
                elif isinstance(value, dict):
                    items = [(key, layer, v) for layer, v in value.items()]
                else:
                    items = [(key, "", value)]
                for name, layer, v in items:
                    x = _number(v)
                    if x is not None:
                        rows.append({"variant": variant, "seed": seed, "probe": rec["probe"], "step": int(rec["step"]),
                                     "key": name, "layer": layer, "value": x})
    return pd.DataFrame(rows, columns=PROBE_COLUMNS)


def coefficient_of_variation(values: list[float]) -> float:
    """Population standard deviation over mean (``reduce: cv``): how unsteady a quantity is, in units of its size,
    e.g. the total gradient norm over training (with ``at: all``), for "more consistent gradient norms"."""
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) / mean if mean else math.nan


# reductions of one probe key: over layers at a run's first or last probe record (a per-layer mapping is taken in the
# model's layer order), or over the run's probe records in step order (``at: all``, a scalar key)
REDUCE = {
    "last": lambda v: v[-1],  # the deepest layer (e.g. the top of the residual stream)
    "first": lambda v: v[0],
    "max": max,
    "min": min,
    "mean": lambda v: sum(v) / len(v),
    "last_over_first": lambda v: v[-1] / v[0] if v[0] else math.nan,  # growth with depth
    "cv": coefficient_of_variation,
}


def frac_above(values: list[float], threshold: float) -> float:
    """The fraction of ``values`` strictly above ``threshold`` (``reduce: frac_above``), e.g. the share of attention
    heads near maximal entropy (arXiv:2410.09637's "entropic overload")."""
    return sum(v > threshold for v in values) / len(values)


def probe_metrics(path: str | Path, specs: dict) -> dict[str, float]:
    """Per-run scalars from the run's probe records (config ``probe_metrics``): for each ``name: {probe, key,
    reduce, layers?, at?, threshold?}``, the ``key`` of the last (``at: first``: the first) record of ``probe`` in
    ``metrics.jsonl``, restricted to the layers matching the glob ``layers`` (all when absent) and reduced over them
    in model order by ``REDUCE[reduce]``, or by ``frac_above`` with ``threshold`` (a scalar key is taken as it is).
    With ``at: all`` the scalar ``key`` of every record of ``probe`` is reduced over steps instead (e.g. ``cv`` of
    the total gradient norm over training). A run without that record, no matching layer, or (``at: all``) a
    per-layer or missing value in any record gives NaN, which a claim then reports as missing."""
    if not specs:
        return {}
    by_probe: dict[str, list[dict]] = {}
    for rec in _probe_records(path):
        by_probe.setdefault(rec["probe"], []).append(rec)  # records are in step order
    out = {}
    for name, spec in specs.items():
        records = by_probe.get(spec["probe"], [])
        value, numbers = None, None  # a scalar taken as it is, or numbers to reduce
        if spec.get("at") == "all":  # the scalar key over steps
            numbers = [_number(rec.get(spec["key"])) for rec in records]
        elif records:
            value = records[0 if spec.get("at") == "first" else -1].get(spec["key"])
            if isinstance(value, dict):  # per layer: the matching layers in model order
                pattern = spec.get("layers") or "*"
                numbers = [_number(v) for layer, v in value.items() if fnmatch.fnmatchcase(layer, pattern)]
        if numbers is not None:
            value = _reduce(numbers, spec) if numbers and None not in numbers else None
        x = _number(value)  # None for absent, non-numeric or non-finite (e.g. a 0/0 reduction)
        out[name] = x if x is not None else math.nan
    return out


def _reduce(values: list[float], spec: dict) -> float:
    """``values`` (layers in model order, or steps in order) reduced as the ``probe_metrics`` entry ``spec`` says."""
    if spec["reduce"] == "frac_above":
        return frac_above(values, spec["threshold"])
    return REDUCE[spec["reduce"]](values)


def largest_layer_by_step(frame: pd.DataFrame) -> pd.Series:
    """Per-layer probe rows (one variant, one key) -> step -> the largest layer's value, taken per seed and then
    averaged over seeds (so one seed's outlier layer is not mixed with another seed's)."""
    return frame.groupby(["seed", "step"])["value"].max().groupby("step").mean()


def _plot_over_steps(ax, series: pd.Series, style: dict, label: str) -> None:
    """A step -> value line in the variant's style (markers only while there are few points)."""
    ax.plot(series.index, series.values, marker="o" if len(series) < 20 else None, ms=3, label=label, **style)


def plot_probes(frame: pd.DataFrame, variants: list[str], out_dir: str | Path, title: str = "",
                prefix: str = "probes_") -> list[Path]:
    """One figure per probe (``<prefix><probe>.png``): a column per key, lines per variant (see module docstring).

    A per-layer key gets two panels: by layer at the last probe step (top) and its largest layer's value over steps
    (bottom), e.g. the largest attention logit anywhere in the model as training goes on (Wortsman et al. 2023,
    Fig. 1); a scalar key is drawn over steps in the top row and leaves the bottom one empty. Probes with no record
    of any of ``variants`` get no figure (a profile that runs none of a benchmark task's variants draws none for it).
    """
    import matplotlib.pyplot as plt

    written = []
    frame = frame[frame["variant"].isin(variants)]
    for probe, part in frame.groupby("probe", sort=True):
        keys = [key for key in dict.fromkeys(part["key"]) if key not in UNPLOTTED_KEYS.get(probe, ())]
        if not keys:
            continue
        layered = {key: (part.loc[part["key"] == key, "layer"] != "").any() for key in keys}
        rows = 2 if any(layered.values()) else 1
        fig, axes = plt.subplots(rows, len(keys), figsize=(4.4 * len(keys), 3.3 * rows), squeeze=False)
        for col, key in enumerate(keys):
            sub = part[part["key"] == key]
            top, bottom = axes[0][col], axes[-1][col] if rows == 2 else None
            for i, variant in enumerate(variants):
                v, style = sub[sub["variant"] == variant], plots.line_style(i, len(variants))
                if not len(v):
                    continue
                if layered[key]:
                    last = v[v["step"] == v["step"].max()]
                    order = list(dict.fromkeys(last["layer"]))
                    mean = last.groupby("layer", sort=False)["value"].mean().reindex(order)
                    top.plot(range(len(order)), mean.values, marker="o", ms=3, label=variant, **style)
                    _plot_over_steps(bottom, largest_layer_by_step(v), style, variant)
                else:
                    _plot_over_steps(top, v.groupby("step")["value"].mean(), style, variant)
            top.set_xlabel("layer (model order), at the last probe step" if layered[key] else "step")
            top.set_title(f"{probe}: {key}", fontsize=9)
            if bottom is not None:
                if layered[key]:
                    bottom.set_xlabel("step")
                    bottom.set_title(f"{probe}: {key}, largest layer", fontsize=9)
                else:
                    bottom.axis("off")
            values = sub["value"]
            for ax in (top, bottom):
                if ax is None or not ax.has_data():
                    continue
                if len(values) and (values > 0).all() and values.max() / values.min() > 100:
                    ax.set_yscale("log")
        fig.suptitle(f"{title} · mean over seeds", fontsize=9)
        plots.place_legends(fig, axes.flat)
        written.append(plots.save_figure(fig, Path(out_dir) / f"{prefix}{probe}.png"))
    return written
