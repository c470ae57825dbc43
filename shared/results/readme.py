"""Generated README sections: replace the text between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``, and render the ``results`` and ``verdict`` sections of a paper README from every
``<results_dir>/<slug>/<profile>/`` that exists (so one profile's update never drops another's results)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from shared.results import tables
from shared.results.verdict import RULE_TEXT


def data_label(c) -> str:
    """Data variant, plus the tokeniser where there is one (perplexities are per token of that tokeniser)."""
    tok = c.get("tokenizer")
    return str(c["data_variant"]) + (f" ({tok})" if isinstance(tok, str) and tok not in ("", "unknown") else "")

SECTIONS = ("results", "verdict")
# files of one paper × profile in the results dir (written by `repro aggregate`)
RUNS, SUMMARY, CLAIMS, TABLE, FIG_CLAIMS, FIG_CURVES = (
    "runs.csv", "summary.csv", "claims.csv", "table.md", "claims.png", "curves.png")
# written only for configs with a ``sweep`` / ``benchmark`` block
SWEEP, FIG_SWEEP, BENCHMARK = "sweep.csv", "sweep.png", "benchmark.md"


class MarkerError(ValueError):
    """A README lacks a generated section's markers, or has them twice or in the wrong order."""


def begin(name: str) -> str:
    return f"<!-- BEGIN GENERATED: {name} -->"


def end(name: str) -> str:
    return f"<!-- END GENERATED: {name} -->"


def replace_section(text: str, name: str, body: str, source: str = "<text>") -> str:
    """``text`` with everything between the ``name`` markers replaced by ``body``; the markers stay."""
    b, e = begin(name), end(name)
    nb, ne = text.count(b), text.count(e)
    if nb != 1 or ne != 1:
        raise MarkerError(f"{source}: need exactly one {b!r} and one {e!r}, found {nb} and {ne}; "
                          "add the markers where the generated section belongs")
    i, j = text.index(b) + len(b), text.index(e)
    if j < i:
        raise MarkerError(f"{source}: {e!r} comes before {b!r}")
    return text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]


def profiles_with_results(results_dir: str | Path, slug: str, profile_order: list[str]) -> list[str]:
    """Profiles with a ``claims.csv``, in the paper config's order, then any others alphabetically."""
    root = Path(results_dir) / slug
    present = {p.name for p in root.iterdir() if (p / CLAIMS).is_file()} if root.is_dir() else set()
    return [p for p in profile_order if p in present] + sorted(present - set(profile_order))


def _link(target: Path, readme: Path) -> str:
    return Path(os.path.relpath(target.resolve(), readme.resolve().parent)).as_posix()


def read_csv(path: Path) -> pd.DataFrame:
    """A results CSV, or an empty frame when it is missing or has no columns (a paper without claims)."""
    try:
        return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def trained_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """A runs table without its best-of-sweep copies: a swept variant's best grid point appears twice in runs.csv,
    as itself and under the variant's name with ``selected_member`` naming it (shared/results/sweep.py)."""
    if "selected_member" not in runs.columns:
        return runs
    return runs[runs["selected_member"].astype("string").fillna("").eq("")]


def rerun_command(slug: str, profile: str) -> str:
    return f"snakemake results/{slug}/{profile}/claims.csv --config profile={profile}"


def provenance_line(runs: pd.DataFrame) -> str:
    def values(col: str) -> str:
        if col not in runs.columns:
            return "unknown"
        vals = sorted({str(v) for v in runs[col].dropna()})
        return ", ".join(f"`{v}`" for v in vals) if vals else "unknown"

    seeds = sorted({int(s) for s in runs["seed"]}) if "seed" in runs.columns else []
    commits = values("git_commit").replace("`", "")
    short = ", ".join(f"`{c[:10]}`" for c in commits.split(", ")) if commits != "unknown" else "unknown"
    dirty = " (uncommitted changes)" if "git_dirty" in runs.columns and runs["git_dirty"].astype(str).eq(
        "True").any() else ""
    tok = values("tokenizer")
    tok = f" tokenised {tok}" if tok != "unknown" else ""
    return (f"Data: {values('data_variant')}{tok}; precision: {values('precision')}; device: {values('device')}; "
            f"{len(trained_runs(runs))} runs, seeds {seeds}; code {short}{dirty}.")


def probe_caption(stem: str, paper_cfg: dict) -> str:
    """``probes_<probe>`` or, in a benchmark, ``probes_<task>_<probe>`` (shared/results/probes.py) → a caption."""
    name = stem.removeprefix("probes_")
    for task in ((paper_cfg.get("benchmark") or {}).get("tasks") or {}):
        if name.startswith(f"{task}_"):
            return f"probe {name.removeprefix(f'{task}_')}, task {task} (mean over seeds)"
    return f"probe {name} (mean over seeds)"


