"""AdamP/SGDP, diffGrad, MADGRAD, SGDW (shared/optim/{adamp,diffgrad,madgrad,sgdw}.py) and torch's AMSGrad.

References: timm 1.0.31 (``timm.optim.AdamP``/``SGDP``/``MADGRAD``, copies of the official clovaai and
facebookresearch code) and torch-optimizer 0.3.0 (``torch_optimizer.DiffGrad``, the authors' diffGrad). SGDW and
AMSGrad are checked against hand-computed steps.
"""
import copy
import io
import math

import pytest
import torch
from torch import nn

from shared.optim import adamp, diffgrad, madgrad, sgdw  # noqa: F401  (registers the optimizers)
from shared.optim.adamp import project_radial
from shared.optim.registry import OPTIMIZERS, create_optimizer

NAMES = ("adamp", "sgdp", "diffgrad", "madgrad", "sgdw")


class _Net(nn.Module):
    """Linear -> BatchNorm (so ``body.weight`` is scale-invariant per output row, AdamP's case) -> Linear head."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 8, bias=False)
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.norm(self.body(x))))


def _net_and_data(seed: int = 0):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    return _Net(), torch.randn(32, 5, generator=g), torch.randn(32, 3, generator=g)


def _groups(model: nn.Module, lr: float):
    """Three groups with different lr and weight decay."""
    return [
        {"params": [model.body.weight], "lr": lr, "weight_decay": 0.05},
        {"params": [model.head.weight], "lr": 2 * lr, "weight_decay": 0.01},
        {"params": [model.norm.weight, model.norm.bias, model.head.bias], "lr": 0.5 * lr, "weight_decay": 0.0},
    ]


def _grad_step(opt, model, x, y, step: int) -> None:
    opt.zero_grad()
    xs = x * (1 + 0.1 * step)  # a different batch every step
    ((model(xs) - y) ** 2).mean().backward()
    opt.step()


def _assert_same_trajectory(ours_cls, ref_cls, lr: float, steps: int = 6, **kw) -> None:
    model, x, y = _net_and_data()
    ref_model = copy.deepcopy(model)
    ours, ref = ours_cls(_groups(model, lr), lr=lr, **kw), ref_cls(_groups(ref_model, lr), lr=lr, **kw)
    for step in range(steps):
        _grad_step(ours, model, x, y, step)
        _grad_step(ref, ref_model, x, y, step)
        for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=lambda m: f"step {step} {name}: {m}")


@pytest.mark.parametrize("nesterov", [False, True])
def test_adamp_matches_timm(nesterov):
    from timm.optim import AdamP as TimmAdamP
    _assert_same_trajectory(adamp.AdamP, TimmAdamP, lr=0.01, nesterov=nesterov, betas=(0.9, 0.99))


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgdp_matches_timm(nesterov):
    from timm.optim import SGDP as TimmSGDP
    _assert_same_trajectory(adamp.SGDP, TimmSGDP, lr=0.05, momentum=0.9, nesterov=nesterov)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_madgrad_matches_timm(momentum):
    from timm.optim import MADGRAD as TimmMADGRAD
    _assert_same_trajectory(madgrad.MADGRAD, TimmMADGRAD, lr=0.01, momentum=momentum)


def test_diffgrad_matches_authors_code():
    import torch_optimizer as ref_lib  # torch-optimizer==0.3.0, pinned in the test extras
    _assert_same_trajectory(diffgrad.DiffGrad, ref_lib.DiffGrad, lr=0.01, betas=(0.9, 0.99))


def test_adamp_projection_is_active_on_scale_invariant_weight():
    """The BatchNorm-ed weight is projected (ratio wd_ratio, update orthogonal to w per row); the head is not."""
    model, x, y = _net_and_data()
    ((model(x) - y) ** 2).mean().backward()
    update = torch.randn_like(model.body.weight)
    q, ratio = project_radial(model.body.weight.detach(), model.body.weight.grad, update.clone(), 0.1, 0.1, 1e-8)
    assert ratio == 0.1
    torch.testing.assert_close((q * model.body.weight.detach()).sum(dim=1), torch.zeros(8), atol=1e-5, rtol=0)
    _, ratio_head = project_radial(model.head.weight.detach(), model.head.weight.grad, update[:3].clone(), 0.1, 0.1,
                                   1e-8)
    assert ratio_head == 1.0


def test_adamp_projection_hand_computed():
    """w = (3, 4), g = (4, -3) orthogonal: q = x - (w_hat.x) w_hat, w_hat = (0.6, 0.8): x = (1, 1) -> (0.16, -0.12)."""
    w, g = torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, -3.0]])
    q, ratio = project_radial(w, g, torch.tensor([[1.0, 1.0]]), delta=0.1, wd_ratio=0.25, eps=0.0)
    torch.testing.assert_close(q, torch.tensor([[0.16, -0.12]]))
    assert ratio == 0.25
    q, ratio = project_radial(w, w.clone(), torch.tensor([[1.0, 1.0]]), delta=0.1, wd_ratio=0.25, eps=0.0)
    torch.testing.assert_close(q, torch.tensor([[1.0, 1.0]]))  # g parallel to w: not scale-invariant, untouched
    assert ratio == 1.0


def test_diffgrad_two_steps_hand_computed():
    """theta_t = theta - lr sqrt(1-b2^t)/(1-b1^t) xi_t m_t / (sqrt(v_t) + eps), xi_t = sigmoid(|g_{t-1} - g_t|)."""
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-8
    theta = torch.tensor([1.0], requires_grad=True)
    opt = diffgrad.DiffGrad([theta], lr=lr, betas=(b1, b2), eps=eps)
    expected, m, v, g_prev, th = [], 0.0, 0.0, 0.0, 1.0
    for t, g in ((1, 2.0), (2, -1.0)):
        theta.grad = torch.tensor([g])
        opt.step()
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        xi = 1 / (1 + math.exp(-abs(g_prev - g)))
        th -= lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t) * xi * m / (math.sqrt(v) + eps)
        g_prev = g
        expected.append(th)
        assert theta.item() == pytest.approx(th, rel=1e-6)
    assert expected[1] != pytest.approx(expected[0])


def test_amsgrad_torch_two_steps_hand_computed():
    """torch Adam(amsgrad=True), the AMSGrad baseline (Reddi et al., arXiv:1904.09237, Alg. 2, with torch's bias
    correction): v_max = max(v_max, v_t); theta -= lr / (1-b1^t) * m_t / (sqrt(v_max) / sqrt(1-b2^t) + eps).
    g = (1, 0.1) with b2 = 0.5 makes v_2 < v_1, so v_max keeps v_1 and the step differs from Adam's."""
    lr, b1, b2, eps = 0.1, 0.9, 0.5, 1e-8
    thetas = {}
    for ams in (True, False):
        theta = torch.tensor([0.0], requires_grad=True)
        opt = torch.optim.Adam([theta], lr=lr, betas=(b1, b2), eps=eps, amsgrad=ams)
        for g in (1.0, 0.1):
            theta.grad = torch.tensor([g])
            opt.step()
        thetas[ams] = theta.item()
    m1, v1 = 0.1, 0.5                      # (1-b1) g1, (1-b2) g1^2
    th1 = -lr / (1 - b1) * m1 / (math.sqrt(v1) / math.sqrt(1 - b2) + eps)
    m2, v2 = b1 * m1 + 0.1 * 0.1, b2 * v1 + 0.5 * 0.01   # 0.1 = 1 - b1, 0.5 = 1 - b2
    assert v2 < v1
    ams2 = th1 - lr / (1 - b1 ** 2) * m2 / (math.sqrt(max(v1, v2)) / math.sqrt(1 - b2 ** 2) + eps)
    adam2 = th1 - lr / (1 - b1 ** 2) * m2 / (math.sqrt(v2) / math.sqrt(1 - b2 ** 2) + eps)
    assert thetas[True] == pytest.approx(ams2, rel=1e-6)
    assert thetas[False] == pytest.approx(adam2, rel=1e-6)
    assert abs(ams2 - adam2) > 1e-3


