"""papers/landscaping_lmc/analysis.py on tiny models and fake run dirs: layers partition the state dict; a segment
moves only its layers; the full-model barrier equals shared.landscape.interpolation_curve computed directly; for a
nearby pair the second-order prediction -(1/8) delta^T H delta matches the measured midpoint excess (a check of the
sign and the factor 1/8); identical pairs have zero barriers; partner runs get empty metrics."""
import copy
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fixtures_data import write_cifar10
from shared.config import default_run_config
from shared.data import load_data
from shared.data.augment import normalize
from shared.landscape import interpolation_curve
from shared.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from papers.landscaping_lmc import analysis  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::shared.data.UnverifiedDataWarning")
MLP = {"name": "mlp", "kwargs": {"hidden": [16, 16], "norm": "layernorm"}}


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data", per_class_per_batch=2)  # 100 train, 30 test images
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def write_run(run_dir: Path, model_cfg: dict, seed: int, state: dict) -> Path:
    cfg = default_run_config()
    cfg.update(model=copy.deepcopy(model_cfg), seed=seed)
    run_dir.mkdir(parents=True)
    (run_dir / "meta.json").write_text(json.dumps({"config": cfg, "profile": "smoke"}))
    torch.save({"model": state}, run_dir / "checkpoint.pt")
    return run_dir


def model_state(model_cfg: dict, seed: int, scale: float = 1.0) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    model = create_model(model_cfg["name"], num_classes=10, **model_cfg["kwargs"])
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def test_layer_groups_partition_the_state_dict_in_order():
    mlp, _ = model_state(MLP, 0)
    groups = analysis.layer_groups(mlp)
    assert list(groups) == ["net.1", "net.4", "net.7"]  # Flatten, (Linear, LayerNorm, ReLU) x2, Linear
    assert groups["net.1"] == ["net.1.weight", "net.1.bias", "net.2.weight", "net.2.bias"]
    resnet, _ = model_state({"name": "resnet20", "kwargs": {"width": 0.25}}, 0)
    groups = analysis.layer_groups(resnet)
    assert list(groups) == ["stem", *(f"blocks.{i}" for i in range(9)), "fc"]
    keys = [k for ks in groups.values() for k in ks]
    assert sorted(keys) == sorted(resnet.state_dict()) and len(keys) == len(set(keys))


def test_restricted_segment_moves_only_its_layers():
    _, a = model_state(MLP, 0)
    _, b = model_state(MLP, 1)
    far = analysis.restricted(a, b, ["net.4.weight", "net.4.bias"])
    for k in a:
        assert torch.equal(far[k], b[k] if k.startswith("net.4.") else a[k])


def test_full_barrier_equals_toolkit_and_identical_pair_is_zero(tmp_path, data_root):
    model, a = model_state(MLP, 0, 3.0)
    _, b = model_state(MLP, 1, 3.0)
    result = analysis.derived(write_run(tmp_path / "a", MLP, 0, a), write_run(tmp_path / "b", MLP, 1000, b),
                              tmp_path / "d.json", n_images=100, n_alphas=5)
    (x, y), = [(x, y) for x, y in _train_batch(MLP)]
    ref = interpolation_curve(model, a, b, [0, 0.25, 0.5, 0.75, 1], [(x, y)])
    assert result["metrics"]["full_loss_barrier"] == pytest.approx(ref["loss_barrier"], abs=1e-6)
    assert [r["layer"] for r in result["layers"]] == ["net.1", "net.4", "net.7"]
    same = analysis.derived(tmp_path / "a", write_run(tmp_path / "c", MLP, 1000, a), tmp_path / "s.json",
                            n_images=100, n_alphas=3)
    assert all(r[k] == 0 for r in same["layers"] for k in ("layer_barrier", "depth_barrier", "layer_predicted"))
    assert analysis.derived(tmp_path / "a", None, tmp_path / "p.json") == {"metrics": {}}


def _train_batch(model_cfg):
    """The 100 fake training images, normalised, as one batch (what derived() uses with n_images=100)."""
    cfg = default_run_config()
    data = load_data(cfg["data"])
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    yield normalize(data.train_x[:100], mean, std), data.train_y[:100]


