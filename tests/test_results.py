"""Results tooling on synthetic run directories: aggregation, tables, README sections, ledger, figures, CLI."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from shared.results import aggregate, cli, ledger, plots, readme, tables
from shared.results.cli import main as results_main

PAPER = {
    "paper": {"title": "A toy paper", "arxiv": "0000.00000", "authors": "A. Author", "year": 2020},
    "base": {"data": {"dataset": "cifar10"}, "model": {"name": "resnet20"}, "train": {"steps": 10}},
    "profiles": {"smoke": {"seeds": [0], "description": "plumbing"},
                 "tiny": {"seeds": [0, 1, 2], "description": "small"}},
    "variants": {"relu": {"overrides": {}}, "mish": {"overrides": {}}},
    "claims": [{"id": "mish_beats_relu", "text": "Mish beats ReLU.", "paper_value": "92.0 vs 91.7",
                "metric": "test_accuracy", "compare": {"a": "mish", "b": "relu"}, "direction": "greater"},
               {"id": "mish_faster", "text": "Mish reaches the target sooner.", "paper_value": None,
                "metric": "steps_to_target", "compare": {"a": "mish", "b": "relu"}, "direction": "less"}],
}
README = """# A toy paper

## Results
<!-- BEGIN GENERATED: results -->
not run yet
<!-- END GENERATED: results -->

## Verdict
<!-- BEGIN GENERATED: verdict -->
<!-- END GENERATED: verdict -->

