# Loads and validates the workflow config and every paper config; input functions and wildcard constraints.
# Rule files stay declarative (STYLE.md, Snakefile and rules): anything computed lives here.
import functools
import json
import os
import shutil
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="schemas/config.schema.yaml")

REPO = Path(workflow.basedir)
if str(REPO) not in sys.path:  # `shared` importable without an installed package
    sys.path.insert(0, str(REPO))

# papers come from $REPRO_PAPERS_DIR if set (tests use a copy), else the repository's papers/
from shared.config import config_hash, for_profile, list_papers, load_paper, papers_dir, resolve_paper_run
from shared.config.sweep import profile_variants
from shared.records import earlier_twins, restore_sources
from shared.results.cluster import cluster_names, members as cluster_members

PROFILE = config["profile"]
RUNS = config["runs_dir"].rstrip("/")
RESULTS = config["results_dir"].rstrip("/")
PAPERS_DIR = papers_dir()
ALL_PAPERS = {slug: load_paper(slug) for slug in (config["papers"] or list_papers())}
# papers that define the chosen profile (a paper may have no `paper` profile yet)
PAPERS = {slug: cfg for slug, cfg in ALL_PAPERS.items() if PROFILE in cfg["profiles"]}
PAPER_RULES = sorted(
    str(p) for p in Path(PAPERS_DIR).glob("*/rules.smk") if not p.parent.name.startswith(("_", "."))
)


def _repro_bin():
    """Where shell commands find plain `repro` (STYLE.md, rules call the CLI): beside Snakemake's python (a venv),
    else on PATH, else workflows/bin/repro, which runs `python -m shared.cli` with Snakemake's python."""
    beside = Path(sys.executable).with_name("repro")
    if beside.is_file():
        return str(beside.parent)
    return "" if shutil.which("repro") else str(REPO / "workflows" / "bin")


