"""Config loading, merging and validation: error messages name the file, the key path and the allowed keys."""
import copy

import pytest
import yaml

from shared.config import (ConfigError, config_hash, deep_merge, default_run_config, for_profile, list_papers,
                           load_paper, load_recipe, load_yaml, resolve_paper_run, resolve_run_config)

MINIMAL = {"train": {"steps": 3}}


def test_resolve_run_config_fills_defaults():
    cfg = resolve_run_config(copy.deepcopy(MINIMAL))
    assert cfg["train"]["steps"] == 3 and cfg["train"]["batch_size"] == 128
    assert cfg["optimizer"]["name"] == "sgd" and cfg["seed"] == 0


def test_default_run_config_is_the_file_and_a_fresh_copy_each_time():
    """defaults.yaml is parsed once and cached: a caller that edits what it got must not change the next caller's."""
    from pathlib import Path

    import shared.config
    first = default_run_config()
    assert first == load_yaml(Path(shared.config.__file__).with_name("defaults.yaml"))
    first["train"]["batch_size"] = -1
    first["optimizer"]["kwargs"] = {"edited": True}
    assert default_run_config()["train"]["batch_size"] == 128
    assert default_run_config()["optimizer"].get("kwargs") != {"edited": True}
    assert resolve_run_config(copy.deepcopy(MINIMAL))["train"]["batch_size"] == 128


def test_once_per_content_reparses_only_when_the_file_changes(tmp_path):
    """The cache behind default_run_config / load_recipe / load_paper: keyed by file content and extra args."""
    from shared.config import _once_per_content

    calls = []

    @_once_per_content(maxsize=4)
    def parse(path, tag):
        calls.append(tag)
        return {"text": path.read_text(), "tag": tag, "nested": {"n": 1}}

    f = tmp_path / "a.yaml"
    f.write_text("one")
    got = parse(f, "x")
    got["nested"]["n"] = 99  # a caller's edit must not reach the cache
    assert parse(f, "x") == {"text": "one", "tag": "x", "nested": {"n": 1}}
    assert calls == ["x"]
    assert parse(f, "y")["tag"] == "y" and calls == ["x", "y"]
    f.write_text("two")  # new content: parsed again
    assert parse(f, "x")["text"] == "two" and calls == ["x", "y", "x"]
    with pytest.raises(FileNotFoundError):  # callers check existence first; here the read itself fails
        parse(tmp_path / "missing.yaml", "x")


def test_unknown_key_names_path_and_allowed_keys():
    with pytest.raises(ConfigError) as err:
        resolve_run_config({"train": {"steps": 3, "bacth_size": 8}}, "my.yaml")
    msg = str(err.value)
    assert "my.yaml" in msg and "train.bacth_size" in msg and "batch_size" in msg


def test_unknown_top_level_key_lists_sections():
    with pytest.raises(ConfigError, match=r"unknown key optimiser; allowed keys here: data, device, model"):
        resolve_run_config({"optimiser": {}, **MINIMAL})


def test_bad_value_names_path():
    with pytest.raises(ConfigError, match=r"optimizer\.lr"):
        resolve_run_config({"optimizer": {"lr": -0.1}, **MINIMAL})
    with pytest.raises(ConfigError, match=r"train\.precision"):
        resolve_run_config({"train": {"steps": 3, "precision": "fp8"}})


def test_steps_and_epochs_exclusive():
    with pytest.raises(ConfigError, match="exactly one of train.steps and train.epochs"):
        resolve_run_config({"train": {"steps": 3, "epochs": 1}})
    with pytest.raises(ConfigError, match="exactly one"):
        resolve_run_config({})


def test_deep_merge_merges_mappings_and_replaces_lists():
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    out = deep_merge(base, {"a": {"y": [3]}, "c": 2})
    assert out == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base["a"]["y"] == [1, 2]  # inputs untouched