## Discussion
Hand-written.
"""


def make_run(runs_dir, slug, profile, variant, seed, acc, steps_to_target=100, n_eval=3):
    """A finished run directory as `repro run` writes it (docs/design.md)."""
    d = aggregate.run_dir(runs_dir, slug, profile, variant, seed)
    d.mkdir(parents=True)
    meta = {"git_commit": "abc1234def5678", "git_dirty": False, "config_hash": f"h{variant}{seed}", "paper": slug,
            "variant": variant, "profile": profile, "seed": seed, "device": "cpu", "precision": "bf16",
            "data": {"dataset": "cifar10", "variant": "cifar10-recon", "files": {"test_batch": "00ff"},
                     "tokenizer": None},
            "start_time": "2026-01-01T00:00:00", "wall_time_s": 3.0}
    (d / "meta.json").write_text(json.dumps(meta))
    lines = [{"kind": "train", "step": s, "loss": 2.0 / (s + 1), "lr": 0.1, "grad_norm": 1.0,
              "examples_per_s": 100.0, "wall_time": s * 0.1} for s in range(0, 30, 10)]
    lines += [{"kind": "eval", "step": 10 * (i + 1), "split": "test", "loss": 1.5 / (i + 1), "accuracy": acc,
               "wall_time": i} for i in range(n_eval)]
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    final = {"metrics": {"test_loss": 0.5, "test_accuracy": acc, "best_test_loss": 0.5,
                         "steps_to_target": steps_to_target, "diverged": 0},
             "step": 30, "diverged": 0, "wall_time_s": 3.0 + seed}
    (d / "final.json").write_text(json.dumps(final))
    return d


@pytest.fixture
def tiny_runs(tmp_path):
    runs = tmp_path / "runs"
    for seed, (m, r) in enumerate([(0.92, 0.90), (0.921, 0.901), (0.919, 0.899)]):
        make_run(runs, "toy", "tiny", "mish", seed, m, steps_to_target=None if seed == 2 else 80)
        make_run(runs, "toy", "tiny", "relu", seed, r, steps_to_target=120)
    return runs


def test_aggregate_runs_one_row_per_run_with_provenance(tiny_runs):
    paths = aggregate.find_runs(tiny_runs, "toy", "tiny", ["relu", "mish"], [0, 1, 2, 3])
    assert len(paths) == 6  # seed 3 is absent and skipped
    runs = aggregate.runs_frame(paths)
    assert len(runs) == 6
    for col in ("git_commit", "config_hash", "seed", "device", "precision", "data_variant", "wall_time_s",
                "test_accuracy", "steps_to_target"):
        assert col in runs.columns
    assert set(runs["data_variant"]) == {"cifar10-recon"}
    assert runs["steps_to_target"].isna().sum() == 1


def test_aggregate_summary_mean_std_n(tiny_runs):
    runs = aggregate.runs_frame(aggregate.find_runs(tiny_runs, "toy", "tiny", ["relu", "mish"], [0, 1, 2]))
    summary = aggregate.summarize(runs, ["relu", "mish"])
    row = summary[(summary.variant == "mish") & (summary.metric == "test_accuracy")].iloc[0]
    assert row["mean"] == pytest.approx(0.92) and row["std"] == pytest.approx(0.001) and row["n"] == 3
    steps = summary[(summary.variant == "mish") & (summary.metric == "steps_to_target")].iloc[0]
    assert (steps["n"], steps["n_runs"]) == (2, 3)
    assert list(dict.fromkeys(summary["variant"])) == ["relu", "mish"]


def test_aggregate_claims_verdicts(tiny_runs):
    runs = aggregate.runs_frame(aggregate.find_runs(tiny_runs, "toy", "tiny", ["relu", "mish"], [0, 1, 2]))
    claims = aggregate.claims_frame(PAPER, "toy", "tiny", runs).set_index("claim")
    assert claims.loc["mish_beats_relu", "verdict"] == "reproduced"
    assert claims.loc["mish_faster", "verdict"] == "inconclusive"
    assert "missing" in claims.loc["mish_faster", "reason"]
    assert claims.loc["mish_beats_relu", "data_variant"] == "cifar10-recon"


def test_markdown_table_escapes_pipes():
    text = tables.markdown_table(["a", "b"], [["x|y", 1.5]])
    assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1.5 |"]
    assert tables.mean_std(0.91234, 0.0012, 3) == "0.9123 ± 0.0012 (n=3)"
    assert tables.mean_std(float("nan"), float("nan"), 0) == "– (n=0)"


def test_readme_replace_section_keeps_the_rest():
    out = readme.replace_section(README, "results", "| new |")
    assert "| new |" in out and "not run yet" not in out
    assert out.endswith("Hand-written.\n") and out.count("<!-- BEGIN GENERATED: results -->") == 1
    assert readme.replace_section(out, "results", "| new |") == out  # idempotent


@pytest.mark.parametrize("text", ["# no markers\n", README.replace("<!-- END GENERATED: results -->", ""),
                                  README + "<!-- BEGIN GENERATED: results -->\n"])
def test_readme_missing_or_duplicate_markers_raise(text):
    with pytest.raises(readme.MarkerError, match="results"):
        readme.replace_section(text, "results", "x", "README.md")


def _aggregate(tmp_path, monkeypatch, runs_dir, profile):
    papers = tmp_path / "papers"
    (papers / "toy").mkdir(parents=True, exist_ok=True)
    (papers / "toy" / "config.yaml").write_text(yaml.safe_dump(PAPER))
    if not (papers / "toy" / "README.md").exists():
        (papers / "toy" / "README.md").write_text(README)
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(papers))
    out = tmp_path / "results" / "toy" / profile
    assert results_main(["aggregate", "toy", "--profile", profile, "--runs-dir", str(runs_dir),
                         "--out-dir", str(out)]) == 0
    return out


def test_cli_aggregate_writes_tables_and_figures(tmp_path, monkeypatch, tiny_runs):
    stale = tmp_path / "results" / "toy" / "tiny" / "probes_lr_sweep_attention.png"  # an earlier aggregation's
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\x89PNG")
    out = _aggregate(tmp_path, monkeypatch, tiny_runs, "tiny")
    assert not stale.exists()  # these runs have no probe records: no probe figure may be left for the README
    for name in ("runs.csv", "summary.csv", "claims.csv", "table.md", "claims.png", "curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "claims.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "table.md").read_text()
    assert "`mish_beats_relu`" in table and "**reproduced**" in table and "cifar10-recon" in table


def test_readme_and_ledger_keep_every_profile(tmp_path, monkeypatch, tiny_runs):
    make_run(tiny_runs, "toy", "smoke", "mish", 0, 0.1)
    make_run(tiny_runs, "toy", "smoke", "relu", 0, 0.1)
    _aggregate(tmp_path, monkeypatch, tiny_runs, "tiny")
    _aggregate(tmp_path, monkeypatch, tiny_runs, "smoke")
    results, readme_path = tmp_path / "results", tmp_path / "papers" / "toy" / "README.md"
    assert results_main(["readme", "toy", "--results-dir", str(results), "--out", str(tmp_path / "s.md")]) == 0
    text = readme_path.read_text()
    assert "### Profile `smoke`" in text and "### Profile `tiny`" in text
    assert text.index("### Profile `smoke`") < text.index("### Profile `tiny`")  # config order
    assert "](../../results/toy/tiny/claims.png)" in text
    assert "**reproduced** on profile `tiny`" in text and "n<3" in text
    assert "Verdict rule" in text and text.endswith("Hand-written.\n")
    assert results_main(["ledger", "--results-dir", str(results)]) == 0
    led = (results / "LEDGER.md").read_text()
    rows = [line for line in led.splitlines() if line.startswith("| [toy]")]
    assert len(rows) == 4  # 2 claims × 2 profiles
    assert "(../papers/toy/README.md)" in rows[0] and "92.0 vs 91.7" in led


def test_ledger_rows_empty_without_results(tmp_path):
    assert ledger.ledger_rows(ledger.collect_claims(tmp_path), tmp_path, tmp_path / "LEDGER.md") == []
    assert "_No results yet._" in ledger.render_ledger(tmp_path, tmp_path, tmp_path / "LEDGER.md")


def test_plots_written_with_missing_values(tmp_path):
    runs = pd.DataFrame({"variant": ["a", "a", "b"], "seed": [0, 1, 0], "m": [1.0, float("nan"), 2.0]})
    assert plots.claims_bars(runs, ["m", "absent"], ["a", "b"], tmp_path / "bars.png").stat().st_size > 0
    empty = pd.DataFrame(columns=["variant", "seed", "kind", "split", "step", "loss"])
    assert plots.learning_curves(empty, ["a"], tmp_path / "curves.png").is_file()


def test_many_lines_get_distinct_colours_and_one_legend_beside_the_panels(tmp_path):
    """Past 10 variants (a benchmark task has 15) colours come from tab20 and the legend leaves the panels."""
    import matplotlib.pyplot as plt

    assert plots.line_style(3, 5) == {"color": "C3"}
    colours = [plots.line_style(i, 15)["color"] for i in range(15)]
    assert len(set(colours)) == 15
    for n, beside in ((3, False), (plots.LEGEND_IN_AXES + 1, True)):
        fig, axes = plt.subplots(1, 2)
        for i in range(n):
            for ax in axes:
                ax.plot([0, 1], [i, i], label=f"v{i}", **plots.line_style(i, n))
        plots.place_legends(fig, axes)
        assert bool(fig.legends) == beside
        assert all((ax.get_legend() is None) == beside for ax in axes)
        assert plots.save_figure(fig, tmp_path / f"lines{n}.png").is_file()


def test_new_paper_copies_template(tmp_path, monkeypatch):
    papers = tmp_path / "papers"
    template = Path(__file__).resolve().parents[1] / "papers" / "_template"
    import shutil

    shutil.copytree(template, papers / "_template")
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(papers))
    assert results_main(["new-paper", "my_paper"]) == 0
    text = (papers / "my_paper" / "README.md").read_text()
    assert "{{slug}}" not in text and "my_paper" in text
    assert readme.sections_in(text) == ["results", "verdict"]
    from shared.config import load_paper

    assert load_paper("my_paper")["claims"][0]["id"] == "method_beats_baseline"  # the template validates
    assert results_main(["new-paper", "my_paper"]) == 2  # exists already
    assert results_main(["new-paper", "Bad-Slug"]) == 2


def test_extra_generated_section_comes_from_results_with_links_rewritten(tmp_path):
    readme_path = tmp_path / "papers" / "toy" / "README.md"
    readme_path.parent.mkdir(parents=True)
    readme_path.write_text(README + "\n## Synthetic\n<!-- BEGIN GENERATED: synthetic -->\n"
                                    "<!-- END GENERATED: synthetic -->\n")
    results = tmp_path / "results"
    readme.update_readme("toy", PAPER, results, readme_path)
    assert "Not run yet: `" in readme_path.read_text()
    (results / "toy" / "synthetic").mkdir(parents=True)
    (results / "toy" / "synthetic" / "section.md").write_text(
        "| f | x |\n|---|---|\n| F1 | 0.5 |\n\n![fig](trajectories.png) [web](https://example.org)\n")
    readme.update_readme("toy", PAPER, results, readme_path)
    text = readme_path.read_text()
    assert "| F1 | 0.5 |" in text
    assert "![fig](../../results/toy/synthetic/trajectories.png)" in text
    assert "[web](https://example.org)" in text
    assert readme.extra_sections(text) == ["synthetic"]


def test_section_profile_is_the_longest_profile_the_section_name_starts_with():
    profiles = ["tiny", "cpu", "cpu_early"]
    assert readme.section_profile("tiny_barriers", profiles) == "tiny"
    assert readme.section_profile("cpu_barriers", profiles) == "cpu"
    assert readme.section_profile("cpu_early_barriers", profiles) == "cpu_early"  # not cpu: built at cpu_early
    assert readme.section_profile("synthetic", profiles) is None  # names no profile: built at any
    assert readme.section_profile("cpux_barriers", profiles) is None


def test_derived_metrics_of_a_paper_analysis_join_the_run_row(tmp_path):
    d = make_run(tmp_path / "runs", "toy", "tiny", "mish", 0, 0.9)
    (d / aggregate.DERIVED).write_text(json.dumps({"metrics": {"top_eigenvalue": 12.5, "test_accuracy": 0.1}}))
    row = aggregate.load_run(d)
    assert row["top_eigenvalue"] == 12.5
    assert row["test_accuracy"] == 0.1  # the analysis may re-measure a metric; its value wins


def test_probe_records_become_a_long_table_and_figures(tmp_path):
    from shared.results import probes

    d = make_run(tmp_path / "runs", "toy", "tiny", "mish", 0, 0.9)
    with open(d / "metrics.jsonl", "a") as f:
        for step in (10, 20):
            f.write(json.dumps({"kind": "probe", "probe": "activations", "step": step,
                                "variance": {"blocks.0": 1.0 * step, "blocks.1": 2.0 * step}, "max_abs": {}}) + "\n")
            f.write(json.dumps({"kind": "probe", "probe": "weight_norm", "step": step, "total": 3.0,
                                "norm": {"w": None}}) + "\n")
    frame = probes.probe_frame([d])
    var = frame[(frame["probe"] == "activations") & (frame["step"] == 20)]
    assert dict(zip(var["layer"], var["value"])) == {"blocks.0": 20.0, "blocks.1": 40.0}
    assert frame[frame["probe"] == "weight_norm"]["layer"].tolist() == ["", ""]  # the null per-layer entry is dropped
    assert probes.probe_frame([d], rename={"relu": "relu"}).empty  # runs not named in `rename` are left out
    written = probes.plot_probes(frame, ["mish"], tmp_path / "out", "toy")
    assert sorted(p.name for p in written) == ["probes_activations.png", "probes_weight_norm.png"]
    # none of the named variants has a record (a profile running none of a task's variants): no empty figure
    assert probes.plot_probes(frame, ["relu"], tmp_path / "out_none", "toy") == []


def test_mappings_over_thresholds_are_scalar_keys_not_layers(tmp_path):
    """grad_spikes' ``count_above: {"10": .., "50": ..}`` is keyed by threshold: one scalar key per threshold, drawn
    over steps, never on a 'layer' axis (they once were); a per-layer key of the same record stays per layer."""
    from shared.results import probes

    d = make_run(tmp_path / "runs", "toy", "tiny", "mish", 0, 0.9)
    with open(d / "metrics.jsonl", "a") as f:
        for step, n in ((10, 3), (20, 1)):
            f.write(json.dumps({"kind": "probe", "probe": "grad_spikes", "step": step, "max_ratio": 60.0,
                                "count_above": {"10": n, "50": 0}, "frac_above": {"10": n / 100, "50": 0.0}}) + "\n")
            f.write(json.dumps({"kind": "probe", "probe": "grad_norms", "step": step, "total": 1.0,
                                "block_norm": {"blocks.0": 0.5}}) + "\n")
    frame = probes.probe_frame([d])
    spikes = frame[frame["probe"] == "grad_spikes"]
    assert (spikes["layer"] == "").all()
    assert list(dict.fromkeys(spikes["key"])) == ["max_ratio", "count_above[10]", "count_above[50]",
                                                 "frac_above[10]", "frac_above[50]"]
    assert spikes[spikes["key"] == "count_above[10]"]["value"].tolist() == [3.0, 1.0]
    norms = frame[(frame["probe"] == "grad_norms") & (frame["key"] == "block_norm")]
    assert norms["layer"].tolist() == ["blocks.0", "blocks.0"]
    assert probes.plot_probes(frame, ["mish"], tmp_path / "out", "toy")[0].name == "probes_grad_norms.png"


def test_bookkeeping_keys_stay_in_the_table_but_get_no_panel(tmp_path, monkeypatch):
    """grad_spikes' ``steps`` (steps folded in since the last record, the probe's cadence) is kept in probes.csv but
    drawn in no panel (it once was: a flat line); the figure's panels are exactly the other keys."""
    from shared.results import plots, probes

    d = make_run(tmp_path / "runs", "toy", "tiny", "mish", 0, 0.9)
    with open(d / "metrics.jsonl", "a") as f:
        for step in (10, 20):
            f.write(json.dumps({"kind": "probe", "probe": "grad_spikes", "step": step, "max_ratio": 60.0, "steps": 10,
                                "count_above": {"10": 2}, "frac_above": {"10": 0.02}}) + "\n")
    frame = probes.probe_frame([d])
    assert "steps" in set(frame["key"])
    titles = []
    monkeypatch.setattr(plots, "save_figure",
                        lambda fig, path: titles.extend(ax.get_title() for ax in fig.axes) or path)
    assert [p.name for p in probes.plot_probes(frame, ["mish"], tmp_path / "out", "toy")] == ["probes_grad_spikes.png"]
    assert titles == ["grad_spikes: max_ratio", "grad_spikes: count_above[10]", "grad_spikes: frac_above[10]"]
    only_steps = frame[frame["key"] == "steps"]
    assert probes.plot_probes(only_steps, ["mish"], tmp_path / "out2", "toy") == []  # nothing to draw, no figure


