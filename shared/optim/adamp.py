"""AdamP and SGDP: "AdamP: Slowing Down the Slowdown for Momentum Optimizers on Scale-invariant Weights",
Heo, Chun, Oh, Han, Yun, Kim, Uh, Ha, arXiv:2006.08217 (ICLR 2021), Algorithms 1 (SGDP) and 2 (AdamP).

Both take the base optimizer's update p_t (SGD momentum buffer, or Adam's m_hat / (sqrt(v_hat) + eps)) and, for a
weight w that looks scale-invariant (the gradient is nearly orthogonal to w), remove the radial component:

    Pi_w(x)  = x - (w_hat . x) w_hat,   w_hat = w / ||w||                                       projection (Sec. 3)
    q_t      = Pi_w(p_t)   if  max |cos(w, grad)| < delta / sqrt(dim w),   else  p_t            (Alg. 1-2)
    w       <- w (1 - eta lambda r) - eta q_t,   r = wd_ratio if projected else 1               (Alg. 1-2, decoupled)

The test is made per output channel first (w viewed as ``(C_out, -1)``, cosine per row, dim = fan-in), then for
the whole layer (``(1, -1)``); the first view that passes is projected. Only tensors with ``ndim > 1`` are tested.
SGDP divides the decay by (1 - mu) to match the effective step of momentum SGD.
Symbols: eta = ``lr``, lambda = ``weight_decay``, delta = ``delta``, r = ``wd_ratio``, mu = ``momentum``,
(beta1, beta2) = ``betas``.
Reference: clovaai/AdamP ``adamp/adamp.py``, ``adamp/sgdp.py``, as copied into timm ``timm/optim/adamp.py`` and
``timm/optim/sgdp.py`` (tests/test_optim_adaptive.py asserts_close against timm's). pytorch_optimizer 3.8.2's AdamP
is not used as a reference: it computes 1 / (sqrt(v) + eps) as ``rsqrt(v) + eps`` and its Nesterov branch leaves
m_t un-normalised.
Deviations: none from the official code (timm's later ``caution`` option is not included).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer


def _channel_view(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.size(0), -1)


def _layer_view(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(1, -1)


def project_radial(p: torch.Tensor, grad: torch.Tensor, update: torch.Tensor, delta: float, wd_ratio: float,
                   eps: float) -> tuple[torch.Tensor, float]:
    """arXiv:2006.08217 Algorithms 1-2: return (q_t, decay ratio); ``update`` is projected in place if w is
    scale-invariant.

    cos(w, g) < delta / sqrt(dim w)  =>  q = x - (w_hat . x) w_hat,  ratio = wd_ratio;  else q = x, ratio = 1.
    """
    expand = (-1,) + (1,) * (p.ndim - 1)
    for view in (_channel_view, _layer_view):
        w = view(p)
        cosine = F.cosine_similarity(view(grad), w, dim=1, eps=eps).abs_()
        if cosine.max() < delta / math.sqrt(w.size(1)):
            # w_hat = w / ||w|| per row of the view
            w_hat = p / w.norm(dim=1).add_(eps).reshape(expand)
            # x <- x - (w_hat . x) w_hat
            update.sub_(w_hat * view(w_hat * update).sum(dim=1).reshape(expand))
            return update, wd_ratio
    return update, 1.0


def _check_projection_args(lr: float, weight_decay: float, delta: float, wd_ratio: float, eps: float) -> None:
    check_hparams(lr=lr, weight_decay=weight_decay, eps=eps)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    if not 0.0 <= wd_ratio <= 1.0:
        raise ValueError(f"wd_ratio must lie in [0, 1], got {wd_ratio}")


@register_optimizer("adamp", paper="arXiv:2006.08217")
class AdamP(torch.optim.Optimizer):
    """Adam with the radial component of the update removed on scale-invariant weights (Algorithm 2).

    Args:
        lr (float): eta (paper and official default 1e-3).
        betas (tuple[float, float]): (beta1, beta2) in [0, 1) for the first and second moments.
        eps (float): added to sqrt(v_hat); also the eps of the cosine and of the norm in the projection.
        weight_decay (float): lambda, decoupled as in AdamW: w <- w (1 - eta lambda r).
        delta (float): threshold of the scale-invariance test (paper: 0.1).
        wd_ratio (float): r, decay multiplier on projected (scale-invariant) weights (paper: 0.1).
        nesterov (bool): use beta1 m_t + (1 - beta1) g_t in place of m_t.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, delta: float = 0.1, wd_ratio: float = 0.1, nesterov: bool = False):
        _check_projection_args(lr, weight_decay, delta, wd_ratio, eps)
        check_hparams(betas=betas)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, delta=delta,
                                      wd_ratio=wd_ratio, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in (p for p in group["params"] if p.grad is not None):
                grad, state = p.grad, self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                m, v = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                t = state["step"]
                # m_t = beta1 m_{t-1} + (1 - beta1) g_t;  v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                # p_t = m_hat / (sqrt(v_hat) + eps),  m_hat = m_t / (1 - beta1^t),  v_hat = v_t / (1 - beta2^t)
                denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(group["eps"])
                step_size = group["lr"] / (1 - beta1 ** t)
                numer = beta1 * m + (1 - beta1) * grad if group["nesterov"] else m
                update = numer / denom
                ratio = 1.0
                if p.ndim > 1:  # q_t = Pi_w(p_t) if scale-invariant (Alg. 1-2)
                    update, ratio = project_radial(p, grad, update, group["delta"], group["wd_ratio"], group["eps"])
                if group["weight_decay"] > 0:  # w <- w (1 - eta lambda r)
                    p.mul_(1 - group["lr"] * group["weight_decay"] * ratio)
                p.add_(update, alpha=-step_size)  # w <- w - eta q_t
        return loss


