"""Hyperparameter sweeps in a paper config: each swept variant becomes one ordinary variant per grid point.

Fair optimizer comparisons tune each method's learning rate (e.g. Schmidt et al., "Descending through a Crowded
Valley", arXiv:2007.01547; AlgoPerf, arXiv:2306.07179): a claim "A beats B" then compares A at its best lr with B
at its best lr. A paper config says so with a ``sweep`` block::

    sweep:
      select: {metric: test_accuracy, mode: max}        # how each variant's best grid point is chosen
      select_by_variant: {lm-adamw: {metric: test_loss, mode: min}}   # optional per-variant override
      grid:
        adamw: {optimizer.lr: [1.0e-3, 3.0e-3]}          # dotted run-config keys -> values; several keys = product
        sgd: {optimizer.lr: [0.03, 0.1]}

``load_paper`` expands ``adamw`` into the variants ``adamw.lr0.001`` and ``adamw.lr0.003`` (the variant's own
overrides, then the grid point), each an ordinary run (``repro run PAPER --variant adamw.lr0.001``). The name
``adamw`` itself is no longer a run: it stands for "the best of its members", which ``repro aggregate`` picks
per profile (shared/results/sweep.py) and which claims, tables and figures then use. Selection and comparison
use the same seeds, which favours whichever method has more grid points slightly; READMEs say when it matters.
"""
from __future__ import annotations

import copy
import fnmatch
import itertools

SWEEP_OF, SWEEP_PARAMS = "sweep_of", "sweep_params"  # keys load_paper adds to the loaded paper config


def member_name(variant: str, point: dict) -> str:
    """``adamw`` + {optimizer.lr: 0.001} -> ``adamw.lr0.001`` (the last key component, then the value)."""
    return ".".join([variant] + [f"{key.rsplit('.', 1)[-1]}{_fmt(v)}" for key, v in point.items()])


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def nested(key: str, value) -> dict:
    """``"optimizer.lr", 0.1`` -> ``{"optimizer": {"lr": 0.1}}``."""
    out: dict = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Cartesian product of a ``{key: [values]}`` grid, in the config's order."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def expand(cfg: dict, source: str) -> dict:
    """A copy of a validated paper config with every swept variant replaced by its members (module docstring).

    Adds ``cfg["sweep_of"] = {member: variant}`` and ``cfg["sweep_params"] = {member: {key: value}}``.
    """
    from shared.config import ConfigError, deep_merge as merge

    out = copy.deepcopy(cfg)
    out[SWEEP_OF], out[SWEEP_PARAMS] = {}, {}
    sweep = cfg.get("sweep")
    if not sweep:
        return out
    unknown = sorted(set(sweep["grid"]) - set(cfg["variants"]))
    if unknown:
        raise ConfigError(f"{source}: sweep.grid: unknown variant(s) {unknown}; variants: "
                          f"{', '.join(sorted(cfg['variants']))}")
    bad = sorted(set(sweep.get("select_by_variant", {})) - set(sweep["grid"]))
    if bad:
        raise ConfigError(f"{source}: sweep.select_by_variant: {bad} are not swept variants; swept: "
                          f"{', '.join(sweep['grid'])}")
    variants = {}
    for name, spec in cfg["variants"].items():
        if name not in sweep["grid"]:
            variants[name] = spec
            continue
        for point in grid_points(sweep["grid"][name]):
            member = member_name(name, point)
            overrides = spec.get("overrides", {})
            for key, value in point.items():
                overrides = merge(overrides, nested(key, value))
            desc = ", ".join(f"{k}={_fmt(v)}" for k, v in point.items())
            variants[member] = {"description": f"{spec.get('description', name)} [{desc}]", "overrides": overrides}
            out[SWEEP_OF][member], out[SWEEP_PARAMS][member] = name, point
    clash = sorted(set(out[SWEEP_OF]) & set(cfg["variants"]))
    if clash:
        raise ConfigError(f"{source}: sweep members {clash} clash with variants of the same name; rename them")
    out["variants"] = variants
    return out


def _in_profile(cfg: dict, variant: str, patterns: list[str] | None) -> bool:
    """Whether ``variant`` (or, for a grid point, its swept variant) matches one of a profile's ``variants`` globs."""
    if not patterns:
        return True
    names = {variant, cfg.get(SWEEP_OF, {}).get(variant, variant)}
    return any(fnmatch.fnmatchcase(n, p) for n in names for p in patterns)


def profile_variants(cfg: dict, profile: str) -> list[str]:
    """The variants (grid points) a profile runs: all of them, unless ``profiles.<P>.variants`` (globs) keeps only
    the matching ones, or ``profiles.<P>.grid_points: k`` keeps only the first k grid points of each swept variant
    (e.g. 1 in ``smoke``, which checks plumbing, not the sweep)."""
    spec = cfg["profiles"][profile]
    variants = [v for v in cfg["variants"] if _in_profile(cfg, v, spec.get("variants"))]
    k = spec.get("grid_points")
    if not k:
        return variants
    seen: dict[str, int] = {}
    out = []
    for v in variants:
        base = cfg.get(SWEEP_OF, {}).get(v)
        if base is not None:
            seen[base] = seen.get(base, 0) + 1
            if seen[base] > k:
                continue
        out.append(v)
    return out


def select_rule(cfg: dict, variant: str) -> dict:
    """``{metric, mode}`` that picks ``variant``'s best grid point."""
    sweep = cfg.get("sweep") or {}
    return sweep.get("select_by_variant", {}).get(variant, sweep.get("select"))


def swept_variants(cfg: dict) -> list[str]:
    """Names that stand for a best-of-sweep (in the config's ``sweep.grid`` order)."""
    return list((cfg.get("sweep") or {}).get("grid", {}))


def report_variants(cfg: dict, profile: str | None = None) -> list[str]:
    """Variants as a reader sees them: unswept ones and swept names (each its best member), in config order; with
    ``profile``, only those the profile runs (``profile_variants``)."""
    ran = profile_variants(cfg, profile) if profile else cfg["variants"]
    return list(dict.fromkeys(cfg.get(SWEEP_OF, {}).get(v, v) for v in ran))
