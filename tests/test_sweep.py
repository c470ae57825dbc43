"""Sweeps (shared/config/sweep.py, shared/results/sweep.py) and the benchmark report (shared/results/benchmark.py)
on synthetic run directories with known numbers."""
import json
import math
import re

import pandas as pd
import pytest
import yaml

from shared.config import ConfigError, load_paper, resolve_paper_run
from shared.results import aggregate, benchmark, sweep
from shared.results.cli import main as results_main

PAPER = {
    "paper": {"title": "Toy optimizers", "arxiv": "0000.00000", "authors": "A. Author", "year": 2020},
    "base": {"data": {"dataset": "cifar10"}, "model": {"name": "resnet20"}, "train": {"steps": 30}},
    "profiles": {"tiny": {"seeds": [0, 1, 2]}},
    "variants": {"sgd": {"overrides": {"optimizer": {"name": "sgd"}}},
                 "adamw": {"overrides": {"optimizer": {"name": "adamw"}}},
                 "plain": {}},
    "sweep": {"select": {"metric": "test_accuracy", "mode": "max"},
              "grid": {"sgd": {"optimizer.lr": [0.01, 0.1, 1.0]}, "adamw": {"optimizer.lr": [0.001, 0.01]}}},
    "benchmark": {"tasks": {"cifar": {"variants": ["sgd", "adamw", "plain"], "baseline": "adamw",
                                      "time_reference": "sgd"}}},
    "claims": [{"id": "adamw_beats_sgd", "text": "AdamW beats SGD at each one's best lr.", "metric": "test_accuracy",
                "compare": {"a": "adamw", "b": "sgd"}, "direction": "greater"}],
}
# (member, seed) -> (test accuracy, eval losses at steps 10/20/30, wall time)
ACC = {"sgd.lr0.01": 0.50, "sgd.lr0.1": 0.70, "sgd.lr1": 0.90, "adamw.lr0.001": 0.80, "adamw.lr0.01": 0.85,
       "plain": 0.60}


@pytest.fixture
def papers(tmp_path, monkeypatch):
    root = tmp_path / "papers"
    (root / "toy").mkdir(parents=True)
    (root / "toy" / "config.yaml").write_text(yaml.safe_dump(PAPER, sort_keys=False))
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(root))
    return root


def write_run(runs_dir, variant, seed, acc, losses, wall, diverged=False, state_bytes=8.0):
    d = aggregate.run_dir(runs_dir, "toy", "tiny", variant, seed)
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"paper": "toy", "variant": variant, "profile": "tiny", "seed": seed,
                                             "data": {"variant": "cifar10-recon"}}))
    evals = [{"kind": "eval", "step": 10 * (i + 1), "split": "test", "loss": x} for i, x in enumerate(losses)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(e) for e in evals) + "\n")
    metrics = {"test_loss": None if diverged else losses[-1], "test_accuracy": None if diverged else acc,
               "optimizer_state_bytes_per_param": state_bytes, "diverged": int(diverged)}
    (d / "final.json").write_text(json.dumps({"metrics": metrics, "step": 30, "wall_time_s": wall}))


def test_sweep_expands_into_members_and_names_the_best(papers):
    cfg = load_paper("toy")
    assert list(cfg["variants"]) == ["sgd.lr0.01", "sgd.lr0.1", "sgd.lr1", "adamw.lr0.001", "adamw.lr0.01", "plain"]
    run = resolve_paper_run("toy", "sgd.lr0.1", "tiny")
    assert run["optimizer"] == {**run["optimizer"], "name": "sgd", "lr": 0.1}
    with pytest.raises(ConfigError, match="swept.*sgd.lr0.01, sgd.lr0.1, sgd.lr1"):
        resolve_paper_run("toy", "sgd", "tiny")


def test_sweep_config_errors_name_the_problem(papers):
    bad = dict(PAPER, sweep={"select": {"metric": "test_accuracy", "mode": "max"}, "grid": {"nope": {"a.b": [1]}}})
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"sweep.grid: unknown variant\(s\) \['nope'\]"):
        load_paper("toy")
    bad = dict(PAPER, benchmark={"tasks": {"t": {"variants": ["sgd"], "baseline": "adam", "time_reference": "sgd"}}})
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="benchmark.tasks.t: unknown variant 'adam'"):
        load_paper("toy")


