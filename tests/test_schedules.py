"""Learning-rate schedules (shared/optim/schedules.py): hand-computed values, torch references, resume."""
import io
import math

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler

from shared.optim import SCHEDULES, create_optimizer, create_scheduler, list_schedules
from shared.registry import UnknownNameError

# (name, kwargs) exercising every built-in schedule; test_schedule_cases_cover_builtins keeps this complete.
CASES = [
    ("constant", {}),
    ("step", {"step_size": 4, "gamma": 0.5}),
    ("multistep", {"milestones_frac": [0.5, 0.75]}),
    ("multistep", {"milestones": [12, 18]}),
    ("cosine", {"min_lr_ratio": 0.1}),
    ("cosine", {"eta_min": 0.002}),
    ("linear", {"end_ratio": 0.2}),
    ("wsd", {"decay_frac": 0.3, "decay_shape": "sqrt", "min_lr_ratio": 0.05}),
]


def _lrs(name, total, warmup=0, n=None, base_lr=1.0, **kw):
    """lr used by optimizer steps 0 .. n-1 (default n = total + 1, one past the end)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = create_scheduler(name, opt, total, warmup, **kw)
    out = []
    for _ in range(total + 1 if n is None else n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _torch_lrs(sched_cls, n, base_lr=1.0, **kw):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base_lr)
    sched = sched_cls(opt, **kw)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_schedule_cases_cover_builtins():
    builtins = {n for n in list_schedules() if SCHEDULES.get(n).__module__ == "shared.optim.schedules"}
    assert builtins == {name for name, _ in CASES} == {"constant", "step", "multistep", "cosine", "linear", "wsd"}


def test_schedule_warmup_ramp_values():
    # (s + 1) / W for s < W, then the main schedule
    assert _lrs("constant", 10, warmup=4) == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1, 1, 1])


@pytest.mark.parametrize("name,kw", CASES)
def test_schedule_warmup_ramp_every_schedule(name, kw):
    lrs = _lrs(name, 24, warmup=5, n=5, base_lr=0.1, **kw)
    assert lrs == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])


def test_schedule_step_values():
    assert _lrs("step", 10, step_size=3, gamma=0.5) == pytest.approx([1, 1, 1, .5, .5, .5, .25, .25, .25, .125, .125])
    # step_size counts from step 0, warm-up included
    assert _lrs("step", 10, warmup=2, n=5, step_size=3, gamma=0.5) == pytest.approx([0.5, 1, 1, 0.5, 0.5])


def test_schedule_multistep_drops():
    frac = _lrs("multistep", 20, milestones_frac=[0.5, 0.75])
    assert frac == _lrs("multistep", 20, milestones=[10, 15])
    assert frac[9] == 1 and frac[10] == pytest.approx(0.1) and frac[14] == pytest.approx(0.1)
    assert frac[15] == pytest.approx(0.01) and frac[20] == pytest.approx(0.01)
    warm = _lrs("multistep", 20, warmup=5, milestones=[10, 15])
    assert warm[:6] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1, 1]) and warm[10] == pytest.approx(0.1)


def test_schedule_step_and_multistep_match_torch():
    ours = _lrs("step", 12, step_size=5, gamma=0.3, base_lr=0.1)
    torch.testing.assert_close(ours, _torch_lrs(lr_scheduler.StepLR, 13, 0.1, step_size=5, gamma=0.3))
    ours = _lrs("multistep", 12, milestones=[3, 7], base_lr=0.1)
    torch.testing.assert_close(ours, _torch_lrs(lr_scheduler.MultiStepLR, 13, 0.1, milestones=[3, 7]))


def test_schedule_cosine_values():
    lrs = _lrs("cosine", 10)
    assert (lrs[0], lrs[5], lrs[10]) == pytest.approx((1, 0.5, 0))
    assert lrs[3] == pytest.approx((1 + math.cos(math.pi * 0.3)) / 2)
    lrs = _lrs("cosine", 10, min_lr_ratio=0.1)
    assert (lrs[0], lrs[5], lrs[10]) == pytest.approx((1, 0.55, 0.1))
    # warm-up 2, then a half-cosine over the remaining 10 steps
    lrs = _lrs("cosine", 12, warmup=2)
    assert (lrs[0], lrs[1], lrs[2], lrs[7], lrs[12]) == pytest.approx((0.5, 1, 1, 0.5, 0))
    # eta_min is absolute: base 0.1, eta_min 0.01 ends at 0.01
    assert _lrs("cosine", 10, base_lr=0.1, eta_min=0.01)[10] == pytest.approx(0.01)


def test_schedule_cosine_and_linear_match_torch():
    ours = _lrs("cosine", 20, base_lr=0.1, eta_min=0.004)
    torch.testing.assert_close(ours, _torch_lrs(lr_scheduler.CosineAnnealingLR, 21, 0.1, T_max=20, eta_min=0.004))
    ours = _lrs("linear", 20, base_lr=0.1, end_ratio=0.2)
    ref = _torch_lrs(lr_scheduler.LinearLR, 21, 0.1, start_factor=1.0, end_factor=0.2, total_iters=20)
    torch.testing.assert_close(ours, ref)


def test_schedule_linear_values():
    lrs = _lrs("linear", 10, end_ratio=0.2)
    assert (lrs[0], lrs[5], lrs[10]) == pytest.approx((1, 0.6, 0.2))
    assert _lrs("linear", 10)[10] == pytest.approx(0.0)


def test_schedule_wsd_plateau_and_decay():
    # T=20, decay_frac=0.25: 5 decay steps starting at t=15
    lrs = _lrs("wsd", 20, decay_frac=0.25)
    assert lrs[:16] == [1.0] * 16
    assert (lrs[16], lrs[18], lrs[20]) == pytest.approx((0.8, 0.4, 0.0))
    assert _lrs("wsd", 20, decay_frac=0.25, min_lr_ratio=0.1)[16] == pytest.approx(0.82)
    assert _lrs("wsd", 20, decay_frac=0.25, decay_shape="sqrt")[16] == pytest.approx(1 - math.sqrt(0.2))
    cos = _lrs("wsd", 20, decay_frac=0.25, decay_shape="cosine")
    assert (cos[17], cos[20]) == pytest.approx(((1 + math.cos(0.4 * math.pi)) / 2, 0.0))
    # warm-up 4 then the same shape over n = 20 steps
    warm = _lrs("wsd", 24, warmup=4, decay_frac=0.25)
    assert (warm[0], warm[3], warm[18], warm[20], warm[24]) == pytest.approx((0.25, 1, 1, 0.8, 0))


def test_schedule_warmup_frac_rounds_to_steps():
    assert _lrs("constant", 20, n=6, warmup_frac=0.2) == _lrs("constant", 20, warmup=4, n=6)


def test_schedule_lr_mult_groups_keep_ratio():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    opt = create_optimizer("sgd", model, lr=0.1, no_decay_norm_bias=True, lr_mult={"no_decay": 0.5})
    sched = create_scheduler("cosine", opt, 10, warmup_steps=2)
    for _ in range(6):
        decay, no_decay = (g["lr"] for g in opt.param_groups)
        assert no_decay == pytest.approx(0.5 * decay)
        opt.step()
        sched.step()


@pytest.mark.parametrize("name,kw", CASES)
def test_schedule_resume_matches_uninterrupted(name, kw):
    def build(model):
        opt = create_optimizer("sgd", model, lr=0.1, momentum=0.9)
        return opt, create_scheduler(name, opt, 24, warmup_steps=3, **kw)

    def run(model, opt, sched, steps, lrs):
        x = torch.linspace(-1, 1, 12).reshape(4, 3)
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            sched.step()

    torch.manual_seed(0)
    ref_model = nn.Linear(3, 2)
    model = nn.Linear(3, 2)
    model.load_state_dict(ref_model.state_dict())
    ref_lrs, lrs = [], []
    run(ref_model, *build(ref_model), 24, ref_lrs)

    opt, sched = build(model)
    run(model, opt, sched, 10, lrs)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    resumed = nn.Linear(3, 2)
    resumed.load_state_dict(ckpt["model"])
    opt, sched = build(resumed)
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    run(resumed, opt, sched, 14, lrs)
    assert lrs == ref_lrs
    for p, q in zip(ref_model.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q)


def test_create_scheduler_unknown_kwarg_names_accepted():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match=r"'cosine'.*\['eta_mn'\].*min_lr_ratio, eta_min"):
        create_scheduler("cosine", opt, 10, eta_mn=0.1)


def test_create_scheduler_missing_kwarg_named():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match=r"'step' needs argument\(s\) \['step_size'\]"):
        create_scheduler("step", opt, 10)


def test_create_scheduler_unknown_name_lists_known():
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(UnknownNameError, match=", ".join(list_schedules())):
        create_scheduler("cosin", opt, 10)


@pytest.mark.parametrize(
    "name,total,warmup,kw",
    [
        ("constant", 10, 10, {}),
        ("multistep", 10, 0, {"milestones": [5], "milestones_frac": [0.5]}),
        ("multistep", 10, 0, {}),
        ("cosine", 10, 0, {"min_lr_ratio": 0.1, "eta_min": 0.01}),
        ("wsd", 10, 0, {"decay_frac": 0.0}),
        ("wsd", 10, 0, {"decay_shape": "exp"}),
    ],
)
def test_create_scheduler_bad_values_raise(name, total, warmup, kw):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError):
        create_scheduler(name, opt, total, warmup, **kw)