def test_largest_layer_by_step_takes_the_max_per_seed_then_the_mean():
    """The 'largest layer over steps' panel: per seed and step the max over layers, then the mean over seeds."""
    import pandas as pd

    from shared.results import probes

    rows = [(0, 10, "a", 1.0), (0, 10, "b", 5.0), (1, 10, "a", 3.0), (1, 10, "b", 2.0),  # step 10: (5 + 3) / 2
            (0, 20, "a", 7.0), (0, 20, "b", 6.0), (1, 20, "a", 1.0), (1, 20, "b", 9.0)]  # step 20: (7 + 9) / 2
    frame = pd.DataFrame(rows, columns=["seed", "step", "layer", "value"])
    assert probes.largest_layer_by_step(frame).to_dict() == {10: 4.0, 20: 8.0}


def test_a_diverged_run_keeps_only_what_survives_divergence(tmp_path):
    """A run that blew up has no end of training: its probe scalars, probe_metrics and derived values are NaN (a
    claim then reports it as missing), while diverged, steps_to_target, state bytes and best-so-far losses stay."""
    specs = {"top_variance": {"probe": "activations", "key": "variance", "reduce": "last"}}
    rows = {}
    for name, blew_up in (("ok", 0), ("blown", 1)):
        d = make_run(tmp_path / "runs", "toy", "tiny", name, 0, 0.9, steps_to_target=20)
        final = json.loads((d / "final.json").read_text())
        final["metrics"].update(diverged=blew_up, forgetting_rise=-0.5, optimizer_state_bytes_per_param=8.0,
                                test_accuracy=None if blew_up else 0.9)
        final["diverged"] = blew_up
        (d / "final.json").write_text(json.dumps(final))
        (d / "derived.json").write_text(json.dumps({"metrics": {"grad_frac": 0.7}}))
        with open(d / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"kind": "probe", "probe": "activations", "step": 10, "variance": {"b0": 2.0}}) + "\n")
        rows[name] = aggregate.load_run(d, specs)
    ok, blown = rows["ok"], rows["blown"]
    assert (ok["forgetting_rise"], ok["top_variance"], ok["grad_frac"]) == (-0.5, 2.0, 0.7)
    assert all(math.isnan(blown[k]) for k in ("forgetting_rise", "top_variance", "grad_frac", "test_accuracy"))
    assert (blown["diverged"], blown["steps_to_target"], blown["optimizer_state_bytes_per_param"],
            blown["best_test_loss"]) == (1, 20, 8.0, 0.5)