@register_optimizer("sgdp", paper="arXiv:2006.08217")
class SGDP(torch.optim.Optimizer):
    """Momentum SGD with the radial component of the update removed on scale-invariant weights (Algorithm 1).

    Args:
        lr (float): eta.
        momentum (float): mu in [0, 1); buffer b <- mu b + (1 - dampening) g.
        dampening (float): as torch SGD.
        weight_decay (float): lambda, decoupled: w <- w (1 - eta lambda r / (1 - mu)).
        nesterov (bool): update g + mu b in place of b.
        eps (float): eps of the cosine and of the norm in the projection.
        delta (float): threshold of the scale-invariance test (paper: 0.1).
        wd_ratio (float): r, decay multiplier on projected weights (paper: 0.1).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, eps: float = 1e-8, delta: float = 0.1,
                 wd_ratio: float = 0.1):
        _check_projection_args(lr, weight_decay, delta, wd_ratio, eps)
        check_hparams(momentum=momentum)
        if not 0.0 <= dampening <= 1.0:
            raise ValueError(f"dampening must lie in [0, 1], got {dampening}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, eps=eps, delta=delta, wd_ratio=wd_ratio))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            mu = group["momentum"]
            for p in (p for p in group["params"] if p.grad is not None):
                grad, state = p.grad, self.state[p]
                buf = state.setdefault("momentum", torch.zeros_like(p))
                buf.mul_(mu).add_(grad, alpha=1 - group["dampening"])  # b <- mu b + (1 - dampening) g
                update = grad + mu * buf if group["nesterov"] else buf.clone()  # p_t
                ratio = 1.0
                if p.ndim > 1:  # q_t = Pi_w(p_t) if scale-invariant (Alg. 1-2)
                    update, ratio = project_radial(p, grad, update, group["delta"], group["wd_ratio"], group["eps"])
                if group["weight_decay"] != 0:  # w <- w (1 - eta lambda r / (1 - mu))
                    p.mul_(1 - group["lr"] * group["weight_decay"] * ratio / (1 - mu))
                p.add_(update, alpha=-group["lr"])  # w <- w - eta q_t
        return loss
