"""papers/hessian_spectrum/analysis.py (Sagun et al., arXiv:1706.04454): the outlier-count rule on hand values, and
derived.json of a fake run paired with itself (barrier exactly 0, K eigenvalues, descending)."""
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


def test_hessian_spectrum_segment_between_different_models_is_not_flat():
    torch.manual_seed(0)
    from shared.models import create_model

    a, b = (create_model("mlp", num_classes=3, in_features=4, hidden=[16]) for _ in range(2))
    x = torch.randn(32, 4)
    y = a(x).argmax(1).detach()  # labels A fits; B is another random net
    curve = analysis.segment(a, b, [(x, y)], 5)
    assert curve["alpha"] == [0.0, 0.25, 0.5, 0.75, 1.0] and curve["loss"][0] != curve["loss"][-1]
    assert curve["loss_barrier"] >= 0
