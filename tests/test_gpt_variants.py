"""Tests for the GPT's norm types and placements (shared/models/norms.py, shared/models/gpt.py): each norm against a
hand computation, each placement's block against its formula, Mix-LN's layer split, ReZero's identity at init,
LayerNorm Scaling's factors, qk-layernorm's logit bound, the attention-statistics contract, and a forward/backward
of every combination."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.models import MODELS, create_model, create_norm, list_norms
from shared.models.gpt import PLACEMENTS, CausalSelfAttention, GPTConfig
from shared.models.norms import PowerNorm

SMALL = dict(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=8)


def small_gpt(**kwargs):
    return create_model("gpt", **{**SMALL, **kwargs})


def randomize_norms(model: nn.Module) -> None:
    """Non-trivial affine parameters, so a formula that skips a norm cannot pass by accident."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                m.weight.uniform_(0.5, 1.5)
                if getattr(m, "bias", None) is not None:
                    m.bias.uniform_(-0.5, 0.5)


# ---------------------------------------------------------------- norms


def test_scalenorm_matches_hand_computation():
    norm = create_norm("scalenorm", 2, layout="nlc")
    assert torch.isclose(norm.scale, torch.tensor(math.sqrt(2)))  # g initialised to sqrt(d)
    x = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    expected = math.sqrt(2) * torch.tensor([[3 / 5, 4 / 5], [0.0, -1.0]])  # g x / ||x||
    torch.testing.assert_close(norm(x), expected)
    with torch.no_grad():
        norm.scale.fill_(3.0)
    torch.testing.assert_close(norm(x), 3.0 * torch.tensor([[0.6, 0.8], [0.0, -1.0]]))
    img = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1).repeat(2, 1, 2, 2)  # nchw: over C at each pixel
    torch.testing.assert_close(create_norm("scalenorm", 2)(img), math.sqrt(2) * img / 5)


def test_fixnorm_fixed_unit_length_no_parameters():
    norm = create_norm("fixnorm", 4, layout="nlc")
    assert not list(norm.parameters())
    x = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 7.0]])
    torch.testing.assert_close(norm(x), torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 1.0]]))


def test_batchnorm_nlc_normalizes_over_batch_and_tokens():
    x = torch.tensor([[[1.0, 0.0], [3.0, 2.0]], [[5.0, 4.0], [7.0, 10.0]]])  # (N=2, L=2, C=2)
    # channel 0: values 1, 3, 5, 7 -> mean 4, biased var 5; channel 1: 0, 2, 4, 10 -> mean 4, var 14
    mean, var = torch.tensor([4.0, 4.0]), torch.tensor([5.0, 14.0])
    norm = create_norm("batchnorm", 2, layout="nlc")
    torch.testing.assert_close(norm(x), (x - mean) / torch.sqrt(var + 1e-5))
    # running stats: 0.9 * init + 0.1 * batch stat, unbiased variance (n = 4 tokens) as in nn.BatchNorm
    torch.testing.assert_close(norm.running_mean, 0.1 * mean)
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * var * 4 / 3)


def test_powernorm_running_quadratic_mean_and_forward():
    eps = 1e-5
    norm = PowerNorm(2, eps=eps)  # alpha_fwd = 0.9, warm-up of 1 step
    x1 = torch.tensor([[[1.0, 2.0], [3.0, -2.0]]])  # (1, 2, 2): tokens (1, 2) and (3, -2)
    x2 = torch.tensor([[[2.0, 0.0], [0.0, 4.0]]])
    # step 1 (warm-up): sigma_B^2 = mean of squares per channel = (5, 4); psi^2 <- sigma_B^2
    y1 = norm(x1)
    torch.testing.assert_close(norm.running_phi, torch.tensor([5.0, 4.0]))
    torch.testing.assert_close(y1, x1 / torch.sqrt(torch.tensor([5.0, 4.0]) + eps))
    # step 2: z = x / psi_1 (the previous running stat, not the batch's (2, 8)); psi_2^2 = 0.9 psi_1^2 + 0.1 (2, 8)
    y2 = norm(x2)
    torch.testing.assert_close(y2, x2 / torch.sqrt(torch.tensor([5.0, 4.0]) + eps))
    torch.testing.assert_close(norm.running_phi, torch.tensor([0.9 * 5 + 0.1 * 2, 0.9 * 4 + 0.1 * 8]))
    # no mean subtraction: a constant input is not mapped to zero
    assert (y2[0, 0, 0] > 0).item()
    norm.eval()
    torch.testing.assert_close(norm(x1), x1 / torch.sqrt(norm.running_phi + eps))
    assert int(norm.num_batches_tracked) == 2


