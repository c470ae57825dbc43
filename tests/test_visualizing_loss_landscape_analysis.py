"""papers/visualizing_loss_landscape/analysis.py (Li et al., arXiv:1712.09913): the 1-D filter-normalised loss
increase against a hand computation, and derived.json of a fake run dir against the toolkit called directly."""
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from fixtures_data import write_cifar10  # noqa: E402
from papers.visualizing_loss_landscape import analysis  # noqa: E402
from shared.config import default_run_config  # noqa: E402
from shared.landscape import hessian_eigs  # noqa: E402
from shared.models import create_model  # noqa: E402


def fake_run(tmp_path, monkeypatch, model_kwargs):
    """A finished-run folder (meta.json + checkpoint.pt) of a small MLP on a fake CIFAR-10."""
    write_cifar10(tmp_path / "data")
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    cfg = default_run_config()
    cfg["model"] = {"name": "mlp", "kwargs": model_kwargs}
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=10, **model_kwargs)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "meta.json").write_text(json.dumps({"config": cfg, "variant": "v", "seed": 0}))
    torch.save({"model": model.state_dict()}, run_dir / "checkpoint.pt")
    return run_dir, model


def test_visualizing_loss_increase_matches_hand_computation():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, in_features=6, hidden=[5])
    batches = [(torch.randn(7, 6), torch.randint(0, 3, (7,))), (torch.randn(4, 6), torch.randint(0, 3, (4,)))]
    dirs = analysis.directions(model, 2)
    x, y = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}

    def loss_at(coef, d):
        moved = create_model("mlp", num_classes=3, in_features=6, hidden=[5])
        moved.load_state_dict({n: theta[n] + coef * d[n] for n in theta})
        return F.cross_entropy(moved(x), y).item()  # mean over all 11 examples

    base = F.cross_entropy(model(x), y).item()
    # 1/(2J) sum_j sum_{s=+-1} [L(theta + s a d_j) - L(theta)]
    expected = sum(loss_at(s * 0.5, d) - base for d in dirs for s in (1, -1)) / 4
    assert abs(analysis.loss_increase_1d(model, batches, dirs, 0.5) - expected) < 1e-5
    assert all(d[n].abs().sum() == 0 for d in dirs for n in d if d[n].dim() == 1)  # biases not moved (§4)


def test_visualizing_derived_equals_toolkit_on_the_fixed_subset(tmp_path, monkeypatch):
    run_dir, model = fake_run(tmp_path, monkeypatch, {"hidden": [8]})
    out = analysis.write_derived(run_dir, "smoke", run_dir / "derived.json", device="cpu")["metrics"]
    data = analysis.load_run(run_dir).data
    s = analysis.SETTINGS["smoke"]
    batches = analysis.image_batches(data, "train", s["hessian_images"])
    assert sum(len(b[1]) for b in batches) == s["hessian_images"]
    top, _ = hessian_eigs(model.eval(), F.cross_entropy, batches, k=1, iters=s["lanczos_iters"], seed=0)
    assert abs(out["hessian_top_eig"] - float(top[0])) < 1e-6 * max(1.0, abs(float(top[0])))
    assert out["subset_loss"] > 0 and json.loads((run_dir / "derived.json").read_text())["metrics"] == out
