"""AdEMAMix, MARS-AdamW and SPAM (shared/optim/ademamix.py, mars.py, spam.py): hand-computed values and
trajectories against pytorch_optimizer 3.8.2, timm 1.0.31 and torch.optim.AdamW, in float64."""
import copy
import io
import math

import pytest
import torch
from torch import nn

from shared.optim.ademamix import AdEMAMix, alpha_schedule, beta3_schedule
from shared.optim.mars import MARSAdamW
from shared.optim.spam import SPAM, clip_spikes, warmup_scale

import pytorch_optimizer as ref  # noqa: E402  (pinned in the test extras)
from pytorch_optimizer.optimizer import spam as ref_spam  # noqa: E402
from timm.optim import Mars as TimmMars  # noqa: E402

SCHEDULED_KWARGS = {  # kwargs that make each optimizer's schedule (warm-ups, resets, corrections) act within 5 steps
    AdEMAMix: dict(lr=0.01, t_alpha_beta3=4, weight_decay=0.1),
    MARSAdamW: dict(lr=0.01, gamma=0.5, weight_decay=0.1),
    SPAM: dict(lr=0.01, reset_interval=3, warmup_steps=2, clip_delay=2, threshold=2.0, weight_decay=0.1),
}


class _Net(nn.Module):
    """A matrix w, a 4-d kernel k (MARS treats ndim >= 2 as matrices) and a bias b."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.w = nn.Parameter(torch.randn(3, 4, dtype=torch.float64) * 0.5)
        self.k = nn.Parameter(torch.randn(3, 4, 1, 1, dtype=torch.float64) * 0.5)
        self.b = nn.Parameter(torch.randn(3, dtype=torch.float64) * 0.5)

    def forward(self, x):
        return x @ (self.w + self.k.view(3, 4)).T + self.b


def _batches(steps: int):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 4, generator=g, dtype=torch.float64), torch.randn(8, 3, generator=g, dtype=torch.float64))
            for _ in range(steps)]


def _groups(net: _Net, lr: float, wd: float):
    """Two groups: matrices at lr with decay wd, the bias at lr / 2 without decay."""
    return [{"params": [net.w, net.k], "lr": lr, "weight_decay": wd},
            {"params": [net.b], "lr": lr / 2, "weight_decay": 0.0}]


def _train(net: nn.Module, opt: torch.optim.Optimizer, batches) -> list[torch.Tensor]:
    for x, y in batches:
        opt.zero_grad()
        (net(x) - y).pow(2).mean().backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


def _assert_same(a, b, **tol):
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, **tol)


# ---------------------------------------------------------------- all three


@pytest.mark.parametrize("cls", SCHEDULED_KWARGS, ids=lambda c: c.__name__)
def test_variance_optimizers_state_dict_round_trip(cls):
    """3 steps, save, load into a fresh optimizer on a copy, 2 steps == 5 steps straight (bitwise)."""
    kw = dict(SCHEDULED_KWARGS[cls])
    lr, wd = kw.pop("lr"), kw.pop("weight_decay")
    batches = _batches(5)
    net = _Net()
    straight = _train(net, cls(_groups(net, lr, wd), **kw), batches)
    net = _Net()
    opt = cls(_groups(net, lr, wd), **kw)
    _train(net, opt, batches[:3])
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    clone = copy.deepcopy(net)
    opt_clone = cls(_groups(clone, lr, wd), **kw)
    opt_clone.load_state_dict(torch.load(buf, weights_only=True))
    _assert_same(_train(clone, opt_clone, batches[3:]), straight, rtol=0, atol=0)


@pytest.mark.parametrize("cls", SCHEDULED_KWARGS, ids=lambda c: c.__name__)
def test_variance_optimizers_lower_quadratic_loss(cls):
    net, batches = _Net(), _batches(1) * 30
    x, y = batches[0]
    loss = lambda: float((net(x) - y).pow(2).mean().detach())  # noqa: E731
    start = loss()
    _train(net, cls(net.parameters(), lr=0.02), batches)
    assert loss() < 0.9 * start


@pytest.mark.parametrize("cls, bad", [
    (AdEMAMix, dict(lr=0.0)), (AdEMAMix, dict(betas=(0.9, 0.999))), (AdEMAMix, dict(alpha=-1.0)),
    (AdEMAMix, dict(t_alpha_beta3=0)), (AdEMAMix, dict(betas=(0.0, 0.999, 0.9999), t_alpha_beta3=10)),
    (MARSAdamW, dict(betas=(0.95, 1.0))), (MARSAdamW, dict(gamma=-0.1)), (MARSAdamW, dict(betas_1d=(0.9,))),
    (SPAM, dict(eps=-1.0)), (SPAM, dict(threshold=-1.0)), (SPAM, dict(reset_interval=0)), (SPAM, dict(clip_delay=1)),
], ids=lambda v: getattr(v, "__name__", None) or ",".join(v))
def test_variance_optimizers_bad_arguments_raise(cls, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        cls(nn.Linear(2, 2).parameters(), **bad)


# ---------------------------------------------------------------- AdEMAMix


def test_ademamix_alpha_schedule_hand_values():
    """f_alpha(t) = min(t alpha / T, alpha): alpha = 8, T = 100."""
    assert [alpha_schedule(t, 8.0, 100) for t in (0, 25, 50, 100, 150)] == [0.0, 2.0, 4.0, 8.0, 8.0]
    assert alpha_schedule(3, 8.0, None) == 8.0


def test_ademamix_beta3_schedule_hand_values():
    """f_beta3 moves the half-life h(beta) = ln(0.5)/ln(beta) linearly from h(beta1) to h(beta3) over T steps."""
    assert beta3_schedule(0, 0.9, 0.9999, 100) == pytest.approx(0.9, abs=1e-12)
    assert beta3_schedule(100, 0.9, 0.9999, 100) == beta3_schedule(300, 0.9, 0.9999, 100) == 0.9999
    # h(0.9) = 6.57881, h(0.9999) = 6931.125; at t = T/2 the half-life is 3468.85 steps: beta = 0.5^(1/3468.85)
    assert beta3_schedule(50, 0.9, 0.9999, 100) == pytest.approx(0.99980020, abs=1e-8)
    half_life = lambda b: math.log(0.5) / math.log(b)  # noqa: E731
    for t in (1, 10, 37, 99):
        h = (1 - t / 100) * half_life(0.9) + t / 100 * half_life(0.9999)
        assert beta3_schedule(t, 0.9, 0.9999, 100) == pytest.approx(0.5 ** (1 / h), rel=1e-12)
    assert beta3_schedule(7, 0.9, 0.9999, None) == 0.9999


def test_ademamix_first_step_and_slow_ema_follow_schedules():
    """Constant gradient g: step 1 moves theta by eta (1 + alpha(1) (1 - beta3(1))) sign(g) (eps = 0), and after
    t steps m2 = g (1 - prod_s beta3(s))."""
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    g = torch.tensor([0.3, -0.7], dtype=torch.float64)
    opt = AdEMAMix([p], lr=0.1, betas=(0.9, 0.999, 0.9999), alpha=6.0, t_alpha_beta3=5, eps=0.0)
    b3 = [beta3_schedule(t, 0.9, 0.9999, 5) for t in range(1, 9)]
    p.grad = g.clone()
    opt.step()
    expected = torch.tensor([1.0, -2.0], dtype=torch.float64) - 0.1 * (1 + 6.0 / 5 * (1 - b3[0])) * g.sign()
    torch.testing.assert_close(p.detach(), expected)
    for _ in range(7):
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(opt.state[p]["exp_avg_slow"], g * (1 - math.prod(b3)))


@pytest.mark.parametrize("t_alpha_beta3", [None, 4])
def test_ademamix_matches_reference(monkeypatch, t_alpha_beta3):
    """pytorch_optimizer's AdEMAMix divides alpha m2 by (1 - beta1^t) too; scheduling its alpha as
    alpha(t) (1 - beta1^t) gives Algorithm 1's m1_hat + alpha(t) m2 (the official apple/ml-ademamix update)."""
    original = ref.AdEMAMix.schedule_alpha
    beta1 = 0.8
    monkeypatch.setattr(ref.AdEMAMix, "schedule_alpha", staticmethod(
        lambda t_ab3, step, alpha: original(t_ab3, step, alpha) * (1 - beta1 ** step)))
    kw = dict(betas=(beta1, 0.99, 0.999), alpha=5.0, t_alpha_beta3=t_alpha_beta3)
    batches = _batches(8)
    net = _Net()
    ours = _train(net, AdEMAMix(_groups(net, 0.01, 0.1), **kw), batches)
    net = _Net()
    theirs = _train(net, ref.AdEMAMix(_groups(net, 0.01, 0.1), weight_decouple=True, **kw), batches)
    _assert_same(ours, theirs)


