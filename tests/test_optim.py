"""Optimizer registry, create_optimizer and param groups (shared/optim/registry.py, param_groups.py)."""
import copy
import io
import re

import pytest
import torch
from torch import nn

from shared.optim import OPTIMIZERS, create_optimizer, list_optimizers, param_groups, register_optimizer
from shared.registry import UnknownNameError

SPARSE_ONLY = [n for n in list_optimizers() if OPTIMIZERS.info(n)["sparse_grad_only"]]


def _problem(seed: int = 0):
    """Least squares on a linear layer: a quadratic in (weight, bias)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return nn.Linear(4, 3), torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)


def _skip_if_sparse_only(name: str) -> None:
    if OPTIMIZERS.info(name)["sparse_grad_only"]:
        pytest.skip(f"{name}: registry info sparse_grad_only=True (rejects dense grads); see test_optimizer_sparse_*")


def _params(name: str, model: nn.Module):
    """The module, or only its 2-d params for an optimizer with matrix_params_only (e.g. Muon)."""
    if OPTIMIZERS.info(name)["matrix_params_only"]:
        return [p for p in model.parameters() if p.ndim == 2]
    return model


def _build(name: str, model: nn.Module) -> torch.optim.Optimizer:
    # The torch default lr, raised to 0.02 so that 20 steps of SGD (default 1e-3) make visible progress.
    return create_optimizer(name, _params(name, model), lr=max(OPTIMIZERS.info(name)["default_lr"] or 0.0, 0.02))


def _step(name: str, opt: torch.optim.Optimizer, model: nn.Module, x, y) -> float:
    def closure():
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    if OPTIMIZERS.info(name)["needs_closure"]:
        return float(opt.step(closure).detach())
    loss = closure()
    opt.step()
    return float(loss.detach())


def _loss(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x) - y).pow(2).mean())


def test_registry_has_every_torch_optimizer():
    expected = {
        n.lower() for n in dir(torch.optim)
        if isinstance(getattr(torch.optim, n), type) and issubclass(getattr(torch.optim, n), torch.optim.Optimizer)
    } - {"optimizer"}
    assert expected <= set(list_optimizers())
    assert {"sgd", "adamw", "lbfgs"} <= expected
    assert OPTIMIZERS.info("lbfgs")["needs_closure"] and not OPTIMIZERS.info("sgd")["needs_closure"]
    assert OPTIMIZERS.info("adam")["has_betas"] and not OPTIMIZERS.info("sgd")["has_betas"]


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizer_step_changes_params(name):
    _skip_if_sparse_only(name)
    model, x, y = _problem()
    before = [p.detach().clone() for p in model.parameters()]
    opt = _build(name, model)
    _step(name, opt, model, x, y)
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    changed = [not torch.equal(b, p) for b, p in zip(before, model.parameters()) if id(p) in trained]
    assert changed and all(changed)


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizer_lowers_quadratic_loss(name):
    _skip_if_sparse_only(name)
    model, x, y = _problem()
    opt = _build(name, model)
    start = _loss(model, x, y)
    for _ in range(20):
        _step(name, opt, model, x, y)
    assert _loss(model, x, y) < 0.98 * start


@pytest.mark.parametrize("name", list_optimizers())
def test_optimizer_state_dict_round_trip(name):
    """timm tests/test_optim.py _test_state_dict: a clone loaded from a primed optimizer's state tracks it."""
    _skip_if_sparse_only(name)
    model, x, y = _problem()
    opt = _build(name, model)
    for _ in range(3):
        _step(name, opt, model, x, y)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)  # through a checkpoint, as a resumed run loads it
    buf.seek(0)
    clone = copy.deepcopy(model)
    opt_clone = _build(name, clone)
    opt_clone.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(3):
        _step(name, opt, model, x, y)
        _step(name, opt_clone, clone, x, y)
    for p, q in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("name", SPARSE_ONLY)
def test_optimizer_sparse_grads_lower_loss(name):
    torch.manual_seed(0)
    emb = nn.Embedding(10, 3, sparse=True)
    idx, target = torch.tensor([1, 4, 7]), torch.randn(3, 3)
    opt = create_optimizer(name, emb, lr=0.05)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        loss = (emb(idx) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(5, 4))
        self.conv = nn.Conv1d(4, 4, 3, padding=1)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2, bias=False)
        self.frozen = nn.Parameter(torch.zeros(3), requires_grad=False)

    def no_weight_decay(self):
        return {"pos_embed"}


def test_param_groups_no_decay_exactly_1d_and_named():
    net = _Net()
    groups = param_groups(net, weight_decay=0.05, no_decay_norm_bias=True)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"decay", "no_decay"}
    no_decay = {id(p) for p in by_name["no_decay"]["params"]}
    expected = {id(p) for n, p in net.named_parameters() if p.requires_grad and (p.ndim == 1 or n == "pos_embed")}
    assert no_decay == expected
    assert {id(p) for p in by_name["decay"]["params"]} == {id(net.conv.weight), id(net.head.weight)}
    assert by_name["decay"]["weight_decay"] == 0.05 and by_name["no_decay"]["weight_decay"] == 0.0


