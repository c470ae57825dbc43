"""Fraction of the gradient that lies in the top-k Hessian eigenspace.

Papers: Gur-Ari, Roberts, Dyer, "Gradient Descent Happens in a Tiny Subspace", arXiv:1812.04754 (the overlap of
the gradient with the top subspace, k = number of classes, rises to ~1 early in training and stays there);
Ghorbani et al., "An Investigation into Neural Net Optimization via Hessian Eigenvalue Density", arXiv:1901.10159
(the same concentration of the gradient in the outlier eigenspace, and its absence with batch norm).

With P_k = V_k^T V_k the orthogonal projector onto the span of the top-k eigenvectors (rows of V_k):
    f_top = ||P_k g||^2 / ||g||^2,   in [0, 1]
(Gur-Ari et al. §2, their "overlap" of g with the top subspace; the equation number is not checked here.)
Deviations: none. The basis is re-orthonormalised (QR) first, so any basis of the subspace gives the same value.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from shared.landscape.hessian import Batch, LossFn, make_hvp, subset_loss_and_grad
from shared.landscape.spectrum import top_eigenpairs


def subspace_overlap(vector: torch.Tensor, basis: torch.Tensor) -> float:
    """||P g||^2 / ||g||^2 for g = ``vector`` (n,) and P the orthogonal projector onto the row span of ``basis``
    (k, n) (Gur-Ari et al., arXiv:1812.04754, §2). Computed in float64."""
    if basis.ndim != 2 or basis.shape[1] != vector.numel():
        raise ValueError(f"basis must be (k, {vector.numel()}), got {tuple(basis.shape)}")
    g = vector.reshape(-1).to(torch.float64)
    q, _ = torch.linalg.qr(basis.to(g).T)  # orthonormal columns spanning the same subspace
    # P g = Q Q^T g, so ||P g||^2 = ||Q^T g||^2
    return ((q.T @ g).square().sum() / g.square().sum()).item()


def subspaces_overlap(basis_a: torch.Tensor, basis_b: torch.Tensor) -> float:
    """tr(P_a P_b) / k = ||Q_a^T Q_b||_F^2 / k for two k-dimensional subspaces of R^n, the row spans of ``basis_a``
    and ``basis_b`` (k, n): the mean squared cosine of their principal angles, 1 when they coincide, 0 when they are
    orthogonal, k/n on average for two random ones. Measures how much of the top Hessian eigenspace at one time is
    still there at another (Gur-Ari et al., arXiv:1812.04754: the subspace "is mostly preserved over long periods of
    training"). Computed in float64; any basis of either subspace gives the same value."""
    if basis_a.ndim != 2 or basis_a.shape != basis_b.shape:
        raise ValueError(f"need two (k, n) bases of the same shape, got {tuple(basis_a.shape)} and "
                         f"{tuple(basis_b.shape)}")
    qa, _ = torch.linalg.qr(basis_a.to(torch.float64).T)
    qb, _ = torch.linalg.qr(basis_b.to(torch.float64).T)
    return ((qa.T @ qb).square().sum() / basis_a.shape[0]).item()


@dataclass
class GradientOverlap:
    """The overlap f_top, the top-k eigenvalues used, the loss and the gradient norm at the current weights."""
    overlap: float
    eigenvalues: torch.Tensor
    loss: float
    grad_norm: float


def gradient_overlap(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], k: int = 10,
                     iters: int = 100, seed: int = 0,
                     params: Sequence[torch.Tensor] | None = None) -> GradientOverlap:
    """f_top = ||P_k g||^2 / ||g||^2 with g the gradient and P_k the projector onto the top-k Hessian eigenvectors,
    both of ``loss_fn`` on the same ``batches`` with the model in eval mode (Gur-Ari et al., arXiv:1812.04754, §2;
    top eigenvectors by Lanczos, Ghorbani et al., arXiv:1901.10159, §2)."""
    hvp = make_hvp(model, loss_fn, batches, params)
    eigenvalues, eigenvectors = top_eigenpairs(hvp, k=k, iters=iters, seed=seed)
    loss, grad = subset_loss_and_grad(model, loss_fn, batches, params)
    return GradientOverlap(subspace_overlap(grad, eigenvectors), eigenvalues, loss, grad.norm().item())