def test_best_member_skips_grid_points_with_a_diverged_seed(papers, tmp_path):
    runs_dir = tmp_path / "runs"
    for member, acc in ACC.items():
        for seed in range(3):
            # sgd.lr1 is the most accurate on average but seed 2 diverges: it must not be chosen
            write_run(runs_dir, member, seed, acc + 0.01 * seed, [2.0, 1.5, 1.0], 3.0,
                      diverged=(member == "sgd.lr1" and seed == 2))
    cfg = load_paper("toy")
    paths = aggregate.find_runs(runs_dir, "toy", "tiny", list(cfg["variants"]), [0, 1, 2])
    df = sweep.sweep_frame(cfg, aggregate.runs_frame(paths))
    chosen = dict(zip(df.loc[df["selected"], "variant"], df.loc[df["selected"], "member"]))
    assert chosen == {"sgd": "sgd.lr0.1", "adamw": "adamw.lr0.01"}
    row = df[df["member"] == "sgd.lr0.1"].iloc[0]
    assert row["mean"] == pytest.approx(0.71) and row["n"] == 3 and row["n_missing"] == 0
    runs = sweep.with_best(aggregate.runs_frame(paths), df)
    assert sorted(runs.loc[runs["variant"] == "sgd", "test_accuracy"]) == pytest.approx([0.70, 0.71, 0.72])
    sens = sweep.sensitivity(df).set_index("variant")
    assert sens.loc["sgd", "gap"] == pytest.approx(0.20)  # 0.71 - 0.51 over the complete grid points
    assert sens.loc["sgd", "points_with_missing"] == 1
    # a profile that runs only some grid points: the others are no rows (not rows with n = 0)
    some = sweep.sweep_frame(cfg, aggregate.runs_frame(paths), ["sgd.lr0.1", "sgd.lr1", "adamw.lr0.01"])
    assert sorted(some["member"]) == ["adamw.lr0.01", "sgd.lr0.1", "sgd.lr1"]


def test_benchmark_columns_from_known_runs(papers, tmp_path):
    runs_dir = tmp_path / "runs"
    for member, acc in ACC.items():
        for seed in range(3):
            # adamw (baseline) ends at loss 1.0; sgd.lr0.1 gets to 1.0 at step 20; plain never does
            losses = {"sgd.lr0.1": [1.8, 0.9, 0.8], "plain": [2.0, 1.9, 1.8]}.get(member, [2.0, 1.5, 1.0])
            wall = {"sgd": 3.0, "adamw": 4.5}.get(member.split(".")[0], 6.0)
            write_run(runs_dir, member, seed, acc, losses, wall, state_bytes=0.0 if member.startswith("sgd") else 8.0)
    cfg = load_paper("toy")
    paths = aggregate.find_runs(runs_dir, "toy", "tiny", list(cfg["variants"]), [0, 1, 2])
    df = sweep.sweep_frame(cfg, aggregate.runs_frame(paths))
    runs = sweep.with_best(aggregate.runs_frame(paths), df)
    bench = benchmark.benchmark_frame(cfg, runs, df, aggregate.learning_curves(paths)).set_index("variant")
    assert bench.loc["adamw", "target_loss"] == pytest.approx(1.0)
    assert bench.loc["sgd", "selected_member"] == "sgd.lr1"
    assert bench.loc["adamw", "steps_to_baseline"] == 30 and bench.loc["plain", "reached"] == "0/3"
    assert math.isnan(bench.loc["plain", "steps_to_baseline"])
    assert bench.loc["adamw", "time_per_step_rel"] == pytest.approx(1.5)
    assert bench.loc["plain", "time_per_step_rel"] == pytest.approx(2.0)
    assert bench.loc["sgd", "state_bytes_per_param"] == 0.0 and bench.loc["adamw", "state_bytes_per_param"] == 8.0
    assert bench.loc["plain", "sensitivity_gap"] == 0.0 and bench.loc["sgd", "grid_points"] == 3
    # benchmark.columns: any per-run metric, mean ± std over the reported grid point's seeds
    runs = runs.assign(extra_metric=[float(seed) + (10.0 if m == "sgd.lr1" else 0.0)
                                     for seed, m in zip(runs["seed"], runs["selected_member"].fillna(""))])
    cfg = {**cfg, "benchmark": {**cfg["benchmark"], "columns": ["extra_metric", "absent"]}}
    bench = benchmark.benchmark_frame(cfg, runs, df, aggregate.learning_curves(paths)).set_index("variant")
    assert bench.loc["sgd", "extra_metric"] == pytest.approx(11.0) and bench.loc["sgd", "extra_metric_n"] == 3
    assert bench.loc["sgd", "extra_metric_std"] == pytest.approx(1.0) and math.isnan(bench.loc["sgd", "absent"])
    table = benchmark.benchmark_table(bench.reset_index(), ["extra_metric", "absent"])
    assert "| extra_metric | absent |" in table and "11 ± 1 (n=3)" in table
    # a task's variant that this profile does not run (e.g. one added to the task later) gets no row
    bench = benchmark.benchmark_frame(cfg, runs[runs["variant"] != "plain"], df, aggregate.learning_curves(paths))
    assert list(bench["variant"]) == ["sgd", "adamw"]


