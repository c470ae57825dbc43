"""papers/git_rebasin/analysis.py on tiny fake run dirs (meta.json + checkpoint.pt) over fake CIFAR-10 files:
a pair of identical models has zero barriers; a model and a hidden-unit permutation of itself have a positive naive
barrier and a zero barrier after weight matching; derived.json equals shared.landscape.interpolation_curve computed
directly, BN re-estimation included; partner runs get empty metrics; the README section counts seeds."""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures_data import write_cifar10
from shared.config import ConfigError, default_run_config
from shared.data import load_data
from shared.landscape import apply_permutation, interpolation_curve, permutation_spec, random_permutation
from shared.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from papers.git_rebasin import analysis  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::shared.data.UnverifiedDataWarning")
MLP = {"name": "mlp", "kwargs": {"hidden": [16, 16]}}
RESNET_BN = {"name": "resnet20", "kwargs": {"width": 0.25, "norm": "batchnorm"}}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", per_class_per_batch=2)  # 100 train, 30 test images
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run_config(model: dict, seed: int) -> dict:
    cfg = default_run_config()
    cfg.update(model=copy.deepcopy(model), seed=seed)
    return cfg


def write_run(run_dir: Path, cfg: dict, state: dict, profile: str = "smoke") -> Path:
    run_dir.mkdir(parents=True)
    (run_dir / "meta.json").write_text(json.dumps({"config": cfg, "profile": profile, "seed": cfg["seed"] % 1000}))
    torch.save({"model": state}, run_dir / "checkpoint.pt")
    return run_dir


def built(model_cfg: dict, seed: int, scale: float = 1.0) -> dict:
    torch.manual_seed(seed)
    model = create_model(model_cfg["name"], num_classes=10, **model_cfg["kwargs"])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)  # larger weights: confident logits, so a misaligned midpoint has a visible barrier
    return model.state_dict()


def test_identical_pair_has_zero_barriers(tmp_path, data_root):
    state = built(MLP, 0)
    a = write_run(tmp_path / "a", run_config(MLP, 0), state)
    b = write_run(tmp_path / "b", run_config(MLP, 1000), state)
    metrics = analysis.derived(a, b, tmp_path / "derived.json")["metrics"]
    assert set(metrics) == {f"{m}_{s}_{k}_barrier" for m in analysis.METHODS for s in analysis.SPLITS
                            for k in ("loss", "error")}
    assert all(v == 0.0 for v in metrics.values()), metrics


