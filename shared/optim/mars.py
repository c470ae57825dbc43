"""MARS-AdamW: "MARS: Unleashing the Power of Variance Reduction for Training Large Models", Yuan, Liu, Wu, Zhou and
Gu, arXiv:2411.10438: Algorithm 1 (MARS) with the AdamW preconditioner ("MARS-AdamW"), approximate variant.

With gradient g_t at step t = 1, 2, ... (per parameter), lr eta, decay lambda:

    c_t  = g_t + gamma (beta1 / (1 - beta1)) (g_t - g_{t-1})    scaled gradient correction (Algorithm 1)
    c_t <- c_t / ||c_t||_2   if ||c_t||_2 > 1                    clipping, per parameter tensor
    m_t  = beta1 m_{t-1} + (1 - beta1) c_t
    v_t  = beta2 v_{t-1} + (1 - beta2) c_t^2
    theta_t = theta_{t-1} - eta (m_hat / (sqrt(v_hat) + eps) + lambda theta_{t-1}),
              m_hat = m_t / (1 - beta1^t), v_hat = v_t / (1 - beta2^t)

Approximate variant ("MARS-approx", the official code's default ``is_approx=True``): the exact algorithm needs
grad f(x_{t-1}, xi_t), the old parameters on the new batch (a second backward pass); MARS-approx uses the previous
step's gradient g_{t-1} = grad f(x_{t-1}, xi_{t-1}) instead, and that is what is implemented here. At t = 1 the
paper sets x_0 = x_1, so the correction is zero and c_1 = g_1.
As in the official code (``optimize_1d=False``), only matrices (here: ndim >= 2) get MARS; vectors (biases, norm
scales) get plain AdamW with ``betas_1d`` (``optimize_1d=True`` gives them MARS too).

Symbols: eta = ``lr``, (beta1, beta2) = ``betas``, gamma = ``gamma``, lambda = ``weight_decay``, eps = ``eps``.
Reference: AGI-Arena/MARS ``MARS/optimizers/mars.py`` (official); tests assert_close against ``timm.optim.Mars``
(1.0.31, a port of it) and ``pytorch_optimizer.MARS`` (3.8.2).
Deviations from the official code: (1) the official code starts from g_0 = 0, so its first step uses
c_1 = (1 + gamma beta1 / (1 - beta1)) g_1 (pytorch_optimizer too); this file follows the paper's x_0 = x_1 (c_1 =
g_1), as timm does. (2) Official MARS applies to exactly-2-d gradients (``len(grad.shape) == 2``), so conv kernels
get AdamW; here (as in timm and pytorch_optimizer) every ndim >= 2 parameter gets MARS. (3) The official 1-d branch
has its own ``lr_1d`` (3e-3) and ``weight_decay_1d`` (0.1); here 1-d parameters use their group's lr and
weight_decay (set them through param groups: ``lr_mult``, ``no_decay_norm_bias``).
Known reference quirks (not copied): pytorch_optimizer puts eps inside the bias correction
(m_hat / (sqrt(v_hat) + eps / sqrt(1 - beta2^t))) and keeps a reference to ``p.grad`` as the last gradient.
"""
from __future__ import annotations

import math

import torch

from shared.optim.checks import check_betas, check_hparams
from shared.optim.registry import register_optimizer


@register_optimizer("mars_adamw", paper="arXiv:2411.10438")
class MARSAdamW(torch.optim.Optimizer):
    """Args:
        lr (float): eta (official default 3e-3).
        betas (tuple[float, float]): (beta1, beta2) of the MARS parameters (official default (0.95, 0.99)).
        gamma (float): strength of the gradient correction (official default 0.025; 0 gives AdamW on clipped g).
        eps (float): added to sqrt(v_hat).
        weight_decay (float): lambda, decoupled (AdamW) decay.
        optimize_1d (bool): MARS on parameters with ndim < 2 as well (official default False: AdamW there).
        betas_1d (tuple[float, float]): betas of the AdamW used for ndim < 2 parameters (official (0.9, 0.95)).
    """

    def __init__(self, params, lr: float = 3e-3, betas: tuple[float, float] = (0.95, 0.99), gamma: float = 0.025,
                 eps: float = 1e-8, weight_decay: float = 0.0, optimize_1d: bool = False,
                 betas_1d: tuple[float, float] = (0.9, 0.95)):
        check_hparams(lr=lr, betas=betas, gamma=gamma, eps=eps, weight_decay=weight_decay)
        check_betas("betas_1d", betas_1d)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), gamma=gamma, eps=eps, weight_decay=weight_decay,
                                      optimize_1d=optimize_1d, betas_1d=tuple(betas_1d)))

    @staticmethod
    def corrected_gradient(grad: torch.Tensor, last_grad: torch.Tensor | None, beta1: float,
                           gamma: float) -> torch.Tensor:
        """MARS (arXiv:2411.10438) Algorithm 1, approximate: c_t = g_t + gamma beta1/(1-beta1) (g_t - g_{t-1}),
        then c_t <- c_t / ||c_t||_2 if ||c_t||_2 > 1. ``last_grad`` None (t = 1, x_0 = x_1): no correction."""
        c = grad.clone() if last_grad is None else grad.sub(last_grad).mul_(gamma * beta1 / (1 - beta1)).add_(grad)
        norm = torch.linalg.vector_norm(c)
        return c.div_(norm.clamp(min=1.0))  # c / max(1, ||c||): no host sync

    @torch.no_grad()
    def step(self, closure=None):
        """One MARS-AdamW step (arXiv:2411.10438, Algorithm 1, AdamW instantiation, approximate); AdamW on vectors."""
        loss = None if closure is None else torch.enable_grad()(closure)()
        for g in self.param_groups:
            lr, wd, eps = g["lr"], g["weight_decay"], g["eps"]
            for p in (p for p in g["params"] if p.grad is not None):
                if p.grad.is_sparse:
                    raise RuntimeError("MARS does not support sparse gradients")
                grad, state = p.grad, self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t = state["step"]
                use_mars = g["optimize_1d"] or p.ndim >= 2
                beta1, beta2 = g["betas"] if use_mars else g["betas_1d"]
                if use_mars:
                    c = self.corrected_gradient(grad, state.get("last_grad"), beta1, g["gamma"])
                    # g_{t-1} for the next step (a copy: p.grad may be zeroed and reused in place)
                    state["last_grad"] = grad.clone()
                else:
                    c = grad  # plain AdamW
                m, v = state["exp_avg"], state["exp_avg_sq"]
                # m_t = beta1 m_{t-1} + (1 - beta1) c_t
                m.mul_(beta1).add_(c, alpha=1 - beta1)
                # v_t = beta2 v_{t-1} + (1 - beta2) c_t^2
                v.mul_(beta2).addcmul_(c, c, value=1 - beta2)
                # sqrt(v_hat) + eps
                denom = (v.sqrt() / math.sqrt(1 - beta2 ** t)).add_(eps)
                # theta_t = theta_{t-1} - eta (m_hat / (sqrt(v_hat) + eps) + lambda theta_{t-1})
                update = m.div(1 - beta1 ** t).div_(denom).add_(p, alpha=wd)
                p.add_(update, alpha=-lr)
        return loss
