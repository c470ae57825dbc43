"""``repro`` subcommands for the results stages of the workflow (``shared/cli.py`` calls ``add_subcommands``):

    repro aggregate PAPER --profile P [--runs-dir runs] [--out-dir results/PAPER/P]
    repro readme PAPER [--results-dir results] [--readme papers/PAPER/README.md] [--out FILE]
    repro ledger [--results-dir results] [--out results/LEDGER.md]
    repro cluster NAME --profile P [--results-dir results] [--out-dir results/NAME/P]
    repro new-paper SLUG                     # copies papers/_template/ to papers/SLUG/
"""
from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
from pathlib import Path

from shared.config import list_papers, load_paper, papers_dir
from shared.config.sweep import profile_variants, report_variants
from shared import records
from shared.results import aggregate, benchmark, cluster, ledger, plots, probes, readme, sweep, tables

log = logging.getLogger("repro.results")
TEMPLATE = "_template"
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def cmd_aggregate(args: argparse.Namespace) -> int:
    """runs/<slug>/<profile>/*/seed*/ → runs.csv, summary.csv, claims.csv, table.md, claims.png, curves.png and the
    runs' text files as run_records.jsonl.gz (shared/records.py); with a ``sweep`` block also sweep.csv and
    sweep.png, with a ``benchmark`` block benchmark.csv/.md and per-task figures."""
    cfg = load_paper(args.paper)
    seeds = cfg["profiles"][args.profile]["seeds"]
    out = Path(args.out_dir or Path("results") / args.paper / args.profile)
    out.mkdir(parents=True, exist_ok=True)
    grid = profile_variants(cfg, args.profile)  # the variants and grid points this profile runs
    paths = aggregate.find_runs(args.runs_dir, args.paper, args.profile, grid, seeds)
    records.write_records(paths, out / records.FILE)
    all_runs = aggregate.runs_frame(paths, cfg.get("probe_metrics"))
    sweep_df = sweep.sweep_frame(cfg, all_runs, grid)
    runs = sweep.with_best(all_runs, sweep_df)  # a swept variant = its best grid point
    runs = sweep.with_sensitivity(cfg, runs, sweep_df)  # and, with a task's init_value, its sensitivity per seed
    variants = report_variants(cfg, args.profile)
    summary = aggregate.summarize(runs, variants)
    claims = aggregate.claims_frame(cfg, args.paper, args.profile, runs)
    runs.to_csv(out / readme.RUNS, index=False)
    summary.to_csv(out / readme.SUMMARY, index=False)
    claims.to_csv(out / readme.CLAIMS, index=False)
    title = f"{args.paper} · profile {args.profile}"
    claim_metrics = list(dict.fromkeys(m for c in cfg.get("claims", [])
                                       for m in (c["metric"], c["compare"].get("b_metric")) if m))
    plots.claims_bars(runs, claim_metrics, variants, out / readme.FIG_CLAIMS, title)
    curves = aggregate.learning_curves(paths)
    best = {m: v for v, m in zip(runs["variant"], runs["selected_member"]) if m}
    plots.learning_curves(curves.assign(variant=curves["variant"].replace(best)), variants,
                          out / readme.FIG_CURVES, title)
    extra = []
    _remove_drawn_before(cfg, out)
    if len(sweep_df):
        sweep_df.to_csv(out / "sweep.csv", index=False)
        sweep.plot_sweep(sweep_df, out / "sweep.png", title)
        sweep.plot_heatmaps(cfg, sweep_df, out / "sweep_heatmap.png", title)
        extra.append("### Hyperparameter sweep (each variant is reported at its best grid point)\n\n"
                     + sweep.sweep_table(sweep_df))
    members = {v: v for v in variants if v not in best.values()} | {m: v for m, v in best.items()}
    probe_rows = probes.probe_frame(paths, rename=members)  # each variant (its best grid point) as reported
    if len(probe_rows):
        probe_rows.to_csv(out / "probes.csv", index=False, float_format="%.6g")  # 6 digits: a third of the size
        # a figure per task (its methods at their best grid point), as curves_<task>.png; one for the other variants
        tasks = (cfg.get("benchmark") or {}).get("tasks", {})
        for task, spec in tasks.items():
            probes.plot_probes(probe_rows, spec["variants"], out, f"{title} · {task}", prefix=f"probes_{task}_")
        in_tasks = {v for spec in tasks.values() for v in spec["variants"]}
        others = [v for v in variants if v not in in_tasks]  # e.g. a claim's pair outside the benchmark
        if others:
            probes.plot_probes(probe_rows, others, out, title + (" · variants outside the benchmark" if tasks else ""))
    if cfg.get("benchmark"):
        extra.append(benchmark.write_benchmark(cfg, runs, sweep_df, curves, out, title))
    (out / readme.TABLE).write_text(table_md(title, cfg["profiles"][args.profile], runs, summary, claims,
                                             claim_metrics, extra))
    log.info("aggregated %d runs of %s/%s into %s", len(paths), args.paper, args.profile, out)
    return 0


