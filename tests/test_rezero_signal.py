"""papers/rezero/signal.py and shared/probes/jacobian.py: the input-output Jacobian's singular values against
hand-computable cases (identity blocks; a per-token linear block x -> x W^T, whose Jacobian is block-diagonal with
T copies of W), the probe on a GPT, and the section at a small model size."""
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from shared.probes import FixedBatch, create_probes
from shared.probes.jacobian import block_jacobian_singular_values, jacobian_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from papers.rezero import signal  # noqa: E402


def test_singular_values_of_known_stacks():
    h0 = torch.randn(3, 4)
    assert torch.allclose(block_jacobian_singular_values([nn.Identity(), nn.Identity()], h0),
                          torch.ones(12, dtype=torch.float64))
    torch.manual_seed(0)
    a, b = nn.Linear(4, 4, bias=True), nn.Linear(4, 4, bias=False)
    sigma = block_jacobian_singular_values([a, b], h0, chunk=5)  # chunks that do not divide 12
    expected = torch.linalg.svdvals((b.weight @ a.weight).double()).repeat(3).sort(descending=True).values
    assert torch.allclose(sigma, expected, atol=1e-6)
    stats = jacobian_stats(torch.tensor([0.5, 0.95, 1.0, 1.05, 3.0], dtype=torch.float64))
    assert stats == {"sigma_max": 3.0, "sigma_median": 1.0, "sigma_min": 0.5, "isometric_share": 0.6}


def test_jacobian_probe_on_a_rezero_gpt_at_init_is_isometric():
    from shared.models import create_model

    model = create_model("gpt", vocab_size=32, block_size=16, n_layer=2, n_head=2, d_model=8,
                         norm_placement="rezero")
    x = torch.randint(0, 32, (2, 16))
    batch = FixedBatch(x, x, forward=model, loss=lambda logits, y: 0.0)
    probes = create_probes({"every": 1, "names": ["jacobian"]}, model, None, lambda: batch)
    (record,) = probes.after_step(1)
    assert record["probe"] == "jacobian" and record["isometric_share"] == 1.0
    assert record["sigma_min"] == pytest.approx(1.0) and record["sigma_max"] == pytest.approx(1.0)
    with torch.no_grad():  # open the gates wide (the branches are small at init): no longer the identity
        for block in model.blocks:
            block.attn_res.alpha.fill_(30.0)
            block.mlp_res.alpha.fill_(30.0)
    (record,) = probes.after_step(2)
    assert record["isometric_share"] < 1.0
    with pytest.raises(ValueError, match="blocks"):
        create_probes({"every": 1, "names": ["jacobian"]}, nn.Linear(2, 2), None, lambda: batch)


def test_section_rows_per_placement_and_depth(tmp_path, monkeypatch):
    monkeypatch.setattr(signal, "profile_model", lambda profile: {"n_layer": 1, "n_head": 2, "d_model": 8,
                                                                  "block_size": 16, "dropout": 0.0})
    rows = signal.main("smoke", tmp_path, factors=(1, 2), seeds=(0, 1), tokens=3)
    assert [(r["blocks"], r["layers"]) for r in rows] == [(n, d) for n in signal.PLACEMENTS for d in (1, 2)]
    assert all(r["isometric_share"] == "1 ± 0" for r in rows if r["blocks"] == "ReZero")
    assert all(r["isometric_share"] != "1 ± 0" for r in rows if r["blocks"] == "Post-LN")
    assert (tmp_path / "jacobian.png").is_file() and "| ReZero | 2 | 2 |" in (tmp_path / "section.md").read_text()


def test_profile_model_reads_the_profiles_gpt():
    kwargs = signal.profile_model("cpu")
    assert kwargs["n_layer"] == 6 and kwargs["d_model"] == 128 and "norm_placement" not in kwargs
