"""Hessian spectrum from Hessian-vector products: top-k eigenpairs, trace, and the eigenvalue density.

Papers: Ghorbani, Krishnan, Xiao, "An Investigation into Neural Net Optimization via Hessian Eigenvalue Density",
arXiv:1901.10159, §2 (Lanczos with full reorthogonalisation; stochastic Lanczos quadrature, SLQ); Yao et al.,
"PyHessian: Neural Networks Through the Lens of the Hessian", arXiv:1912.07145, §3 (power iteration with deflation,
Hutchinson trace, SLQ density); Sagun et al., "Empirical Analysis of the Hessian of Over-Parametrized Neural
Networks", arXiv:1706.04454 (the bulk + outliers spectrum these tools measure).

Lanczos, m steps from a unit vector q_1 (H Q_m = Q_m T_m + beta_m q_{m+1} e_m^T):
    w = H q_j - alpha_j q_j - beta_{j-1} q_{j-1},  alpha_j = q_j^T H q_j,  beta_j = ||w||,  q_{j+1} = w / beta_j
    T_m = tridiag(beta, alpha, beta) = S diag(theta) S^T;  Ritz pairs (theta_i, Q_m^T s_i) approximate H's extremes
Hutchinson: tr(H) = E_v[v^T H v] for Rademacher v (entries +-1, E[v v^T] = I).
SLQ (Ghorbani §2): the density phi(t) = 1/n sum_i delta(t - lambda_i), broadened by a Gaussian g_sigma, is
    phi_sigma(t) = 1/n tr(g_sigma(t I - H)) ~= 1/n_v sum_l sum_i tau_i^(l) g_sigma(t - theta_i^(l)),
    v_l Rademacher / sqrt(n), theta^(l) the eigenvalues of T_m^(l), tau_i^(l) = (e_1^T s_i^(l))^2 (sum_i tau_i = 1).
Deviations: none in the estimators. Equation numbers of the papers are not given here: only sections.

Every function takes an ``HVPOperator`` (``shared.landscape.hessian``): ``make_hvp`` for a model, ``matrix_hvp``
for an explicit matrix. Random probes are drawn on the CPU from ``torch.Generator().manual_seed(seed)``, so results
do not depend on the device. Reductions (T_m and its eigendecomposition) are in float64.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from shared.landscape.hessian import Batch, HVPOperator, LossFn, make_hvp


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rademacher(hvp: HVPOperator, generator: torch.Generator) -> torch.Tensor:
    """A random vector with i.i.d. +-1 entries (E[v v^T] = I), in the operator's dtype and device."""
    bits = torch.randint(0, 2, (hvp.dim,), generator=generator)
    return (2 * bits - 1).to(hvp.dtype).to(hvp.device)


@dataclass
class LanczosResult:
    """alphas (m,), betas (m-1,) of T_m (float64, CPU) and the orthonormal Lanczos vectors Q_m as rows (m, n)."""
    alphas: torch.Tensor
    betas: torch.Tensor
    basis: torch.Tensor

    def tridiagonal(self) -> torch.Tensor:
        """T_m = tridiag(beta, alpha, beta)."""
        return torch.diag(self.alphas) + torch.diag(self.betas, 1) + torch.diag(self.betas, -1)


def lanczos(hvp: HVPOperator, iters: int, start: torch.Tensor, breakdown_tol: float | None = None) -> LanczosResult:
    """m = min(iters, n) Lanczos steps from ``start`` with full reorthogonalisation against all previous vectors
    (Ghorbani et al., arXiv:1901.10159, §2: without it, rounding errors make Q lose orthogonality and T_m grows
    spurious copies of the top eigenvalues). Stops early when beta_j ~ 0: span(Q) is then H-invariant and T_m's
    eigenvalues are exact eigenvalues of H."""
    m = min(iters, hvp.dim)
    if m < 1:
        raise ValueError(f"need iters >= 1, got {iters}")
    tol = 100 * torch.finfo(hvp.dtype).eps if breakdown_tol is None else breakdown_tol
    basis = torch.zeros(m, hvp.dim, dtype=hvp.dtype, device=hvp.device)
    basis[0] = start.to(hvp.dtype).to(hvp.device) / start.norm()  # q_1 = v / ||v||
    alphas, betas, scale = [], [], 0.0
    for j in range(m):
        w = hvp(basis[j])
        # alpha_j = q_j^T H q_j
        alphas.append(torch.dot(w, basis[j]).item())
        # w = H q_j - alpha_j q_j - beta_{j-1} q_{j-1}, then w -= Q Q^T w twice (full reorthogonalisation)
        w = w - alphas[-1] * basis[j] - (betas[-1] * basis[j - 1] if j > 0 else 0.0)
        for _ in range(2):
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = w.norm().item()  # beta_j = ||w||
        scale = max(scale, abs(alphas[-1]), beta)
        if j + 1 == m or beta <= tol * scale:
            basis = basis[: j + 1]
            break
        betas.append(beta)
        basis[j + 1] = w / beta  # q_{j+1} = w / beta_j
    return LanczosResult(torch.tensor(alphas, dtype=torch.float64), torch.tensor(betas, dtype=torch.float64), basis)