# ---------------------------------------------------------------- MARS-AdamW


def test_mars_correction_and_clipping_hand_values():
    """beta1 = 0.9, gamma = 0.5: c_t = g_t + 4.5 (g_t - g_{t-1}); c_1 = g_1 (x_0 = x_1); ||c_3|| > 1 is clipped."""
    p = nn.Parameter(torch.zeros(2, 2, dtype=torch.float64))
    opt = MARSAdamW([p], lr=0.01, betas=(0.9, 0.99), gamma=0.5)
    grads = [[[0.1, 0.0], [0.0, 0.0]], [[0.1, 0.05], [0.0, 0.0]], [[0.1, 0.3], [0.0, 0.0]]]
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    c1 = torch.tensor([[0.1, 0.0], [0.0, 0.0]], dtype=torch.float64)
    c2 = torch.tensor([[0.1, 0.05 + 4.5 * 0.05], [0.0, 0.0]], dtype=torch.float64)  # ||c2|| = 0.293 < 1
    c3 = torch.tensor([[0.1, 0.3 + 4.5 * 0.25], [0.0, 0.0]], dtype=torch.float64)  # ||c3|| = 1.4285 > 1
    c3 = c3 / math.hypot(0.1, 1.425)
    m = 0.1 * (0.9 ** 2 * c1 + 0.9 * c2 + c3)
    v = 0.01 * (0.99 ** 2 * c1 ** 2 + 0.99 * c2 ** 2 + c3 ** 2)
    torch.testing.assert_close(opt.state[p]["exp_avg"], m)
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], v)
    torch.testing.assert_close(opt.state[p]["last_grad"], torch.tensor(grads[2], dtype=torch.float64))


