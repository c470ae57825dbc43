"""sgd_l2_as_lr (shared/optim/l2_as_lr.py): L2 on scale-invariant weights = a learning-rate schedule, exactly.

No maintained implementation exists; the reference is torch's own SGD with L2: both runs must compute the same
function at every step (float64), with momentum and a warm-up + cosine schedule, since w_t = c_t w~_t."""
import copy
import math

import pytest
import torch
from torch import nn

from shared.models import create_model
from shared.optim import create_optimizer, create_scheduler
from shared.optim.l2_as_lr import scale_invariant_weights


class _ConvNet(nn.Module):
    """conv -> BN -> ReLU -> conv -> BN -> ReLU -> pool -> linear (with bias): two scale-invariant weights, plus a
    conv whose output is added to the stream without a norm (not scale invariant). BatchNorm's eps (added to the
    variance) breaks exact invariance by about eps / var; exactness is tested with eps near 0."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, eps=eps)
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4, eps=eps)
        self.skip = nn.Conv2d(3, 4, 1, bias=False)  # into an addition: not invariant
        self.relu, self.pool, self.head = nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)

    def forward(self, x):
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h))) + self.skip(x)
        return self.head(self.pool(h).flatten(1))


def test_scale_invariant_weights_traced():
    assert scale_invariant_weights(_ConvNet()) == ["conv1.weight", "conv2.weight"]
    names = scale_invariant_weights(create_model("resnet20", num_classes=10))
    assert len(names) == 19 and "fc.weight" not in names and all(n.endswith("weight") for n in names)


def test_l2_as_lr_computes_the_same_function_as_sgd_with_l2():
    torch.manual_seed(0)
    net = _ConvNet(eps=1e-14).double()
    x, y = torch.randn(16, 3, 6, 6, dtype=torch.float64), torch.randint(0, 3, (16,))
    lam, steps = 0.02, 60  # a large lambda, so that c_t moves far from 1 within the test
    runs = {}
    for name in ("sgd", "sgd_l2_as_lr"):
        model = copy.deepcopy(net)
        opt = create_optimizer(name, model, lr=0.2, weight_decay=lam, no_decay_norm_bias=True, momentum=0.9)
        sched = create_scheduler("cosine", opt, total_steps=steps, warmup_steps=5)
        runs[name] = (model, opt, sched)
    opt = runs["sgd_l2_as_lr"][1]
    assert [(g["name"], g.get("scale_invariant", False), g["weight_decay"]) for g in opt.param_groups] == [
        ("scale_invariant", True, 0.0), ("decay", False, lam), ("no_decay", False, 0.0)]
    for step in range(steps):
        outs = {}
        for name, (model, opt, sched) in runs.items():
            opt.zero_grad()
            out = model(x)
            nn.functional.cross_entropy(out, y).backward()
            opt.step(), sched.step()
            outs[name] = out.detach()
        torch.testing.assert_close(outs["sgd_l2_as_lr"], outs["sgd"], rtol=1e-9, atol=1e-10)
    (plain, _, _), (matched, opt, _) = runs["sgd"], runs["sgd_l2_as_lr"]
    c = opt.param_groups[0]["l2_scale"][0]
    assert 0.3 < c < 0.95  # L2 shrank the weights' scale noticeably ...
    for name in ("conv1", "conv2"):  # ... and w_t = c_t w~_t, up to a positive scale: the same direction
        w, w_tilde = getattr(plain, name).weight, getattr(matched, name).weight
        torch.testing.assert_close(w, c * w_tilde, rtol=1e-9, atol=1e-12)
    for p, q in zip(plain.head.parameters(), matched.head.parameters()):  # the classifier keeps plain L2
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12)


def test_l2_as_lr_lr_schedule_and_applied_lr_by_hand():
    """One group, constant lr eta, momentum gamma: c_1 = 1 - eta lambda, c_2 = c_1 - eta (gamma lambda + lambda c_1)."""
    w = nn.Parameter(torch.ones(3))
    eta, gamma, lam = 0.1, 0.9, 0.05
    opt = create_optimizer("sgd_l2_as_lr", [{"params": [w], "scale_invariant": True}], lr=eta, momentum=gamma,
                           weight_decay=lam)
    c1 = 1 - eta * lam
    c2 = c1 - eta * (gamma * lam + lam * c1)
    assert opt.applied_lr(opt.param_groups[0]) == pytest.approx(eta / c1)
    w.grad = torch.ones(3)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 1 - eta / c1))  # no L2 term, lr eta / (c_0 c_1)
    assert opt.param_groups[0]["lr"] == eta  # the scheduled lr is left for the scheduler
    assert opt.applied_lr(opt.param_groups[0]) == pytest.approx(eta / (c1 * c2))
    assert opt.param_groups[0]["l2_scale"] == pytest.approx([c1, lam])  # [c_1, beta_1 = lambda c_0]


def test_l2_as_lr_state_dict_resumes_the_scale():
    def train(opt, model, x, n):
        for _ in range(n):
            opt.zero_grad(), model(x).square().mean().backward(), opt.step()

    torch.manual_seed(1)
    net, x = _ConvNet(), torch.randn(8, 3, 6, 6)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    opt_a = create_optimizer("sgd_l2_as_lr", a, lr=0.1, weight_decay=0.01, momentum=0.9)
    train(opt_a, a, x, 6)
    opt_b = create_optimizer("sgd_l2_as_lr", b, lr=0.1, weight_decay=0.01, momentum=0.9)
    train(opt_b, b, x, 3)
    state = copy.deepcopy(opt_b.state_dict())
    opt_b = create_optimizer("sgd_l2_as_lr", b, lr=0.1, weight_decay=0.01, momentum=0.9)
    opt_b.load_state_dict(state)
    train(opt_b, b, x, 3)
    assert opt_b.param_groups[0]["l2_scale"] == pytest.approx(opt_a.param_groups[0]["l2_scale"])
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def test_l2_as_lr_refusals():
    with pytest.raises(ValueError, match="nesterov"):
        create_optimizer("sgd_l2_as_lr", _ConvNet(), lr=0.1, momentum=0.9, nesterov=True)

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, bias=False)

        def forward(self, x):
            return self.lin(x) if x.sum() > 0 else x  # data-dependent control flow: fx cannot trace it

    with pytest.raises(ValueError, match="torch.fx"):
        create_optimizer("sgd_l2_as_lr", Branchy(), lr=0.1, weight_decay=0.01)
    w = nn.Parameter(torch.ones(2))
    opt = create_optimizer("sgd_l2_as_lr", [{"params": [w], "scale_invariant": True}], lr=10.0, momentum=0.9,
                           weight_decay=0.5)
    w.grad = torch.ones(2)
    with pytest.raises(ValueError, match="no learning-rate equivalent"):
        opt.step()
    assert math.isfinite(w.sum().item())


def test_l2_as_lr_on_resnet20_tracks_sgd_with_l2_until_chaos():
    """The real model: float64, BatchNorm eps near 0, random data. Both runs agree to 1e-9 for 15 steps; (beyond
    some tens of steps at lr 0.1, rounding differences grow chaotically, as between any two float runs)."""
    torch.manual_seed(0)
    net = create_model("resnet20", num_classes=10).double()
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eps = 1e-14
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(15, 8, 3, 16, 16, generator=g, dtype=torch.float64), torch.randint(0, 10, (15, 8), generator=g)
    runs = []
    for name in ("sgd", "sgd_l2_as_lr"):
        model = copy.deepcopy(net)
        opt = create_optimizer(name, model, lr=0.1, weight_decay=5e-4, no_decay_norm_bias=True, momentum=0.9)
        runs.append((model, opt))
    for step in range(15):
        losses = []
        for model, opt in runs:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[step]), y[step])
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-9, abs=1e-12), step
