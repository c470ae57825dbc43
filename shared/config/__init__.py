"""Load, merge and validate YAML configs; resolve a paper's (variant, profile, seed) into one run config.

Resolution order (docs/design.md): defaults ← paper ``base`` (or, for a profile naming ``recipe: R``, the shared
recipe ``shared/config/recipes/R.yaml`` instead) ← ``profiles[P].overrides`` ← ``variants[V].overrides``
← ``profiles[P].overrides_for[pattern]`` for each glob pattern matching V (then V's sweep grid point again), then
``seed``. Profiles change scale, variants change the method; lists replace, mappings merge.
"""
from __future__ import annotations

import copy
import fnmatch
import functools
import hashlib
import json
import os
from pathlib import Path

import jsonschema
import yaml

from shared.config.schema import PAPER_SCHEMA, PARTIAL_RUN_SCHEMA, RUN_SCHEMA

__all__ = [
    "ConfigError", "deep_merge", "config_hash", "load_yaml", "validate", "default_run_config", "resolve_run_config",
    "papers_dir", "list_papers", "list_recipes", "load_recipe", "load_paper", "resolve_paper_run", "for_profile",
]


class ConfigError(ValueError):
    """A config that fails validation; the message names the file and the key path."""


def deep_merge(base: dict, override: dict) -> dict:
    """Return ``base`` updated by ``override``: nested mappings merge, everything else (lists too) replaces."""
    out = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# Run-config keys added after results were committed, with their default: left out of the hash while at it, so
# a new option does not change the hash (nor rerun the workflow job) of every run that does not use it.
HASH_NEUTRAL_DEFAULTS = {("data", "classes"): None, ("train", "keep_weights_at"): [],
                         ("train", "divergence_patience"): 1}


def config_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of a config: equal configs, equal hashes, whatever the key order (keys of
    ``HASH_NEUTRAL_DEFAULTS`` at their default are left out)."""
    cfg = copy.deepcopy(cfg)
    for (*parents, key), default in HASH_NEUTRAL_DEFAULTS.items():
        node = cfg
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and key in node and node[key] == default:
            del node[key]
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping (plain PyYAML keeps the last one
    silently, so a typo'd repeat could override a setting unseen); keys brought in by a ``<<`` merge may still be
    overridden, as YAML intends."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError("while constructing a mapping", node.start_mark,
                                                        f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        with path.open() as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _describe(error: jsonschema.ValidationError, source: str) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = path if path != "<top level>" else ""
        keys = ", ".join(f"{where}.{k}".lstrip(".") for k in extra)
        return f"{source}: unknown key {keys}; allowed keys here: {', '.join(allowed)}"
    if error.validator == "required":
        return f"{source}: {path}: {error.message}"
    return f"{source}: {path}: {error.message}"


def validate(cfg: dict, schema: dict, source: str = "<config>") -> None:
    """Raise ConfigError naming ``source`` and the key path of the first (deepest) problem."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (-len(e.absolute_path), str(e.absolute_path)))
    if errors:
        best = jsonschema.exceptions.best_match(errors) or errors[0]
        # best_match prefers shallow errors; an unknown key deep down is the more useful message
        deep = [e for e in errors if e.validator == "additionalProperties"]
        raise ConfigError(_describe(deep[0] if deep else best, source))