def test_probe_metrics_reduce_the_last_probe_record_into_run_columns(tmp_path):
    """`probe_metrics` (config) -> one column per name in the run's row, from the last record of its probe, reduced
    over layers in model order; a run that never recorded the probe gets NaN (a claim reports it as missing)."""
    d = make_run(tmp_path / "runs", "toy", "tiny", "mish", 0, 0.9)
    with open(d / "metrics.jsonl", "a") as f:
        for step, scale in ((10, 1.0), (20, 3.0)):  # only the last record (step 20) counts
            f.write(json.dumps({"kind": "probe", "probe": "activations", "step": step,
                                "variance": {"blocks.0": 0.5 * scale, "blocks.1": 2.0 * scale, "blocks.2": scale},
                                "max_abs": {"blocks.0": 4.0 * scale, "blocks.1": 1.0}}) + "\n")
            f.write(json.dumps({"kind": "probe", "probe": "grad_norms", "step": step, "total": 7.0 * scale}) + "\n")
            f.write(json.dumps({"kind": "probe", "probe": "zeros", "step": step, "total": 0.0}) + "\n")
    specs = {"top_var": {"probe": "activations", "key": "variance", "reduce": "last"},
             "growth": {"probe": "activations", "key": "variance", "reduce": "last_over_first"},
             "peak": {"probe": "activations", "key": "max_abs", "reduce": "max"},
             "mean_var": {"probe": "activations", "key": "variance", "reduce": "mean"},
             "grad_total": {"probe": "grad_norms", "key": "total", "reduce": "max"},  # a scalar key as it is
             "absent": {"probe": "weight_norm", "key": "total", "reduce": "last"},
             "early_growth": {"probe": "activations", "key": "variance", "reduce": "last_over_first", "at": "first",
                              "layers": "blocks.[12]"},  # step 10, blocks 1-2 only: 1.0 / 2.0
             "no_layer": {"probe": "activations", "key": "variance", "reduce": "max", "layers": "head*"},
             "share_above": {"probe": "activations", "key": "variance", "reduce": "frac_above", "threshold": 2.5},
             "share_above_01": {"probe": "activations", "key": "variance", "reduce": "frac_above", "threshold": 1.5,
                                "layers": "blocks.[01]"},  # 1.5 is not above 1.5
             # over steps: the total gradient norm 7, 21 has mean 14 and population std 7
             "grad_cv": {"probe": "grad_norms", "key": "total", "reduce": "cv", "at": "all"},
             "grad_growth": {"probe": "grad_norms", "key": "total", "reduce": "last_over_first", "at": "all"},
             "per_layer_over_steps": {"probe": "activations", "key": "variance", "reduce": "cv", "at": "all"},
             "layer_cv": {"probe": "activations", "key": "max_abs", "reduce": "cv"},  # 12, 1 at step 20
             "zero_mean_cv": {"probe": "zeros", "key": "total", "reduce": "cv", "at": "all"}}  # 0/0: NaN, not None
    row = aggregate.load_run(d, specs)
    assert (row["top_var"], row["growth"], row["peak"]) == (3.0, 2.0, 12.0)
    assert row["early_growth"] == 0.5 and math.isnan(row["no_layer"])
    assert row["mean_var"] == pytest.approx((1.5 + 6.0 + 3.0) / 3) and row["grad_total"] == 21.0
    assert math.isnan(row["absent"])
    assert row["grad_cv"] == pytest.approx(0.5) and row["grad_growth"] == 3.0
    assert math.isnan(row["per_layer_over_steps"])  # `at: all` reads scalars only
    assert row["layer_cv"] == pytest.approx(5.5 / 6.5) and math.isnan(row["zero_mean_cv"])
    assert row["share_above"] == pytest.approx(2 / 3) and row["share_above_01"] == 0.5  # of (1.5, 6.0, 3.0)
    assert "top_var" not in aggregate.load_run(d)  # no specs, no columns
    runs = aggregate.runs_frame([d], specs)
    assert runs["growth"].tolist() == [2.0]


