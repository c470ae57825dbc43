"""papers/tiny_subspace/analysis.py (Gur-Ari et al., arXiv:1812.04754): f(k) against the explicit Hessian's
eigenvectors, and the curve of a real (tiny) run measured at the weights it kept."""
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from fixtures_data import write_cifar10  # noqa: E402
from papers.tiny_subspace import analysis  # noqa: E402
from shared.config import default_run_config  # noqa: E402
from shared.landscape import make_hvp, subset_loss_and_grad  # noqa: E402
from shared.landscape.runs import image_batches, load_run  # noqa: E402
from shared.models import create_model  # noqa: E402
from shared.train import run as train_run  # noqa: E402


def test_tiny_subspace_top_fraction_matches_explicit_hessian():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, in_features=5, hidden=[3])
    batches = [(torch.randn(20, 5), torch.randint(0, 3, (20,)))]
    hvp = make_hvp(model, F.cross_entropy, batches)
    hessian = torch.stack([hvp(e) for e in torch.eye(hvp.dim)])  # n = 30: explicit H column by column
    _, vectors = torch.linalg.eigh(hessian.double())
    g = subset_loss_and_grad(model, F.cross_entropy, batches)[1].double()

    def f(k):  # ||P_k g||^2 / ||g||^2 onto the eigenvectors of the k largest eigenvalues
        top = vectors[:, -k:]
        return ((top.T @ g).square().sum() / g.square().sum()).item()

    got = analysis.fractions_at(model, batches, k=3, iters=hvp.dim, k_max=5)
    assert abs(got["topk"] - f(3)) < 1e-6
    assert got["by_k"] == pytest.approx([f(k) for k in range(1, 6)], abs=1e-6)
    assert all(a <= b + 1e-12 for a, b in zip(got["by_k"], got["by_k"][1:]))  # nested subspaces
    assert 0 <= got["random"] <= 1
    # Lanczos run to n steps: its k_max + 1 Ritz values are H's largest eigenvalues
    assert got["eigenvalues"] == pytest.approx(torch.linalg.eigvalsh(hessian.double()).flip(0)[:6].tolist(), abs=1e-6)


def tiny_config():
    cfg = default_run_config()
    cfg["model"] = {"name": "mlp", "kwargs": {"hidden": [8]}}
    cfg["schedule"]["name"] = "cosine"  # kept weights need no constant lr
    cfg["data"].update(dataset="cifar10", subset_per_class=2, test_subset=10,
                       augment={"crop_padding": 0, "flip": False, "flip_mode": "random", "pad_mode": "zeros"})
    cfg["train"].update(steps=4, batch_size=10, eval_batch_size=10, log_every=1, keep_weights_at=[2])
    cfg["device"] = "cpu"
    return cfg


def test_tiny_subspace_measures_the_kept_weights_and_the_end(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data")
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    run_dir = tmp_path / "hessian_top_k" / "seed0"  # the variant is read from the folder when meta lacks it
    train_run(tiny_config(), run_dir)
    out = tmp_path / "derived.json"
    metrics = analysis.write_derived(run_dir, "smoke", out, "cpu")
    derived = json.loads(out.read_text())
    curve = derived["details"]["curve"]
    assert [c["step"] for c in curve] == [2, 4]
    # the step-2 point is measured at weights_2.pt, the end at checkpoint.pt: recompute both by hand
    loaded = load_run(run_dir)
    batches = image_batches(loaded.data, "train", analysis.settings("smoke")["images"])
    bases = []
    for c, path in zip(curve, (run_dir / "weights_2.pt", run_dir / "checkpoint.pt")):
        loaded.model.load_state_dict(torch.load(path, weights_only=False)["model"])
        again = analysis.fractions_at(loaded.model, batches, k=10, iters=12)
        assert c["topk"] == pytest.approx(again["topk"], abs=1e-9)
        assert c["by_k"] == pytest.approx(again["by_k"], abs=1e-9)
        assert c["eigenvalues"] == pytest.approx(again["eigenvalues"], abs=1e-9)
        assert len(c["eigenvalues"]) == 11 and c["eigenvalues"] == sorted(c["eigenvalues"], reverse=True)
        bases.append(again["basis"])
    # persistence: the step-2 top subspace against the end's, by hand (tr(P_a P_b) / k); step 2 is >= 10% of 4
    qa, qb = (torch.linalg.qr(b.double().T)[0] for b in bases)
    by_hand = (qa.T @ qb).square().sum().item() / 10
    assert curve[0]["persistence"] == pytest.approx(by_hand, abs=1e-9)
    assert 0 < by_hand < 1 - 1e-6 and curve[1]["persistence"] == 1.0
    assert metrics["top_subspace_persistence"] == curve[0]["persistence"]
    # the overlap between every two measured steps: symmetric, 1 on the diagonal, its last column is p(t)
    pm = derived["details"]["persistence_matrix"]
    assert pm["steps"] == [2, 4] and pm["overlap"][0][0] == pm["overlap"][1][1] == 1.0
    assert pm["overlap"][0][1] == pytest.approx(by_hand, abs=1e-9) == pm["overlap"][1][0]
    # the gap after the top k = 10 at the end, from the kept Ritz values
    assert metrics["eigengap_after_k"] == pytest.approx(curve[-1]["eigenvalues"][9] / curve[-1]["eigenvalues"][10])
    assert curve[0]["loss"] != pytest.approx(curve[1]["loss"])
    end = curve[-1]["by_k"]
    assert metrics["grad_subspace_fraction"] == metrics["grad_frac_topk"] == curve[-1]["topk"]
    assert metrics["top2_share_of_top10"] == pytest.approx(end[1] / end[9])
    assert metrics["top5_share_of_top10"] == pytest.approx(end[4] / end[9])
    # the README section: the gap column and the four-panel figure
    section = analysis.write_section({"hessian_top_k": [out]}, "smoke", tmp_path / "section")
    text = section.read_text()
    gap = curve[-1]["eigenvalues"][9] / curve[-1]["eigenvalues"][10]
    assert "λ_k/λ_k+1" in text and f"{gap:.3g}" in text and (tmp_path / "section" / "overlap.png").is_file()
