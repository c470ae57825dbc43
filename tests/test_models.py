"""Tests for shared.models: every registry entry builds and runs, parameter counts match the papers, names are
validated, act / norm swaps reach every layer, and the GPT is causal, tied and trainable."""
import pytest
import torch
import torch.nn as nn

from shared.models import MODELS, create_act, create_model, create_norm, list_acts, list_models, list_norms
from shared.models.gpt import PLACEMENTS
from shared.models.mlp import RESIDUAL_BLOCKS
from shared.models.norms import NORMS
from shared.registry import UnknownNameError


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny_gpt(**kwargs):
    return create_model("gpt", **{**MODELS.info("gpt")["smoke_kwargs"], **kwargs})


@pytest.mark.parametrize("name", list_models())
def test_model_output_shape(name):
    info = MODELS.info(name)
    torch.manual_seed(0)
    if info["task"] == "image_classification":
        model = create_model(name, num_classes=7, **info["smoke_kwargs"]).eval()
        with torch.no_grad():
            assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    else:
        model = create_model(name, **info["smoke_kwargs"]).eval()
        vocab = model.config.vocab_size
        with torch.no_grad():
            assert model(torch.randint(vocab, (2, 16))).shape == (2, 16, vocab)


def test_registry_has_required_models():
    required = {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "preact_resnet18", "wrn16_4",
                "wrn28_10", "vgg11_bn", "vgg16_bn", "mlp", "timm", "gpt"}
    assert required <= set(list_models())


def cifar_resnet_params(n: int, num_classes: int = 10) -> int:
    """Hand count for ResNet-(6n+2), option A: 3x3 convs without bias, norm = 2 params per channel."""
    conv = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731
    total = conv(3, 16) + 2 * 16  # stem conv + norm
    c_in = 16
    for c in (16, 32, 64):
        for _ in range(n):
            total += conv(c_in, c) + 2 * c + conv(c, c) + 2 * c  # two conv-norm pairs, zero-pad shortcut is free
            c_in = c
    return total + 64 * num_classes + num_classes  # fc


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnet_param_count_exact(depth):
    assert n_params(create_model(f"resnet{depth}")) == cifar_resnet_params((depth - 2) // 6)


def test_cifar_resnet_param_count_matches_paper():
    # Table 6 of arXiv:1512.03385: 0.27M, 0.85M, 1.7M
    assert 0.26e6 <= n_params(create_model("resnet20")) <= 0.28e6
    assert 0.84e6 <= n_params(create_model("resnet56")) <= 0.86e6
    assert 1.69e6 <= n_params(create_model("resnet110")) <= 1.74e6
    assert cifar_resnet_params(3) == 269_722
    # option B adds two 1x1 projections + norms: 16*32 + 2*32 + 32*64 + 2*64
    assert n_params(create_model("resnet20", shortcut="B")) == 269_722 + 576 + 2176


@pytest.mark.parametrize("name, expected", [("preact_resnet18", 11_172_170), ("wrn16_4", 2_748_890),
                                            ("wrn28_10", 36_479_194), ("vgg16_bn", 14_728_266)])
def test_cifar_model_param_count_matches_reference(name, expected):
    assert n_params(create_model(name)) == expected


def test_cifar_resnet_width_and_skip_options():
    wide = create_model("resnet20", width=2)
    assert wide.fc.in_features == 128
    plain = create_model("resnet20", skip=False)
    assert all(b.shortcut is None for b in plain.blocks)
    assert n_params(plain) == n_params(create_model("resnet20"))
    x = torch.randn(2, 3, 32, 32)
    assert wide(x).shape == plain(x).shape == (2, 10)


@pytest.mark.parametrize("registry_fn, args", [(create_model, ("resnet999",)), (create_act, ("relu7",)),
                                               (create_norm, ("bachnorm", 8))])
def test_unknown_name_raises_listing_known(registry_fn, args):
    with pytest.raises(UnknownNameError) as err:
        registry_fn(*args)
    known = {create_model: list_models, create_act: list_acts, create_norm: list_norms}[registry_fn]()
    assert ", ".join(known) in str(err.value)


def test_act_registry_alias_same_class():
    assert type(create_act("swish")) is type(create_act("silu")) is nn.SiLU
    assert {"relu", "leaky_relu", "elu", "gelu", "silu", "swish", "mish", "tanh", "identity"} <= set(list_acts())


@pytest.mark.parametrize("name", [n for n in list_models() if MODELS.info(n)["task"] == "image_classification"])
def test_model_act_swap_reaches_every_layer(name):
    model = create_model(name, act="mish", **MODELS.info(name)["smoke_kwargs"])
    kinds = {type(m) for m in model.modules()}
    assert nn.Mish in kinds and nn.ReLU not in kinds


def test_model_norm_swap_reaches_every_layer():
    model = create_model("resnet20", norm="groupnorm")
    kinds = {type(m) for m in model.modules()}
    assert nn.GroupNorm in kinds and nn.BatchNorm2d not in kinds
    model = create_model("wrn16_4", norm="none")
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) for m in model.modules())
    assert create_model("resnet20", norm="layernorm")(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    mlp = create_model("mlp", norm="batchnorm", hidden=[32])
    assert any(isinstance(m, nn.BatchNorm1d) for m in mlp.modules())


@pytest.mark.parametrize("name", list_norms())
@pytest.mark.parametrize("layout, shape", [("nchw", (4, 16, 5, 5)), ("nlc", (4, 7, 16)), ("nlc", (4, 16))])
def test_norm_preserves_shape(name, layout, shape):
    norm = create_norm(name, 16, layout=layout)
    assert norm(torch.randn(shape)).shape == shape


def test_norm_nlc_batchnorm_matches_transposed():
    x = torch.randn(4, 7, 16)
    ref = nn.BatchNorm1d(16)(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(create_norm("batchnorm", 16, layout="nlc")(x), ref)


def test_norm_layernorm_nchw_over_chw_and_c():
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(create_norm("layernorm", 8)(x), nn.functional.layer_norm(x, (8, 4, 4)))
    ref = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2)
    torch.testing.assert_close(create_norm("layernorm", 8, over="c")(x), ref)


def test_norm_groupnorm_narrow_layer_and_bad_layout():
    assert create_norm("groupnorm", 16).num_groups == 16  # default G=32 > C: one group per channel
    with pytest.raises(ValueError):
        create_norm("groupnorm", 48)
    with pytest.raises(ValueError):
        create_norm("batchnorm", 8, layout="nhwc")
    assert NORMS.info("layernorm")["has_bias"]


def test_timm_wrapper_small_input_stem():
    model = create_model("timm/resnet18", num_classes=10, act="silu").eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    assert any(isinstance(m, nn.SiLU) for m in model.modules())
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError):
        create_model("timm", model_name="resnet18", pretrained=True)