def test_sweep_sensitivity_caps_at_the_init_value_and_counts_diverged_runs_as_it(papers, tmp_path):
    """Wortsman et al. (2023, §3.1) sensitivity by hand, per seed: a loss metric, init value 8. sgd's three points:
    seed 0 ends at 4.0 / 4.5 / 9.0 (worse than at init → 8): excess 0, 0.5, 4.0, mean 1.5; seed 1 at 4.2 / diverged
    (→ 8) / 7.0: excess 0, 3.8, 2.8, mean 2.2. adamw ends at 5.0 at both points: 0."""
    runs_dir = tmp_path / "runs"
    losses = {("sgd.lr0.01", 0): 4.0, ("sgd.lr0.01", 1): 4.2, ("sgd.lr0.1", 0): 4.5, ("sgd.lr0.1", 1): None,
              ("sgd.lr1", 0): 9.0, ("sgd.lr1", 1): 7.0}
    for member in ACC:
        for seed in (0, 1):
            loss = losses.get((member, seed), 5.0)
            write_run(runs_dir, member, seed, 0.5, [loss or 9.9], 3.0, diverged=loss is None)
    cfg = load_paper("toy")
    cfg = {**cfg, "sweep": {**cfg["sweep"], "select": {"metric": "test_loss", "mode": "min"}}}
    paths = aggregate.find_runs(runs_dir, "toy", "tiny", list(cfg["variants"]), [0, 1])
    df = sweep.sweep_frame(cfg, aggregate.runs_frame(paths))
    sens = sweep.sweep_sensitivity(df, aggregate.runs_frame(paths), 8.0).set_index(["variant", "seed"])
    assert sens.loc[("sgd", 0), "sweep_sensitivity"] == pytest.approx(1.5)
    assert sens.loc[("sgd", 1), "sweep_sensitivity"] == pytest.approx(2.2) and sens.loc[("sgd", 1), "points"] == 3
    assert sens.loc[("adamw", 0), "sweep_sensitivity"] == pytest.approx(0.0)
    # the best-to-worst gap of seed means, by contrast, drops the diverged point and ignores the cap: 8.0 − 4.1
    assert sweep.sensitivity(df).set_index("variant").loc["sgd", "gap"] == pytest.approx(3.9)
    # without a benchmark task that gives init_value: no column, and no benchmark column either
    runs = sweep.with_best(aggregate.runs_frame(paths), df)
    curves = aggregate.learning_curves(paths)
    assert "sweep_sensitivity" not in sweep.with_sensitivity(cfg, runs, df)
    assert "sweep sensitivity" not in benchmark.benchmark_table(benchmark.benchmark_frame(cfg, runs, df, curves))
    # with it: a per-run metric on the rows that stand for each swept variant (what a claim compares), and in the
    # benchmark its mean ± std over seeds
    task = {**cfg["benchmark"]["tasks"]["cifar"], "init_value": 8.0}
    cfg = {**cfg, "benchmark": {"tasks": {"cifar": task}}}
    runs = sweep.with_sensitivity(cfg, runs, df)
    sgd = runs[runs["variant"] == "sgd"].set_index("seed")["sweep_sensitivity"]
    assert sgd.loc[0] == pytest.approx(1.5) and sgd.loc[1] == pytest.approx(2.2)
    assert runs[runs["variant"].isin(["sgd.lr0.1", "plain"])]["sweep_sensitivity"].isna().all()
    bench = benchmark.benchmark_frame(cfg, runs, df, curves).set_index("variant")
    assert bench.loc["sgd", "sweep_sensitivity"] == pytest.approx(1.85) and bench.loc["sgd", "sweep_sensitivity_n"] == 2
    assert math.isnan(bench.loc["plain", "sweep_sensitivity"])  # unswept
    table = benchmark.benchmark_table(bench.reset_index())
    assert "| sweep sensitivity (init 8) |" in table and "| 1.85 ± 0.49 (n=2) |" in table