def test_mars_vectors_get_adamw():
    """optimize_1d=False: a 1-d parameter follows torch.optim.AdamW with betas_1d."""
    a = nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    b = nn.Parameter(a.detach().clone())
    ours = MARSAdamW([a], lr=0.05, weight_decay=0.1, betas_1d=(0.8, 0.9))
    theirs = torch.optim.AdamW([b], lr=0.05, weight_decay=0.1, betas=(0.8, 0.9))
    for s in range(6):
        for p, opt in ((a, ours), (b, theirs)):
            p.grad = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64) * (s - 2.5) + p.detach()
            opt.step()
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("optimize_1d", [False, True])
@pytest.mark.parametrize("gamma", [0.025, 0.5])
def test_mars_matches_timm(optimize_1d, gamma):
    kw = dict(betas=(0.9, 0.99), gamma=gamma, optimize_1d=optimize_1d, betas_1d=(0.8, 0.95))
    batches = _batches(8)
    net = _Net()
    ours = _train(net, MARSAdamW(_groups(net, 0.01, 0.1), **kw), batches)
    net = _Net()
    theirs = _train(net, TimmMars(_groups(net, 0.01, 0.1), mars_type="adamw", **kw), batches)
    _assert_same(ours, theirs)


def test_mars_matches_pytorch_optimizer_after_zero_first_gradient():
    """pytorch_optimizer (like the official code) starts from g_0 = 0; a zero first gradient makes that and
    x_0 = x_1 coincide. Its eps sits inside the bias correction and it adds 1e-15 to v: tolerance 1e-6."""
    kw = dict(betas=(0.9, 0.99), gamma=0.5, betas_1d=(0.8, 0.95), eps=1e-12)
    batches = _batches(8)
    runs = []
    for opt_cls, extra in ((MARSAdamW, {}), (ref.MARS, dict(lr=0.01, lr_1d=0.01, weight_decouple=True))):
        net = _Net()
        opt = opt_cls(_groups(net, 0.01, 0.1), **kw, **extra)
        for p in net.parameters():
            p.grad = torch.zeros_like(p)
        opt.step()
        runs.append(_train(net, opt, batches))
    _assert_same(*runs, rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------- SPAM


def test_spam_warmup_scale_hand_values():
    """dT = 10, N = 4: w = 1 before the first reset; at r = t mod 10 < 4, w = 1 - 0.99 (1 + cos(pi r / 5)) / 2."""
    got = [warmup_scale(t, 10, 4) for t in (1, 9, 10, 11, 12, 13, 14, 19, 20)]
    # cos(pi/5) = 0.809017, cos(2pi/5) = 0.309017, cos(3pi/5) = -0.309017
    expected = [1.0, 1.0, 0.01, 0.10453659, 0.35203659, 0.65796341, 1.0, 1.0, 0.01]
    assert got == pytest.approx(expected, abs=1e-7)


def test_spam_clip_spikes_hand_values():
    grad = torch.tensor([3.0, -10.0, 0.1, 5.0, -1.0])
    v = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.25])
    # theta = 4: bound sqrt(4 v) = [2, 2, 2, 0, 1]; spikes g^2 > 4 v: 9 > 4, 100 > 4, 25 > 0 (not 0.01, 1 = 1)
    torch.testing.assert_close(clip_spikes(grad, v, 4.0), torch.tensor([2.0, -2.0, 0.1, 0.0, -1.0]))


