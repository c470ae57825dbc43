"""Time-to-accuracy of airbench94 on this machine: the recipe through the shared trainer (``repro run``, the
``airbench`` paper's ``alternating_flip`` variant) vs the bare script ``benchmarks/airbench94_bare.py``, side by side
in one invocation, optionally with ResNet-20 on a standard recipe as a third arm. At the full recipe (no quick-check
options) the shared arm's runs are the ``cpu`` profile's ``alternating_flip`` runs and are kept under ``runs/``.

Each arm runs as its own process with the same thread count, one after the other, and the order alternates per seed
(bare, shared / shared, bare, ...) so drifts in machine load hit both. Wall time is each process's own
(start-up and data loading included, so the two arms pay the same fixed costs) and also the time the run reports
itself (airbench's convention: whitening init + training + TTA evaluation). Output: one row per run in
``<out-dir>/airbench94_cpu.csv`` and the summary table ``<out-dir>/airbench94_cpu.md`` (mean ± std over seeds, the
shared/bare ratios the issue targets, data variant and the data files' sha256, provenance).

    python benchmarks/airbench_cpu.py --seeds 0 1 2 --precision bf16                 # the benchmark (~1 h)
    python benchmarks/airbench_cpu.py --seeds 0 1 2 --arms resnet20 --resnet20-epochs 17 --append   # add an arm
    python benchmarks/airbench_cpu.py --seeds 0 --subset-per-class 50 --batch-size 100 --epochs 1 --width 0.25 \
        --out-dir /tmp/b
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from shared.config import resolve_paper_run, run_dir  # noqa: E402
from shared.data.root import resolve_data_dir  # noqa: E402
from shared.train.device import MALLOC_ENV, cpu_description  # noqa: E402
from shared.train.provenance import git_state, library_versions, now  # noqa: E402

FIELDS = ["arm", "seed", "precision", "threads", "epochs", "steps", "test_accuracy", "test_tta_accuracy",
          "process_wall_s", "run_wall_s", "examples_per_s", "data_variant", "git_commit", "cpu", "malloc"]
ARMS = ("shared", "bare", "resnet20")

# ResNet-20 with the usual CIFAR recipe (He et al. 2016 / the CIFAR baselines here): SGD-Nesterov 0.1, wd 5e-4,
# batch 128, crop+flip, one-cycle-free cosine decay; bf16 channels_last as the recipe's arms.
RESNET20 = {
    "data": {"dataset": "cifar10", "augment": {"crop_padding": 4, "flip": True}},
    "model": {"name": "resnet20", "kwargs": {}},
    "optimizer": {"name": "sgd", "lr": 0.1, "weight_decay": 5e-4, "kwargs": {"momentum": 0.9, "nesterov": True}},
    "schedule": {"name": "cosine", "kwargs": {}},
    "train": {"batch_size": 128, "eval_batch_size": 1000, "channels_last": True, "log_every": 50},
}


def _epochs(args, arm: str) -> float:
    """The arm's epoch budget: ResNet-20's own, the recipe's for the airbench arms."""
    return args.resnet20_epochs if arm == "resnet20" else args.epochs


def _shared_config(args, seed: int) -> dict:
    cfg = resolve_paper_run("airbench", "alternating_flip", "cpu", seed)
    cfg["train"]["precision"] = args.precision
    cfg["train"]["epochs"] = args.epochs
    cfg["model"]["kwargs"]["width"] = args.width
    if args.batch_size:
        cfg["train"]["batch_size"] = args.batch_size
    if args.subset_per_class:
        cfg["data"]["subset_per_class"] = args.subset_per_class
    if args.test_subset:
        cfg["data"]["test_subset"] = args.test_subset
    return cfg


def _resnet20_config(args, seed: int) -> dict:
    cfg = json.loads(json.dumps(RESNET20))
    cfg["seed"] = seed
    cfg["train"].update(epochs=args.resnet20_epochs, precision=args.precision)
    for key in ("subset_per_class", "test_subset"):
        if getattr(args, key):
            cfg["data"][key] = getattr(args, key)
    return cfg