def test_aggregate_cli_writes_sweep_and_benchmark_files(papers, tmp_path):
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    for member, acc in ACC.items():
        for seed in range(3):
            write_run(runs_dir, member, seed, acc + 0.001 * seed, [2.0, 1.5, 1.0], 3.0)
            probe = {"kind": "probe", "probe": "activations", "step": 30, "variance": {"blocks.0": acc}}
            with open(aggregate.run_dir(runs_dir, "toy", "tiny", member, seed) / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(probe) + "\n")
    out.mkdir()  # an earlier aggregation's files, from a task ("lm") and a two-key grid this config no longer has
    pd.DataFrame({"task": ["lm"], "variant": ["adamw"]}).to_csv(out / "benchmark.csv", index=False)
    stale = [out / name for name in ("curves_lm.png", "sweep_lm.png", "sweep_heatmap.png")]
    for path in stale:
        path.write_bytes(b"\x89PNG")
    (out / "landscape_1d.png").write_bytes(b"\x89PNG")  # not the aggregation's: it stays
    assert results_main(["aggregate", "toy", "--profile", "tiny", "--runs-dir", str(runs_dir),
                         "--out-dir", str(out)]) == 0
    assert not any(path.exists() for path in stale) and (out / "landscape_1d.png").is_file()
    for name in ("sweep.csv", "sweep.png", "benchmark.csv", "benchmark.md", "curves_cifar.png", "sweep_cifar.png",
                 "probes_cifar_activations.png"):  # probe figures per task, like the curves
        assert (out / name).is_file(), name
    assert not (out / "probes_activations.png").exists()  # every variant is in a task
    assert not (out / "sweep_heatmap.png").exists()  # no two-key grid here
    claims = pd.read_csv(out / "claims.csv").iloc[0]
    # adamw's best (0.85..) vs sgd's best (sgd.lr1: 0.90..): AdamW does not beat SGD here
    assert claims["mean_a"] == pytest.approx(0.851) and claims["mean_b"] == pytest.approx(0.901)
    assert claims["verdict"] == "not reproduced"
    table = (out / "table.md").read_text()
    assert "**`sgd.lr1`** (best)" in table and "`sgd`" in table
    # a variant outside every benchmark task (e.g. a claim's pair) still gets its probe figure, probes_<probe>.png
    cfg_file = papers / "toy" / "config.yaml"
    cfg = yaml.safe_load(cfg_file.read_text())
    cfg["benchmark"]["tasks"]["cifar"]["variants"] = ["sgd", "adamw"]
    cfg_file.write_text(yaml.safe_dump(cfg))
    assert results_main(["aggregate", "toy", "--profile", "tiny", "--runs-dir", str(runs_dir),
                         "--out-dir", str(tmp_path / "out2")]) == 0
    assert (tmp_path / "out2" / "probes_cifar_activations.png").is_file()
    assert (tmp_path / "out2" / "probes_activations.png").is_file()


def test_profile_overrides_for_pattern_apply_after_the_variant_and_keep_grid_points(papers):
    cfg = dict(PAPER, variants={**PAPER["variants"], "lm-adamw": {"overrides": {"optimizer": {"name": "adamw"}}}},
               sweep={"select": {"metric": "test_loss", "mode": "min"},
                      "grid": {"lm-adamw": {"optimizer.lr": [0.001, 0.003]}}},
               benchmark=None, claims=[])
    cfg = {k: v for k, v in cfg.items() if v is not None}
    cfg["profiles"] = {"tiny": {"seeds": [0], "overrides": {"train": {"steps": 30}},
                                "overrides_for": {"lm-*": {"train": {"steps": 7}, "optimizer": {"lr": 9.0}}}}}
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    run = resolve_paper_run("toy", "lm-adamw.lr0.003", "tiny")
    assert run["train"]["steps"] == 7  # the pattern's profile scale beats the base's
    assert run["optimizer"]["lr"] == 0.003  # ... but not the grid point
    assert resolve_paper_run("toy", "plain", "tiny")["train"]["steps"] == 30