def render_results(slug: str, paper_cfg: dict, results_dir: str | Path, readme: str | Path) -> str:
    readme = Path(readme)
    profiles = profiles_with_results(results_dir, slug, list(paper_cfg.get("profiles", {})))
    if not profiles:
        return ("Not run yet. Run `snakemake -c2 --config profile=tiny papers=[" + slug + "]` "
                "from the repository root to fill this section.")
    parts = ["_Generated by `repro readme` from `results/" + slug + "/<profile>/`; do not edit by hand._"]
    for profile in profiles:
        d = Path(results_dir) / slug / profile
        runs, summary = read_csv(d / RUNS), read_csv(d / SUMMARY)
        desc = paper_cfg.get("profiles", {}).get(profile, {}).get("description", "")
        parts.append(f"### Profile `{profile}`\n\n{desc}\n\n{provenance_line(runs)}" + stale_note(runs, profile))
        if len(summary):
            parts.append("Mean ± sample std over seeds (n = runs with a finite value):\n\n"
                         + tables.summary_table(summary))
        claims = read_csv(d / CLAIMS)
        if len(claims):
            parts.append("Claims (effect signed so that > 0 is the claimed direction):\n\n"
                         + tables.claims_table(claims))
        sweep = read_csv(d / SWEEP)
        if len(sweep):
            from shared.results.sweep import sweep_table  # noqa: PLC0415 (sweep imports this module's neighbours)

            parts.append("Hyperparameter sweep: each swept variant above is its best grid point, chosen by the "
                         "metric named here (on the same seeds it is then compared on):\n\n" + sweep_table(sweep))
        if (d / BENCHMARK).is_file():
            parts.append((d / BENCHMARK).read_text().split("\n", 2)[-1].strip())
        named = [("claims' metrics per variant, dots are seeds", FIG_CLAIMS), ("learning curves", FIG_CURVES),
                 ("metric vs swept value; ringed: chosen", FIG_SWEEP),
                 ("two-key grids as heat maps; boxed: chosen", "sweep_heatmap.png")]
        named += [(f"best grid points: {f.stem.replace('_', ' ')}", f.name)
                  for f in sorted(d.glob("curves_*.png")) + sorted(d.glob("sweep_*.png"))
                  if f.name != "sweep_heatmap.png"]
        named += [(probe_caption(f.stem, paper_cfg), f.name) for f in sorted(d.glob("probes_*.png"))]
        figs = [f"![{name} ({profile})]({_link(d / f, readme)})" for name, f in named if (d / f).is_file()]
        if figs:
            parts.append("\n".join(figs))
    return "\n\n".join(parts)


def stale_note(runs: pd.DataFrame, profile: str) -> str:
    """A warning when some of a profile's runs were trained with a config the paper's config.yaml no longer
    resolves to (shared/results/staleness.py); empty otherwise."""
    from shared.results.staleness import stale_runs  # noqa: PLC0415 (staleness imports this module)

    stale = stale_runs(runs) if len(runs) and "paper" in runs.columns else []
    if not len(stale):
        return ""
    return (f"\n\n**Stale:** {len(stale)} of {len(trained_runs(runs))} runs of this profile were trained with a "
            f"config that the current `config.yaml` no longer resolves to ({stale['reason'].iloc[0]}); the description "
            f"above is the current config's, the numbers below are not. Re-run: "
            f"`{rerun_command(runs['paper'].iloc[0], profile)}`.")


def render_verdict(slug: str, paper_cfg: dict, results_dir: str | Path) -> str:
    profiles = profiles_with_results(results_dir, slug, list(paper_cfg.get("profiles", {})))
    lines = []
    for profile in profiles:
        claims = read_csv(Path(results_dir) / slug / profile / CLAIMS)
        for _, c in claims.iterrows():
            lines.append(f"- **{c['verdict']}** on profile `{profile}` (data {data_label(c)}, "
                         f"{c['precision']}): `{c['claim']}`: {c['text']} "
                         f"— {c['reason']}; n = {int(c['n_a'])} vs {int(c['n_b'])} seeds.")
    if lines:
        body = "\n".join(lines)
    elif profiles and not paper_cfg.get("claims"):
        body = "This config states no claims of its own (a benchmark); its results are above."
    else:
        body = "No verdict yet: no profile has been run."
    return body + "\n\n" + RULE_TEXT


def profile_description(profile_cfg: dict) -> str:
    """A profile's ``description`` as ``table.md`` prints it: stripped, '' when absent or null."""
    return str(profile_cfg.get("description") or "").strip()