def test_sgdw_steps_hand_computed_with_schedule():
    """Alg. 1: m_t = b1 m + eta_t alpha g_t; theta_t = theta - m_t - eta_t lambda theta. Step 2 runs at eta = 0.5
    (lr halved by a schedule): the decay halves too, but is never multiplied by alpha."""
    alpha, b1, lam = 0.1, 0.9, 0.01
    theta = torch.tensor([2.0], requires_grad=True)
    opt = sgdw.SGDW([theta], lr=alpha, momentum=b1, weight_decay=lam)
    m, th = 0.0, 2.0
    for eta, g in ((1.0, 3.0), (0.5, -1.0), (0.5, 0.5)):
        opt.param_groups[0]["lr"] = eta * alpha
        theta.grad = torch.tensor([g])
        opt.step()
        m = b1 * m + eta * alpha * g
        th = th - m - eta * lam * th
        assert theta.item() == pytest.approx(th, rel=1e-6)


def test_sgdw_decay_independent_of_group_lr():
    """Two groups, lr 0.1 and 0.4, zero gradients: both shrink by (1 - lambda), then (1 - lambda/2) at eta = 0.5."""
    a, b = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    opt = create_optimizer("sgdw", [{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.4}], lr=0.1,
                           weight_decay=0.02)
    a.grad, b.grad = torch.zeros(3), torch.zeros(3)
    opt.step()
    for g in opt.param_groups:
        g["lr"] *= 0.5
    opt.step()
    for p in (a, b):
        torch.testing.assert_close(p.detach(), torch.full((3,), 0.98 * 0.99))