def _select(values: torch.Tensor, k: int, which: str) -> torch.Tensor:
    """Indices of the k wanted eigenvalues: ``largest`` (algebraic, descending), ``smallest`` (ascending) or
    ``magnitude`` (|lambda| descending: what power iteration converges to)."""
    keys = {"largest": -values, "smallest": values, "magnitude": -values.abs()}
    if which not in keys:
        raise ValueError(f"which must be one of {sorted(keys)}, got {which!r}")
    return torch.argsort(keys[which])[:k]


def top_eigenpairs(hvp: HVPOperator, k: int = 1, iters: int = 100, seed: int = 0,
                   which: str = "largest") -> tuple[torch.Tensor, torch.Tensor]:
    """The k extreme eigenvalues (float64, ordered as ``which`` says) and unit eigenvectors (k, n) of H from the
    Ritz pairs of one Lanczos run of ``iters`` steps from a Gaussian start (Ghorbani et al., arXiv:1901.10159, §2).
    The top Ritz values converge first; check convergence by raising ``iters``."""
    if k < 1 or k > hvp.dim:
        raise ValueError(f"need 1 <= k <= n = {hvp.dim}, got k={k}")
    start = torch.randn(hvp.dim, generator=_generator(seed), dtype=torch.float64)
    result = lanczos(hvp, max(iters, k), start)
    # T_m = S diag(theta) S^T
    theta, s = torch.linalg.eigh(result.tridiagonal())
    if len(theta) < k:
        raise ValueError(f"Lanczos stopped after {len(theta)} steps (an invariant subspace): fewer than k={k} "
                         "eigenvalues are reachable from this start; try another seed")
    idx = _select(theta, k, which)
    # Ritz vectors y_i = Q_m^T s_i
    vectors = s[:, idx].T.to(result.basis.dtype).to(result.basis.device) @ result.basis
    return theta[idx], vectors / vectors.norm(dim=1, keepdim=True)


