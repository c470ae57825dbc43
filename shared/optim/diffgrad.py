"""diffGrad: "diffGrad: An Optimization Method for Convolutional Neural Networks", Dubey, Chakraborty, Roy,
Mukherjee, Singh, Chaudhuri, arXiv:1909.11015 (IEEE TNNLS 2020), Sec. III "Proposed diffGrad Optimizer".

Adam whose step is scaled per coordinate by the diffGrad friction coefficient (DFC) xi_t, a sigmoid of how much the
gradient changed since the previous step (g_0 = 0):

    m_t       = beta1 m_{t-1} + (1 - beta1) g_t            v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    m_hat     = m_t / (1 - beta1^t)                        v_hat = v_t / (1 - beta2^t)
    xi_t      = AbsSig(g_{t-1} - g_t) = 1 / (1 + exp(-|g_{t-1} - g_t|))      in [0.5, 1)
    theta_t   = theta_{t-1} - alpha xi_t m_hat / (sqrt(v_hat) + eps)

Symbols: alpha = ``lr``, (beta1, beta2) = ``betas``, eps = ``eps``.
Reference: shivram1987/diffGrad ``diffGrad.py`` (the authors' code), as packaged by jettify/pytorch-optimizer
(``torch_optimizer/diffgrad.py``, torch-optimizer 0.3.0); tests/test_optim_adaptive.py asserts_close against it.
pytorch_optimizer 3.8.2's ``DiffGrad`` is not a reference: with its default ``rectify=False`` it never applies xi_t.
Deviations, all as the authors' code does (so the reference matches):
- eps is added to sqrt(v_t) before the bias correction: the step is alpha sqrt(1 - beta2^t) / (1 - beta1^t) *
  xi_t m_t / (sqrt(v_t) + eps), i.e. the paper's rule with eps scaled by sqrt(1 - beta2^t).
- ``weight_decay`` (not in the paper) is an L2 term added to the gradient, g_t <- g_t + lambda theta, before the
  moments and before xi_t (the stored previous gradient includes it).
- unlike the authors' code, ``p.grad`` is not modified in place.
"""
from __future__ import annotations

import math

import torch

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer


@register_optimizer("diffgrad", paper="arXiv:1909.11015")
class DiffGrad(torch.optim.Optimizer):
    """Args:
        lr (float): alpha (paper: 1e-3).
        betas (tuple[float, float]): (beta1, beta2) in [0, 1) (paper: 0.9, 0.999).
        eps (float): added to sqrt(v_t) (paper: 1e-8).
        weight_decay (float): L2 coefficient lambda added to the gradient (authors' code; 0 in the paper).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        check_hparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in (p for p in group["params"] if p.grad is not None):
                if p.grad.is_sparse:
                    raise RuntimeError("diffgrad does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                    state["previous_grad"] = torch.zeros_like(p)  # g_0 = 0
                state["step"] += 1
                t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
                grad = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad
                # m_t = beta1 m_{t-1} + (1 - beta1) g_t;  v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                # xi_t = 1 / (1 + exp(-|g_{t-1} - g_t|))
                xi = torch.sigmoid((state["previous_grad"] - grad).abs_())
                state["previous_grad"].copy_(grad)
                # theta_t = theta_{t-1} - alpha sqrt(1 - beta2^t) / (1 - beta1^t) * xi_t m_t / (sqrt(v_t) + eps)
                step_size = group["lr"] * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                p.addcdiv_(xi.mul_(m), v.sqrt().add_(group["eps"]), value=-step_size)
        return loss