def test_two_key_grid_gets_a_heat_map(papers, tmp_path):
    cfg = dict(PAPER, sweep={"select": {"metric": "test_accuracy", "mode": "max"},
                             "grid": {"adamw": {"optimizer.lr": [0.001, 0.01], "optimizer.weight_decay": [0.0, 0.1]}}},
               claims=[])
    cfg.pop("benchmark")
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_paper("toy")
    assert "adamw.lr0.01.weight_decay0.1" in loaded["variants"]
    runs_dir = tmp_path / "runs"
    for i, member in enumerate(m for m in loaded["variants"] if m.startswith("adamw")):
        for seed in range(3):
            write_run(runs_dir, member, seed, 0.5 + 0.1 * i, [2.0, 1.5, 1.0], 3.0)
    for v in ("sgd", "plain"):
        for seed in range(3):
            write_run(runs_dir, v, seed, 0.5, [2.0, 1.5, 1.0], 3.0)
    paths = aggregate.find_runs(runs_dir, "toy", "tiny", list(loaded["variants"]), [0, 1, 2])
    df = sweep.sweep_frame(loaded, aggregate.runs_frame(paths))
    assert df.loc[df["selected"], "member"].tolist() == ["adamw.lr0.01.weight_decay0.1"]
    assert sweep.plot_heatmaps(loaded, df, tmp_path / "h.png").is_file()


def test_seed_offset_makes_an_independent_replicate_named_by_the_profile_seed(papers):
    cfg = dict(PAPER, variants={**PAPER["variants"], "plain_b": {"seed_offset": 1000}})
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert resolve_paper_run("toy", "plain", "tiny", 2)["seed"] == 2
    assert resolve_paper_run("toy", "plain_b", "tiny", 2)["seed"] == 1002


def test_a_profile_can_run_only_the_first_grid_points(papers):
    from shared.config.sweep import profile_variants

    cfg = dict(PAPER, profiles={"smoke": {"seeds": [0], "grid_points": 1}, "tiny": {"seeds": [0, 1, 2]}})
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_paper("toy")
    assert sorted(profile_variants(loaded, "smoke")) == ["adamw.lr0.001", "plain", "sgd.lr0.01"]
    assert profile_variants(loaded, "tiny") == list(loaded["variants"])


def test_a_profile_can_run_a_subset_of_variants_by_glob(papers):
    from shared.config.sweep import profile_variants, report_variants

    claim = {**PAPER["claims"][0], "profiles": ["tiny"]}
    cfg = dict(PAPER, profiles={"cpu": {"seeds": [0], "variants": ["adamw", "pl*"]}, "tiny": {"seeds": [0, 1, 2]}},
               claims=[claim])
    cfg.pop("benchmark")
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_paper("toy")
    # a swept variant's name keeps all its grid points
    assert profile_variants(loaded, "cpu") == ["adamw.lr0.001", "adamw.lr0.01", "plain"]
    assert report_variants(loaded, "cpu") == ["adamw", "plain"]  # the tables' rows
    assert report_variants(loaded) == ["adamw", "plain", "sgd"]
    assert profile_variants(loaded, "tiny") == list(loaded["variants"])
    # a glob may also pick grid points: one learning rate of each swept variant
    cfg["profiles"]["cpu"]["variants"] = ["*.lr0.01", "plain"]
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_paper("toy")
    assert profile_variants(loaded, "cpu") == ["adamw.lr0.01", "plain", "sgd.lr0.01"]
    assert report_variants(loaded, "cpu") == ["adamw", "plain", "sgd"]


@pytest.mark.parametrize("profile_spec, claim_profiles, message", [
    ({"variants": ["nothing*"]}, None, "'nothing*' matches no variant"),
    ({"variants": ["adamw"]}, None, "leaves out ['sgd'], which claim 'adamw_beats_sgd' compares"),
    ({"variants": ["adamw"]}, ["cpu"], "leaves out ['sgd']"),
])
def test_profile_variants_errors_name_the_fix(papers, profile_spec, claim_profiles, message):
    claim = dict(PAPER["claims"][0], **({"profiles": claim_profiles} if claim_profiles else {}))
    cfg = dict(PAPER, profiles={"cpu": {"seeds": [0], **profile_spec}, "tiny": {"seeds": [0]}}, claims=[claim])
    cfg.pop("benchmark")
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_paper("toy")


