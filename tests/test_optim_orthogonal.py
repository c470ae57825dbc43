"""Hybrid matrix-rule + AdamW optimizers: muon_adamw, adago, swan (shared/optim/muon.py, adago.py, swan.py)."""
import copy
import io

import pytest
import torch
from torch import nn
from torch.optim._muon import _zeropower_via_newtonschulz

from shared.optim import OPTIMIZERS, create_optimizer, list_optimizers
from shared.optim import adago, muon, swan  # noqa: F401  (registrations)
from shared.optim.muon import ORTHO, MuonAdamW
from shared.optim.swan import SWAN, grad_norm, grad_whitening

# optimizers that route matrices and the rest to two update rules (sgd_l2_as_lr routes too, by scale invariance,
# into one rule: tests/test_optim_l2_as_lr.py)
HYBRID = [n for n in list_optimizers()
          if getattr(OPTIMIZERS.get(n), "route_param_groups", None) and n != "sgd_l2_as_lr"]
NS = ((3.4445, -4.7750, 2.0315), 5, 1e-7)  # torch.optim.Muon's Newton-Schulz defaults


class _Net(nn.Module):
    """Every kind of parameter the routing rule names: embedding, hidden linear and conv, norm, head."""

    def __init__(self, tie: bool = False):
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.hidden = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Linear(6, 10, bias=not tie)
        if tie:
            self.head.weight = self.emb.weight

    def forward(self, idx):
        x = self.conv(self.emb(idx).transpose(1, 2)).transpose(1, 2)
        return self.head(self.norm(torch.relu(self.hidden(x))))


def _lm_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 10, (4, 5), generator=g), torch.randint(0, 10, (4, 5), generator=g)


def _lm_step(opt, net, idx, tgt) -> float:
    opt.zero_grad()
    loss = nn.functional.cross_entropy(net(idx).flatten(0, 1), tgt.flatten())
    loss.backward()
    opt.step()
    return float(loss.detach())


def _ids(groups, flag):
    return {id(p) for g in groups if g[ORTHO] == flag for p in g["params"]}


def test_hybrid_registry_lists_all_three():
    assert set(HYBRID) == {"muon_adamw", "adago", "swan"}


@pytest.mark.parametrize("name", HYBRID)
def test_hybrid_routes_embedding_head_vectors_to_adamw(name):
    torch.manual_seed(0)
    net = _Net()
    opt = create_optimizer(name, net, lr=0.02, weight_decay=0.1, no_decay_norm_bias=True,
                           lr_mult={"no_decay": 0.5}, adamw_lr=0.003)
    assert _ids(opt.param_groups, True) == {id(net.conv.weight), id(net.hidden.weight)}
    matrix = {id(p) for p in (net.conv.weight, net.hidden.weight)}
    assert _ids(opt.param_groups, False) == {id(p) for p in net.parameters() if id(p) not in matrix}
    got = {(g["name"], g[ORTHO]): (g["lr"], g["weight_decay"]) for g in opt.param_groups}
    # matrices: lr; AdamW part: adamw_lr x lr_mult; weight decay from param_groups on both sides
    assert got == {("decay", True): (0.02, 0.1), ("decay", False): (0.003, 0.1),
                   ("no_decay", False): (pytest.approx(0.0015), 0.0)}


@pytest.mark.parametrize("name", HYBRID)
def test_hybrid_tied_head_and_plain_params(name):
    net = _Net(tie=True)  # GPT-style tie: the head's weight is the embedding's, once, on the AdamW side
    opt = create_optimizer(name, net, lr=0.02)
    assert id(net.emb.weight) in _ids(opt.param_groups, False) and len(opt.param_groups) == 2
    plain = create_optimizer(name, [net.hidden.weight, net.hidden.bias], lr=0.02)  # no module: split by ndim
    assert _ids(plain.param_groups, True) == {id(net.hidden.weight)}
    assert _ids(plain.param_groups, False) == {id(net.hidden.bias)}
    assert all(g["lr"] == 0.02 for g in plain.param_groups)  # adamw_lr=None: Moonlight's single lr


