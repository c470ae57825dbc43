"""The airbench94 recipe through the one training loop: model hooks, lookahead, TTA metrics, determinism, resume,
bf16, alternating flips in the batcher, and the paper config resolving to the recipe from config alone."""
import json
import warnings

import pytest
import torch

from fixtures_data import write_cifar10
from run_helpers import run_killed_at
from shared.config import load_paper, resolve_paper_run, resolve_run_config
from shared.data import ClassificationBatches, ClassificationData
from shared.models.airbench import whitening_filters
from shared.train import run


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cifar10(root, per_class_per_batch=4, test_per_class=4)  # 200 train, 40 test images
    monkeypatch.setenv("REPRO_DATA_DIR", str(root))
    warnings.simplefilter("ignore")  # fixture data has unknown checksums
    return root


def airbench_cfg(**train):
    """The paper's base recipe at smoke scale (a width-1/8 net, batch 50: 4 steps per epoch)."""
    cfg = resolve_paper_run("airbench", "alternating_flip", "smoke")
    cfg["data"].update(download=False, subset_per_class=None, test_subset=None)
    cfg["train"].update({"steps": 8, "batch_size": 50, "eval_batch_size": 20, "log_every": 1, **train})
    cfg["device"] = "cpu"
    return resolve_run_config(cfg)


def _state(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


def test_airbench_run_deterministic_with_tta_metrics(data_root, tmp_path):
    a = run(airbench_cfg(), tmp_path / "a")
    b = run(airbench_cfg(), tmp_path / "b")
    assert a["metrics"] == b["metrics"]
    m = a["metrics"]
    assert {"test_accuracy", "test_tta_accuracy", "test_tta_loss"} <= set(m) and 0 <= m["test_tta_accuracy"] <= 1
    evals = [json.loads(ln) for ln in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
             if json.loads(ln)["kind"] == "eval"]
    assert evals[-1]["tta_accuracy"] == m["test_tta_accuracy"]


def test_airbench_trainer_calls_data_init_and_step_hooks(data_root, tmp_path):
    cfg = airbench_cfg(steps=6)
    cfg["model"]["kwargs"]["whiten_bias_epochs"] = 0  # bias frozen from the first step: it must stay at its zero init
    run(cfg, tmp_path / "frozen")
    state = _state(tmp_path / "frozen")
    assert torch.count_nonzero(state["whiten.bias"]) == 0
    from shared.data import load_data
    data = load_data(cfg["data"])
    x = data.train_x.float().div(255)
    x = (x - torch.tensor(data.mean).view(1, 3, 1, 1)) / torch.tensor(data.std).view(1, 3, 1, 1)
    torch.testing.assert_close(state["whiten.weight"], whitening_filters(x[:5000], 2, 5e-4).float())
    run(airbench_cfg(steps=6), tmp_path / "trained")  # default: trained for the first 3 epochs (12 steps)
    assert torch.count_nonzero(_state(tmp_path / "trained")["whiten.bias"]) > 0


def test_airbench_resume_after_kill_matches_uninterrupted(data_root, tmp_path, monkeypatch):
    ref = run(airbench_cfg(checkpoint_every=3), tmp_path / "ref")
    run_killed_at(airbench_cfg(checkpoint_every=3), tmp_path / "resumed", ClassificationBatches, 7, monkeypatch)
    resumed = run(airbench_cfg(checkpoint_every=3), tmp_path / "resumed", resume=True)
    assert resumed["metrics"] == ref["metrics"]  # lookahead state and the bias hook survive the resume


def test_airbench_bf16_path_runs(data_root, tmp_path):
    final = run(airbench_cfg(steps=2, precision="bf16"), tmp_path / "r")
    assert final["step"] == 2 and 0 <= final["metrics"]["test_tta_accuracy"] <= 1
    assert json.loads((tmp_path / "r" / "meta.json").read_text())["precision"] == "bf16"


def _batches(flip_mode, seed=0, n=12):
    x = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))
    data = ClassificationData(x, torch.arange(n), {}, n, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    aug = {"crop_padding": 0, "flip": True, "flip_mode": flip_mode}
    return ClassificationBatches(data, n, seed, "cpu", aug), x.float().div(255)


def _flipped(batches, raw, step):
    """Per image (by label): was it mirrored at this step?"""
    xb, yb = batches.batch(step)
    out = torch.empty(len(yb), dtype=torch.bool)
    for img, label in zip(xb, yb):
        same, mirrored = torch.equal(img, raw[label]), torch.equal(img, raw[label].flip(-1))
        assert same != mirrored
        out[label] = mirrored
    return out


def test_alternating_flip_alternates_per_epoch_and_is_pure():
    batches, raw = _batches("alternate")  # one step per epoch
    flips = [_flipped(batches, raw, s) for s in range(4)]
    assert 0 < flips[0].sum() < len(flips[0])  # a random first-epoch choice
    assert torch.equal(flips[1], ~flips[0]) and torch.equal(flips[2], flips[0]) and torch.equal(flips[3], ~flips[0])
    fresh, _ = _batches("alternate")
    assert torch.equal(_flipped(fresh, raw, 3), flips[3])  # out of order, new object: same batch
    other, _ = _batches("alternate", seed=1)
    assert not torch.equal(_flipped(other, raw, 0), flips[0])
    rand, _ = _batches("random")
    r = [_flipped(rand, raw, s) for s in range(4)]
    assert any(not torch.equal(r[s + 1], ~r[s]) for s in range(3))  # random flips do not alternate


def test_airbench_paper_config_is_the_recipe():
    cfg = load_paper("airbench")
    assert set(cfg["variants"]) == {"alternating_flip", "random_flip", "no_flip"}
    assert {"smoke", "tiny", "cpu", "paper"} <= set(cfg["profiles"])
    for claim in cfg["claims"]:
        for prof, spec in cfg["profiles"].items():
            if prof != "smoke" and (not claim.get("profiles") or prof in claim["profiles"]):
                assert len(spec["seeds"]) >= 5, (claim["id"], prof)
    paper = resolve_paper_run("airbench", "alternating_flip", "paper")
    tr, opt = paper["train"], paper["optimizer"]
    assert (tr["epochs"], tr["batch_size"], tr["label_smoothing"], tr["tta_level"], tr["precision"]) == \
        (9.9, 1024, 0.2, 2, "fp16")
    assert (opt["name"], opt["lr"], opt["weight_decay"], opt["lr_mult"]) == ("sgd_decoupled", 11.5, 0.0153,
                                                                             {"norm_bias": 64.0})
    assert paper["data"]["augment"] == {"crop_padding": 2, "flip": True, "flip_mode": "alternate",
                                        "pad_mode": "reflect"}
    assert paper["model"]["name"] == "airbench94" and paper["data"]["subset_per_class"] is None
    assert resolve_paper_run("airbench", "random_flip", "cpu")["data"]["augment"]["flip_mode"] == "random"
    assert resolve_paper_run("airbench", "no_flip", "cpu")["data"]["augment"]["flip"] is False
