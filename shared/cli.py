"""The ``repro`` command line: run one experiment, list and show paper configs, prepare data.

    repro run PAPER --variant V --profile P --seed S [--out DIR] [--device D] [--resume] [--threads N]
              [--restore-from results/PAPER/P/run_records.jsonl.gz results]  # reuse a recorded run of this config
    repro run --config my_run.yaml --out DIR          # any run config of your own, no paper needed
    repro list                                        # papers, their variants and profiles
    repro show PAPER [--variant V --profile P --seed S]
    repro plan PAPER --profile P [--restore]          # per run: finished, restorable from run records, or to train
    repro prepare PAPER --profile P [--out FILE]      # verify / download data, build tokeniser caches

The Snakemake workflow calls exactly these commands, so any job can be rerun by hand.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from shared.config import (ConfigError, load_paper, list_papers, load_yaml, resolve_paper_run, resolve_run_config,
                           run_dir)

log = logging.getLogger("repro")


def cmd_run(args: argparse.Namespace) -> int:
    import torch

    from shared.train import run

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.config:
        cfg = load_yaml(args.config)
        if args.seed is not None:
            cfg["seed"] = args.seed
        if args.device:
            cfg["device"] = args.device
        cfg = resolve_run_config(cfg, str(args.config))
        meta = {"paper": None, "variant": None, "profile": None, "config_file": str(args.config)}
        out = Path(args.out or Path("runs") / "custom" / Path(args.config).stem / f"seed{cfg['seed']}")
    else:
        if not (args.paper and args.variant and args.profile):
            raise ConfigError("repro run needs PAPER --variant V --profile P (or --config FILE)")
        cfg = resolve_paper_run(args.paper, args.variant, args.profile, args.seed)
        if args.device:
            cfg["device"] = args.device
        # the profile's seed names the run (a variant's seed_offset only changes the seed the run uses)
        seed = args.seed if args.seed is not None else load_paper(args.paper)["profiles"][args.profile]["seeds"][0]
        meta = {"paper": args.paper, "variant": args.variant, "profile": args.profile, "seed": seed}
        out = Path(args.out or run_dir("runs", args.paper, args.profile, args.variant, seed))
    log.info("run %s -> %s", meta, out)
    if args.restore_from and meta["variant"] and not (out / "final.json").is_file():
        from shared.config import config_hash
        from shared.data.root import resolve_data_dir
        from shared.records import restore_run

        data_root = resolve_data_dir((cfg.get("data") or {}).get("data_dir"))
        kept = restore_run(args.restore_from, config_hash(cfg), out, target=meta, data_root=data_root)
        if kept is not None:
            log.info("restored from the record above, not trained: run of %s on %s, commit %s",
                     kept.get("start_time"), kept.get("device"), str(kept.get("git_commit"))[:10])
            print(json.dumps(json.loads((out / "final.json").read_text())["metrics"], indent=2))
            return 0
    final = run(cfg, out, resume=args.resume, meta=meta)
    print(json.dumps(final["metrics"], indent=2))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for slug in list_papers():
        cfg = load_paper(slug)
        print(f"{slug}: {cfg['paper']['title']} (arXiv {cfg['paper']['arxiv']})")
        print(f"  variants: {', '.join(cfg['variants'])}")
        profiles = ", ".join(f"{p} (seeds {v['seeds']})" for p, v in cfg["profiles"].items())
        print(f"  profiles: {profiles}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.variant or args.profile:
        if not (args.variant and args.profile):
            raise ConfigError("repro show: give both --variant and --profile (or neither, for the paper config)")
        cfg = resolve_paper_run(args.paper, args.variant, args.profile, args.seed)
    else:
        cfg = load_paper(args.paper)
    print(yaml.safe_dump(cfg, sort_keys=False), end="")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from shared.data import load_data

    cfg = load_paper(args.paper)
    seen, infos = set(), []
    for variant in cfg["variants"]:
        data_cfg = resolve_paper_run(args.paper, variant, args.profile)["data"]
        key = json.dumps(data_cfg, sort_keys=True)
        if key not in seen:
            seen.add(key)
            infos.append(load_data(data_cfg).info)
    text = json.dumps({"paper": args.paper, "profile": args.profile, "data": infos}, indent=2, default=str)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """What ``snakemake --config profile=P reuse_runs=True`` would do with each run of a paper's profile: finished
    in the runs folder, copied from an earlier run of the profile with the same config, restored from a record (the
    profile's own first, then any paper's), or trained. With ``--restore`` it also writes every run it marks copy or
    restore into the runs folder, exactly as the workflow's run job would (the same sources, in the same order, and
    the same ``meta.json``), without Snakemake and without loading torch: then ``repro aggregate`` rebuilds the
    profile's tables from its records alone."""
    from shared.config import config_hash
    from shared.config.sweep import profile_variants
    from shared.data.root import resolve_data_dir
    from shared.records import earlier_twins, find_records, restore_run, restore_sources

    cfg = load_paper(args.paper)
    if args.profile not in cfg["profiles"]:
        raise ConfigError(f"{args.paper} has no profile {args.profile!r}; it has {sorted(cfg['profiles'])}")
    runs = []  # (variant, seed, config hash, data root), as `repro run --restore-from` would compute them
    for variant in profile_variants(cfg, args.profile):
        for seed in cfg["profiles"][args.profile]["seeds"]:
            run_cfg = resolve_paper_run(args.paper, variant, args.profile, seed)
            runs.append((variant, seed, config_hash(run_cfg),
                         resolve_data_dir((run_cfg.get("data") or {}).get("data_dir"))))
    sources = restore_sources(cfg, args.results_dir, args.paper, args.profile)
    found = {}  # a record counts if its data are unchanged under the data root its run reads (one root in practice)
    for root in {r for *_, r in runs}:
        hashes = {h for *_, h, r in runs if r == root}
        found[root] = find_records(sources, hashes, root) if sources else {}
    counts = {"finished": 0, "copy": 0, "restore": 0, "train": 0}
    twins = earlier_twins((variant, seed, run_hash) for variant, seed, run_hash, _ in runs)
    written = 0
    for variant, seed, run_hash, root in runs:
        hit = found[root].get(run_hash)
        twin = twins.get((variant, seed))
        out = run_dir(args.runs_dir, args.paper, args.profile, variant, seed)
        if (out / "final.json").is_file():
            kind, what = "finished", ""
        elif twin and sources:
            kind, what = "copy", f"{twin[0]} seed {twin[1]}  (the same config)"
        elif hit:
            file, record = hit
            source = Path(file).parent.relative_to(args.results_dir)
            kind, what = "restore", f"{source} {record['variant']} seed {record['seed']}"
        else:
            kind, what = "train", ""
        if args.restore and kind in ("copy", "restore"):
            # what the workflow's run job does: its twin's run directory first (written above: twins come later)
            twin_dir = [run_dir(args.runs_dir, args.paper, args.profile, *twin)] if twin else []
            target = {"paper": args.paper, "variant": variant, "profile": args.profile, "seed": seed}
            if restore_run(twin_dir + sources, run_hash, out, target=target, data_root=root) is None:
                kind, what = "train", f"(a copy of {what.split('  ')[0]}, which has no record either)"
            else:
                written += 1
                what = f"{what}  -> written"
        counts[kind] += 1
        print(f"{variant:<44} seed {seed:<3} {kind:<8} {what}".rstrip())
    print(f"{args.paper} {args.profile}: {len(runs)} runs; " + ", ".join(f"{n} {k}" for k, n in counts.items())
          + ("" if sources else " (an `analysis` paper: never restored)")
          + (f"; {written} written under {args.runs_dir}" if args.restore else ""))
    return 0


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; given the command about to run, only the extension module that defines it is imported."""
    parser = argparse.ArgumentParser(prog="repro", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="train one run (paper × variant × profile × seed, or --config FILE)")
    p.add_argument("paper", nargs="?")
    p.add_argument("--variant")
    p.add_argument("--profile")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", type=Path, help="a run config YAML of your own instead of a paper")
    p.add_argument("--out", help="run directory (default runs/PAPER/PROFILE/VARIANT/seedS)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--resume", action="store_true", help="continue from the run directory's checkpoint")
    p.add_argument("--threads", type=int, help="torch CPU threads (Snakemake passes the rule's threads)")
    p.add_argument("--restore-from", type=Path, nargs="+", metavar="RECORDS",
                   help="run_records.jsonl.gz files (written by repro aggregate) or folders holding them, searched in "
                        "order: the first record with this run's config hash whose data files are unchanged is "
                        "written to --out instead of training")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="papers with their variants and profiles")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="a paper config, or one resolved run config")
    p.add_argument("paper")
    p.add_argument("--variant")
    p.add_argument("--profile")
    p.add_argument("--seed", type=int)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("plan", help="which runs of a profile are finished, restorable from run records, or to train")
    p.add_argument("paper")
    p.add_argument("--profile", required=True)
    p.add_argument("--results-dir", default="results")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--restore", action="store_true",
                   help="also write the runs it marks copy or restore into --runs-dir, as the workflow would (then "
                        "`repro aggregate` rebuilds the tables without training)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("prepare", help="verify or download a paper's data and build its caches")
    p.add_argument("paper")
    p.add_argument("--profile", required=True)
    p.add_argument("--out")
    p.set_defaults(func=cmd_prepare)

    for extension in _extensions(command):
        extension(sub)
    return parser


# Subcommands defined next to the code they drive, and the commands each module adds. A job runs one command, so
# importing only its module keeps the rest out: `repro run` does not load pandas/matplotlib, `repro aggregate` not torch.
EXTENSIONS = {
    "shared.results.cli": ("aggregate", "readme", "ledger", "cluster", "new-paper"),
    "shared.bench": ("bench",),
}
CORE_COMMANDS = ("run", "list", "show", "plan", "prepare")


def _extensions(command: str | None = None):
    """The ``add_subcommands`` of the modules that define ``command`` (of all of them when None or unknown)."""
    found = []
    for module, commands in EXTENSIONS.items():
        if command in CORE_COMMANDS or (command in _ALL_EXTENSION_COMMANDS and command not in commands):
            continue
        try:
            mod = __import__(module, fromlist=["add_subcommands"])
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue  # that part is not installed in this checkout
            raise
        found.append(mod.add_subcommands)
    return found


_ALL_EXTENSION_COMMANDS = {c for commands in EXTENSIONS.values() for c in commands}


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), or None."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"repro: config error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:  # DataMissingError is one: its message names the file and the fix
        print(f"repro: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