def test_powernorm_approximate_backward():
    eps, a = 1e-5, 0.9
    norm = PowerNorm(2, eps=eps, alpha_bkw=a)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([2.0, 0.5]))
    x = torch.tensor([[1.0, 2.0], [3.0, -2.0]], requires_grad=True)
    g = torch.tensor([[1.0, -1.0], [0.5, 2.0]])  # dL/dy
    psi = torch.sqrt(torch.tensor([5.0, 4.0]) + eps)
    z = x.detach() / psi
    # step 1, nu_0 = 0: dL/dx = gamma g / psi; nu_1 = (1 - a) mean(z * gamma g)
    norm(x).backward(g)
    torch.testing.assert_close(x.grad, norm.weight.detach() * g / psi)
    nu1 = (1 - a) * (z * norm.weight.detach() * g).mean(0)
    torch.testing.assert_close(norm.nu, nu1)
    torch.testing.assert_close(norm.weight.grad, (g * z).sum(0))
    torch.testing.assert_close(norm.bias.grad, g.sum(0))
    # step 2 (running statistics): dL/dx = (gamma g - nu_1 z) / psi_1; nu_2 = nu_1 (1 - (1-a) Gamma) + (1-a) Lambda
    x.grad = None
    norm(x).backward(g)
    torch.testing.assert_close(x.grad, (norm.weight.detach() * g - nu1 * z) / psi)
    gamma_stat, lambda_stat = (z * z).mean(0), (norm.weight.detach() * g * z).mean(0)
    torch.testing.assert_close(norm.nu, nu1 * (1 - (1 - a) * gamma_stat) + (1 - a) * lambda_stat)


# ---------------------------------------------------------------- placements


def block_formula(block, x, placement):
    """The block output written from each paper's equation, with the block's own modules."""
    a, m = block.attn_res, block.mlp_res
    if placement == "pre":
        h = x + block.attn(a.norm(x))
        return h + block.mlp(m.norm(h))
    if placement == "post":
        h = a.norm(x + block.attn(x))
        return m.norm(h + block.mlp(h))
    if placement == "peri":
        h = x + a.norm_out(block.attn(a.norm_in(x)))
        return h + m.norm_out(block.mlp(m.norm_in(h)))
    if placement == "normformer":  # x + LN(HeadScale-MHA(LN(x))); x + W2 LN(act(W1 LN(x)))
        h = x + a.norm_out(block.attn(a.norm(x)))
        mlp = block.mlp
        return h + mlp.c_proj(mlp.mid_norm(mlp.act(mlp.c_fc(m.norm(h)))))
    if placement == "rezero":
        h = x + a.alpha * block.attn(x)
        return h + m.alpha * block.mlp(h)
    raise AssertionError(placement)


@pytest.mark.parametrize("placement", ["pre", "post", "peri", "normformer", "rezero"])
def test_placement_block_matches_formula(placement):
    torch.manual_seed(0)
    model = small_gpt(norm_placement=placement).eval()
    randomize_norms(model)
    block = model.blocks[0]
    if placement == "rezero":
        with torch.no_grad():
            block.attn_res.alpha.fill_(0.7)
            block.mlp_res.alpha.fill_(-0.3)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block_formula(block, x, placement))


def test_normformer_extra_operations():
    torch.manual_seed(0)
    model = small_gpt(norm_placement="normformer", n_head=2).eval()
    block = model.blocks[0]
    assert block.attn.head_scale.shape == (2,) and torch.equal(block.attn.head_scale, torch.ones(2))
    assert block.mlp.mid_norm.normalized_shape == (32,)  # norm after the FFN activation, width 4 d
    assert isinstance(block.mlp_res.norm_out, nn.Identity)  # the post-sublayer norm is on attention only
    x = torch.randn(1, 4, 8)
    with torch.no_grad():
        block.attn.head_scale.zero_()  # gamma_h = 0: attention contributes only c_proj's bias
        torch.testing.assert_close(block.attn(x), block.attn.c_proj.bias.expand(1, 4, 8))
    # default placements carry no NormFormer extras
    plain = small_gpt().blocks[0]
    assert plain.attn.head_scale is None and isinstance(plain.mlp.mid_norm, nn.Identity)