def _once_per_content(maxsize: int):
    """Decorator for ``load(path, *args) -> dict``: runs once per (file content, args) and hands each caller its own
    deep copy (loading every paper resolves hundreds of run configs, each needing the defaults; callers mutate)."""
    def wrap(load):
        cached = functools.lru_cache(maxsize=maxsize)(lambda path, digest, *args: load(Path(path), *args))

        @functools.wraps(load)
        def load_once(path: str | Path, *args) -> dict:
            path = Path(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            return copy.deepcopy(cached(str(path.resolve()), digest, *args))
        return load_once
    return wrap


@_once_per_content(maxsize=4)
def _load_defaults(path: Path) -> dict:
    return load_yaml(path)


def default_run_config() -> dict:
    """``shared/config/defaults.yaml``: every run config key at its default."""
    return _load_defaults(Path(__file__).with_name("defaults.yaml"))


def resolve_run_config(partial: dict, source: str = "<config>") -> dict:
    """Fill defaults into a (partial) run config, validate it, and check cross-key rules."""
    cfg = deep_merge(default_run_config(), partial)
    validate(cfg, RUN_SCHEMA, source)
    train = cfg["train"]
    if (train["steps"] is None) == (train["epochs"] is None):
        raise ConfigError(f"{source}: train: set exactly one of train.steps and train.epochs "
                          f"(got steps={train['steps']}, epochs={train['epochs']})")
    if cfg["schedule"]["warmup_steps"] and cfg["schedule"]["warmup_frac"]:
        raise ConfigError(f"{source}: schedule: set at most one of warmup_steps and warmup_frac")
    return cfg


RECIPES_DIR = Path(__file__).with_name("recipes")


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name: str, source: str = "<config>") -> dict:
    """A whole training recipe as a partial run config (``shared/config/recipes/<name>.yaml``), validated like a
    paper's ``base``. A profile that names it starts from it instead of the paper's ``base``."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{source}: unknown recipe {name!r} ({path} does not exist); recipes: "
                          f"{', '.join(list_recipes()) or 'none'}")
    return _load_recipe(path)


@_once_per_content(maxsize=16)
def _load_recipe(path: Path) -> dict:
    recipe = load_yaml(path)
    validate(recipe, PARTIAL_RUN_SCHEMA, str(path))
    return recipe


def run_dir(runs_dir: str | Path, slug: str, profile: str, variant: str, seed: int) -> Path:
    """The one run-directory layout (``repro run``'s default ``--out`` and the workflow's ``run`` outputs)."""
    return Path(runs_dir) / slug / profile / variant / f"seed{seed}"


def papers_dir() -> Path:
    """``$REPRO_PAPERS_DIR`` or the repository's ``papers/`` folder."""
    env = os.environ.get("REPRO_PAPERS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "papers"


def list_papers() -> list[str]:
    root = papers_dir()
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")) and (p / "config.yaml").is_file())


def _check_profile_variants(cfg: dict, named: list[str], path: Path) -> None:
    """``profiles.<P>.variants``: each glob matches a variant or a grid point; the profile runs every pair partner
    of what it runs; a claim that applies at P (no ``profiles`` list, or one naming P) compares only variants P
    runs."""
    for prof, spec in cfg["profiles"].items():
        patterns = spec.get("variants")
        if not patterns:
            continue
        where = f"{path}: profiles.{prof}.variants"
        names = list(dict.fromkeys([*named, *cfg["variants"]]))  # variants, and grid points of swept ones
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(f"{where}: {pattern!r} matches no variant or grid point; variants: "
                                  f"{', '.join(names)}")
        # grid points and the swept names they stand for (a claim names the latter)
        runs = set(sweep.profile_variants(cfg, prof)) | set(sweep.report_variants(cfg, prof))
        for name in sorted(runs & set(cfg["variants"])):
            partner = cfg["variants"][name].get("pair_with")
            if partner is not None and partner not in runs:
                raise ConfigError(f"{where}: runs {name!r} but not its pair partner {partner!r}; add it")
        for i, claim in enumerate(cfg.get("claims", [])):
            if claim.get("profiles") and prof not in claim["profiles"]:
                continue
            left_out = [claim["compare"][side] for side in ("a", "b")
                        if side in claim["compare"] and claim["compare"][side] not in runs]
            if left_out:
                raise ConfigError(f"{where} leaves out {left_out}, which claim {claim['id']!r} compares; give the "
                                  f"claim `profiles:` without {prof!r}, or run those variants")


_NO_DEFAULT = object()


def for_profile(table: dict, profile: str, what: str = "settings", default=_NO_DEFAULT):
    """``table``'s entry (a dict keyed by profile name) for ``profile``: its own, else that of the longest profile
    name it extends as ``<name>_<suffix>`` (``cpu_early`` -> ``cpu``, ``small_deep`` -> ``small``: a named variation
    of a profile takes its job sizes and analysis settings), else ``default``, else a ConfigError naming ``what``."""
    for name in sorted(table, key=len, reverse=True):
        if profile == name or profile.startswith(f"{name}_"):
            return table[name]
    if default is not _NO_DEFAULT:
        return default
    raise ConfigError(f"no {what} for profile {profile!r}; known: {sorted(table)}")


def load_paper(slug: str) -> dict:
    """Load and validate ``papers/<slug>/config.yaml``; claims must name existing variants and profiles.

    A ``sweep`` block's variants come back expanded into one variant per grid point (shared/config/sweep.py)."""
    path = papers_dir() / slug / "config.yaml"
    if not path.is_file():
        known = ", ".join(list_papers()) if papers_dir().is_dir() else "none"
        raise ConfigError(f"unknown paper {slug!r}: {path} does not exist; known papers: {known}")
    return _load_paper(path, slug)  # validating resolves every (profile, variant): once per file content


@_once_per_content(maxsize=64)
def _load_paper(path: Path, slug: str) -> dict:
    cfg = load_yaml(path)
    validate(cfg, PAPER_SCHEMA, str(path))
    named = sorted(cfg["variants"])  # claims and benchmark tasks name variants as written (a swept one = its best)
    cfg = sweep.expand(cfg, str(path))
    for i, claim in enumerate(cfg.get("claims", [])):
        for side in ("a", "b"):
            if side in claim["compare"] and claim["compare"][side] not in named:
                raise ConfigError(f"{path}: claims.{i}.compare.{side}: unknown variant {claim['compare'][side]!r}; "
                                  f"variants: {', '.join(named)}")
        for prof in claim.get("profiles", []):
            if prof not in cfg["profiles"]:
                raise ConfigError(f"{path}: claims.{i}.profiles: unknown profile {prof!r}; "
                                  f"profiles: {', '.join(sorted(cfg['profiles']))}")
    for name, spec in cfg["variants"].items():
        if spec.get("pair_with") is not None and spec["pair_with"] not in cfg["variants"]:
            raise ConfigError(f"{path}: variants.{name}.pair_with: unknown variant {spec['pair_with']!r}")
    _check_profile_variants(cfg, named, path)
    for task, spec in (cfg.get("benchmark") or {}).get("tasks", {}).items():
        for name in spec["variants"] + [spec["baseline"], spec["time_reference"]]:
            if name not in named:
                raise ConfigError(f"{path}: benchmark.tasks.{task}: unknown variant {name!r}; variants: "
                                  f"{', '.join(named)}")
    # every (profile, variant) pair must resolve, so a typo fails at load time, not mid-workflow
    enabled = set()  # probes some run records: what `probe_metrics` may read
    for prof in cfg["profiles"]:
        for var in cfg["variants"]:
            run = _resolve(cfg, slug, var, prof, cfg["profiles"][prof]["seeds"][0], str(path))
            enabled.update((run["train"].get("probes") or {}).get("names") or [])
    for name, spec in (cfg.get("probe_metrics") or {}).items():
        if (spec["reduce"] == "frac_above") != ("threshold" in spec):
            raise ConfigError(f"{path}: probe_metrics.{name}: `threshold` goes with `reduce: frac_above` (the "
                              f"fraction of layers whose value exceeds it) and only with it")
        if spec.get("at") == "all" and "layers" in spec:
            raise ConfigError(f"{path}: probe_metrics.{name}: `at: all` reduces a scalar key over the run's probe "
                              f"steps; `layers` picks layers of one record, so drop one of the two")
        if spec["probe"] not in enabled:
            raise ConfigError(f"{path}: probe_metrics.{name}.probe: no run records probe {spec['probe']!r}; add it "
                              f"to train.probes.names in base or a profile (enabled: "
                              f"{', '.join(sorted(enabled)) or 'none'})")
    return cfg


def _resolve(cfg: dict, slug: str, variant: str, profile: str, seed: int, source: str) -> dict:
    recipe = cfg["profiles"][profile].get("recipe")
    start = load_recipe(recipe, f"{source}: profiles.{profile}.recipe") if recipe else cfg["base"]
    merged = deep_merge(start, cfg["profiles"][profile].get("overrides", {}))
    merged = deep_merge(merged, cfg["variants"][variant].get("overrides", {}))
    for pattern, overrides in cfg["profiles"][profile].get("overrides_for", {}).items():
        # a swept grid point matches its variant's patterns too (the grid values then win again)
        name = cfg.get("sweep_of", {}).get(variant, variant)
        if fnmatch.fnmatchcase(name, pattern):
            merged = deep_merge(merged, overrides)
            if name != variant:
                for key, value in cfg["sweep_params"][variant].items():
                    merged = deep_merge(merged, sweep.nested(key, value))
    merged["seed"] = seed + cfg["variants"][variant].get("seed_offset", 0)
    return resolve_run_config(merged, f"{source} (variant={variant}, profile={profile})")


def resolve_paper_run(slug: str, variant: str, profile: str, seed: int | None = None) -> dict:
    """The full run config for one paper × variant × profile × seed (seed defaults to the profile's first)."""
    cfg = load_paper(slug)
    source = str(papers_dir() / slug / "config.yaml")
    members = [m for m, v in cfg["sweep_of"].items() if v == variant]
    if members:
        raise ConfigError(f"{source}: variant {variant!r} is swept (sweep.grid); run one of its grid points: "
                          f"{', '.join(members)}")
    if variant not in cfg["variants"]:
        raise ConfigError(f"{source}: unknown variant {variant!r}; variants: {', '.join(sorted(cfg['variants']))}")
    if profile not in cfg["profiles"]:
        raise ConfigError(f"{source}: unknown profile {profile!r}; profiles: {', '.join(sorted(cfg['profiles']))}")
    if seed is None:
        seed = cfg["profiles"][profile]["seeds"][0]
    return _resolve(cfg, slug, variant, profile, seed, source)


from shared.config import sweep  # noqa: E402  (uses ConfigError and deep_merge from above)