def test_gpt_pre_and_post_placement_differ():
    torch.manual_seed(0)
    pre = tiny_gpt(norm_placement="pre")
    torch.manual_seed(0)
    post = tiny_gpt(norm_placement="post")
    assert not isinstance(pre.ln_f, nn.Identity) and isinstance(post.ln_f, nn.Identity)
    idx = torch.randint(64, (2, 16))
    assert not torch.allclose(pre(idx), post(idx))
    assert {"pre", "post"} <= set(PLACEMENTS.names())


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_gpt_trains_on_repeated_sequence(placement, norm):
    torch.manual_seed(0)
    model = tiny_gpt(norm_placement=placement, norm=norm)
    seq = torch.arange(8).repeat(2, 3)  # (2, 24): a period-8 pattern, predictable after one period
    x, y = seq[:, :-1], seq[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_gpt_tied_weights_share_storage():
    model = tiny_gpt()
    assert model.lm_head.weight is model.wte.weight
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    untied = tiny_gpt(tie_weights=False)
    assert n_params(untied) == n_params(model) + 64 * 32


def test_gpt_causal_mask():
    torch.manual_seed(0)
    model = tiny_gpt(dropout=0.1).eval()
    idx = torch.randint(64, (2, 16))
    changed = idx.clone()
    changed[:, 10] = (idx[:, 10] + 1) % 64
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_gpt_residual_projection_init_scaled():
    torch.manual_seed(0)
    model = tiny_gpt(n_layer=8, d_model=128, n_head=4)
    std = model.blocks[0].mlp.c_proj.weight.std().item()
    assert abs(std - 0.02 / 4) < 0.001  # 0.02 / sqrt(2 * 8)
    assert abs(model.blocks[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002


def test_gpt_scaled_init_off_leaves_residual_projections_at_gpt2_std():
    """``scaled_init=False`` (Curse of Depth's recommendation with LayerNorm Scaling): every c_proj at N(0, 0.02),
    attention's and the MLP's, in the first and the last block; the other weights are as with the default."""
    torch.manual_seed(0)
    plain = tiny_gpt(n_layer=8, d_model=128, n_head=4, scaled_init=False)
    torch.manual_seed(0)
    scaled = tiny_gpt(n_layer=8, d_model=128, n_head=4)
    for block in (plain.blocks[0], plain.blocks[-1]):
        for proj in (block.attn.c_proj, block.mlp.c_proj):
            assert abs(proj.weight.std().item() - 0.02) < 0.002  # not 0.02 / sqrt(16) = 0.005
    torch.testing.assert_close(plain.blocks[3].mlp.c_fc.weight, scaled.blocks[3].mlp.c_fc.weight)
    assert not torch.allclose(plain.blocks[3].mlp.c_proj.weight, scaled.blocks[3].mlp.c_proj.weight)


def test_gpt_bad_config_raises():
    with pytest.raises(ValueError):
        tiny_gpt(d_model=30, n_head=4)
    with pytest.raises(UnknownNameError):
        tiny_gpt(norm_placement="sandwich")
    with pytest.raises(ValueError):
        tiny_gpt()(torch.zeros(1, 33, dtype=torch.long))


def test_residual_mlp_blocks_follow_rezero_table_1():
    """Each block kind against its formula (arXiv:2003.04887, Table 1), written out by hand on one block."""
    torch.manual_seed(0)
    x = torch.randn(5, 3, 2, 2)
    for kind in RESIDUAL_BLOCKS:
        model = create_model("residual_mlp", in_features=12, width=6, depth=1, block=kind, num_classes=4)
        block = model.blocks[0]
        if kind == "rezero":
            with torch.no_grad():
                block.alpha.fill_(0.7)
        h = x.flatten(1) @ model.stem[1].weight.T + model.stem[1].bias
        f = lambda v: torch.relu(v @ block.linear.weight.T + block.linear.bias)  # noqa: E731
        ln = lambda v: torch.nn.functional.layer_norm(v, (6,))  # noqa: E731  (weight 1, bias 0 at init)
        out = {"plain": f(h), "residual": h + f(h), "post_norm": ln(h + f(h)), "pre_norm": h + f(ln(h)),
               "rezero": h + 0.7 * f(h)}[kind]
        torch.testing.assert_close(model(x), out @ model.head.weight.T + model.head.bias)
    with pytest.raises(ValueError, match="block must be one of"):
        create_model("residual_mlp", block="highway")


def test_residual_mlp_rezero_is_identity_at_init_with_isometric_jacobian():
    torch.manual_seed(0)
    model = create_model("residual_mlp", width=32, depth=10, block="rezero")
    h = torch.randn(32)
    torch.testing.assert_close(model.blocks(h), h)
    torch.testing.assert_close(torch.autograd.functional.jacobian(model.blocks, h), torch.eye(32))
    assert sum(p.numel() for n, p in model.named_parameters() if n.endswith("alpha")) == 10


def test_residual_mlp_he_init_keeps_plain_scale_and_doubles_residual_second_moment():
    """He init (Var W = 2 / width): a plain ReLU block keeps the second moment q, a residual one maps q to
    q + E relu(Wx)^2 + 2 E x.relu(Wx) >= 2q (the cross term turns positive once earlier blocks' nonnegative
    outputs have piled up in x), so 6 residual blocks grow it more than 2^6-fold (~300x here) and 6 plain keep ~1x."""
    torch.manual_seed(0)
    x = torch.randn(256, 3, 32, 32)
    ratios = {}
    for kind in ("plain", "residual"):
        model = create_model("residual_mlp", width=1024, depth=6, block=kind)
        assert abs(model.blocks[0].linear.weight.std().item() - (2 / 1024) ** 0.5) < 1e-3
        with torch.no_grad():
            h = model.stem(x)
            ratios[kind] = (model.blocks(h).pow(2).mean() / h.pow(2).mean()).item()
    assert 0.5 < ratios["plain"] < 2 and ratios["residual"] > 0.9 * 2 ** 6, ratios


def test_cifar_resnet_rezero_gate_starts_as_the_shortcuts_and_only_alpha_learns_first():
    """residual_gate="rezero" (arXiv:2003.04887, eq. 1): each block is act(shortcut(x)) at init, the net gains one
    scalar per block, and at init only the gates (not the branches' convs) receive gradient."""
    torch.manual_seed(0)
    plain, gated = create_model("resnet20"), create_model("resnet20", residual_gate="rezero")
    assert n_params(gated) - n_params(plain) == 9  # 3 stages x 3 blocks
    x = torch.relu(torch.randn(2, 16, 32, 32))
    with torch.no_grad():
        for block in gated.blocks:
            torch.testing.assert_close(block(x), torch.relu(block.shortcut(x)))
            x = block(x)
    gated.train()
    loss = torch.nn.functional.cross_entropy(gated(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(b.alpha.grad.abs() > 0 for b in gated.blocks)
    assert all(b.conv1.weight.grad.abs().max() == 0 and b.conv2.weight.grad.abs().max() == 0 for b in gated.blocks)
    with pytest.raises(ValueError, match="needs skip=True"):
        create_model("resnet20", residual_gate="rezero", skip=False)
    with pytest.raises(ValueError, match="residual_gate must be"):
        create_model("resnet20", residual_gate="skipinit")