def fitted_mlp(data_cfg: dict) -> tuple[torch.nn.Module, dict]:
    """An MLP that fits the 100 fake training images (low endpoint loss, so a misaligned midpoint stands out)."""
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=10, **MLP["kwargs"])
    (x, y), = analysis.image_batches(load_data(data_cfg), "train", 100, "cpu", batch_size=100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model, model.state_dict()


def test_weight_matching_removes_the_barrier_of_a_permuted_copy(tmp_path, data_root):
    model, state = fitted_mlp(run_config(MLP, 0)["data"])
    spec = permutation_spec(model)
    permuted = apply_permutation(spec, random_permutation(spec, torch.Generator().manual_seed(1)), state)
    a = write_run(tmp_path / "a", run_config(MLP, 0), state)
    b = write_run(tmp_path / "b", run_config(MLP, 1000), permuted)
    metrics = analysis.derived(a, b, tmp_path / "derived.json", n_alphas=5)["metrics"]
    assert metrics["naive_train_loss_barrier"] > 0.1
    assert abs(metrics["permuted_train_loss_barrier"]) < 1e-5
    assert abs(metrics["permuted_test_loss_barrier"]) < 1e-5
    # activation matching recovers the same permutation from the two copies' activations alone
    assert abs(metrics["activation_train_loss_barrier"]) < 1e-5
    assert abs(metrics["activation_test_loss_barrier"]) < 1e-5


@pytest.mark.parametrize("model_cfg", [MLP, RESNET_BN], ids=["mlp", "resnet_bn"])
def test_derived_barrier_equals_toolkit_interpolation_curve(tmp_path, data_root, model_cfg):
    state_a, state_b = built(model_cfg, 0, 2.0), built(model_cfg, 1, 2.0)
    a = write_run(tmp_path / "a", run_config(model_cfg, 0), state_a)
    b = write_run(tmp_path / "b", run_config(model_cfg, 1000), state_b)
    result = analysis.derived(a, b, tmp_path / "derived.json", n_images=60, n_alphas=3)
    assert json.loads((tmp_path / "derived.json").read_text())["metrics"] == result["metrics"]
    data = load_data(run_config(model_cfg, 0)["data"])
    model = create_model(model_cfg["name"], num_classes=10, **model_cfg["kwargs"])
    train = analysis.image_batches(data, "train", 60, "cpu")
    test = analysis.image_batches(data, "test", 60, "cpu")
    for split, batches in (("train", train), ("test", test)):
        # the toolkit's own loop: BN reset on the training images at every alpha, then evaluation
        ref = interpolation_curve(model, state_a, state_b, [0.0, 0.5, 1.0], batches, bn_batches=train)
        assert result["metrics"][f"naive_{split}_loss_barrier"] == pytest.approx(ref["loss_barrier"], abs=1e-6)
        assert result["metrics"][f"naive_{split}_error_barrier"] == pytest.approx(ref["error_barrier"], abs=1e-9)
        np.testing.assert_allclose(result["curves"]["naive"][split]["loss"], ref["loss"], atol=1e-6)
    assert result["n_images"] == {"train": 60, "test": 30}


def test_partner_run_gets_empty_metrics_and_mismatched_pairs_raise(tmp_path, data_root):
    a = write_run(tmp_path / "a", run_config(MLP, 0), built(MLP, 0))
    assert analysis.derived(a, None, tmp_path / "p.json") == {"metrics": {}}
    assert json.loads((tmp_path / "p.json").read_text()) == {"metrics": {}}
    other = run_config({"name": "mlp", "kwargs": {"hidden": [16, 16]}}, 1000)
    other["optimizer"]["lr"] = 0.5
    b = write_run(tmp_path / "b", other, built(MLP, 1))
    with pytest.raises(ValueError, match="differ in more than the seed"):
        analysis.derived(a, b, tmp_path / "d.json")


def test_section_reports_paired_barriers_per_variant(tmp_path):
    root = tmp_path / "runs"
    for seed, (naive, permuted) in enumerate([(0.5, 0.1), (0.4, 0.2), (0.3, 0.35)]):
        metrics = {f"{m}_{s}_{k}_barrier": 0.0 for m in analysis.METHODS for s in analysis.SPLITS
                   for k in ("loss", "error")}
        metrics.update(naive_train_loss_barrier=naive, permuted_train_loss_barrier=permuted)
        curve = {s: {"loss": [1.0, 1.2, 1.0], "accuracy": [0.5, 0.4, 0.5]} for s in analysis.SPLITS}
        for variant, body in (("mlp_x1", {"metrics": metrics, "curves": {"alpha": [0, 0.5, 1], "naive": curve,
                                                                         "permuted": curve}}),
                              ("mlp_x1_partner", {"metrics": {}})):
            (root / variant / f"seed{seed}").mkdir(parents=True)
            (root / variant / f"seed{seed}" / "derived.json").write_text(json.dumps(body))
    section = analysis.write_barrier_section(root, tmp_path / "out").read_text()
    row = next(line for line in section.splitlines() if "`mlp_x1`" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3" and cells[2] == "0.4 ± 0.1" and cells[5] == "2"  # seeds, naive, permuted < naive
    assert "mlp_x1_partner" not in section and (tmp_path / "out" / "curves.png").is_file()


def test_analysis_sizes_come_from_the_runs_profile_never_silently_from_another(tmp_path, data_root):
    state = built(MLP, 0)
    a = write_run(tmp_path / "a", run_config(MLP, 0), state, profile="smoke_wide")  # extends smoke by name
    b = write_run(tmp_path / "b", run_config(MLP, 1000), state, profile="smoke_wide")
    result = analysis.derived(a, b, tmp_path / "d.json")
    assert len(result["curves"]["naive"]["train"]["loss"]) == analysis.SETTINGS["smoke"]["n_alphas"]
    assert result["n_images"]["train"] == min(analysis.SETTINGS["smoke"]["n_images"], 100)
    c = write_run(tmp_path / "c", run_config(MLP, 0), state, profile="small")  # no entry: tiny's was used before
    d = write_run(tmp_path / "d", run_config(MLP, 1000), state, profile="small")
    with pytest.raises(ConfigError, match=r"no analysis settings .*for profile 'small'.*--n-images"):
        analysis.derived(c, d, tmp_path / "e.json")
    given = analysis.derived(c, d, tmp_path / "e.json", n_images=40, n_alphas=3)  # both given: no lookup
    assert given["n_images"]["train"] == 40 and len(given["curves"]["naive"]["train"]["loss"]) == 3


def test_barriers_over_training_at_the_steps_both_runs_kept(tmp_path, data_root, monkeypatch):
    """Kept weights (train.keep_weights_at): at step 0 the pair is one model twice (every barrier 0); at step 10 B is
    a hidden-unit permutation of A (a naive barrier, none after weight matching); a step only B kept is skipped; step
    10 holds the final weights, so their barriers are reused, not computed again; a kept last step that is not the
    final weights is computed."""
    model, fitted = fitted_mlp(run_config(MLP, 0)["data"])
    spec = permutation_spec(model)
    permuted = apply_permutation(spec, random_permutation(spec, torch.Generator().manual_seed(1)), fitted)
    init = built(MLP, 0)
    a = write_run(tmp_path / "a", run_config(MLP, 0), fitted)
    b = write_run(tmp_path / "b", run_config(MLP, 1000), permuted)
    for run, kept in ((a, {0: init, 10: fitted}), (b, {0: init, 5: init, 10: permuted})):
        for step, state in kept.items():
            torch.save({"model": state, "step": step}, run / f"weights_{step}.pt")
    calls, pair_barriers = [], analysis.pair_barriers
    monkeypatch.setattr(analysis, "pair_barriers", lambda *args, **kw: calls.append(1) or pair_barriers(*args, **kw))
    result = analysis.derived(a, b, tmp_path / "derived.json", n_alphas=5)
    assert len(calls) == 2  # the final weights and step 0; step 10 is the final weights
    steps = result["over_training"]
    assert steps["step"] == [0, 10]
    assert all(v[0] == 0.0 for v in steps["metrics"].values())
    assert steps["metrics"]["naive_train_loss_barrier"][1] > 0.1
    assert abs(steps["metrics"]["permuted_train_loss_barrier"][1]) < 1e-5
    # the last kept step is the final weights: the same barriers as the run's own
    last = steps["metrics"]["naive_train_loss_barrier"][1]
    assert last == pytest.approx(result["metrics"]["naive_train_loss_barrier"])
    torch.save({"model": init, "step": 10}, a / "weights_10.pt")  # no longer the final weights: computed anew
    calls.clear()
    again = analysis.derived(a, b, tmp_path / "derived2.json", n_alphas=5)["over_training"]["metrics"]
    assert len(calls) == 3 and again["naive_train_loss_barrier"][1] != pytest.approx(last)
    # the README section gets a row per step and the figure
    root = tmp_path / "runs"
    for variant, body in (("mlp_x1", result), ("mlp_x1_partner", {"metrics": {}})):
        (root / variant / "seed0").mkdir(parents=True)
        (root / variant / "seed0" / "derived.json").write_text(json.dumps(body))
    section = analysis.write_barrier_section(root, tmp_path / "out").read_text()
    rows = [line for line in section.splitlines() if line.startswith("| `mlp_x1` | ")]
    assert len(rows) == 3 and [r.split("|")[2].strip() for r in rows[1:]] == ["0", "10"]
    assert "over_training.png" in section and (tmp_path / "out" / "over_training.png").is_file()