def test_spam_clips_a_spike_in_the_moments_only_after_the_delay():
    """beta2 = 0.5, theta = 4, K = 3: three steps of g = [1, -2, 0.5] give v = 0.875 g^2; a spike -200 at t = 4 is
    clipped to -sqrt(4 v) = -4 sqrt(0.875) in m and v, the others pass; p.grad is left as it was."""
    p = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = SPAM([p], betas=(0.5, 0.5), threshold=4.0, clip_delay=3, reset_interval=1000)
    g = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    spike = torch.tensor([1.0, -200.0, 0.5], dtype=torch.float64)
    p.grad = spike.clone()  # t = 1 < K: no clipping (v = 0 would clip everything)
    opt.step()
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], 0.5 * spike ** 2)
    opt = SPAM([p], betas=(0.5, 0.5), threshold=4.0, clip_delay=3, reset_interval=1000)
    for _ in range(3):
        p.grad = g.clone()
        opt.step()
    v, m = opt.state[p]["exp_avg_sq"].clone(), opt.state[p]["exp_avg"].clone()
    torch.testing.assert_close(v, 0.875 * g ** 2)
    p.grad = spike.clone()
    opt.step()
    clipped = torch.tensor([1.0, -4.0 * math.sqrt(0.875), 0.5], dtype=torch.float64)
    torch.testing.assert_close(opt.state[p]["exp_avg"], 0.5 * m + 0.5 * clipped)
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], 0.5 * v + 0.5 * clipped ** 2)
    torch.testing.assert_close(p.grad, spike)


def test_spam_momentum_reset_and_warmed_up_step():
    """dT = 5: at t = 5 the moments restart from 0 (m = (1 - beta1) g, v = (1 - beta2) g^2) and the step is
    eta w(0) sqrt(1 - beta2^5) / (1 - beta1^5) m / (sqrt(v) + eps), w(0) = 0.01."""
    p = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = SPAM([p], lr=0.1, betas=(0.9, 0.999), eps=1e-6, reset_interval=5, warmup_steps=3)
    g = torch.tensor([0.4, -0.2], dtype=torch.float64)
    for _ in range(4):
        p.grad = g.clone()
        opt.step()
    before = p.detach().clone()
    p.grad = g.clone()
    opt.step()
    torch.testing.assert_close(opt.state[p]["exp_avg"], 0.1 * g)
    torch.testing.assert_close(opt.state[p]["exp_avg_sq"], 0.001 * g ** 2)
    step = 0.1 * 0.01 * math.sqrt(1 - 0.999 ** 5) / (1 - 0.9 ** 5) * (0.1 * g) / (math.sqrt(0.001) * g.abs() + 1e-6)
    torch.testing.assert_close(p.detach(), before - step)


def _official_warmup(monkeypatch):
    """pytorch_optimizer's CosineDecay(0.99, N) gives the death rate at r + 1; the official code's gives it at r
    (CosineAnnealingLR in closed form: 0.99 at r = 0) and 0 from r = N on: shift it back by one step."""
    original = ref_spam.CosineDecay.get_death_rate
    monkeypatch.setattr(ref_spam.CosineDecay, "get_death_rate",
                        lambda self, c: 0.99 if c == 0 else 0.0 if c >= self.t_max else original(self, c - 1))


@pytest.mark.filterwarnings("ignore:Detected call of:UserWarning")  # the reference's CosineDecay
@pytest.mark.parametrize("matrices", [True, False])
def test_spam_matches_reference(monkeypatch, matrices):
    """Two resets, warm-ups and clipping windows in 14 steps. pytorch_optimizer 3.8.2 never clips (it writes into
    a copy) and skips decay on 2-d parameters: theta = 1e6 has no spike here (5000 has two: the clipping is
    tested by hand above), and decay is on the bias only."""
    _official_warmup(monkeypatch)
    kw = dict(betas=(0.9, 0.99), eps=1e-6, threshold=1e6)
    schedule = dict(reset_interval=5, warmup_steps=3, clip_delay=2)
    ref_schedule = dict(update_proj_gap=5, warmup_epoch=3, grad_accu_steps=2)
    batches = _batches(14)
    runs = []
    for opt_cls, extra in ((SPAM, schedule), (ref.SPAM, ref_schedule)):
        net = _Net()
        groups = _groups(net, 0.01, 0.0) if matrices else [{"params": [net.b], "lr": 0.01, "weight_decay": 0.1}]
        runs.append(_train(net, opt_cls(groups, **kw, **extra), batches))
    _assert_same(*runs)