def test_param_groups_off_single_decay_group():
    net = _Net()
    (group,) = param_groups(net, weight_decay=0.05)
    assert group["name"] == "decay" and len(group["params"]) == 6


def test_param_groups_lr_mult_sets_group_lr():
    opt = create_optimizer("adamw", _Net(), lr=0.1, weight_decay=0.05, no_decay_norm_bias=True,
                           lr_mult={"no_decay": 0.5})
    lr = {g["name"]: g["lr"] for g in opt.param_groups}
    wd = {g["name"]: g["weight_decay"] for g in opt.param_groups}
    assert lr == {"decay": 0.1, "no_decay": 0.05} and wd == {"decay": 0.05, "no_decay": 0.0}


def test_param_groups_unknown_lr_mult_key_raises():
    with pytest.raises(ValueError, match="lr_mult keys"):
        param_groups(_Net(), lr_mult={"bias": 0.1})


def test_create_optimizer_unknown_name_lists_known():
    with pytest.raises(UnknownNameError) as err:
        create_optimizer("adamm", _Net(), lr=0.1)
    assert ", ".join(sorted(list_optimizers())) in str(err.value)


@pytest.mark.parametrize("name", list_optimizers())
def test_create_optimizer_bad_kwarg_names_key_and_accepted(name):
    with pytest.raises(TypeError) as err:
        create_optimizer(name, _Net(), lr=0.1, not_an_arg=1)
    msg = str(err.value)
    assert repr(name) in msg and "not_an_arg" in msg
    assert all(re.search(rf"\b{a}\b", msg) for a in OPTIMIZERS.info(name)["args"])


@pytest.mark.parametrize("name", list_optimizers())
def test_create_optimizer_weight_decay_only_if_accepted(name):
    model = nn.Linear(4, 3)
    if OPTIMIZERS.info(name)["accepts_weight_decay"]:
        opt = create_optimizer(name, _params(name, model), lr=0.01, weight_decay=0.01)
        assert all(g["weight_decay"] == 0.01 for g in opt.param_groups)
    else:
        opt = create_optimizer(name, _params(name, model), lr=0.01)
        assert all("weight_decay" not in g for g in opt.param_groups)
        with pytest.raises(ValueError, match="weight_decay"):
            create_optimizer(name, model, lr=0.01, weight_decay=0.01)


def test_create_optimizer_group_options_need_module():
    with pytest.raises(ValueError, match="nn.Module"):
        create_optimizer("sgd", nn.Linear(2, 2).parameters(), lr=0.1, no_decay_norm_bias=True)


def test_register_optimizer_fills_capabilities(monkeypatch):
    monkeypatch.setattr(OPTIMIZERS, "_entries", dict(OPTIMIZERS._entries))  # keep the global registry clean
    monkeypatch.setattr(OPTIMIZERS, "_info", dict(OPTIMIZERS._info))

    @register_optimizer("toy_sign", note="test")
    class ToySign(torch.optim.Optimizer):
        def __init__(self, params, lr=0.1, betas=(0.9, 0.99)):
            super().__init__(params, dict(lr=lr, betas=betas))

        @torch.no_grad()
        def step(self, closure=None):
            for g in self.param_groups:
                for p in (p for p in g["params"] if p.grad is not None):
                    p.add_(p.grad.sign(), alpha=-g["lr"])

    info = OPTIMIZERS.info("toy_sign")
    assert info["has_betas"] and not info["needs_closure"] and not info["accepts_weight_decay"]
    assert info["default_lr"] == 0.1 and info["note"] == "test" and "toy_sign" in list_optimizers()
    assert isinstance(create_optimizer("toy_sign", nn.Linear(2, 2), lr=0.01), ToySign)


def test_register_optimizer_duplicate_or_non_optimizer_raises():
    with pytest.raises(ValueError, match="already registered"):
        register_optimizer("sgd")(torch.optim.SGD)
    with pytest.raises(TypeError, match="Optimizer subclass"):
        register_optimizer("not_an_optimizer")(dict)
    assert "not_an_optimizer" not in OPTIMIZERS


@pytest.mark.parametrize("kw, message", [
    (dict(lr=0.0), "lr must be > 0, got 0.0"),
    (dict(betas=(0.9, 1.0)), r"betas must be two numbers in \[0, 1\)"),
    (dict(betas=(0.9, 0.99), n_betas=3), r"betas must be three numbers in \[0, 1\)"),
    (dict(momentum=1.0), r"momentum must lie in \[0, 1\), got 1.0"),
    (dict(eps=-1e-8), "eps must be >= 0, got -1e-08"),
    (dict(gamma=float("nan")), "gamma must be >= 0, got nan"),
])
def test_check_hparams_names_the_bad_argument(kw, message):
    from shared.optim.checks import check_hparams

    with pytest.raises(ValueError, match=message):
        check_hparams(**kw)


def test_check_hparams_accepts_bounds_and_skips_none():
    from shared.optim.checks import check_hparams

    check_hparams(lr=1e-12, betas=(0.0, 0.999), momentum=0.0, eps=0.0, weight_decay=None)