def test_prediction_matches_midpoint_excess_for_a_nearby_pair(data_root):
    smooth = {"name": "mlp", "kwargs": {**MLP["kwargs"], "act": "silu"}}  # Taylor needs no ReLU kinks on the segment
    model, a = model_state(smooth, 0, 2.0)
    torch.manual_seed(5)
    b = {k: v + 0.003 * torch.randn_like(v) if v.is_floating_point() else v for k, v in a.items()}
    batches = list(_train_batch(smooth))
    for keys in (analysis.layer_groups(model)["net.4"], list(a)):  # one layer, and the whole model
        seg = analysis.segment(model, a, b, keys, [0.0, 0.5, 1.0], batches)
        # L(m) - (L(A) + L(B))/2 = -(1/8) delta^T H(m) delta + O(|delta|^4) (odd terms cancel about m)
        assert seg["midpoint_excess"] == pytest.approx(seg["predicted"], rel=0.05, abs=1e-7)
        assert abs(seg["predicted"]) > 1e-6  # the check is not vacuous
    with pytest.raises(ValueError, match="odd"):
        analysis.layerwise(model, a, b, batches, n_alphas=4)
    assert F.cross_entropy(model(batches[0][0]), batches[0][1]) > 0  # model restored and usable


def test_layerwise_barriers_over_training_at_the_steps_both_runs_kept(tmp_path, data_root, monkeypatch):
    """Kept weights (train.keep_weights_at): at step 0 the pair is one model twice (every barrier 0); the last kept
    step holds the final weights (the run's own layer-wise analysis, reused: the final weights are analysed once, and
    a kept last step that is not them is computed); a step only one run kept is skipped; the README section gets a
    row per step and the figure."""
    _, init = model_state(MLP, 0)
    _, a = model_state(MLP, 0, 3.0)
    _, b = model_state(MLP, 1, 3.0)
    run_a, run_b = write_run(tmp_path / "a", MLP, 0, a), write_run(tmp_path / "b", MLP, 1000, b)
    for run, kept in ((run_a, {0: init, 10: a}), (run_b, {0: init, 5: init, 10: b})):
        for step, state in kept.items():
            torch.save({"model": state, "step": step}, run / f"weights_{step}.pt")
    calls, layerwise = [], analysis.layerwise
    monkeypatch.setattr(analysis, "layerwise", lambda *args, **kw: calls.append(1) or layerwise(*args, **kw))
    result = analysis.derived(run_a, run_b, tmp_path / "d.json", n_images=100, n_alphas=3)
    assert len(calls) == 2  # the final weights and step 0
    steps = result["over_training"]
    assert steps["step"] == [0, 10] and steps["layers"] == ["net.1", "net.4", "net.7"]
    assert all(v[0] == 0.0 for k, v in steps["metrics"].items() if k != "layer_prediction_spearman")
    assert steps["layer_barrier"][0] == [0.0, 0.0, 0.0]
    final = {k: v for k, v in result["metrics"].items()}
    assert {k: v[1] for k, v in steps["metrics"].items()} == pytest.approx(final, nan_ok=True)
    assert steps["layer_barrier"][1] == pytest.approx([r["layer_barrier"] for r in result["layers"]])
    assert abs(final["full_midpoint_excess"]) > 1e-4  # the last step differs from step 0: the check is not vacuous
    torch.save({"model": init, "step": 10}, run_b / "weights_10.pt")  # not the final weights: computed anew
    calls.clear()
    again = analysis.derived(run_a, run_b, tmp_path / "d2.json", n_images=100, n_alphas=3)["over_training"]
    assert len(calls) == 3 and again["metrics"]["full_midpoint_excess"][1] != pytest.approx(final["full_midpoint_excess"])
    root = tmp_path / "runs"
    for variant, body in (("mlp", result), ("mlp_partner", {"metrics": {}})):
        (root / variant / "seed0").mkdir(parents=True)
        (root / variant / "seed0" / "derived.json").write_text(json.dumps(body))
    section = analysis.write_layers_section(root, tmp_path / "out").read_text()
    rows = [line.split("|") for line in section.splitlines() if line.startswith("| `mlp` | ")]
    steps_rows = [r for r in rows if r[2].strip() in ("0", "10")]
    assert [r[2].strip() for r in steps_rows] == ["0", "10"]
    assert steps_rows[0][4].strip() == "0"  # full barrier at step 0
    assert "over_training.png" in section and (tmp_path / "out" / "over_training.png").is_file()
