"""AdaGO: "AdaGrad Meets Muon: Adaptive Stepsizes for Orthogonal Updates", Zhang, Liu & Schaeffer, arXiv:2509.02981.

Muon's orthogonalised momentum with an AdaGrad-norm step size (the paper's AdaGO algorithm; symbols: mu = ``momentum``,
eta = ``lr``, gamma = ``gamma``, epsilon = ``eps``, v_0 = ``v0``), per weight matrix Theta with gradient G_t:

    M_t     = mu M_{t-1} + (1 - mu) G_t
    v_t^2   = v_{t-1}^2 + min(||G_t||_F^2, gamma^2)          one scalar of state per matrix
    alpha_t = max(epsilon, eta min(||G_t||_F, gamma) / v_t)
    Theta_t = Theta_{t-1} - alpha_t Orth(M_t)                 Orth ~ U V^T by Muon's quintic Newton-Schulz

Optional extras off by default (not in the paper's algorithm): Nesterov momentum (``nesterov``), decoupled weight decay
Theta <- Theta (1 - eta lambda), or with ``decay_with_step`` Theta <- Theta (1 - alpha_t lambda) (this repository's
variant: the decay follows AdaGO's shrinking step, so a kernel's equilibrium norm under decay does not fall as
alpha_t falls; see papers/adago/README.md), and Muon's shape factor on eta (``adjust_lr_fn``, see ``muon.py``).
Embeddings, the head and 1-d parameters take AdamW, routed as ``muon_adamw`` does (``route_param_groups``).

Reference: kozistr/pytorch_optimizer ``pytorch_optimizer/optimizer/muon.py`` ``AdaGO`` (3.8.2). It differs from
the paper in its step size: it keeps the sum S_t = v_0 + sum_s min(||G_s||^2, gamma^2) and divides by S_t, not by
v_t = sqrt(S_t), and its default shape factor is Moonlight's 0.2 sqrt(max(A, B)) (``use_adjusted_lr=False``).
tests/test_optim_orthogonal.py therefore compares trajectories with it where the two agree (the floor epsilon
active, so alpha_t = epsilon), and checks alpha_t against the equations above by hand. Deviations from the paper:
none with the defaults (``v0`` is v_0, not v_0^2). The equations were taken from the abstract, the reference's
docstring and a public summary of the paper (the PDF was not reachable offline).
"""
from __future__ import annotations

import torch

from shared.optim.muon import EPS, DEFAULT_A, DEFAULT_B, DEFAULT_C, HybridAdamW, MuonAdamW, check_matrix_args
from shared.optim.registry import register_optimizer


@register_optimizer("adago", paper="arXiv:2509.02981")
class AdaGO(MuonAdamW):
    """Args:
        lr (float): eta (pytorch_optimizer's default 0.05).
        momentum (float): mu in [0, 1).
        gamma (float): gamma > 0, the clip on ||G_t|| in both the sum and the numerator.
        eps (float): epsilon > 0, the floor on alpha_t.
        v0 (float): v_0 > 0, the accumulator's start (so that v_t > 0).
        nesterov (bool), weight_decay (float), ns_steps (int), adjust_lr_fn (str): as ``muon_adamw``.
        decay_with_step (bool): decay matrices by alpha_t lambda instead of eta lambda (not in the paper).
        adamw_lr, adamw_betas, adamw_eps: the AdamW side, as ``muon_adamw``.
    """

    def __init__(self, params, lr: float = 0.05, momentum: float = 0.95, gamma: float = 10.0, eps: float = 5e-4,
                 v0: float = 1e-3, nesterov: bool = False, weight_decay: float = 0.0, ns_steps: int = 5,
                 adjust_lr_fn: str = "none", decay_with_step: bool = False, adamw_lr: float | None = None,
                 adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-10):
        check_matrix_args(lr, momentum, weight_decay, ns_steps, adjust_lr_fn)
        for arg, value in (("gamma", gamma), ("eps", eps), ("v0", v0)):
            if not value > 0:
                raise ValueError(f"{arg} must be > 0, got {value}")
        HybridAdamW.__init__(self, params, dict(lr=lr, momentum=momentum, gamma=gamma, eps=eps, v0=v0,
                                                nesterov=nesterov, weight_decay=weight_decay, ns_steps=ns_steps,
                                                adjust_lr_fn=adjust_lr_fn, decay_with_step=bool(decay_with_step),
                                                ns_eps=EPS,
                                                ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C)),
                             adamw_lr, adamw_betas, adamw_eps)

    def step_size(self, grad, group, state, lr):
        gamma = group["gamma"]
        if "v_sq" not in state:
            state["v_sq"] = torch.tensor(group["v0"] ** 2, dtype=torch.float64)
        g_norm = float(grad.norm())
        state["v_sq"] += min(g_norm**2, gamma**2)  # v_t^2 = v_{t-1}^2 + min(||G_t||^2, gamma^2)
        # alpha_t = max(epsilon, eta min(||G_t||, gamma) / v_t)
        return max(group["eps"], lr * min(g_norm, gamma) / float(state["v_sq"].sqrt()))

    def decay_rate(self, group, alpha):
        # Theta <- Theta (1 - alpha_t lambda) with decay_with_step, else Theta (1 - eta lambda)
        return alpha if group.get("decay_with_step", False) else group["lr"]  # .get: checkpoints from before it