def _remove_drawn_before(cfg: dict, out: Path) -> None:
    """Delete what an earlier aggregation into ``out`` may have written and this one need not write again (the sweep
    table and figure, the heat map, the probe table and figures, the benchmark report and its per-task figures), so
    that `repro readme` cannot embed a file from runs or a config that are gone. Tasks come from the config and from
    the old benchmark.csv (a renamed or removed task); other files (e.g. a paper's own analysis figures) stay."""
    tasks = set((cfg.get("benchmark") or {}).get("tasks", {}))
    tasks |= set(map(str, readme.read_csv(out / "benchmark.csv").get("task", [])))
    names = {readme.SWEEP, readme.FIG_SWEEP, "sweep_heatmap.png", "benchmark.csv", readme.BENCHMARK, "probes.csv"}
    names |= {f"{kind}_{task}.png" for task in tasks for kind in ("curves", "sweep")}
    for path in [out / name for name in names] + list(out.glob("probes_*.png")):
        path.unlink(missing_ok=True)


def table_md(title, profile_cfg, runs, summary, claims, claim_metrics, extra=()) -> str:
    metrics = claim_metrics + [m for m in dict.fromkeys(summary["metric"]) if m not in claim_metrics]
    parts = [f"## {title}", readme.profile_description(profile_cfg), readme.provenance_line(runs),
             tables.summary_table(summary, metrics) if len(summary) else "_No finished runs._"]
    if len(claims):
        parts.append(tables.claims_table(claims))
    parts += list(extra)
    return "\n\n".join(p for p in parts if p).rstrip() + "\n"


def cmd_readme(args: argparse.Namespace) -> int:
    cfg = load_paper(args.paper)
    path = Path(args.readme or papers_dir() / args.paper / "README.md")
    generated = readme.update_readme(args.paper, cfg, args.results_dir, path)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(generated)
    log.info("updated the generated sections of %s", path)
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    order = {slug: list(load_paper(slug)["profiles"]) for slug in list_papers()}
    path = ledger.write_ledger(args.results_dir, papers_dir(), args.out or Path(args.results_dir) / "LEDGER.md",
                               order)
    log.info("wrote %s", path)
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    """One table across the papers whose config says ``cluster: {name: NAME, ...}`` (shared/results/cluster.py)."""
    papers = {slug: load_paper(slug) for slug in list_papers()}
    out = args.out_dir or Path(args.results_dir) / args.name / args.profile
    log.info("wrote %s", cluster.write_cluster(papers, args.name, args.profile, args.results_dir, out))
    return 0


def cmd_new_paper(args: argparse.Namespace) -> int:
    """Copy the template folder, replacing ``{{slug}}``; the new config fails validation until its TODOs are filled."""
    if not SLUG_RE.match(args.slug):
        print(f"repro new-paper: slug must match {SLUG_RE.pattern}, got {args.slug!r}", file=sys.stderr)
        return 2
    src, dst = papers_dir() / TEMPLATE, papers_dir() / args.slug
    if dst.exists():
        print(f"repro new-paper: {dst} already exists", file=sys.stderr)
        return 2
    shutil.copytree(src, dst)
    for file in dst.rglob("*"):
        if file.is_file() and file.suffix in (".md", ".yaml", ".smk", ".py"):
            file.write_text(file.read_text().replace("{{slug}}", args.slug))
    log.info("created %s: fill in config.yaml (every TODO) and README.md, then `repro show %s`", dst, args.slug)
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("aggregate", help="one paper × profile: runs → csv tables, table.md, figures, verdicts")
    p.add_argument("paper")
    p.add_argument("--profile", required=True)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--out-dir", help="default results/PAPER/PROFILE")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("readme", help="rewrite a paper README's generated sections from every profile's results")
    p.add_argument("paper")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--readme", help="default papers/PAPER/README.md")
    p.add_argument("--out", help="also write the generated sections to this file (the workflow's output)")
    p.set_defaults(func=cmd_readme)

    p = sub.add_parser("ledger", help="results/LEDGER.md from every results/*/*/claims.csv")
    p.add_argument("--results-dir", default="results")
    p.add_argument("--out", help="default RESULTS_DIR/LEDGER.md")
    p.set_defaults(func=cmd_ledger)

    p = sub.add_parser("cluster", help="one table across a cluster's papers (their config's `cluster` block)")
    p.add_argument("name")
    p.add_argument("--profile", required=True)
    p.add_argument("--results-dir", default="results")
    p.add_argument("--out-dir", help="default RESULTS_DIR/NAME/PROFILE")
    p.set_defaults(func=cmd_cluster)

    p = sub.add_parser("new-paper", help="start papers/SLUG/ from papers/_template/")
    p.add_argument("slug")
    p.set_defaults(func=cmd_new_paper)


def main(argv: list[str] | None = None) -> int:
    """Only these subcommands, for use without ``shared/cli.py``; ``repro`` itself is the normal entry point."""
    parser = argparse.ArgumentParser(prog="repro-results")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