# every job's shell starts with this (local jobs and cluster jobs alike), so `repro` and `shared` resolve
shell.prefix(
    "set -euo pipefail; "
    + (f"export PATH='{_repro_bin()}':\"$PATH\"; " if _repro_bin() else "")
    # the prefix is formatted like the command: braces doubled once for the f-string, once for Snakemake
    + f"export REPRO_PYTHON='{sys.executable}'; export PYTHONPATH='{REPO}'${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)
DEVICE = f"--device {config['device']}" if config["device"] else ""
ENV = str(REPO / "environment.yml")  # --use-conda only; absolute, as paper rules live in papers/<slug>/


wildcard_constraints:
    paper=r"[a-z0-9][a-z0-9_]*",
    profile=r"[a-z0-9][a-z0-9_.-]*",
    variant=r"[a-z0-9][a-z0-9_.-]*",
    seed=r"\d+",


def profile_resources(profile):
    """Job sizes of a profile: its entry in the workflow config's `resources`, or that of the profile it extends by
    name (`small_deep` -> `small`; shared.config.for_profile), else `default`."""
    return for_profile(config["resources"], profile, default=config["resources"]["default"])


def run_threads(wildcards):
    return profile_resources(wildcards.profile)["threads"]


def run_resource(key):
    return lambda wildcards: profile_resources(wildcards.profile)[key]


@functools.lru_cache(maxsize=None)
def run_config_hash(paper, variant, profile, seed):
    """Hash of the resolved run config: a job reruns when its own config changes, not on any edit of the file."""
    return config_hash(resolve_paper_run(paper, variant, profile, int(seed)))


def paper_config(paper):
    """A paper's loaded config: this invocation's copy, or loaded for a paper outside `papers`."""
    return ALL_PAPERS[paper] if paper in ALL_PAPERS else load_paper(paper)


def run_dirs(paper, profile):
    cfg = paper_config(paper)
    return [
        f"{RUNS}/{paper}/{profile}/{variant}/seed{seed}"
        for variant in profile_variants(cfg, profile)
        for seed in cfg["profiles"][profile]["seeds"]
    ]


@functools.lru_cache(maxsize=None)
def profile_twins(paper, profile):
    """`shared.records.earlier_twins` over the runs of a profile (the order of `run_dirs`); empty for a paper with
    an `analysis` block, whose rules read saved weights, which a restore does not copy."""
    cfg = paper_config(paper)
    if cfg.get("analysis"):
        return {}
    return earlier_twins((variant, seed, run_config_hash(paper, variant, profile, seed))
                         for variant in profile_variants(cfg, profile) for seed in cfg["profiles"][profile]["seeds"])


def twin_dir(wildcards):
    """The run directory of the earlier run of this run's config in its profile (`profile_twins`), or None."""
    twin = profile_twins(wildcards.paper, wildcards.profile).get((wildcards.variant, int(wildcards.seed)))
    return f"{RUNS}/{wildcards.paper}/{wildcards.profile}/{twin[0]}/seed{twin[1]}" if twin else None


def twin_input(wildcards):
    """A run that is a twin of an earlier one (`profile_twins`) waits for it, and is restored from it."""
    twin = twin_dir(wildcards)
    return [f"{twin}/final.json"] if twin else []


def restore_arg(wildcards):
    """`--restore-from` sources of a run: its twin's run directory (`profile_twins`), so one config is trained once
    per profile; then, with `reuse_runs`, the committed run records (`shared.records.restore_sources`: the
    profile's own first, then every paper's). A run with a source of its config hash (and unchanged data) is
    rewritten from it instead of trained. No records for a paper with an `analysis` block (they hold no weights)."""
    twin = twin_dir(wildcards)
    sources = [twin] if twin else []
    if config["reuse_runs"]:
        sources += restore_sources(paper_config(wildcards.paper), RESULTS, wildcards.paper, wildcards.profile)
    return f"--restore-from {' '.join(map(str, sources))}" if sources else ""


def aggregate_inputs(wildcards):
    dirs = run_dirs(wildcards.paper, wildcards.profile)
    cfg = paper_config(wildcards.paper)
    derived = (cfg.get("analysis") or {}).get("derived", False)  # the paper's rules.smk makes these
    return {
        "final": [f"{d}/final.json" for d in dirs],
        "derived": [f"{d}/derived.json" for d in dirs] if derived else [],
    }


def pair_inputs(paper):
    """Input function for a paper's per-run analysis rule: the run's final.json, and `partner_final` (the final.json
    of the same seed of the variant named by the config's `pair_with`) when the variant has a partner."""

    def inputs(wildcards):
        run = "{}/{}/{}/{}/seed{}/final.json"
        out = {"final": run.format(RUNS, paper, wildcards.profile, wildcards.variant, wildcards.seed)}
        partner = paper_config(paper)["variants"].get(wildcards.variant, {}).get("pair_with")
        if partner:
            out["partner_final"] = run.format(RUNS, paper, wildcards.profile, partner, wildcards.seed)
        return out

    return inputs


def partner_arg(wildcards, input):
    """`--partner-dir DIR` for a run with a partner (see pair_inputs), else nothing."""
    return f"--partner-dir {os.path.dirname(input.partner_final)}" if "partner_final" in input.keys() else ""


def profile_run_files(paper, names=("final.json", "derived.json"), first_seed=False):
    """Input function: the given files of every run (or each variant's first seed) of the profile in the wildcards,
    else of this invocation's profile, keyed `<variant>` (first_seed) or as a list."""

    def inputs(wildcards):
        profile = getattr(wildcards, "profile", PROFILE)
        if first_seed:
            cfg = paper_config(paper)
            seed = cfg["profiles"][profile]["seeds"][0]
            return {v: f"{RUNS}/{paper}/{profile}/{v}/seed{seed}/{names[-1]}" for v in profile_variants(cfg, profile)}
        return [f"{d}/{n}" for d in run_dirs(paper, profile) for n in names]

    return inputs


def claims_spec(wildcards):
    """What the aggregate step reads from the paper config besides the runs: claims and the profile text."""
    cfg = paper_config(wildcards.paper)
    return json.dumps({"claims": cfg.get("claims", []), "profile": cfg["profiles"][wildcards.profile]})


def results_files(paper, profile):
    return [f"{RESULTS}/{paper}/{profile}/{name}" for name in RESULT_FILES]


RESULT_FILES = ["runs.csv", "summary.csv", "claims.csv", "table.md", "claims.png", "curves.png", "run_records.jsonl.gz"]


def readme_inputs(wildcards):
    """This profile's tables, plus each extra generated section the README has markers for (a paper's own analysis,
    written by its rules.smk to results/<paper>/<section>/section.md; shared/results/readme.py)."""
    return {
        "claims": f"{RESULTS}/{wildcards.paper}/{wildcards.profile}/claims.csv",
        "table": f"{RESULTS}/{wildcards.paper}/{wildcards.profile}/table.md",
        "extra": extra_section_files(wildcards.paper),
    }


def ledger_inputs(wildcards):
    """This invocation's claims (and README updates, so the ledger is the last step); other profiles' committed
    claims.csv files are read too, by the ledger command itself, without being targets."""
    files = [f"{RESULTS}/{paper}/{PROFILE}/claims.csv" for paper in PAPERS]
    if config["update_readmes"]:
        files += [f"{RESULTS}/{paper}/{PROFILE}/readme_sections.md" for paper in PAPERS]
    return files


def extra_section_files(paper):
    """results/<paper>/<name>/section.md for each extra generated section its README has markers for; a section
    named `<profile>_<rest>` (built from that profile's runs) only when this invocation runs that profile."""
    from shared.results.readme import extra_sections, section_profile

    readme = PAPERS_DIR / paper / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    profiles = paper_config(paper)["profiles"]
    names = [n for n in extra_sections(text) if section_profile(n, profiles) in (None, PROFILE)]
    return [f"{RESULTS}/{paper}/{name}/section.md" for name in names]


def cluster_inputs(wildcards):
    """Each member paper's summary at this profile (the papers whose config says `cluster: {name: ...}`)."""
    return [f"{RESULTS}/{slug}/{wildcards.profile}/summary.csv" for slug in cluster_members(PAPERS, wildcards.cluster)]


def cluster_spec(wildcards):
    """Reruns the cluster table when a member joins or leaves, or changes its metrics."""
    return json.dumps({slug: cfg["cluster"] for slug, cfg in cluster_members(ALL_PAPERS, wildcards.cluster).items()})


def all_targets():
    targets = [f"{RESULTS}/LEDGER.md"]
    for paper in PAPERS:
        targets += results_files(paper, PROFILE) + extra_section_files(paper)
    targets += [f"{RESULTS}/{name}/{PROFILE}/cluster.md" for name in cluster_names(PAPERS)]
    return targets
