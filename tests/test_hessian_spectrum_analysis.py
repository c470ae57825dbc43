"""papers/hessian_spectrum/analysis.py (Sagun et al., arXiv:1706.04454): the outlier-count rule on hand values,
derived.json of a fake run paired with itself (barrier exactly 0, K eigenvalues, descending), and the SLQ bulk
metrics against the exact Hessian of a softmax regression (a known null space)."""
import csv
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from papers.hessian_spectrum import analysis  # noqa: E402
from test_visualizing_loss_landscape_analysis import fake_run  # noqa: E402


def test_hessian_spectrum_count_outliers_largest_log_gap():
    # log gaps: 10/9, 9/8, 8/1 (largest), 1/0.9, 0.9/0.8; the negative eigenvalue is ignored
    assert analysis.count_outliers([0.9, 10, 1, 8, -0.1, 9, 0.8]) == (3, 1.0)
    assert analysis.count_outliers([100.0, 1.0, 0.99]) == (1, 1.0)
    n, edge = analysis.count_outliers([5.0, -1.0])
    assert n == 1 and math.isnan(edge)


def test_hessian_spectrum_pair_with_itself_has_zero_barrier(tmp_path, monkeypatch):
    run_dir, _ = fake_run(tmp_path, monkeypatch, {"hidden": [8]})
    metrics = analysis.write_derived(run_dir, "smoke", run_dir / "derived.json", partner=run_dir, device="cpu")
    details = json.loads((run_dir / "derived.json").read_text())["details"]
    assert metrics["pair_loss_barrier"] == 0.0  # theta(alpha) = theta for every alpha
    eig = details["eigenvalues"]
    assert len(eig) == analysis.SETTINGS["smoke"]["top_k"] and eig == sorted(eig, reverse=True)
    assert metrics["hessian_top_eig"] == eig[0]
    assert metrics["train_loss"] > 0 and 0 <= metrics["train_accuracy"] <= 1
    assert 0 <= metrics["slq_mass_negative"] <= 1 - metrics["slq_mass_near_zero"] <= 1
    assert math.isclose(sum(details["slq"]["weights"]), 1.0, rel_tol=1e-9)
    # the section reads that quadrature back: params x (1 - mass near 0 - mass below -tau) eigenvalues above tau
    analysis.write_section({"fake": run_dir}, "smoke", tmp_path / "section")
    row = next(csv.DictReader(open(tmp_path / "section" / "results.csv")))
    n_params = details["slq"]["n_params"]
    assert n_params == sum(p.numel() for p in torch.load(run_dir / "checkpoint.pt")["model"].values())
    want = n_params * (1 - metrics["slq_mass_near_zero"] - metrics["slq_mass_negative"])
    assert int(row["params"]) == n_params and int(row["slq_count_above"]) == round(want)


def test_hessian_spectrum_bulk_metrics_match_the_exact_hessian():
    """Softmax regression W x + b, 4 inputs, 3 classes: P = 15 parameters, and adding one vector to every class's
    (w_c, b_c) leaves the loss unchanged, so H has at least 5 zero eigenvalues. With full Lanczos (iters = P) each
    probe's quadrature is exact in its Krylov space; over probes, E[mass] = the exact fraction of eigenvalues
    (Rademacher probes have ||v||^2 = P) and E[trace] = tr H, within a few standard errors of Hutchinson's."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3).double()
    x, y = torch.randn(64, 4, dtype=torch.float64), torch.randint(0, 3, (64,))
    params = list(model.parameters())
    shapes = [p.shape for p in params]

    def loss_of(flat):
        w, b = flat[:12].view(shapes[0]), flat[12:].view(shapes[1])
        return torch.nn.functional.cross_entropy(x @ w.T + b, y)

    h = torch.autograd.functional.hessian(loss_of, torch.cat([p.detach().flatten() for p in params]))
    lam = torch.linalg.eigvalsh(h)
    lam1, probes = float(lam.max()), 200
    metrics, quadrature = analysis.bulk_metrics(model, [(x, y)], lam1, probes=probes, iters=15)
    exact_mass = float((lam.abs() <= 0.01 * lam1).double().mean())
    assert exact_mass >= 5 / 15 - 1e-9
    assert abs(metrics["slq_mass_near_zero"] - exact_mass) < 0.06
    assert metrics["slq_mass_negative"] == 0.0  # H is positive semi-definite for a convex loss
    # Hutchinson's variance with Rademacher probes: 2 sum_{i != j} H_ij^2 per probe
    se = math.sqrt(2 * float((h ** 2).sum() - (h.diagonal() ** 2).sum()) / probes)
    assert abs(metrics["hessian_trace"] - float(h.trace())) < 4 * se
    assert quadrature["n_params"] == 15


def test_hessian_spectrum_segment_between_different_models_is_not_flat():
    torch.manual_seed(0)
    from shared.models import create_model

    a, b = (create_model("mlp", num_classes=3, in_features=4, hidden=[16]) for _ in range(2))
    x = torch.randn(32, 4)
    y = a(x).argmax(1).detach()  # labels A fits; B is another random net
    curve = analysis.segment(a, b, [(x, y)], 5)
    assert curve["alpha"] == [0.0, 0.25, 0.5, 0.75, 1.0] and curve["loss"][0] != curve["loss"][-1]
    assert curve["loss_barrier"] >= 0
