"""MADGRAD: "Adaptivity without Compromise: A Momentumized, Adaptive, Dual Averaged Gradient Method for Stochastic
Optimization", Defazio & Jelassi, arXiv:2101.11075, Algorithm 1.

Dual averaging with a cube-root AdaGrad-style denominator and momentum by averaging iterates (k = 0, 1, ...):

    lambda_k  = gamma sqrt(k + 1)                                   (gamma: the lr)
    s_{k+1}   = s_k + lambda_k g_k
    nu_{k+1}  = nu_k + lambda_k g_k * g_k
    z_{k+1}   = x_0 - s_{k+1} / (nu_{k+1}^{1/3} + eps)
    x_{k+1}   = (1 - c) x_k + c z_{k+1},        c = 1 - momentum

Symbols: gamma = ``lr``, c = 1 - ``momentum``, eps = ``eps``; x_0 is the parameter at the first step.
Reference: facebookresearch/madgrad ``madgrad/madgrad.py`` as copied into timm ``timm/optim/madgrad.py``
(tests/test_optim_adaptive.py asserts_close against timm's).
Deviations, all as the official code does (so the reference matches):
- lambda_k uses gamma + eps in place of gamma (the official code's ``lr = group['lr'] + eps``).
- ``weight_decay`` (not in Algorithm 1) is an L2 term added to the gradient, g_k <- g_k + w x_k.
- with momentum 0, x_0 is not stored but recomputed as x_k + s_k / (nu_k^{1/3} + eps) (saves one buffer).
- dense gradients only (the official code also has a sparse path).
"""
from __future__ import annotations

import math

import torch

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer


@register_optimizer("madgrad", paper="arXiv:2101.11075")
class MADGRAD(torch.optim.Optimizer):
    """Args:
        lr (float): gamma (official default 1e-2; not comparable to SGD's or Adam's lr).
        momentum (float): in [0, 1); c = 1 - momentum (paper: 0.9).
        weight_decay (float): L2 coefficient added to the gradient (official code; paper: often 0).
        eps (float): added to the cube root of nu (official default 1e-6).
    """

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9, weight_decay: float = 0.0,
                 eps: float = 1e-6):
        check_hparams(lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            eps, momentum = group["eps"], group["momentum"]
            c = 1 - momentum
            for p in (p for p in group["params"] if p.grad is not None):
                if p.grad.is_sparse:
                    raise RuntimeError("madgrad here supports dense gradients only")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["grad_sum_sq"] = torch.zeros_like(p)  # nu
                    state["s"] = torch.zeros_like(p)
                    if momentum != 0:
                        state["x0"] = p.detach().clone()
                state["step"] += 1
                nu, s = state["grad_sum_sq"], state["s"]
                # lambda_k = gamma sqrt(k + 1)   (official: gamma + eps)
                lamb = (group["lr"] + eps) * math.sqrt(state["step"])
                grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                if momentum == 0:  # x_0 = x_k + s_k / (nu_k^{1/3} + eps)
                    x0 = p.addcdiv(s, nu.pow(1 / 3).add_(eps), value=1)
                else:
                    x0 = state["x0"]
                nu.addcmul_(grad, grad, value=lamb)  # nu_{k+1} = nu_k + lambda_k g_k^2
                s.add_(grad, alpha=lamb)  # s_{k+1} = s_k + lambda_k g_k
                # z_{k+1} = x_0 - s_{k+1} / (nu_{k+1}^{1/3} + eps)
                z = x0.addcdiv(s, nu.pow(1 / 3).add_(eps), value=-1)
                # x_{k+1} = (1 - c) x_k + c z_{k+1}
                if momentum == 0:
                    p.copy_(z)
                else:
                    p.mul_(1 - c).add_(z, alpha=c)
        return loss