@pytest.mark.parametrize("alpha, n_layer, n_post", [(0.25, 8, 2), (0.0, 4, 0), (1.0, 3, 3), (0.3, 10, 3),
                                                    (0.29, 100, 29), (0.5, 3, 1)])
def test_mix_alpha_picks_first_layers_post(alpha, n_layer, n_post):
    model = small_gpt(norm_placement="mix", mix_alpha=alpha, n_layer=n_layer)
    assert [b.attn_res.post for b in model.blocks] == [i < n_post for i in range(n_layer)]
    assert all(b.attn_res.post == b.mlp_res.post for b in model.blocks)
    assert not isinstance(model.ln_f, nn.Identity)


def test_mix_blocks_match_post_then_pre_formula():
    torch.manual_seed(0)
    model = small_gpt(norm_placement="mix", n_layer=4).eval()  # default alpha 0.25: block 0 post
    randomize_norms(model)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.blocks[0](x), block_formula(model.blocks[0], x, "post"))
        for block in model.blocks[1:]:
            torch.testing.assert_close(block(x), block_formula(block, x, "pre"))
    with pytest.raises(ValueError):
        small_gpt(norm_placement="mix", mix_alpha=1.5)


def test_rezero_is_identity_at_init():
    torch.manual_seed(0)
    model = small_gpt(norm_placement="rezero", n_layer=3).eval()
    assert not any(isinstance(m, (nn.LayerNorm, nn.RMSNorm)) for m in model.modules())
    assert isinstance(model.ln_f, nn.Identity)
    x = torch.randn(2, 5, 8)
    for block in model.blocks:
        torch.testing.assert_close(block(x), x)
    idx = torch.randint(32, (2, 5))
    emb = model.wte(idx) + model.wpe(torch.arange(5))
    logits = model(idx)
    torch.testing.assert_close(logits, model.lm_head(emb))
    logits.square().mean().backward()
    assert model.blocks[0].attn_res.alpha.grad.abs().item() > 0  # the gate itself learns from step one


def test_ln_scaling_factor_per_layer():
    torch.manual_seed(0)
    model = small_gpt(n_layer=4, ln_scaling=True).eval()
    randomize_norms(model)
    x = torch.randn(2, 5, 8)
    for i, block in enumerate(model.blocks):
        s = 1 / math.sqrt(i + 1)  # l = i + 1
        assert block.attn_res.ln_scale == pytest.approx(s) and block.mlp_res.ln_scale == pytest.approx(s)
        with torch.no_grad():
            h = x + block.attn(s * block.attn_res.norm(x))
            torch.testing.assert_close(block(x), h + block.mlp(s * block.mlp_res.norm(h)))
    assert all(b.attn_res.ln_scale == 1.0 for b in small_gpt(n_layer=4).blocks)  # off by default
    mix = small_gpt(norm_placement="mix", n_layer=4, ln_scaling=True)
    assert [b.attn_res.ln_scale for b in mix.blocks] == pytest.approx([1.0, 1 / math.sqrt(2), 1 / math.sqrt(3), 0.5])
    for placement in ("post", "rezero"):  # no norm feeds the sublayer
        with pytest.raises(ValueError):
            small_gpt(norm_placement=placement, ln_scaling=True)


# ---------------------------------------------------------------- attention


def test_qk_norm_shapes_and_logit_bound():
    torch.manual_seed(0)
    cfg = GPTConfig(**SMALL, qk_norm=True)
    attn = CausalSelfAttention(cfg).eval()
    assert attn.q_norm.normalized_shape == attn.k_norm.normalized_shape == (4,)  # head_dim = 8 / 2
    plain = CausalSelfAttention(GPTConfig(**SMALL)).eval()
    assert plain.q_norm is None
    plain.load_state_dict({k: v for k, v in attn.state_dict().items() if "_norm" not in k})
    with torch.no_grad():
        for m in (attn, plain):
            m.c_attn.weight[:16].mul_(100.0)  # blow up q and k
    x = torch.randn(2, 6, 8)
    stats = {}
    for name, m in (("qk", attn), ("plain", plain)):
        m.record_stats = True
        with torch.no_grad():
            assert m(x).shape == x.shape
        stats[name] = m.last_stats["max_logit"]
    # |LN(q) . LN(k)| <= ||LN(q)|| ||LN(k)|| = d_h (unit weight, zero bias), so z <= d_h / sqrt(d_h) = 2
    assert stats["qk"] <= 2.0 + 1e-4
    assert stats["plain"] > 100 * stats["qk"]