def _run_repro(cfg: dict, seed: int, arm: str, args) -> dict:
    """One ``repro run`` process. The shared arm at the ``cpu`` profile's exact config runs as that profile's run
    (``runs/airbench/cpu/alternating_flip/seed<S>``, kept, so the workflow reuses it); anything else in a temp dir."""
    as_profile = arm == "shared" and cfg == resolve_paper_run("airbench", "alternating_flip", "cpu", seed)
    with tempfile.TemporaryDirectory() as tmp:
        if as_profile:
            out = run_dir(args.runs_dir, "airbench", "cpu", "alternating_flip", seed)
            if (out / "final.json").is_file():
                raise SystemExit(f"{out} already holds a finished run: move it away to time a new one")
            how = ["airbench", "--variant", "alternating_flip", "--profile", "cpu"]
        else:
            out, path = Path(tmp) / "run", Path(tmp) / f"{arm}.yaml"
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
            how = ["--config", str(path)]
        t0 = time.perf_counter()
        device = [] if as_profile else ["--device", "cpu"]  # the profile's run exactly as the workflow starts it
        subprocess.run([sys.executable, "-m", "shared.cli", "run", *how, "--seed", str(seed), "--threads",
                        str(args.threads), *device, "--out", str(out)],
                       check=True, cwd=REPO, stdout=subprocess.DEVNULL, env={**os.environ, MALLOC_ENV: args.malloc})
        wall = time.perf_counter() - t0
        final = json.loads((out / "final.json").read_text())
        meta = json.loads((out / "meta.json").read_text())
        rates = [r["examples_per_s"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
                 if "examples_per_s" in r][1:]  # the first window includes warm-up
    m = final["metrics"]
    return {"arm": arm, "seed": seed, "steps": final["step"], "test_accuracy": m["test_accuracy"],
            "test_tta_accuracy": m.get("test_tta_accuracy", ""), "process_wall_s": wall,
            "run_wall_s": final["wall_time_s"], "examples_per_s": statistics.median(rates) if rates else "",
            "data_variant": meta["data"]["variant"], "malloc": meta.get("malloc", ""), "_files": meta["data"]["files"]}


def _run_bare(seed: int, args) -> dict:
    cmd = [sys.executable, str(REPO / "benchmarks" / "airbench94_bare.py"), "--data-dir", str(resolve_data_dir()),
           "--seeds", str(seed), "--precision", args.precision, "--threads", str(args.threads),
           "--epochs", str(args.epochs), "--width", str(args.width), "--device", "cpu", "--malloc", args.malloc]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    for key in ("subset_per_class", "test_subset"):
        if getattr(args, key):
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    r = json.loads(out.strip().splitlines()[-1])
    return {"arm": "bare", "seed": seed, "steps": r["steps"], "test_accuracy": r["test_accuracy"],
            "test_tta_accuracy": r["test_tta_accuracy"], "process_wall_s": wall, "run_wall_s": r["wall_time_s"],
            "examples_per_s": r["examples_per_s"], "data_variant": _data_variant(), "malloc": r["malloc"],
            "_files": r["data_sha256"]}


@functools.lru_cache(maxsize=1)
def _data_identity() -> tuple[str, dict[str, str]]:
    """(variant, {file name: sha256}) of the CIFAR-10 files under the data root, identified as the shared loader does
    (official md5s, SHA256SUMS); hashed once per process, however many seeds the benchmark runs."""
    from shared.data.cifar import identify_cifar

    variant, sha = identify_cifar(resolve_data_dir(), "cifar10")
    return variant, {Path(rel).name: digest for rel, digest in sha.items()}


def _data_variant() -> str:
    return _data_identity()[0]


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values if v != ""]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (one run)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def summarize(rows: list[dict], files: dict, args) -> str:
    label = lambda r: r["arm"] if r["arm"] != "resnet20" else f"resnet20, {float(r['epochs']):g} epochs"  # noqa: E731
    arms = sorted({label(r) for r in rows}, key=lambda a: (ARMS.index(a.split(",")[0]), a))
    lines = [f"Precision {args.precision}, {args.threads} CPU threads, {args.epochs} epochs (airbench arms), width "
             f"{args.width}, seeds {args.seeds}; each arm in its own process, order alternating per seed.", "",
             "| arm | runs | test acc. (%) | TTA acc. (%) | process wall (s) | run wall (s) | train img/s |",
             "|---|---|---|---|---|---|---|"]
    by_arm = {a: [r for r in rows if label(r) == a] for a in arms}  # ResNet-20 budgets apart
    for arm, rs in by_arm.items():
        lines.append(f"| {arm} | {len(rs)} | {_mean_std([r['test_accuracy'] for r in rs], 100)} | "
                     f"{_mean_std([r['test_tta_accuracy'] for r in rs], 100)} | "
                     f"{_mean_std([r['process_wall_s'] for r in rs], digits=1)} | "
                     f"{_mean_std([r['run_wall_s'] for r in rs], digits=1)} | "
                     f"{_mean_std([r['examples_per_s'] for r in rs], digits=0)} |")
    mean = lambda rs, k: statistics.mean(r[k] for r in rs)  # noqa: E731
    if by_arm.get("shared") and by_arm.get("bare"):
        s, b = by_arm["shared"], by_arm["bare"]
        gap = 100 * (mean(s, "test_tta_accuracy") - mean(b, "test_tta_accuracy"))
        ratio_p, ratio_r = mean(s, "process_wall_s") / mean(b, "process_wall_s"), mean(s, "run_wall_s") / mean(b, "run_wall_s")
        lines += ["", f"Shared − bare TTA accuracy: {gap:+.2f} points (target: within 0.3, "
                      f"{'met' if abs(gap) <= 0.3 else 'not met'}). Wall-time ratio shared/bare: {ratio_p:.3f} by "
                      f"process, {ratio_r:.3f} as the runs time themselves (target ≤ 1.05: "
                      f"{'met' if ratio_p <= 1.05 else 'not met'} by process)."]
        if min(len(s), len(b)) < 3:
            lines[-1] += (f" **Fewer than 3 runs per arm ({len(s)} shared, {len(b)} bare): indicative only, not the "
                          "benchmark's ≥ 3-seed comparison.**")
    for arm in (a for a in arms if a.startswith("resnet20") and by_arm.get("bare")):
        r20, b = by_arm[arm], by_arm["bare"]
        lines += ["", f"ResNet-20 ({arm.split(', ')[1]}, no TTA) vs the bare recipe: wall-time ratio "
                      f"{mean(r20, 'process_wall_s') / mean(b, 'process_wall_s'):.3f} by process; test accuracy "
                      f"{100 * (mean(r20, 'test_accuracy') - mean(b, 'test_accuracy')):+.2f} points against the "
                      f"recipe's without TTA, {100 * (mean(r20, 'test_accuracy') - mean(b, 'test_tta_accuracy')):+.2f} "
                      "against its TTA accuracy."]
    def per_arm(key: str, width: int | None = None) -> str:  # each arm's distinct values of a provenance column
        return "; ".join(f"{a} {', '.join(sorted({(r.get(key) or '')[:width] or 'not recorded' for r in rs}))}"
                         for a, rs in by_arm.items())

    lines += ["", "CPU of the rows: " + (per_arm("cpu") if any(r.get("cpu") for r in rows) else "not recorded.")]
    if any(r.get("malloc") for r in rows):  # retained: glibc keeps freed memory for reuse (retain_freed_memory)
        lines += ["", "malloc of the rows (retained: freed memory kept for reuse; system: glibc's defaults; not "
                      "recorded: rows from before the column, glibc's defaults): " + per_arm("malloc")]
    if any(r.get("git_commit") for r in rows):
        lines += ["", "Code of the rows (git commit; rows written before the CSV had the column: not recorded, see "
                      "the git history of this table): " + per_arm("git_commit", 10)]
    variant = next((r["data_variant"] for r in rows if r["data_variant"]), None) or _data_variant()
    lines += ["", f"Data: `{variant}` (this workspace's CIFAR-10 reconstruction unless `cifar10`); sha256 of the files "
                  "read: " + ", ".join(f"`{k}` {v[:12]}…" for k, v in sorted(files.items())), "",
              "Provenance: `" + json.dumps({**git_state(), "date": now(), "torch": library_versions().get("torch"),
                                            "cpu_threads": args.threads}) + "`"]
    return "\n".join(lines) + "\n"


