"""SWAN: "SWAN: SGD with Normalization and Whitening Enables Stateless LLM Training", Ma, Gong, Scetbon & Meeds,
arXiv:2412.13148 (ICML 2025).

Stateless: each step pre-processes the current gradient G (m x n, conv kernels flattened to out x in kh kw) of a
weight matrix W and takes an SGD step (paper Algorithm 1; eta = ``lr``, k = ``ns_steps``):

    GradNorm (Algorithm 3):       G~ = (G - g_bar 1_n^T) / (s 1_n^T),  g_bar, s = row-wise mean and std over n
    GradWhitening (Algorithm 2):  D = (G~ G~^T)^{-1/2} G~,  the inverse square root by k coupled Newton-Schulz steps
                                  Y_0 = G~ G~^T / ||G~||_F^2,  Z_0 = I,
                                  Y_{j+1} = beta Y_j (3I - Z_j Y_j),  Z_{j+1} = beta (3I - Z_j Y_j) Z_j,
                                  D = Z_k G~ / ||G~||_F                       (Z_k -> Y_0^{-1/2})
    rescale (``rescale=True``):   D <- (||G~||_F / ||D||_F) D                  unit RMS, as GradNorm's output
    update:                       W <- W (1 - eta lambda) - eta D

beta = 1/2 is the classical Newton-Schulz iteration, whose fixed point is the exact inverse square root (Higham,
"Functions of Matrices", 2008, eq. 6.35); it converges when the eigenvalues of Y_0 lie in (0, 1], which the
Frobenius normalisation ensures. (G G^T)^{-1/2} G = U V^T for G = U S V^T of full row rank: whitening is Muon's
orthogonalisation, computed with a different iteration. For m > n we whiten G^T (the same U V^T, from the n x n
side: G (G^T G)^{-1/2}), so the Gram matrix is never rank-deficient by shape.

Non-matrix parameters: the paper (section 6, following GaLore's setup) keeps Adam for the embedding, the LM head and
the 1-d parameters; here they take AdamW, routed as ``muon_adamw`` does (``route_param_groups``: embeddings, the
model's last ``nn.Linear``, every ndim < 2 parameter). Only those keep state; matrices keep none.

Reference: no reference implementation; tests/test_optim_orthogonal.py checks GradNorm against mean/std by hand,
GradWhitening against the eigendecomposition (G G^T)^{-1/2} G, and one full step by hand. Deviations: the norm
rescaling line is not in Algorithm 1 as we could check it offline (it follows a secondary summary of the paper);
``rescale=False`` gives the plain Algorithm 1. ``beta`` is fixed at 1/2. Weight decay (off by default) is ours.
"""
from __future__ import annotations

import torch

from shared.optim.checks import check_hparams, check_ns_steps
from shared.optim.muon import HybridAdamW
from shared.optim.registry import register_optimizer


def grad_norm(g: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """GradNorm, arXiv:2412.13148 Algorithm 3: standardise each row of g over its n columns."""
    centred = g - g.mean(dim=1, keepdim=True)  # G - g_bar 1_n^T
    return centred / (centred.pow(2).mean(dim=1, keepdim=True) + eps).sqrt()  # / s 1_n^T (biased std)


def grad_whitening(g: torch.Tensor, ns_steps: int = 10) -> torch.Tensor:
    """GradWhitening, arXiv:2412.13148 Algorithm 2: (G G^T)^{-1/2} G by coupled Newton-Schulz (beta = 1/2)."""
    if g.shape[0] > g.shape[1]:  # whiten from the smaller side: G (G^T G)^{-1/2}
        return grad_whitening(g.T, ns_steps).T
    x = g.float() / g.float().norm().clamp_min(1e-12)  # ||x||_F = 1, so eig(x x^T) in (0, 1]
    y = x @ x.T  # Y_0
    z = torch.eye(len(y), dtype=y.dtype, device=y.device)  # Z_0 = I
    eye3 = 3 * z
    for _ in range(ns_steps):
        t = 0.5 * (eye3 - z @ y)  # beta (3I - Z_j Y_j)
        y, z = y @ t, t @ z  # Y_{j+1} = Y_j t,  Z_{j+1} = t Z_j
    return (z @ x).to(g.dtype)  # Z_k x = (G G^T)^{-1/2} G


@register_optimizer("swan", paper="arXiv:2412.13148")
class SWAN(HybridAdamW):
    """Args:
        lr (float): eta for matrices (an Adam-like value with ``rescale``: updates have unit RMS).
        ns_steps (int): k, Newton-Schulz steps of GradWhitening (10).
        rescale (bool): scale the whitened update to GradNorm's Frobenius norm sqrt(m n).
        norm_eps (float): added to the row variance in GradNorm.
        weight_decay (float): decoupled lambda, for both rules (0: the paper has none on SWAN's side).
        adamw_lr, adamw_betas, adamw_eps: Adam(W) for embeddings, head and 1-d params; ``adamw_lr=None``: ``lr``.
    """

    def __init__(self, params, lr: float = 1e-3, ns_steps: int = 10, rescale: bool = True, norm_eps: float = 1e-8,
                 weight_decay: float = 0.0, adamw_lr: float | None = None,
                 adamw_betas: tuple[float, float] = (0.9, 0.999), adamw_eps: float = 1e-8):
        check_hparams(lr=lr, weight_decay=weight_decay)
        check_ns_steps(ns_steps)
        if not norm_eps > 0:
            raise ValueError(f"norm_eps must be > 0, got {norm_eps}")
        super().__init__(params, dict(lr=lr, ns_steps=ns_steps, rescale=rescale, norm_eps=norm_eps,
                                      weight_decay=weight_decay), adamw_lr, adamw_betas, adamw_eps)

    def matrix_update(self, p, grad, group, state):
        g = grad_norm(grad.reshape(len(grad), -1).float(), group["norm_eps"])  # G~ = GradNorm(G)
        d = grad_whitening(g, group["ns_steps"])  # D = (G~ G~^T)^{-1/2} G~
        if group["rescale"]:
            d.mul_(g.norm() / d.norm().clamp_min(1e-12))  # D <- (||G~||_F / ||D||_F) D
        p.mul_(1 - group["lr"] * group["weight_decay"])
        p.add_(d.reshape(p.shape).to(p.dtype), alpha=-group["lr"])  # W <- W - eta D