def test_profile_variants_must_keep_pair_partners(papers):
    cfg = dict(PAPER, variants={**PAPER["variants"], "plain": {"pair_with": "plain_b"}, "plain_b": {"seed_offset": 1}},
               profiles={"cpu": {"seeds": [0], "variants": ["plain", "sgd", "adamw"]}}, claims=[])
    cfg.pop("benchmark")
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="runs 'plain' but not its pair partner 'plain_b'"):
        load_paper("toy")


def test_benchmark_target_uses_each_tasks_own_eval_split(papers, tmp_path):
    cfg = dict(PAPER, variants={**PAPER["variants"], "lm-adamw": {"overrides": {"optimizer": {"name": "adamw"}}}},
               benchmark={"tasks": {"cifar": {"variants": ["plain"], "baseline": "plain", "time_reference": "plain"},
                                    "lm": {"variants": ["lm-adamw"], "baseline": "lm-adamw",
                                           "time_reference": "lm-adamw"}}}, claims=[])
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_paper("toy")
    runs_dir = tmp_path / "runs"
    for seed in range(3):
        write_run(runs_dir, "plain", seed, 0.5, [2.0, 1.5, 1.0], 3.0)
        d = aggregate.run_dir(runs_dir, "toy", "tiny", "lm-adamw", seed)
        write_run(runs_dir, "lm-adamw", seed, 0.5, [6.0, 5.5, 5.0], 3.0)
        with open(d / "metrics.jsonl", "a") as f:  # an LM run also evaluates on val
            f.write(json.dumps({"kind": "eval", "step": 30, "split": "val", "loss": 4.0}) + "\n")
        final = json.loads((d / "final.json").read_text())
        final["metrics"]["val_loss"] = 4.0
        (d / "final.json").write_text(json.dumps(final))
    paths = aggregate.find_runs(runs_dir, "toy", "tiny", list(loaded["variants"]), [0, 1, 2])
    runs = sweep.with_best(aggregate.runs_frame(paths), sweep.sweep_frame(loaded, aggregate.runs_frame(paths)))
    bench = benchmark.benchmark_frame(loaded, runs, sweep.sweep_frame(loaded, runs),
                                      aggregate.learning_curves(paths)).set_index("task")
    assert bench.loc["cifar", "target_loss"] == pytest.approx(1.0)  # test_loss: CIFAR has no val split
    assert bench.loc["lm", "target_loss"] == pytest.approx(4.0)  # val_loss
    # a profile that runs only the lm task: no cifar rows, no cifar figures
    only_lm = runs[runs["variant"] == "lm-adamw"]
    out = tmp_path / "out"
    out.mkdir()
    table = benchmark.write_benchmark(loaded, only_lm, sweep.sweep_frame(loaded, only_lm),
                                      aggregate.learning_curves(paths), out, "toy")
    assert "Task `lm`" in table and "cifar" not in table
    assert list(pd.read_csv(out / "benchmark.csv")["task"]) == ["lm"]
    assert (out / "curves_lm.png").is_file() and not (out / "curves_cifar.png").exists()
    # a profile that runs no benchmark task: a line that says so and a header-only CSV, no figures, no error
    none = tmp_path / "none"
    none.mkdir()
    table = benchmark.write_benchmark(loaded, runs.iloc[0:0], sweep.sweep_frame(loaded, runs.iloc[0:0]),
                                      aggregate.learning_curves(paths).iloc[0:0], none, "toy")
    assert table.startswith("No benchmark task ran")
    assert pd.read_csv(none / "benchmark.csv").empty and not list(none.glob("*.png"))
    # ... whose header is the same as a real benchmark.csv's (benchmark.COLUMNS names the row keys)
    assert list(pd.read_csv(none / "benchmark.csv").columns) == list(pd.read_csv(out / "benchmark.csv").columns)


def test_provenance_counts_each_run_once(papers, tmp_path):
    from shared.results.readme import provenance_line

    runs_dir = tmp_path / "runs"
    for member, acc in ACC.items():
        for seed in range(3):
            write_run(runs_dir, member, seed, acc, [2.0, 1.5, 1.0], 3.0)
    cfg = load_paper("toy")
    paths = aggregate.find_runs(runs_dir, "toy", "tiny", list(cfg["variants"]), [0, 1, 2])
    runs = sweep.with_best(aggregate.runs_frame(paths), sweep.sweep_frame(cfg, aggregate.runs_frame(paths)))
    assert len(runs) == 18 + 6 and "18 runs" in provenance_line(runs)