@pytest.mark.parametrize("name", HYBRID)
def test_hybrid_schedule_scales_both_lrs(name):
    """The trainer's LambdaLR scales each group's own lr, so lr : adamw_lr persists through the schedule."""
    from shared.optim import create_scheduler

    opt = create_optimizer(name, _Net(), lr=0.02, adamw_lr=0.004)
    sched = create_scheduler("cosine", opt, total_steps=10)
    for _ in range(5):
        opt.step(), sched.step()
    lrs = {g[ORTHO]: g["lr"] for g in opt.param_groups}
    assert 0 < lrs[True] < 0.02 and lrs[False] == pytest.approx(lrs[True] * 0.2)


def _matrices(seed: int = 0):
    torch.manual_seed(seed)
    return [nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(3, 6))]


def _matrix_loss(ws, x, y):
    return (torch.relu(x @ ws[0].T) @ ws[1].T - y).pow(2).mean()


def _run(opt, ws, steps: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 3, generator=g)
    for _ in range(steps):
        opt.zero_grad()
        _matrix_loss(ws, x, y).backward()
        opt.step()


@pytest.mark.parametrize("adjust_lr_fn", ["original", "match_rms_adamw"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_adamw_matches_torch_muon(adjust_lr_fn, nesterov):
    ours, ref = _matrices(), _matrices()
    kw = dict(lr=0.02, momentum=0.9, nesterov=nesterov, weight_decay=0.1, adjust_lr_fn=adjust_lr_fn)
    _run(MuonAdamW(ours, **kw), ours)
    _run(torch.optim.Muon(ref, **kw), ref)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q)
    assert not torch.equal(ours[0], _matrices()[0])


def test_muon_adamw_conv_kernel_is_flattened():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(4, 3, 2, 2))
    flat = nn.Parameter(w.detach().reshape(4, 12).clone())
    opt, ref = MuonAdamW([w], lr=0.05, weight_decay=0.1), torch.optim.Muon([flat], lr=0.05, weight_decay=0.1)
    for step in range(3):
        grad = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(step))
        w.grad, flat.grad = grad, grad.reshape(4, 12)
        opt.step(), ref.step()
    torch.testing.assert_close(w.detach().reshape(4, 12), flat.detach())


