"""airbench94 pieces (arXiv:2404.00498): patch whitening, decoupled Nesterov SGD, norm-bias lr group, triangle
schedule, lookahead EMA, alternating flips + reflect translation, test-time augmentation."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.data.augment import alternate_flips, crop_flip
from shared.models import create_model
from shared.models.airbench import patches, whitening_filters
from shared.optim import OPTIMIZERS, create_optimizer, create_scheduler, param_groups
from shared.optim.decoupled_sgd import kilostep_scale
from shared.train.evaluate import tta_views
from shared.train.lookahead import Lookahead


def _correlated_images(n=400, seed=0):
    """Images whose 2x2 patches are strongly correlated across pixels and channels (a smooth field + noise)."""
    g = torch.Generator().manual_seed(seed)
    base = F.interpolate(torch.randn(n, 1, 8, 8, generator=g), size=16, mode="bilinear", align_corners=False)
    mix = torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1)
    return base * mix + 0.1 * torch.randn(n, 3, 16, 16, generator=g)


# ---- whitening -------------------------------------------------------------------------------------------------

def test_airbench_whitening_init_whitens_patches():
    x = _correlated_images()
    eps = 1e-4
    w = whitening_filters(x, 2, eps)  # 24 filters: 12 whitening ones and their negatives
    assert w.shape == (24, 3, 2, 2) and torch.allclose(w[12:], -w[:12])
    z = patches(x.double(), 2) @ w[:12].reshape(12, -1).T
    cov = z.T @ z / len(z)
    p = patches(x.double(), 2)
    lam = torch.linalg.eigvalsh(p.T @ p / len(p)).flip(0)
    # exactly diag(lambda / (lambda + eps)): the identity up to the eps the eigenvalues are shifted by
    torch.testing.assert_close(cov, torch.diag(lam / (lam + eps)), atol=1e-8, rtol=1e-6)
    raw = p.T @ p / len(p)
    assert (raw - torch.diag(raw.diagonal())).abs().max() > 0.1  # the inputs were far from white


def test_airbench_init_from_data_sets_conv_and_uses_first_images():
    x = _correlated_images(300)
    model = create_model("airbench94", width=0.125, whiten_images=100)
    model.init_from_data(x)
    expected = whitening_filters(x[:100], 2, model.whiten_eps).float()
    torch.testing.assert_close(model.whiten.weight, expected)
    assert not model.whiten.weight.requires_grad


def test_airbench_architecture_and_hooks():
    model = create_model("airbench94")
    assert sum(p.numel() for p in model.parameters()) == 1_972_792
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all(not m.weight.requires_grad and m.bias.requires_grad for m in norms)
    assert all(m.momentum == pytest.approx(0.4) and m.eps == 1e-12 for m in norms)
    conv2 = model.groups[0].conv2.weight  # square conv: the Dirac init makes it the identity
    x = torch.randn(1, 64, 5, 5)
    torch.testing.assert_close(F.conv2d(x, conv2, padding=1), x)
    assert isinstance(model.act, nn.GELU) and create_model("airbench94", act="mish").act.__class__ is nn.Mish
    model.on_train_step(0, 2)
    assert model.whiten.bias.requires_grad
    model.on_train_step(150, 3)
    assert not model.whiten.bias.requires_grad


# ---- optimizer and param groups ----------------------------------------------------------------------------------

class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=True)
        self.norm = nn.BatchNorm2d(4)
        self.norm.weight.requires_grad_(False)
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.norm(self.conv(x)).mean((2, 3)))


def test_param_groups_norm_bias_kind_only_when_named():
    net = _BNNet()
    assert [g["name"] for g in param_groups(net, 0.1)] == ["decay"]
    groups = {g["name"]: g for g in param_groups(net, 0.1, lr_mult={"norm_bias": 64.0})}
    assert [id(p) for p in groups["norm_bias"]["params"]] == [id(net.norm.bias)]
    assert groups["norm_bias"]["lr_mult"] == 64.0 and groups["norm_bias"]["weight_decay"] == 0.1
    assert id(net.conv.bias) in {id(p) for p in groups["decay"]["params"]}  # a conv bias is not a norm bias
    groups = {g["name"]: g for g in param_groups(net, 0.1, no_decay_norm_bias=True, lr_mult={"norm_bias": 2.0})}
    assert groups["norm_bias"]["weight_decay"] == 0.0


def _airbench_reference_optimizer(model, batch_size, lr=11.5, wd=0.0153, momentum=0.85, bias_scaler=64.0):
    """KellerJordan/cifar10-airbench legacy/airbench94.py main(): torch SGD on the summed loss."""
    k = kilostep_scale(momentum)
    lr_, wd_ = lr / k, wd * batch_size / k
    lr_b = lr_ * bias_scaler
    norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    others = [p for n, p in model.named_parameters() if "norm" not in n and p.requires_grad]
    return torch.optim.SGD([dict(params=norm_biases, lr=lr_b, weight_decay=wd_ / lr_b),
                            dict(params=others, lr=lr_, weight_decay=wd_ / lr_)], momentum=momentum, nesterov=True)


def test_sgd_decoupled_matches_airbench_reference():
    torch.manual_seed(0)
    model, batch = _BNNet().double(), 8
    ref = copy.deepcopy(model)
    opt = create_optimizer("sgd_decoupled", model, lr=11.5, weight_decay=0.0153, lr_mult={"norm_bias": 64.0},
                           momentum=0.85, nesterov=True, batch_size=batch)
    ref_opt = _airbench_reference_optimizer(ref, batch)
    sched = create_scheduler("piecewise_linear", opt, 10, knots_frac=[0, 0.23, 1], values=[0.2, 1, 0.07])
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref_opt, sched.lr_lambdas[0])
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        x, y = torch.randn(batch, 3, 6, 6, generator=g, dtype=torch.double), torch.randint(0, 2, (batch,), generator=g)
        for m, o, s, reduction in ((model, opt, sched, "mean"), (ref, ref_opt, ref_sched, "sum")):
            o.zero_grad()
            F.cross_entropy(m(x), y, label_smoothing=0.2, reduction=reduction).backward()
            o.step()
            s.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q)
    assert OPTIMIZERS.info("sgd_decoupled")["needs_batch_size"]


@pytest.mark.parametrize("kw", [{"lr": 0.0}, {"momentum": 1.0}, {"weight_decay": -1.0}, {"batch_size": 0}])
def test_sgd_decoupled_bad_arguments_raise(kw):
    with pytest.raises(ValueError):
        create_optimizer("sgd_decoupled", nn.Linear(2, 2), **{"lr": 1.0, **kw})


# ---- schedule ----------------------------------------------------------------------------------------------------

def test_piecewise_linear_triangle_values():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = create_scheduler("piecewise_linear", opt, 476, knots_frac=[0, 0.23, 1], values=[0.2, 1.0, 0.07])
    f = sched.lr_lambdas[0]

    def airbench_get_lr(step, total=476):  # legacy/airbench94.py
        warmup = int(total * 0.23)
        if step < warmup:
            return 0.2 * (1 - step / warmup) + step / warmup
        frac = (step - warmup) / (total - warmup)
        return 1.0 * (1 - frac) + 0.07 * frac

    assert int(476 * 0.23) == 109
    for s in (0, 1, 54, 108, 109, 110, 300, 475, 476):
        assert f(s) == pytest.approx(airbench_get_lr(s)), s
    assert f(0) == pytest.approx(0.2) and f(109) == pytest.approx(1.0) and f(476) == pytest.approx(0.07)
    with pytest.raises(ValueError):
        create_scheduler("piecewise_linear", opt, 10, knots_frac=[0, 0.5, 0.4], values=[1, 1, 1])


# ---- lookahead ---------------------------------------------------------------------------------------------------

def test_lookahead_values_at_given_steps():
    model = nn.Linear(1, 1, bias=False)
    nn.init.zeros_(model.weight)
    la = Lookahead(model, total_steps=10, every=5, decay=0.5, power=1)
    assert la.alpha(5) == pytest.approx(0.5 ** 5 * 0.5) and la.alpha(10) == pytest.approx(0.5 ** 5)
    trace = []
    for step in range(1, 11):
        with torch.no_grad():
            model.weight.add_(1.0)  # an "optimizer step" of +1
        la.update(model, step)
        trace.append(model.weight.item())
    a5, a10 = 0.5 ** 5 * 0.5, 0.5 ** 5
    e5 = a5 * 0 + (1 - a5) * 5  # e starts at the initial weight 0
    e10 = a10 * e5 + (1 - a10) * (e5 + 5)
    assert trace[3] == 4 and trace[4] == pytest.approx(e5) and trace[9] == pytest.approx(e10)
    with torch.no_grad():
        model.weight.add_(3.0)
    la.finish(model)
    assert model.weight.item() == pytest.approx(e10)


def test_lookahead_skips_integer_buffers_and_round_trips():
    model = nn.BatchNorm1d(2)
    la = Lookahead(model, 4, every=1, decay=0.9, power=0)
    assert "num_batches_tracked" not in la.ema and "running_mean" in la.ema
    clone = Lookahead(model, 4, every=1, decay=0.9, power=0)
    with torch.no_grad():
        model.running_mean.fill_(1.0)
    la.update(model, 1)
    clone.load_state_dict(la.state_dict())
    torch.testing.assert_close(clone.ema["running_mean"], torch.full((2,), 0.1))


# ---- augmentation ------------------------------------------------------------------------------------------------

def test_crop_reflect_matches_padded_crop():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    offsets, flips = torch.tensor([[0, 4], [3, 1]]), torch.tensor([False, True])
    out = crop_flip(x, offsets, flips, 2, pad_mode="reflect")
    padded = F.pad(x, (2,) * 4, mode="reflect")
    torch.testing.assert_close(out[0], padded[0, :, 0:6, 4:10])
    torch.testing.assert_close(out[1], padded[1, :, 3:9, 1:7].flip(-1))
    u8 = crop_flip(x.to(torch.uint8), offsets, flips, 2, pad_mode="reflect")  # any dtype: no padded copy is made
    assert u8.dtype == torch.uint8


def test_alternate_flips_complement_on_odd_epochs():
    base = torch.tensor([True, False, False, True])
    assert torch.equal(alternate_flips(base, 0), base) and torch.equal(alternate_flips(base, 2), base)
    assert torch.equal(alternate_flips(base, 1), ~base) and torch.equal(alternate_flips(base, 5), ~base)


# ---- test-time augmentation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("level,n_views", [(0, 1), (1, 2), (2, 6)])
def test_tta_view_count_and_weights(level, n_views):
    x = torch.randn(2, 3, 8, 8)
    views = tta_views(x, level)
    assert len(views) == n_views and math.isclose(sum(w for w, _ in views), 1.0)
    assert views[0][1] is x and all(v.shape == x.shape for _, v in views)


def test_tta_level2_averages_known_outputs():
    """A 'model' that reads one pixel: its TTA logit is the weighted mean of that pixel over the six views."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = tta_views(x, 2)
    avg = sum(w * v[0, 0, 1, 1] for w, v in views)
    # identity x[1,1]=5, mirror x[1,2]=6; up-left shift reads x[0,0]=0, its mirror x[0,1]=1;
    # down-right shift reads x[2,2]=10, its mirror x[2,3]=11
    assert avg.item() == pytest.approx(0.25 * 5 + 0.25 * 6 + 0.125 * (0 + 1 + 10 + 11))