def test_sgdw_added_group_gets_its_own_alpha():
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = sgdw.SGDW([a], lr=0.1, weight_decay=0.1)
    opt.add_param_group({"params": [b], "lr": 0.3})
    assert [g["alpha"] for g in opt.param_groups] == [0.1, 0.3]
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "lr": 0.0})


def test_sgdw_without_decay_equals_torch_sgd_momentum():
    model, x, y = _net_and_data()
    ref_model = copy.deepcopy(model)
    ours = sgdw.SGDW(model.parameters(), lr=0.05, momentum=0.9)
    ref = torch.optim.SGD(ref_model.parameters(), lr=0.05, momentum=0.9)
    for step in range(6):
        _grad_step(ours, model, x, y, step)
        _grad_step(ref, ref_model, x, y, step)
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)


def _build(name: str, model: nn.Module):
    return create_optimizer(name, model, lr=0.02, weight_decay=0.01)


@pytest.mark.parametrize("name", NAMES)
def test_optimizer_state_dict_resume_equals_straight_run(name):
    """3 steps, state_dict through a checkpoint into a fresh optimizer on a copy, 2 more == 5 steps straight."""
    model, x, y = _net_and_data()
    straight = copy.deepcopy(model)
    opt_straight = _build(name, straight)
    for step in range(5):
        _grad_step(opt_straight, straight, x, y, step)
    opt = _build(name, model)
    for step in range(3):
        _grad_step(opt, model, x, y, step)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed, _, _ = _net_and_data(seed=7)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(ckpt["model"])
    opt_resumed = _build(name, resumed)
    opt_resumed.load_state_dict(ckpt["opt"])
    for step in range(3, 5):
        _grad_step(opt_resumed, resumed, x, y, step)
    for p, q in zip(resumed.parameters(), straight.parameters()):
        torch.testing.assert_close(p, q, atol=0, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_optimizer_converges_on_quadratic(name):
    """Ill-conditioned 2-d quadratic 0.5 (x1^2 + 10 x2^2) from (1, 1): loss below 5% of the start in 300 steps."""
    theta = torch.tensor([1.0, 1.0], requires_grad=True)
    lr = {"madgrad": 0.01, "sgdw": 0.02}.get(name, 0.05)
    opt = create_optimizer(name, [theta], lr=lr)
    scale = torch.tensor([1.0, 10.0])
    for _ in range(300):
        opt.zero_grad()
        (0.5 * (scale * theta ** 2).sum()).backward()
        opt.step()
    assert 0.5 * float((scale * theta.detach() ** 2).sum()) < 0.05 * 5.5


@pytest.mark.parametrize("name, bad", [
    ("adamp", {"lr": -1.0}), ("adamp", {"betas": (0.9, 1.0)}), ("adamp", {"wd_ratio": 2.0}),
    ("sgdp", {"momentum": 1.0}), ("sgdp", {"weight_decay": -0.1}), ("sgdp", {"delta": 0.0}),
    ("diffgrad", {"eps": -1.0}), ("diffgrad", {"betas": (-0.1, 0.9)}),
    ("madgrad", {"momentum": -0.5}), ("madgrad", {"weight_decay": -1.0}),
    ("sgdw", {"lr": 0.0}), ("sgdw", {"weight_decay": 1.5}), ("sgdw", {"momentum": 1.0}),
])
def test_optimizer_bad_argument_raises(name, bad):
    args = {"lr": 0.01, **bad}
    key = next(iter(bad))
    with pytest.raises(ValueError, match=key):
        OPTIMIZERS.get(name)([torch.zeros(2, requires_grad=True)], **args)