def test_attention_stats_uniform_when_q_k_zero():
    torch.manual_seed(0)
    attn = CausalSelfAttention(GPTConfig(**SMALL)).eval()
    with torch.no_grad():
        attn.c_attn.weight[:16].zero_()  # q = k = 0: every allowed logit is 0
        attn.c_attn.bias[:16].zero_()
    attn.record_stats = True
    T = 6
    with torch.no_grad():
        attn(torch.randn(3, T, 8))
    # query i attends uniformly to its i + 1 allowed keys: H_i = log(i + 1); the last query, log(T)
    expected = sum(math.log(i + 1) for i in range(T)) / T
    assert attn.last_stats["entropy"] == pytest.approx(expected, abs=1e-5)
    assert attn.last_stats["max_logit"] == pytest.approx(0.0, abs=1e-6)
    assert isinstance(attn.last_stats["entropy"], float) and isinstance(attn.last_stats["max_logit"], float)
    assert attn.last_stats["head_entropy_ratio"] == pytest.approx([1.0, 1.0], abs=1e-5)  # uniform; n_head = 2


def test_attention_stats_per_head():
    """Head 0 uniform (its q = k = 0), head 1 peaked: each head's entropy over uniform attention's, on its own."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(GPTConfig(**SMALL)).eval()  # d_model 8, 2 heads of 4: q rows 0-7, k rows 8-15
    with torch.no_grad():
        for rows in (slice(0, 4), slice(8, 12)):  # head 0's q and k
            attn.c_attn.weight[rows].zero_()
            attn.c_attn.bias[rows].zero_()
        attn.c_attn.weight[4:8].mul_(50.0)  # head 1's q: large logits, nearly one-hot attention
    attn.record_stats = True
    T = 6
    with torch.no_grad():
        attn(torch.randn(3, T, 8))
    r0, r1 = attn.last_stats["head_entropy_ratio"]
    assert r0 == pytest.approx(1.0, abs=1e-5) and r1 < 0.5  # H_i / log(i + 1): 1 for uniform attention
    attn.record_stats = True
    with torch.no_grad():
        attn(torch.randn(3, 1, 8))  # one query, one key: no ratio to take
    assert "head_entropy_ratio" not in attn.last_stats and attn.last_stats["entropy"] == 0.0


def test_attention_stats_in_fp32_under_bf16_autocast():
    """Under bf16 autocast the attention weights are bf16, but their statistics are reduced in fp32: uniform attention
    (q = k = 0) over T = 40 keys has mean entropy 2.7580 nats, 0.0076 from the nearest bf16 value (2.7656), which a
    reduction in bf16 returned (every bf16 run's entropy recorded before 2026-12-05 is a multiple of 1/64)."""
    torch.manual_seed(0)
    attn = CausalSelfAttention(GPTConfig(**{**SMALL, "block_size": 64})).eval()
    with torch.no_grad():
        attn.c_attn.weight[:16].zero_()
        attn.c_attn.bias[:16].zero_()
    attn.record_stats = True
    T = 40
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        attn(torch.randn(2, T, 8))
    expected = sum(math.log(i + 1) for i in range(T)) / T
    # bf16 weights 1/(i + 1) carry a relative rounding error below 2^-8; the entropy of the rounded weights stays
    # within 1e-3 of the exact one here, while the nearest bf16 number is 0.0076 away
    assert attn.last_stats["entropy"] == pytest.approx(expected, abs=1e-3)
    assert attn.last_stats["head_entropy_ratio"] == pytest.approx([1.0, 1.0], abs=1e-3)


@pytest.mark.parametrize("kwargs", [{}, {"qk_norm": True}, {"norm_placement": "normformer"}])
def test_attention_stats_path_equals_sdpa(kwargs):
    torch.manual_seed(0)
    model = small_gpt(n_layer=2, **kwargs).eval()
    idx = torch.randint(32, (2, 10))
    with torch.no_grad():
        fused = model(idx)
        attn_modules = [m for m in model.modules() if hasattr(m, "record_stats")]
        assert len(attn_modules) == 2 and all(m.last_stats is None for m in attn_modules)
        for m in attn_modules:
            m.record_stats = True
        explicit = model(idx)
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-6)
    assert all(m.last_stats is not None for m in attn_modules)
    # gradients agree too
    grads = []
    for record in (False, True):
        model.zero_grad()
        for m in attn_modules:
            m.record_stats = record
        model(idx).square().mean().backward()
        grads.append(model.blocks[0].attn.c_attn.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)


