"""The training loop: determinism, checkpoint/resume equality, logs and provenance, divergence, steps-to-target."""
import json
import logging
import math
import os
import platform
import subprocess
import sys
import warnings

import pytest

from fixtures_data import write_cifar10, write_wikitext2
from run_helpers import run_killed_at
from shared.config import resolve_run_config
from shared.data import ClassificationBatches, LMBatches
from shared.train import run


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cifar10(root, per_class_per_batch=4, test_per_class=4)
    write_wikitext2(root)
    monkeypatch.setenv("REPRO_DATA_DIR", str(root))
    warnings.simplefilter("ignore")  # fixture data has unknown checksums: 'unverified' is expected here
    return root


def cifar_cfg(**train):
    return resolve_run_config({
        "data": {"dataset": "cifar10", "download": False},
        "model": {"name": "resnet20", "kwargs": {"width": 0.5}},
        "optimizer": {"name": "sgd", "lr": 0.05, "weight_decay": 5e-4, "kwargs": {"momentum": 0.9}},
        "schedule": {"name": "cosine", "warmup_steps": 2},
        "train": {"steps": 6, "batch_size": 16, "eval_batch_size": 20, "log_every": 1, **train},
        "seed": 3, "device": "cpu",
    })


def lm_cfg(**train):
    return resolve_run_config({
        "data": {"dataset": "wikitext2", "download": False, "seq_len": 16},
        "model": {"name": "gpt", "kwargs": {"n_layer": 1, "n_head": 2, "d_model": 16, "block_size": 16,
                                            "dropout": 0.2}},
        "optimizer": {"name": "adamw", "lr": 3e-3},
        "train": {"steps": 6, "batch_size": 4, "eval_batch_size": 8, "log_every": 1, **train},
        "seed": 1, "device": "cpu",
    })


