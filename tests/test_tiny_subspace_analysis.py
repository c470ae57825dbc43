"""papers/tiny_subspace/analysis.py (Gur-Ari et al., arXiv:1812.04754): f_top against the explicit Hessian's
eigenvectors, and the recomputed prefix of a real (tiny) run equal to its final checkpoint."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from fixtures_data import write_cifar10  # noqa: E402
from papers.tiny_subspace import analysis  # noqa: E402
from shared.config import default_run_config  # noqa: E402
from shared.landscape import flatten, make_hvp, subset_loss_and_grad  # noqa: E402
from shared.models import create_model  # noqa: E402
from shared.train import run as train_run  # noqa: E402


def test_tiny_subspace_measure_steps():
    assert analysis.measure_steps(310, [0.02, 0.1, 0.3]) == [6, 31, 93, 310]
    assert analysis.measure_steps(3, [0.01, 0.34, 5.0]) == [1, 3]


def test_tiny_subspace_top_fraction_matches_explicit_hessian():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, in_features=5, hidden=[3])
    batches = [(torch.randn(20, 5), torch.randint(0, 3, (20,)))]
    hvp = make_hvp(model, F.cross_entropy, batches)
    hessian = torch.stack([hvp(e) for e in torch.eye(hvp.dim)])  # n = 30: explicit H column by column
    _, vectors = torch.linalg.eigh(hessian.double())
    top = vectors[:, -3:]  # eigenvectors of the k = 3 largest eigenvalues
    g = subset_loss_and_grad(model, F.cross_entropy, batches)[1].double()
    expected = ((top.T @ g).square().sum() / g.square().sum()).item()  # ||P_k g||^2 / ||g||^2
    got = analysis.fractions_at(model, batches, k=3, iters=hvp.dim)
    assert abs(got["topk"] - expected) < 1e-6
    assert 0 <= got["random"] <= 1


def tiny_config(schedule="constant"):
    cfg = default_run_config()
    cfg["model"] = {"name": "mlp", "kwargs": {"hidden": [8]}}
    cfg["schedule"]["name"] = schedule
    cfg["data"].update(test_subset=10, augment={"crop_padding": 0, "flip": False, "flip_mode": "random",
                                                "pad_mode": "zeros"})
    cfg["train"].update(steps=4, batch_size=10, eval_batch_size=10, log_every=1)
    cfg["device"] = "cpu"
    return cfg


def test_tiny_subspace_prefix_of_full_length_is_the_run(tmp_path, monkeypatch):
    write_cifar10(tmp_path / "data")
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    cfg = tiny_config()
    train_run(cfg, tmp_path / "run")
    final = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["model"]
    again = analysis.prefix_weights(cfg, 4, "cpu")
    assert all(torch.equal(final[k], again[k]) for k in final)
    early = analysis.prefix_weights(cfg, 2, "cpu")
    assert not torch.equal(flatten(list(early.values())), flatten(list(final.values())))


def test_tiny_subspace_refuses_a_decaying_schedule():
    with pytest.raises(ValueError, match="constant lr"):
        analysis.prefix_weights(tiny_config("cosine"), 2, "cpu")