def test_threshold_claim_in_claims_table(tmp_path):
    runs_dir = tmp_path / "runs"
    for seed, acc in enumerate([0.941, 0.943, 0.945]):
        make_run(runs_dir, "toy", "tiny", "mish", seed, acc)
    paper = dict(PAPER, claims=[{"id": "reaches_94", "text": "Mish reaches 94%.", "metric": "test_accuracy",
                                 "compare": {"a": "mish", "threshold": 0.93}, "direction": "greater"}])
    runs = aggregate.runs_frame(aggregate.find_runs(runs_dir, "toy", "tiny", ["mish"], [0, 1, 2]))
    claims = aggregate.claims_frame(paper, "toy", "tiny", runs)
    assert claims.iloc[0]["verdict"] == "reproduced" and claims.iloc[0]["b"] == "threshold 0.93"
    assert "0.93 (fixed)" in tables.claims_table(claims)


def test_a_paper_without_claims_gets_readme_and_ledger(tmp_path):
    paper = dict(PAPER, claims=[])
    runs_dir = tmp_path / "runs"
    for seed in range(3):
        make_run(runs_dir, "toy", "tiny", "mish", seed, 0.9)
    out = tmp_path / "results" / "toy" / "tiny"
    out.mkdir(parents=True)
    runs = aggregate.runs_frame(aggregate.find_runs(runs_dir, "toy", "tiny", ["mish"], [0, 1, 2]))
    aggregate.claims_frame(paper, "toy", "tiny", runs).to_csv(out / readme.CLAIMS, index=False)
    assert readme.read_csv(out / readme.CLAIMS).empty
    readme_path = tmp_path / "README.md"
    readme_path.write_text(README)
    readme.update_readme("toy", paper, tmp_path / "results", readme_path)
    assert "states no claims" in readme_path.read_text()