@pytest.mark.parametrize("make_cfg", [cifar_cfg, lm_cfg], ids=["cifar", "lm"])
def test_run_same_seed_identical_metrics(data_root, tmp_path, make_cfg):
    a = run(make_cfg(), tmp_path / "a")
    b = run(make_cfg(), tmp_path / "b")
    assert a["metrics"] == b["metrics"]
    losses = lambda d: [r["loss"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
    assert losses("a") == losses("b")


def test_run_different_seed_differs(data_root, tmp_path):
    a = run(cifar_cfg(), tmp_path / "a")
    cfg = cifar_cfg()
    cfg["seed"] = 4
    assert run(cfg, tmp_path / "b")["metrics"] != a["metrics"]


@pytest.mark.parametrize("make_cfg,batches", [(cifar_cfg, ClassificationBatches), (lm_cfg, LMBatches)],
                         ids=["cifar", "lm"])
def test_resume_after_kill_matches_uninterrupted(data_root, tmp_path, monkeypatch, make_cfg, batches):
    ref = run(make_cfg(checkpoint_every=2, eval_every=3), tmp_path / "ref")
    run_killed_at(make_cfg(checkpoint_every=2, eval_every=3), tmp_path / "resumed", batches, 5, monkeypatch)
    assert not (tmp_path / "resumed" / "final.json").exists()
    resumed = run(make_cfg(checkpoint_every=2, eval_every=3), tmp_path / "resumed", resume=True)
    assert resumed["metrics"] == ref["metrics"] and resumed["step"] == ref["step"] == 6
    meta = json.loads((tmp_path / "resumed" / "meta.json").read_text())
    assert meta["resumed_from_step"] == 4
    steps = [json.loads(ln)["step"] for ln in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]  # no duplicated or missing lines after the resume


def test_resume_of_finished_run_returns_its_result(data_root, tmp_path):
    first = run(cifar_cfg(), tmp_path / "r")
    assert run(cifar_cfg(), tmp_path / "r", resume=True) == first


def test_metrics_log_and_provenance_fields(data_root, tmp_path):
    final = run(cifar_cfg(eval_every=3), tmp_path / "r", meta={"paper": "p", "variant": "v", "profile": "smoke"})
    rows = [json.loads(ln) for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    evals = [r for r in rows if r["kind"] == "eval"]
    assert set(train[0]) == {"kind", "step", "loss", "lr", "grad_norm", "examples_per_s", "wall_time"}
    assert [r["step"] for r in evals] == [3, 6] and all(0 <= r["accuracy"] <= 1 for r in evals)
    assert train[0]["lr"] == pytest.approx(0.05 / 2)  # first warm-up step: lr * 1/2
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    for key in ("git_commit", "git_dirty", "config", "config_hash", "seed", "device", "precision", "versions",
                "start_time", "end_time", "wall_time_s", "paper", "variant", "profile", "n_params"):
        assert key in meta, key
    assert meta["data"]["variant"] == "unverified" and meta["data"]["dataset"] == "cifar10"
    assert len(meta["config_hash"]) == 64 and meta["versions"]["torch"]
    assert final["metrics"]["test_accuracy"] == evals[-1]["accuracy"]
    assert (tmp_path / "r" / "checkpoint.pt").exists()


def test_lm_run_reports_perplexity(data_root, tmp_path):
    final = run(lm_cfg(), tmp_path / "r")["metrics"]
    assert final["val_perplexity"] == pytest.approx(math.exp(final["val_loss"]))
    assert final["test_perplexity"] > 1


def test_divergence_is_recorded_not_raised(data_root, tmp_path):
    cfg = cifar_cfg(divergence_loss=3.0)
    cfg["optimizer"]["lr"] = 1e4
    final = run(cfg, tmp_path / "r")
    assert final["diverged"] and final["metrics"]["diverged"] == 1
    assert final["step"] < 6 and final["metrics"]["test_accuracy"] is None
    probed = cifar_cfg(divergence_loss=3.0, probes={"every": 1, "names": ["weight_norm"]})
    probed["optimizer"]["lr"] = 1e4
    blown = run(probed, tmp_path / "p")
    assert blown["diverged"] and blown["metrics"]["final_weight_norm"] is None  # no end of training to describe



def test_divergence_patience_counts_consecutive_steps_over_the_threshold(data_root, tmp_path):
    # every loss is above 0, so the run ends as diverged after exactly `divergence_patience` steps
    assert run(cifar_cfg(divergence_loss=0.0), tmp_path / "a")["step"] == 1  # the default patience, 1
    final = run(cifar_cfg(divergence_loss=0.0, divergence_patience=3), tmp_path / "b")
    assert final["diverged"] and final["step"] == 3
    survived = run(cifar_cfg(divergence_loss=0.0, divergence_patience=7), tmp_path / "c")
    assert not survived["diverged"] and survived["step"] == 6  # patience longer than the run
    blown = cifar_cfg(divergence_loss=1e30, divergence_patience=1000)
    blown["optimizer"]["lr"] = 1e38  # the weights overflow after the first step: the loss is NaN from step 2
    assert run(blown, tmp_path / "d")["step"] < 6  # a non-finite loss ends the run at once, whatever the patience


def test_steps_to_target_recorded(data_root, tmp_path):
    reached = run(cifar_cfg(eval_every=2, target_loss=1e6), tmp_path / "a")["metrics"]["steps_to_target"]
    never = run(cifar_cfg(eval_every=2, target_loss=1e-9), tmp_path / "b")["metrics"]["steps_to_target"]
    assert reached == 2 and never is None


def test_grad_clip_and_label_smoothing_run(data_root, tmp_path):
    final = run(cifar_cfg(grad_clip=0.1, label_smoothing=0.1), tmp_path / "r")
    rows = [json.loads(ln) for ln in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grad_norm"] is not None for r in rows if r["kind"] == "train")
    assert final["step"] == 6


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_cpu_without_native_bf16_warns(data_root, tmp_path, monkeypatch, caplog, native):
    monkeypatch.setattr("shared.train.loop.cpu_supports_bf16", lambda: native)
    with caplog.at_level(logging.WARNING, logger="shared.train.loop"):
        run(cifar_cfg(precision="bf16", steps=3), tmp_path / "r")
    assert any("without native bf16" in r.getMessage() for r in caplog.records) is not native


def test_bf16_autocast_runs_on_cpu(data_root, tmp_path):
    final = run(cifar_cfg(precision="bf16", channels_last=True, steps=3), tmp_path / "r")
    assert final["step"] == 3 and math.isfinite(final["metrics"]["test_loss"])
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["precision"] == "bf16"


def test_epochs_sets_total_steps(data_root, tmp_path):
    cfg = cifar_cfg(steps=None, epochs=1)
    final = run(cfg, tmp_path / "r")
    assert final["step"] == 200 // 16  # 200 fixture images, drop_last


def test_resume_ignores_checkpoint_of_another_config(data_root, tmp_path):
    run(cifar_cfg(), tmp_path / "r")
    (tmp_path / "r" / "final.json").unlink()  # as after a kill, but the config has changed since
    cfg = cifar_cfg()
    cfg["optimizer"]["lr"] = 0.01
    resumed = run(cfg, tmp_path / "r", resume=True)
    assert resumed["metrics"] == run(cfg, tmp_path / "fresh")["metrics"]
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["resumed_from_step"] is None


def test_git_state_dirty_for_code_not_for_generated_outputs(tmp_path):
    import subprocess

    from shared.train.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for rel in ("shared/x.py", "results/p/tiny/table.md", "papers/p/README.md", "papers/p/config.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("a\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "results/p/tiny/table.md").write_text("b\n")  # the workflow rewrote a table
    (tmp_path / "papers/p/README.md").write_text("b\n")  # and a README's generated section
    (tmp_path / "untracked.py").write_text("b\n")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "papers/p/config.yaml").write_text("b\n")  # a config change can change numbers
    assert git_state(tmp_path)["git_dirty"] is True


def test_keep_weights_at_keeps_the_weights_after_those_steps(data_root, tmp_path, monkeypatch):
    """``train.keep_weights_at``: weights_<t>.pt holds the weights after optimizer step t (0 = the init), so with a
    constant lr the kept step-3 weights of a 6-step run are the final weights of the same run cut to 3 steps; keeping
    weights changes nothing else, survives a resume, and a step past the run's end is refused up front."""
    import torch

    from shared.config import config_hash
    from shared.train.checkpoint import kept_weights, load_checkpoint

    kept = run(lm_cfg(keep_weights_at=[0, 3, 6]), tmp_path / "kept")
    assert kept["metrics"] == run(lm_cfg(), tmp_path / "plain")["metrics"]
    # the default leaves old hashes as they were
    assert config_hash(lm_cfg(keep_weights_at=[])) == config_hash(lm_cfg())
    files = kept_weights(tmp_path / "kept")
    assert list(files) == [0, 3, 6]
    w = {t: load_checkpoint(p)["model"] for t, p in files.items()}
    short = run(lm_cfg(steps=3), tmp_path / "short")
    assert short["step"] == 3
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()
    assert same(w[3], load_checkpoint(tmp_path / "short" / "checkpoint.pt")["model"])
    assert same(w[6], load_checkpoint(tmp_path / "kept" / "checkpoint.pt")["model"])
    assert not same(w[0], w[3])
    assert not kept_weights(tmp_path / "plain")

    run_killed_at(lm_cfg(keep_weights_at=[0, 3, 6], checkpoint_every=2), tmp_path / "resumed", LMBatches, 4,
                  monkeypatch)
    assert list(kept_weights(tmp_path / "resumed")) == [0, 3]
    run(lm_cfg(keep_weights_at=[0, 3, 6], checkpoint_every=2), tmp_path / "resumed", resume=True)
    again = {t: load_checkpoint(p)["model"] for t, p in kept_weights(tmp_path / "resumed").items()}
    assert list(again) == [0, 3, 6] and all(same(again[t], w[t]) for t in w)

    with pytest.raises(ValueError, match=r"keep_weights_at: steps \[7\] are past the run's last step 6"):
        run(lm_cfg(keep_weights_at=[2, 7]), tmp_path / "bad")


def test_cpu_device_description_names_the_kernels_isa(monkeypatch):
    """Provenance says which vector instructions torch's CPU kernels use: runs on AVX2 and AVX512 kernels round
    differently, so only runs with the same ISA are expected to match bit for bit."""
    import torch

    from shared.train.device import cpu_description, device_description

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert device_description(torch.device("cpu")).endswith(" (AVX512), 3 threads")
    # the CPU alone (the benchmark's rows): model and ISA, no device type or threads
    assert cpu_description().endswith(" (AVX512)") and device_description(torch.device("cpu")) == \
        f"cpu: {cpu_description()}, 3 threads"


REFAULTS = """
import resource
import torch
from shared.train.device import retain_freed_memory
how = retain_freed_memory()
faulted = 0
for _ in range(16):  # a 64 MiB block (above glibc's largest mmap threshold), allocated, written and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(2**24).fill_(1)
    faulted += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before >= 16  # 4 KiB pages, or 2 MiB with THP
print(how, faulted)
"""


GLIBC = platform.libc_ver()[0] == "glibc"


def _subprocess(args: list[str], malloc: str) -> str:
    return subprocess.run([sys.executable, *args], env={**os.environ, "REPRO_MALLOC": malloc}, capture_output=True,
                          text=True, check=True).stdout


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_retained_freed_memory_is_reused_without_page_faults():
    """glibc's defaults unmap a freed 64 MiB block, so the next one faults its pages in (and the kernel zero-fills
    them) again; retained, a freed block is reused as it is. ``$REPRO_MALLOC=system`` leaves the defaults."""
    system, retained = (_subprocess(["-c", REFAULTS], m).split() for m in ("system", "retain"))
    assert system[0] == "system" and retained[0] == "retained"
    # blocks faulted in anew: every one with the defaults; retained, only the first few (until the heap has a hole
    # of the block's size that nothing small lands in)
    assert int(system[1]) == 16 and int(retained[1]) <= 6


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_retained_freed_memory_changes_no_result(data_root, tmp_path):
    """Where tensors live is not what is computed: a run with freed memory retained (the CPU default) ends with the
    same metrics, to the last bit, as with glibc's defaults."""
    import yaml

    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cifar_cfg()))
    finals = {}
    for malloc in ("system", "retain"):
        _subprocess(["-m", "shared.cli", "run", "--config", str(tmp_path / "cfg.yaml"), "--out",
                     str(tmp_path / malloc)], malloc)
        finals[malloc] = json.loads((tmp_path / malloc / "final.json").read_text())["metrics"]
        assert json.loads((tmp_path / malloc / "meta.json").read_text())["malloc"] == \
            {"system": "system", "retain": "retained"}[malloc]
    assert finals["system"] == finals["retain"]