def test_muon_adamw_adamw_side_matches_torch_adamw():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))  # only the hidden weight is Muon's
    ref_net = copy.deepcopy(net)
    opt = create_optimizer("muon_adamw", net, lr=0.02, weight_decay=0.1, adamw_lr=0.01, adamw_betas=(0.8, 0.9),
                           adamw_eps=1e-6)
    ref_params = [p for n, p in ref_net.named_parameters() if n != "0.weight"]
    ref = torch.optim.AdamW(ref_params, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
    ref_muon = torch.optim.Muon([ref_net[0].weight], lr=0.02, weight_decay=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 3)
    for _ in range(5):
        for o in (opt, ref, ref_muon):
            o.zero_grad()
        (net(x) - y).pow(2).mean().backward()
        (ref_net(x) - y).pow(2).mean().backward()
        opt.step(), ref.step(), ref_muon.step()
    for p, q in zip(net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(p, q)


def test_muon_adamw_match_rms_adamw_update_rms_is_0_2_lr():
    """Moonlight eq. 4: 0.2 sqrt(max(A, B)) O has RMS ~0.2 (NS_5 leaves singular values in ~[0.7, 1.2])."""
    torch.manual_seed(0)
    w = nn.Parameter(torch.zeros(32, 64))
    w.grad = torch.randn(32, 64)
    MuonAdamW([w], lr=0.01, adjust_lr_fn="match_rms_adamw").step()
    assert 0.7 * 0.2 * 0.01 < float(w.detach().pow(2).mean().sqrt()) < 1.2 * 0.2 * 0.01


def test_adago_matches_pytorch_optimizer_where_floor_is_active():
    """With eta tiny, alpha_t = epsilon in both (they differ only in the adaptive term, see adago.py).

    epsilon goes to pytorch_optimizer 3.8.2 as a 0-d tensor: with a float it calls ``.item()`` on the float that
    ``max`` returns when the floor wins (AttributeError)."""
    import pytorch_optimizer as ref_lib  # pinned in the test extras
    ours, ref = _matrices(), _matrices()
    _run(create_optimizer("adago", ours, lr=1e-9, momentum=0.9, eps=0.01, weight_decay=0.5), ours)
    _run(ref_lib.AdaGO([dict(params=ref, use_muon=True)], lr=1e-9, momentum=0.9, eps=torch.tensor(0.01),
                       weight_decay=0.5), ref)
    for p, q in zip(ours, ref):
        torch.testing.assert_close(p, q)
    assert not torch.equal(ours[0], _matrices()[0])


@pytest.mark.parametrize("gamma", [100.0, 0.5])  # clip off, clip on (||C|| ~ 4.9)
def test_adago_step_size_matches_paper_by_hand(gamma):
    """Linear loss <C, W>: G_t = C, M_t = (1 - mu^t) C; alpha_t by hand from the paper's equations."""
    torch.manual_seed(0)
    c = torch.randn(4, 6)
    w = nn.Parameter(torch.zeros(4, 6))
    lr, mu, v0, eps = 0.1, 0.9, 0.3, 1e-6
    opt = create_optimizer("adago", [w], lr=lr, momentum=mu, gamma=gamma, eps=eps, v0=v0)
    v_sq, g = v0**2, float(c.norm())
    for t in range(1, 5):
        before = w.detach().clone()
        w.grad = c.clone()
        opt.step()
        v_sq += min(g**2, gamma**2)  # v_t^2 = v_{t-1}^2 + min(||G_t||^2, gamma^2)
        alpha = max(eps, lr * min(g, gamma) / v_sq**0.5)
        orth = _zeropower_via_newtonschulz((1 - mu**t) * c, *NS)
        torch.testing.assert_close(w.detach(), before - alpha * orth.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decay_with_step", [False, True])
def test_adago_weight_decay_by_hand(decay_with_step):
    """Theta_t = Theta_{t-1} (1 - r lambda) - alpha_t Orth(M_t), with r = eta, or r = alpha_t with decay_with_step."""
    torch.manual_seed(0)
    c, w0 = torch.randn(4, 6), torch.randn(4, 6)
    w = nn.Parameter(w0.clone())
    lr, mu, v0, eps, gamma, lam = 0.1, 0.9, 0.3, 1e-6, 100.0, 0.5
    opt = create_optimizer("adago", [w], lr=lr, momentum=mu, gamma=gamma, eps=eps, v0=v0, weight_decay=lam,
                           decay_with_step=decay_with_step)
    v_sq, g = v0**2, float(c.norm())
    for t in range(1, 4):
        before = w.detach().clone()
        w.grad = c.clone()
        opt.step()
        v_sq += g**2
        alpha = lr * g / v_sq**0.5  # < lr from the first step on (v_t > ||G_t||)
        rate = alpha if decay_with_step else lr
        orth = _zeropower_via_newtonschulz((1 - mu**t) * c, *NS)
        torch.testing.assert_close(w.detach(), before * (1 - rate * lam) - alpha * orth.float(), rtol=1e-5, atol=1e-6)
    assert opt.state_dict()["param_groups"][0]["decay_with_step"] is decay_with_step


def test_swan_grad_norm_by_hand():
    g = torch.tensor([[1.0, 2.0, 3.0], [4.0, 4.0, 10.0]])
    # row 1: mean 2, std sqrt(2/3); row 2: mean 6, std sqrt((4 + 4 + 16) / 3) = sqrt(8)
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, -2.0, 4.0]]) / torch.tensor([[(2 / 3) ** 0.5], [8**0.5]])
    torch.testing.assert_close(grad_norm(g, eps=0.0), expected)
    x = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    ref = (x - x.mean(1, keepdim=True)) / x.std(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(grad_norm(x, eps=0.0), ref)


def _well_conditioned(m: int, n: int, seed: int = 0) -> torch.Tensor:
    """U diag(s) V^T with singular values in [1, 2]: NS converges well within 10 steps."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, min(m, n), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, min(m, n), generator=g, dtype=torch.float64))
    return u @ torch.diag(torch.linspace(1.0, 2.0, min(m, n), dtype=torch.float64)) @ v.T


def _inv_sqrt_whiten(g: torch.Tensor) -> torch.Tensor:
    """(G G^T)^{-1/2} G by eigendecomposition (m <= n)."""
    lam, q = torch.linalg.eigh(g @ g.T)
    return q @ torch.diag(lam.rsqrt()) @ q.T @ g


@pytest.mark.parametrize("shape", [(4, 8), (8, 4), (5, 5)])
def test_swan_grad_whitening_matches_eigendecomposition(shape):
    g = _well_conditioned(*shape)
    expected = _inv_sqrt_whiten(g) if shape[0] <= shape[1] else _inv_sqrt_whiten(g.T).T
    got = grad_whitening(g.float(), ns_steps=10).double()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert not torch.allclose(grad_whitening(g.float(), ns_steps=2).double(), expected, atol=1e-2)


@pytest.mark.parametrize("rescale", [True, False])
def test_swan_step_by_hand(rescale):
    w0 = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    grad = torch.tensor([[1.0, 2.0, 4.0], [3.0, -1.0, 1.0]])
    w = nn.Parameter(w0.clone())
    w.grad = grad.clone()
    SWAN([w], lr=0.1, weight_decay=0.2, rescale=rescale, norm_eps=1e-12).step()
    g = grad.double()
    g_tilde = (g - g.mean(1, keepdim=True)) / g.var(1, unbiased=False, keepdim=True).sqrt()
    d = _inv_sqrt_whiten(g_tilde)  # 2 x 3, full row rank after centring (rank <= n - 1 = 2)
    if rescale:
        d = d * g_tilde.norm() / d.norm()  # ||G~||_F = sqrt(m n) = sqrt(6)
    expected = w0.double() * (1 - 0.1 * 0.2) - 0.1 * d
    torch.testing.assert_close(w.detach().double(), expected, rtol=0, atol=1e-4)


def test_swan_keeps_no_state_for_matrices():
    torch.manual_seed(0)
    net = _Net()
    opt = create_optimizer("swan", net, lr=1e-3)
    idx, tgt = _lm_batch()
    for _ in range(3):
        _lm_step(opt, net, idx, tgt)

    def state_bytes(flag):
        return sum(t.nbytes for g in opt.param_groups if g[ORTHO] == flag for p in g["params"]
                   for t in opt.state[p].values() if torch.is_tensor(t))

    assert state_bytes(True) == 0 and state_bytes(False) > 0


@pytest.mark.parametrize("name", HYBRID)
def test_hybrid_state_dict_round_trip(name):
    """timm tests/test_optim.py _test_state_dict, through a checkpoint: the clone tracks the primed optimizer."""
    torch.manual_seed(0)
    net, idx, tgt = _Net(), *_lm_batch()
    opt = create_optimizer(name, net, lr=0.01, weight_decay=0.01, no_decay_norm_bias=True)
    for _ in range(3):
        _lm_step(opt, net, idx, tgt)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    clone = copy.deepcopy(net)
    opt_clone = create_optimizer(name, clone, lr=0.01, weight_decay=0.01, no_decay_norm_bias=True)
    opt_clone.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(3):
        _lm_step(opt, net, idx, tgt), _lm_step(opt_clone, clone, idx, tgt)
    for p, q in zip(net.parameters(), clone.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize("name", HYBRID)
def test_hybrid_trains_tiny_mlp(name):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = torch.randn(64, 8), torch.randn(64, 4)
    opt = create_optimizer(name, net, lr=0.05, no_decay_norm_bias=True)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = (net(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", HYBRID)
@pytest.mark.parametrize("bad", [dict(lr=-1.0), dict(adamw_lr=0.0), dict(adamw_betas=(1.0, 0.9)),
                                 dict(weight_decay=-0.1)])
def test_hybrid_bad_arguments_raise(name, bad):
    kw = {"lr": 0.01, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        OPTIMIZERS.get(name)(nn.Linear(3, 3).parameters(), **{k: v for k, v in kw.items()})


@pytest.mark.parametrize("name, bad", [("muon_adamw", dict(adjust_lr_fn="sqrt")), ("muon_adamw", dict(ns_steps=0)),
                                       ("adago", dict(gamma=0.0)), ("adago", dict(v0=0.0)),
                                       ("swan", dict(ns_steps=0)), ("swan", dict(norm_eps=0.0))])
def test_own_bad_arguments_raise(name, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        OPTIMIZERS.get(name)(nn.Linear(3, 3).parameters(), **bad)