def test_cluster_table_rows_per_paper_variant_and_only_declared_metrics(tmp_path):
    from shared.results.cluster import cluster_names, write_cluster

    papers = {
        "p_two": {"cluster": {"name": "land", "metrics": ["acc", "eig"]}},
        "p_one": {"cluster": {"name": "land", "metrics": ["acc", "barrier"]}},
        "p_none": {"cluster": {"name": "land", "metrics": ["acc"]}},  # no results at this profile
        "other": {},
    }
    for slug, rows in {"p_two": [("a", "acc", 0.5, 0.1, 3), ("a", "eig", 12.0, 2.0, 3), ("a", "loss", 1.0, 0.0, 3)],
                       "p_one": [("b", "acc", 0.25, float("nan"), 1), ("b", "barrier", 0.75, 0.05, 2)]}.items():
        (tmp_path / slug / "tiny").mkdir(parents=True)
        pd.DataFrame(rows, columns=["variant", "metric", "mean", "std", "n"]).to_csv(
            tmp_path / slug / "tiny" / "summary.csv", index=False)
    assert cluster_names(papers) == ["land"]
    md = write_cluster(papers, "land", "tiny", tmp_path, tmp_path / "land" / "tiny").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| paper"))
    assert header == "| paper | variant | acc | barrier | eig |"  # declared metrics, in slug then declared order
    assert "| [p_one](../../../papers/p_one/README.md) | `b` | 0.25 (n=1) | 0.75 ± 0.05 (n=2) | – |" in md
    assert "| [p_two](../../../papers/p_two/README.md) | `a` | 0.5 ± 0.1 (n=3) | – | 12 ± 2 (n=3) |" in md
    assert "loss" not in md and "No `tiny` results yet: `p_none`." in md
    assert len(pd.read_csv(tmp_path / "land" / "tiny" / "cluster.csv")) == 4
    with pytest.raises(ValueError, match="no paper declares cluster 'nope'"):
        write_cluster(papers, "nope", "tiny", tmp_path, tmp_path / "x")