def test_blocks_are_replaceable_by_identity():
    model = small_gpt(n_layer=3).eval()
    assert isinstance(model.blocks, nn.ModuleList)
    idx = torch.randint(32, (1, 7))
    model.blocks[1] = nn.Identity()
    assert model(idx).shape == (1, 7, 32)


# ---------------------------------------------------------------- FixNorm, norm-free, defaults


def test_fix_norm_makes_logits_invariant_to_embedding_scale():
    torch.manual_seed(0)
    for tie in (True, False):
        model = small_gpt(fix_norm=True, norm="scalenorm", tie_weights=tie).eval()
        idx = torch.randint(32, (2, 6))
        with torch.no_grad():
            before = model(idx)
            model.wte.weight.mul_(5.0)  # FixNorm: only the direction of each embedding row counts
            model.lm_head.weight.mul_(3.0)
            torch.testing.assert_close(model(idx), before)
    plain = small_gpt().eval()
    with torch.no_grad():
        before = plain(idx)
        plain.wte.weight.mul_(5.0)
        assert not torch.allclose(plain(idx), before)


def test_norm_free_relu_gpt_trains():
    torch.manual_seed(0)
    model = small_gpt(norm="none", norm_placement="pre", act="relu", d_model=32, vocab_size=16)
    assert not any(isinstance(m, (nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d)) for m in model.modules())
    assert isinstance(model.ln_f, nn.Identity)
    seq = torch.arange(4).repeat(2, 4)  # period 4: a model blind to context cannot go below log 4
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=2e-2)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.5 * math.log(4)


def test_default_gpt_has_no_extra_parameters():
    d, V, T, L, r = 32, 64, 32, 2, 4
    model = create_model("gpt", **MODELS.info("gpt")["smoke_kwargs"])
    per_block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * r * d + r * d) + (r * d * d + d)
    assert sum(p.numel() for p in model.parameters()) == V * d + T * d + L * per_block + 2 * d
    assert not list(model.buffers())
    keys = set(model.state_dict())
    assert {"blocks.0.attn_res.norm.weight", "blocks.1.mlp_res.norm.bias", "ln_f.weight"} <= keys


# ---------------------------------------------------------------- every combination

FLAGS = [(False, False), (True, False), (False, True), (True, True)]  # (qk_norm, ln_scaling)
# every norm x every placement; every flag setting with every placement (layernorm) and with every norm (pre)
COMBOS = sorted({(n, p, False, False) for n in list_norms() for p in PLACEMENTS.names()}
                | {("layernorm", p, qk, lns) for p in PLACEMENTS.names() for qk, lns in FLAGS}
                | {(n, "pre", qk, lns) for n in list_norms() for qk, lns in FLAGS})
COMBOS = [c for c in COMBOS if not c[3] or PLACEMENTS.get(c[1]).input_norm]


@pytest.mark.parametrize("norm, placement, qk_norm, ln_scaling", COMBOS)
def test_every_combination_forward_backward_finite(norm, placement, qk_norm, ln_scaling):
    torch.manual_seed(0)
    model = create_model("gpt", vocab_size=16, block_size=8, n_layer=2, n_head=2, d_model=16, norm=norm,
                         norm_placement=placement, qk_norm=qk_norm, ln_scaling=ln_scaling, mix_alpha=0.5,
                         fix_norm=norm == "scalenorm")
    idx = torch.randint(16, (2, 8))
    loss = F.cross_entropy(model(idx).flatten(0, 1), idx.roll(-1, 1).flatten())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(idx)).all()