def table_with_description(text: str, description: str) -> str:
    """``text`` of an aggregated ``table.md`` with ``description`` as its description paragraph.

    Descriptions are not part of a run's config hash, so they are edited after the runs (e.g. to state the measured
    time); without this the table written at aggregation time would keep the old text ("not run yet", an estimate).
    The table's layout is ``cli.table_md``'s: title, description (absent when empty), provenance line ("Data: ...");
    a text without that layout is returned unchanged.
    """
    parts = text.split("\n\n")
    data = next((i for i, p in enumerate(parts) if p.startswith("Data: ")), None)
    if data is None or not parts[0].startswith("## "):
        return text  # not a table this module wrote: leave it alone
    return "\n\n".join([parts[0]] + ([description] if description else []) + parts[data:])


def refresh_table_description(table: Path, description: str) -> bool:
    """Rewrite ``table`` with ``description`` (``table_with_description``); True if it changed."""
    text = table.read_text()
    new = table_with_description(text, description)
    if new != text:
        table.write_text(new)
    return new != text


def update_readme(slug: str, paper_cfg: dict, results_dir: str | Path, readme: str | Path) -> str:
    """Rewrite both generated sections of ``readme`` in place, and each profile's ``table.md`` description (see
    ``refresh_table_description``); returns the generated markdown."""
    readme = Path(readme)
    for profile, spec in paper_cfg.get("profiles", {}).items():
        table = Path(results_dir) / slug / profile / TABLE
        if table.is_file():
            refresh_table_description(table, profile_description(spec))
    text = readme.read_text()
    sections = {"results": render_results(slug, paper_cfg, results_dir, readme),
                "verdict": render_verdict(slug, paper_cfg, results_dir)}
    for name in extra_sections(text):
        sections[name] = render_extra(slug, name, results_dir, readme)
    for name, body in sections.items():
        text = replace_section(text, name, body, str(readme))
    readme.write_text(text)
    return "\n\n".join(f"{begin(n)}\n{b}\n{end(n)}" for n, b in sections.items()) + "\n"


_MARKER = re.compile(r"<!-- (BEGIN|END) GENERATED: ([\w-]+) -->")


def extra_sections(text: str) -> list[str]:
    """Generated sections other than results/verdict: a paper's own analysis (its ``rules.smk``) writes
    ``results/<slug>/<name>/section.md`` and the README holds ``<!-- BEGIN GENERATED: <name> -->`` markers."""
    return [n for n in sections_in(text) if n not in SECTIONS]


def section_profile(name: str, profiles) -> str | None:
    """The profile an extra section named ``<profile>_<rest>`` is built from, the longest such profile name
    (``cpu_early_barriers`` -> ``cpu_early``, not ``cpu``); None for a section that names no profile."""
    owners = [p for p in profiles if name.startswith(f"{p}_")]
    return max(owners, key=len) if owners else None


def render_extra(slug: str, name: str, results_dir: str | Path, readme: Path) -> str:
    """``results/<slug>/<name>/section.md``, its relative links (figures beside it) rewritten for the README."""
    d = Path(results_dir) / slug / name
    path = d / "section.md"
    if not path.is_file():
        return f"Not run yet: `{path}` is written by `papers/{slug}/rules.smk`."
    prefix = _link(d, readme)
    return re.sub(r"\]\((?!https?:|/)([^)]+)\)", lambda m: f"]({prefix}/{m.group(1)})", path.read_text())


def sections_in(text: str) -> list[str]:
    """Names of the generated sections present in ``text`` (each BEGIN), in order."""
    return [m.group(2) for m in _MARKER.finditer(text) if m.group(1) == "BEGIN"]


def write_section(out_dir: str | Path, rows: list[dict], figures: list[str], source: str, note: str = "",
                  extra: str = "") -> Path:
    """``out_dir/section.md`` for a paper's own analysis (a README section beside results/verdict): a provenance
    line (the command, code commit, torch version, time), the rows as a table, ``extra`` Markdown (e.g. a second
    table), then the figures (paths relative to ``out_dir``; ``render_extra`` rewrites them for the README). The
    rows also go to ``out_dir/results.csv``."""
    import csv  # noqa: PLC0415

    from shared.train.provenance import git_state, library_versions, now  # noqa: PLC0415

    if rows:
        with open(Path(out_dir) / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    git = git_state()
    commit = f"`{str(git.get('git_commit'))[:10]}`" + (" (uncommitted changes)" if git.get("git_dirty") else "")
    head = (f"_Generated by `{source}` (code {commit}, torch {library_versions().get('torch')}, {now()}); "
            "do not edit by hand._")
    table = tables.markdown_table(list(rows[0]), [list(r.values()) for r in rows]) if rows else "_No rows._"
    figs = "\n".join(f"![{Path(f).stem}]({f})" for f in figures)
    path = Path(out_dir) / "section.md"
    path.write_text("\n\n".join(p for p in (head, note, table, extra, figs) if p) + "\n")
    return path
