"""SGDW: "Decoupled Weight Decay Regularization", Loshchilov & Hutter, arXiv:1711.05101 (ICLR 2019), Algorithm 1
(SGD with momentum and weight decay decoupled from the gradient, the green terms).

    g_t      = grad f_t(theta_{t-1})                               (no L2 term in the gradient)
    eta_t    = SetScheduleMultiplier(t)                            (1 without a schedule)
    m_t      = beta1 m_{t-1} + eta_t alpha g_t                     (m_0 = 0)
    theta_t  = theta_{t-1} - m_t - eta_t lambda theta_{t-1}

How lambda relates to the lr: the decay is multiplied by the schedule multiplier eta_t but NOT by alpha. A
param group's ``lr`` is the scheduled lr eta_t alpha (what torch schedulers write); alpha is the group's lr when the
optimizer is built (stored as ``group["alpha"]``: base lr times any ``lr_mult``), so eta_t = lr / alpha. Hence
``weight_decay`` is the fraction of theta removed per step at the schedule's peak, whatever the lr: SGDW with
weight_decay=lambda decays like torch's SGD-with-AdamW-style ``theta (1 - lr wd)`` with wd = lambda / alpha.
The momentum buffer holds lr-scaled steps (eta_t alpha g_t), as in the paper; with a constant lr and lambda = 0
this is torch's ``SGD(momentum=beta1)`` exactly, but under a schedule a change of lr reaches only new gradients.
Symbols: alpha = ``lr`` at construction, eta_t = current ``lr`` / alpha, beta1 = ``momentum``,
lambda = ``weight_decay``.
Reference: the paper's Algorithm 1 (no maintained implementation follows it: torch-optimizer 0.3.0's ``SGDW``
subtracts lr * weight_decay as a constant); tests/test_optim_adaptive.py checks hand-computed steps.
Deviations: none.
"""
from __future__ import annotations

import torch

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer


@register_optimizer("sgdw", paper="arXiv:1711.05101")
class SGDW(torch.optim.Optimizer):
    """Args:
        lr (float): alpha at construction; later the scheduled eta_t alpha.
        momentum (float): beta1 in [0, 1) (paper: 0.9).
        weight_decay (float): lambda, per-step decay at eta_t = 1, not multiplied by alpha.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.9, weight_decay: float = 0.0):
        check_hparams(lr=lr, momentum=momentum)
        if not 0.0 <= weight_decay < 1.0:
            raise ValueError(f"weight_decay must lie in [0, 1) (theta's fraction removed per step), got {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def add_param_group(self, param_group: dict) -> None:
        """Record alpha, the lr the schedule multiplier eta_t = lr / alpha is measured against (torch's __init__
        adds every group through here)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if not group["lr"] > 0:
            raise ValueError(f"every param group needs lr > 0, got {group['lr']}")
        group.setdefault("alpha", group["lr"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            eta = group["lr"] / group["alpha"]  # schedule multiplier eta_t
            for p in (p for p in group["params"] if p.grad is not None):
                m = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                # m_t = beta1 m_{t-1} + eta_t alpha g_t
                m.mul_(group["momentum"]).add_(p.grad, alpha=group["lr"])
                # theta_t = theta_{t-1} - m_t - eta_t lambda theta_{t-1}
                p.mul_(1 - eta * group["weight_decay"]).sub_(m)
        return loss