def power_iteration(hvp: HVPOperator, k: int = 1, iters: int = 100, tol: float = 1e-6,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k eigenpairs by power iteration with deflation, as PyHessian's ``hessian.eigenvalues`` (Yao et al.,
    arXiv:1912.07145, §3): each eigenvector is iterated orthogonal to those already found, until the Rayleigh
    quotient changes by less than ``tol`` (relative). Converges to the largest-|lambda| eigenvalues, at a rate set
    by the gap |lambda_{i+1}| / |lambda_i|; Lanczos (``top_eigenpairs``) needs far fewer products."""
    gen, values, vectors = _generator(seed), [], []
    for _ in range(k):
        v, value = torch.randn(hvp.dim, generator=gen, dtype=torch.float64).to(hvp.dtype).to(hvp.device), None
        for _ in range(iters):
            for u in vectors:  # deflation: v <- v - (u^T v) u
                v = v - torch.dot(u, v) * u
            v = v / v.norm()
            hv = hvp(v)
            new_value = torch.dot(hv, v).item()  # Rayleigh quotient v^T H v
            converged = value is not None and abs(new_value - value) <= tol * (abs(value) + 1e-12)
            value, v = new_value, hv
            if converged:
                break
        for u in vectors:
            v = v - torch.dot(u, v) * u
        values.append(value)
        vectors.append(v / v.norm())
    return torch.tensor(values, dtype=torch.float64), torch.stack(vectors)


@dataclass
class TraceEstimate:
    """Hutchinson estimate of tr(H): the sample mean and its standard error over ``samples`` (v^T H v values)."""
    mean: float
    stderr: float
    samples: torch.Tensor


def hutchinson_trace(hvp: HVPOperator, n_samples: int = 100, seed: int = 0) -> TraceEstimate:
    """tr(H) = E[v^T H v] for Rademacher v, averaged over ``n_samples`` probes (Hutchinson's estimator; Yao et al.,
    PyHessian, arXiv:1912.07145, §3). Its variance is 2 sum_{i != j} H_ij^2 / n_samples."""
    if n_samples < 2:
        raise ValueError(f"need n_samples >= 2 for a standard error, got {n_samples}")
    gen, samples = _generator(seed), []
    for _ in range(n_samples):
        v = rademacher(hvp, gen)
        samples.append(torch.dot(v, hvp(v)).item())  # v^T H v
    samples = torch.tensor(samples, dtype=torch.float64)
    return TraceEstimate(samples.mean().item(), (samples.std() / math.sqrt(n_samples)).item(), samples)


@dataclass
class SpectralQuadrature:
    """SLQ nodes theta and weights tau / n_v of all probes, concatenated (the weights sum to 1): a discrete
    probability measure whose moments estimate 1/n tr(H^p) (exactly, per probe, for p < 2m)."""
    nodes: torch.Tensor
    weights: torch.Tensor


def slq(hvp: HVPOperator, iters: int = 80, n_probes: int = 10, seed: int = 0) -> SpectralQuadrature:
    """Stochastic Lanczos quadrature (Ghorbani et al., arXiv:1901.10159, §2): for each of ``n_probes`` Rademacher
    probes v_l / sqrt(n), ``iters`` Lanczos steps give T^(l) = S diag(theta) S^T, nodes theta_i^(l) and weights
    tau_i^(l) = (e_1^T s_i)^2."""
    gen, nodes, weights = _generator(seed), [], []
    for _ in range(n_probes):
        result = lanczos(hvp, iters, rademacher(hvp, gen))
        theta, s = torch.linalg.eigh(result.tridiagonal())
        nodes.append(theta)
        weights.append(s[0] ** 2 / n_probes)  # tau_i^(l) / n_v
    return SpectralQuadrature(torch.cat(nodes), torch.cat(weights))


def gaussian_density(quadrature: SpectralQuadrature, grid: torch.Tensor | None = None, n_grid: int = 1000,
                     sigma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """phi_sigma(t) = sum_i w_i g_sigma(t - theta_i) on ``grid`` (Ghorbani et al., arXiv:1901.10159, §2), with
    g_sigma the unit-mass Gaussian. Defaults: sigma = 1% of the node range; grid of ``n_grid`` points spanning the
    nodes +- 5 sigma, so the density integrates to 1 up to ~1e-6 plus quadrature error of the grid."""
    lo, hi = quadrature.nodes.min().item(), quadrature.nodes.max().item()
    if sigma is None:
        sigma = 0.01 * (hi - lo) if hi > lo else max(1e-3 * abs(hi), 1e-6)
    if grid is None:
        grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid, dtype=torch.float64)
    # g_sigma(t - theta) = exp(-(t - theta)^2 / (2 sigma^2)) / (sigma sqrt(2 pi))
    offsets = grid[:, None] - quadrature.nodes[None, :]
    gauss = torch.exp(-offsets**2 / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    return grid, gauss @ quadrature.weights


def hessian_eigs(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], k: int = 1, iters: int = 100,
                 seed: int = 0, which: str = "largest",
                 params: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k Hessian eigenvalues and eigenvectors (flat, in ``params`` order: default ``curvature_params``) of
    ``loss_fn`` on ``batches`` by Lanczos (``top_eigenpairs``; Ghorbani et al., arXiv:1901.10159, §2), model in
    eval mode (see hessian.py). Pass ``params`` (e.g. one layer's) for the Hessian block of those parameters.
    Memory: the ``iters`` Lanczos vectors, iters x n numbers on the model's device."""
    return top_eigenpairs(make_hvp(model, loss_fn, batches, params), k=k, iters=iters, seed=seed, which=which)


def hessian_trace(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], n_samples: int = 100,
                  seed: int = 0, params: Sequence[torch.Tensor] | None = None) -> TraceEstimate:
    """Hutchinson estimate of tr(H) of ``loss_fn`` on ``batches`` (Yao et al., PyHessian, arXiv:1912.07145, §3)."""
    return hutchinson_trace(make_hvp(model, loss_fn, batches, params), n_samples=n_samples, seed=seed)


def hessian_density(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], iters: int = 80,
                    n_probes: int = 10, seed: int = 0, n_grid: int = 1000, sigma: float | None = None,
                    params: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid, density) of the Hessian eigenvalues by SLQ with Gaussian broadening (Ghorbani et al.,
    arXiv:1901.10159, §2; Sagun et al., arXiv:1706.04454: expect a bulk near 0 and a few outliers)."""
    quadrature = slq(make_hvp(model, loss_fn, batches, params), iters=iters, n_probes=n_probes, seed=seed)
    return gaussian_density(quadrature, n_grid=n_grid, sigma=sigma)