def _read_csv(args) -> list[dict]:
    with open(args.out_dir / "airbench94_cpu.csv", newline="") as f:
        return [{k: (float(v) if k in NUMERIC and v not in ("", None) else (v or "")) for k, v in r.items()}
                for r in csv.DictReader(f)]


def _summarize_csv(args) -> int:
    """The summary table from ``airbench94_cpu.csv`` as written so far; the data files' sha256 hashed anew."""
    rows = _read_csv(args)
    files = _data_identity()[1]
    args.seeds = sorted({int(r["seed"]) for r in rows})
    commits = sorted({json.loads(m.read_text())["git_commit"][:10]
                      for m in Path(args.runs_dir).glob("airbench/cpu/alternating_flip/seed*/meta.json")})
    kept = f"; code of the kept shared-arm runs: {', '.join(commits)}" if commits else ""
    note = (f"\nRebuilt with `--summarize` from the CSV ({len(rows)} runs written so far){kept}. The provenance line "
            "above is the rebuild's.\n")
    (args.out_dir / "airbench94_cpu.md").write_text(summarize(rows, files, args) + note)
    print((args.out_dir / "airbench94_cpu.md").read_text())
    return 0


NUMERIC = {"test_accuracy", "test_tta_accuracy", "process_wall_s", "run_wall_s", "examples_per_s"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--epochs", type=float, default=9.9)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, help="default: the recipe's 1,024 (smaller only for quick checks)")
    p.add_argument("--subset-per-class", type=int)
    p.add_argument("--test-subset", type=int)
    p.add_argument("--resnet20-epochs", type=float, help="also train ResNet-20 for this many epochs (choose it so "
                                                          "its wall time matches the recipe's)")
    p.add_argument("--arms", nargs="+", choices=ARMS,
                   help="run only these arms (default: shared and bare, plus resnet20 with --resnet20-epochs)")
    p.add_argument("--append", action="store_true",
                   help="keep the existing CSV's rows of other (arm, seed, epochs) and add these runs' rows to them")
    p.add_argument("--out-dir", type=Path, default=REPO / "results" / "benchmarks")
    p.add_argument("--runs-dir", type=Path, default=REPO / "runs",
                   help="where a shared-arm run at the cpu profile's exact config is kept as that profile's run")
    p.add_argument("--malloc", choices=["retain", "system"], default="retain",
                   help="both airbench arms: glibc keeps freed memory for reuse (the shared trainer's CPU default, "
                        "shared.train.device.retain_freed_memory) or its system defaults (the rows before 2026-12-07)")
    p.add_argument("--summarize", action="store_true",
                   help="only rebuild the .md from an existing .csv (e.g. of an interrupted benchmark)")
    args = p.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.summarize:
        return _summarize_csv(args)
    arms = args.arms or ["shared", "bare"] + (["resnet20"] if args.resnet20_epochs else [])
    if "resnet20" in arms and not args.resnet20_epochs:
        p.error("--arms resnet20 needs --resnet20-epochs")
    kept, files = [], {}
    if args.append and (args.out_dir / "airbench94_cpu.csv").is_file():
        rerun = {(a, s, float(_epochs(args, a))) for a in arms for s in args.seeds}  # a ResNet-20 budget of its own
        kept = [r for r in _read_csv(args) if (r["arm"], int(r["seed"]), float(r["epochs"])) not in rerun]
        files = dict(_data_identity()[1])
    rows = []
    commit = git_state().get("git_commit", "")
    cpu = cpu_description()
    for i, seed in enumerate(args.seeds):
        order = ["bare", "shared"] if i % 2 == 0 else ["shared", "bare"]
        for arm in [a for a in order + ["resnet20"] if a in arms]:
            if arm == "bare":
                row = _run_bare(seed, args)
            elif arm == "shared":
                row = _run_repro(_shared_config(args, seed), seed, "shared", args)
            else:
                row = _run_repro(_resnet20_config(args, seed), seed, "resnet20", args)
            files.update({Path(k).name: v for k, v in row.pop("_files").items()})
            row.update(precision=args.precision, threads=args.threads,
                       epochs=_epochs(args, arm), git_commit=commit, cpu=cpu)
            rows.append(row)
            print(json.dumps(row), flush=True)
            with open(args.out_dir / "airbench94_cpu.csv", "w", newline="") as f:  # rewritten after every run
                w = csv.DictWriter(f, fieldnames=FIELDS, restval="")
                w.writeheader()
                w.writerows(kept + rows)
    if kept:
        args.seeds = sorted({int(r["seed"]) for r in kept + rows})
    (args.out_dir / "airbench94_cpu.md").write_text(summarize(kept + rows, files, args))
    print((args.out_dir / "airbench94_cpu.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