def test_paired_claim_compares_two_metrics_of_the_same_runs():
    import pandas as pd

    runs = pd.DataFrame({"variant": ["mlp"] * 3 + ["other"] * 3, "seed": [0, 1, 2] * 2,
                         "naive": [0.50, 0.80, 0.65, 9.0, 9.0, 9.0],
                         "permuted": [0.41, 0.69, 0.55, 0.0, 0.0, 0.0]})
    paper = dict(PAPER, claims=[{"id": "matching_lowers_barrier", "text": "Permuted barrier below the naive one.",
                                 "metric": "permuted", "compare": {"a": "mlp", "b_metric": "naive"},
                                 "direction": "less"}])
    row = aggregate.claims_frame(paper, "toy", "tiny", runs).iloc[0]
    assert row["b"] == "mlp: naive" and row["verdict"] == "reproduced"  # the other variant's rows are not used
    assert row["mean_b"] == pytest.approx(0.65) and row["effect"] == pytest.approx(0.10)
    assert "`mlp: naive`" in tables.claims_table(aggregate.claims_frame(paper, "toy", "tiny", runs))


def test_claim_pairs_two_variants_by_seed():
    """compare.paired: the per-seed differences are judged, so a shift shared by both variants' seeds (init, data
    order) cancels; Welch's unpaired test on the same numbers cannot resolve it. A seed on one side only is missing."""
    import pandas as pd

    runs = pd.DataFrame({"variant": ["alt"] * 4 + ["rand"] * 4, "seed": [3, 0, 1, 2, 0, 1, 2, 3],
                         "acc": [0.84, 0.80, 0.90, 0.70, 0.79, 0.89, 0.69, 0.83]})  # alt = rand + 0.01 per seed
    claim = {"id": "alt_beats_rand", "text": "t", "metric": "acc", "direction": "greater"}
    paper = dict(PAPER, claims=[dict(claim, compare={"a": "alt", "b": "rand", "paired": True}),
                                dict(claim, id="unpaired", compare={"a": "alt", "b": "rand"})])
    paired, unpaired = aggregate.claims_frame(paper, "toy", "tiny", runs).itertuples()
    assert paired.b == "rand (paired by seed)" and paired.verdict == "reproduced"
    assert paired.effect == pytest.approx(0.01) and paired.ci_low == pytest.approx(0.01)  # zero spread: a point
    assert paired.mean_b == pytest.approx(0.80) and paired.n_a == paired.n_b == 4
    assert unpaired.verdict == "inconclusive" and unpaired.effect == pytest.approx(0.01)
    lone = aggregate.claims_frame(paper, "toy", "tiny", runs[~((runs.variant == "rand") & (runs.seed == 3))]).iloc[0]
    assert lone.verdict == "inconclusive" and lone.reason.startswith("paired a − b: 1 of 4 values missing")