def test_config_hash_ignores_key_order():
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash({"b": {"d": 3, "c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_config_hash_leaves_out_a_new_key_only_at_its_default():
    run = resolve_run_config(MINIMAL)
    assert run["data"]["classes"] is None
    without = copy.deepcopy(run)
    del without["data"]["classes"]
    assert config_hash(run) == config_hash(without)  # hashes of runs from before the key existed still match
    assert config_hash(resolve_run_config({**MINIMAL, "data": {"classes": [0, 1]}})) != config_hash(run)
    assert run["data"]["classes"] is None  # the hash does not edit its argument


@pytest.mark.parametrize("slug", list_papers())
def test_paper_config_resolves_every_variant_and_profile(slug):
    cfg = load_paper(slug)
    for profile, spec in cfg["profiles"].items():
        for variant in cfg["variants"]:
            run = resolve_paper_run(slug, variant, profile, spec["seeds"][-1])
            assert run["seed"] == spec["seeds"][-1] + cfg["variants"][variant].get("seed_offset", 0)


def _write_paper(root, **changes):
    cfg = {
        "paper": {"title": "T", "arxiv": "0000.00000", "authors": "A", "year": 2020},
        "base": {"optimizer": {"lr": 0.5}, "train": {"steps": 10, "batch_size": 4}},
        "profiles": {"smoke": {"seeds": [0], "overrides": {"train": {"steps": 2}, "optimizer": {"lr": 0.2}}}},
        "variants": {"a": {"overrides": {"optimizer": {"lr": 0.1}}}, "b": {}},
        "claims": [{"id": "c", "text": "a beats b", "metric": "test_accuracy", "compare": {"a": "a", "b": "b"},
                    "direction": "greater"}],
    }
    cfg.update(changes)
    (root / "p").mkdir(exist_ok=True)
    (root / "p" / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_paper_resolution_order_variant_over_profile_over_base(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    _write_paper(tmp_path)
    a = resolve_paper_run("p", "a", "smoke", 7)
    b = resolve_paper_run("p", "b", "smoke")
    assert a["optimizer"]["lr"] == 0.1 and b["optimizer"]["lr"] == 0.2
    assert a["train"]["steps"] == 2 and a["train"]["batch_size"] == 4 and a["seed"] == 7 and b["seed"] == 0


def test_profile_recipe_replaces_base_then_overrides_apply(tmp_path, monkeypatch):
    """A profile naming `recipe: airbench94` starts from the shared recipe, not from the paper's base; the profile's
    and the variant's overrides still merge on top; other profiles keep the base."""
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    base = {"model": {"name": "resnet20", "kwargs": {"act": "relu", "norm": "layernorm"}},
            "optimizer": {"name": "sgd", "lr": 0.5}, "train": {"steps": 10, "batch_size": 4}}
    _write_paper(tmp_path, base=base,
                 profiles={"smoke": {"seeds": [0]},
                           "cpu": {"seeds": [0], "recipe": "airbench94", "overrides": {"train": {"precision": "bf16"}}}},
                 variants={"a": {"overrides": {"model": {"kwargs": {"act": "mish"}}}}, "b": {}})
    recipe = load_recipe("airbench94")
    a, b, smoke = (resolve_paper_run("p", "a", "cpu"), resolve_paper_run("p", "b", "cpu"),
                   resolve_paper_run("p", "a", "smoke"))
    assert b["model"] == {"name": "airbench94", "kwargs": recipe["model"]["kwargs"]}  # no resnet20 kwargs leak in
    assert a["model"]["kwargs"] == {**recipe["model"]["kwargs"], "act": "mish"}
    assert b["optimizer"]["name"] == "sgd_decoupled" and b["optimizer"]["lr"] == 11.5 and b["train"]["epochs"] == 9.9
    assert b["train"]["steps"] is None and b["train"]["precision"] == "bf16" and b["train"]["batch_size"] == 1024
    assert smoke["model"]["name"] == "resnet20" and smoke["optimizer"]["lr"] == 0.5


def test_unknown_recipe_names_profile_and_lists_recipes(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    _write_paper(tmp_path, profiles={"smoke": {"seeds": [0], "recipe": "airbench95"}})
    with pytest.raises(ConfigError, match=r"profiles\.smoke\.recipe: unknown recipe 'airbench95' .*recipes: airbench94"):
        load_paper("p")


# (paper, its cpu variant, the transformer_norm cpu variant that is the same run): the restores that the committed
# `cpu` results of these papers rest on (`reuse_runs` matches records by config hash)
BENCHMARK_CPU_TWINS = [
    ("peri_ln", "pre_ln.lr0.001", "w0-pre_ln.lr0.001"), ("peri_ln", "peri_ln.lr0.003", "w0-peri_ln.lr0.003"),
    ("transformers_without_tears", "post_ln_warmup.lr0.001", "w10-post_ln.lr0.001"),
    ("transformers_without_tears", "prenorm_scalenorm_fixnorm.lr0.003", "w0-scalenorm_fixnorm.lr0.003"),
    ("normformer", "normformer.lr0.001", "w10-normformer.lr0.001"),
    ("relu_revival", "nonorm_relu.lr0.003", "w10-nonorm_relu.lr0.003"),
    ("relu_revival", "layernorm_gelu", "w10-pre_ln.lr0.001"),
    ("powernorm", "powernorm", "w10-powernorm.lr0.001"),
]


@pytest.mark.parametrize("slug,variant,twin", BENCHMARK_CPU_TWINS)
def test_benchmark_papers_cpu_runs_are_the_benchmarks_runs(slug, variant, twin):
    """The normalization papers' `cpu` profiles name the shared recipe `gpt_norm_cpu` (the benchmark's `cpu`
    setting), so a variant that is one of the benchmark's grid points resolves to the very same config (same hash);
    a different variant does not."""
    assert load_paper(slug)["profiles"]["cpu"]["recipe"] == "gpt_norm_cpu"
    cfg = resolve_paper_run(slug, variant, "cpu", 0)
    assert config_hash(cfg) == config_hash(resolve_paper_run("transformer_norm", twin, "cpu", 0))
    assert config_hash(cfg) != config_hash(resolve_paper_run("transformer_norm", "w0-rmsnorm.lr0.001", "cpu", 0))
    assert cfg["train"]["steps"] == 300 and cfg["model"]["kwargs"]["n_layer"] == 6


def test_airbench_paper_is_its_recipe():
    """papers/airbench keeps no copy of the recipe: its profiles resolve to the shared file plus their own scale."""
    recipe = load_recipe("airbench94")
    run = resolve_paper_run("airbench", "alternating_flip", "paper")
    assert run["optimizer"] == deep_merge(run["optimizer"], recipe["optimizer"])
    assert run["model"] == recipe["model"] and run["schedule"]["kwargs"] == recipe["schedule"]["kwargs"]
    assert run["train"]["precision"] == "fp16" and run["device"] == "cuda"


def test_paper_claim_with_unknown_variant_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    _write_paper(tmp_path, claims=[{"id": "c", "text": "t", "metric": "m", "compare": {"a": "a", "b": "zz"},
                                    "direction": "less"}])
    with pytest.raises(ConfigError, match=r"claims\.0\.compare\.b: unknown variant 'zz'; variants: a, b"):
        load_paper("p")


def test_paper_claim_compares_exactly_one_of_b_threshold_b_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    claim = {"id": "c", "text": "t", "metric": "m", "direction": "less"}
    _write_paper(tmp_path, claims=[dict(claim, compare={"a": "a", "b_metric": "n"})])
    assert load_paper("p")["claims"][0]["compare"]["b_metric"] == "n"
    _write_paper(tmp_path, claims=[dict(claim, compare={"a": "a", "b": "b", "b_metric": "n"})])
    with pytest.raises(ConfigError, match=r"claims\.0\.compare"):
        load_paper("p")
    _write_paper(tmp_path, claims=[dict(claim, compare={"a": "a", "b": "b", "paired": True})])  # pairs by seed
    assert load_paper("p")["claims"][0]["compare"]["paired"] is True
    _write_paper(tmp_path, claims=[dict(claim, compare={"a": "a", "threshold": 0.5, "paired": True})])
    with pytest.raises(ConfigError, match=r"claims\.0\.compare"):  # pairing needs a variant b
        load_paper("p")


def test_paper_variant_typo_fails_at_load(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    _write_paper(tmp_path, variants={"a": {"overrides": {"optimizer": {"learning_rate": 0.1}}}})
    with pytest.raises(ConfigError, match=r"config.yaml: unknown key variants\.a\.overrides\.optimizer\.learning_rate"):
        load_paper("p")


def test_unknown_paper_and_variant_list_known(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    _write_paper(tmp_path)
    with pytest.raises(ConfigError, match="known papers: p"):
        load_paper("nope")
    with pytest.raises(ConfigError, match="unknown variant 'c'; variants: a, b"):
        resolve_paper_run("p", "c", "smoke")
    with pytest.raises(ConfigError, match="unknown profile 'tiny'; profiles: smoke"):
        resolve_paper_run("p", "a", "tiny")


def test_yaml_key_written_twice_fails_naming_file_and_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("profiles:\n  smoke:\n    grid_points: 1\n    grid_points: 2\n")
    with pytest.raises(ConfigError, match=r"(?s)c\.yaml.*duplicate key 'grid_points'.*line 4"):
        load_yaml(path)


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: &a {x: 1, y: 2}\nb:\n  <<: *a\n  y: 3\n")
    assert load_yaml(path) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


def test_probe_metrics_must_read_a_recorded_probe(tmp_path, monkeypatch):
    """`probe_metrics` may only read a probe some run records; a bad `reduce` is a schema error naming the key."""
    monkeypatch.setenv("REPRO_PAPERS_DIR", str(tmp_path))
    spec = {"top_variance": {"probe": "activations", "key": "variance", "reduce": "last"}}
    _write_paper(tmp_path, probe_metrics=spec)
    with pytest.raises(ConfigError, match=r"probe_metrics\.top_variance\.probe: no run records probe 'activations'; "
                                          r"add it to train\.probes\.names .*enabled: none"):
        load_paper("p")
    probes = {"train": {"steps": 2, "probes": {"every": 1, "names": ["activations"]}}}

    def load_with(probe_metrics):  # a paper whose smoke profile records the `activations` probe
        _write_paper(tmp_path, probe_metrics=probe_metrics, profiles={"smoke": {"seeds": [0], "overrides": probes}})
        return load_paper("p")

    assert load_with(spec)["probe_metrics"] == spec
    with pytest.raises(ConfigError, match=r"probe_metrics\.v\.reduce"):
        load_with({"v": {**spec["top_variance"], "reduce": "median"}})
    for bad in ({"reduce": "frac_above"}, {"reduce": "max", "threshold": 1.0}):  # threshold iff frac_above
        with pytest.raises(ConfigError, match=r"probe_metrics\.v: `threshold` goes with `reduce: frac_above`"):
            load_with({"v": {**spec["top_variance"], **bad}})
    share = {"v": {**spec["top_variance"], "reduce": "frac_above", "threshold": 1.0}}
    assert load_with(share)["probe_metrics"] == share
    over_steps = {"v": {"probe": "activations", "key": "total", "reduce": "cv", "at": "all"}}
    assert load_with(over_steps)["probe_metrics"] == over_steps
    with pytest.raises(ConfigError, match=r"probe_metrics\.v: `at: all` reduces a scalar key over the run's"):
        load_with({"v": {**over_steps["v"], "layers": "blocks.*"}})


def test_for_profile_takes_the_entry_of_the_profile_a_name_extends():
    table = {"tiny": "T", "cpu": "C", "cpu_early": "E"}
    assert for_profile(table, "tiny") == "T"
    assert for_profile(table, "cpu_late") == "C"  # cpu_<suffix> -> cpu
    assert for_profile(table, "cpu_early") == "E"  # its own entry first
    assert for_profile(table, "cpu_early_b") == "E"  # the longest name it extends
    assert for_profile(table, "cpux", default="D") == "D"  # not `cpu_...`: no entry
    with pytest.raises(ConfigError, match=r"no analysis settings for profile 'small'; known: \['cpu', 'cpu_early'"):
        for_profile(table, "small", "analysis settings")