def test_probe_caption_names_the_benchmark_task_apart_from_the_probe():
    from shared.results.readme import probe_caption

    bench = {"benchmark": {"tasks": {"no_warmup": {}, "warmup": {}}}}
    assert probe_caption("probes_no_warmup_grad_norms", bench) == "probe grad_norms, task no_warmup (mean over seeds)"
    assert probe_caption("probes_warmup_attention", bench) == "probe attention, task warmup (mean over seeds)"
    assert probe_caption("probes_weight_norm", {}) == "probe weight_norm (mean over seeds)"


def test_readme_refreshes_the_description_in_an_aggregated_table(tmp_path):
    """A description edited after the runs (e.g. the measured time) reaches table.md, not only the README."""
    runs = pd.DataFrame({"variant": ["mish"], "seed": [0], "data_variant": ["cifar10-recon"]})
    table = tmp_path / "results" / "toy" / "tiny" / readme.TABLE
    table.parent.mkdir(parents=True)
    table.write_text(cli.table_md("toy · tiny", {"description": "estimated, not run yet"}, runs,
                                  pd.DataFrame(columns=["variant", "metric"]), pd.DataFrame(), []))
    readme_path = tmp_path / "README.md"
    readme_path.write_text(README)
    readme.update_readme("toy", PAPER, tmp_path / "results", readme_path)
    text = table.read_text()
    assert text.startswith("## toy · tiny\n\nsmall\n\nData: `cifar10-recon`;") and "not run yet" not in text
    assert not readme.refresh_table_description(table, "small")  # already current: not rewritten
    assert readme.refresh_table_description(table, "")  # an emptied description drops its paragraph
    assert table.read_text().startswith("## toy · tiny\n\nData: ")


def test_values_mean_std_formats_per_seed_values():
    from shared.results.tables import values_mean_std

    assert values_mean_std([1.0, 2.0, 3.0]) == "2 ± 1"  # sample std (ddof 1)
    assert values_mean_std([0.5, float("nan")]) == "0.5"  # non-finite values left out; one value: the mean alone
    assert values_mean_std([float("nan")]) == values_mean_std([]) == "–"
    assert values_mean_std([1 / 3, 2 / 3]) == "0.5 ± 0.24"  # 4 and 2 significant digits
