"""Hessian-vector products of a model's loss on a fixed data subset: the one primitive every curvature tool uses.

Papers: Sagun et al., "Empirical Analysis of the Hessian of Over-Parametrized Neural Networks", arXiv:1706.04454
(§1: L(w) = 1/N sum_i l(f(w, x_i), y_i), and its Hessian H = grad^2 L(w) on a fixed sample); Yao et al., "PyHessian:
Neural Networks Through the Lens of the Hessian", arXiv:1912.07145 (§3: Hv by backpropagating g^T v, never forming H).

Subset loss over batches b = 1..B with n_b examples each, N = sum_b n_b, and ``loss_fn`` a batch mean:
    L(w) = sum_b (n_b / N) L_b(w)
Hessian-vector product by double backprop (Pearlmutter's trick; PyHessian §3):
    g_b = dL_b/dw  (kept in the graph),   H_b v = d(g_b^T v)/dw,   H v = sum_b (n_b / N) H_b v
Only one batch's graph is alive at a time, so memory is that of a single training step with ``create_graph``.

Curvature mode: normalisation layers use their running statistics and dropout is off (``model.eval()``) while a
curvature quantity is computed, then every module's previous mode is restored. With batch statistics, L_b would
depend on which examples share a batch (the mean and variance are functions of the whole batch), so "the Hessian
of the loss on this subset" would change with the batching, and each forward pass in train mode would also update
the running statistics. PyHessian does the same (``hessian.__init__`` calls ``model.eval()``). Deviations: none.

Vectors are flat (one tensor of length n = number of curvature parameters, in ``params`` order); ``make_hvp``'s
callable also accepts and returns a list of per-parameter tensors.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class HVPOperator:
    """A symmetric linear map v -> H v on flat vectors of length ``dim``, with the dtype and device random probe
    vectors must have. The spectrum and overlap tools take one of these; build it with ``make_hvp`` (a model's
    loss), ``matrix_hvp`` (an explicit matrix) or directly from any callable."""
    matvec: Callable
    dim: int
    dtype: torch.dtype
    device: torch.device

    def __call__(self, v):
        return self.matvec(v)


def curvature_params(model: nn.Module) -> list[torch.Tensor]:
    """The parameters the Hessian is taken over: every parameter with ``requires_grad``, in ``model.parameters()``
    order (so the flat layout matches ``torch.nn.utils.parameters_to_vector`` on the same list)."""
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate tensors into one flat vector (the layout of every vector in shared.landscape)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat vector into tensors shaped like ``like`` (the inverse of ``flatten``)."""
    if vector.numel() != sum(t.numel() for t in like):
        raise ValueError(f"vector has {vector.numel()} entries, the parameters {sum(t.numel() for t in like)}")
    return [chunk.view_as(t) for chunk, t in zip(vector.split([t.numel() for t in like]), like)]


@contextmanager
def curvature_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside the block (running BN statistics, no dropout: see the module docstring), then each
    module's own ``training`` flag is restored, so a model that was partly in eval mode stays so."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _batch_weights(batches: Sequence[Batch]) -> list[float]:
    """n_b / N for each batch, so that sum_b (n_b/N) L_b is the mean loss over all N examples."""
    sizes = [len(x) for x, _ in batches]
    if not sizes or min(sizes) == 0:
        raise ValueError(f"need at least one non-empty batch, got sizes {sizes}")
    return [n / sum(sizes) for n in sizes]


def _device_of(params: Sequence[torch.Tensor]) -> torch.device:
    return params[0].device


def subset_loss_and_grad(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch],
                         params: Sequence[torch.Tensor] | None = None) -> tuple[float, torch.Tensor]:
    """L(w) = sum_b (n_b/N) L_b(w) and its gradient g = dL/dw as a flat vector, in curvature mode (Sagun et al.,
    arXiv:1706.04454, §1). ``batches``: list of (x, y); ``loss_fn(model(x), y)`` must be a batch mean."""
    params = curvature_params(model) if params is None else list(params)
    device, loss, grad = _device_of(params), 0.0, torch.zeros_like(flatten(params))
    with curvature_mode(model), torch.enable_grad():
        for (x, y), w_b in zip(batches, _batch_weights(batches)):
            loss_b = loss_fn(model(x.to(device)), y.to(device))
            g_b = torch.autograd.grad(loss_b, params, allow_unused=True)
            # L = sum_b (n_b/N) L_b,  g = sum_b (n_b/N) g_b
            loss += w_b * loss_b.item()
            grad += w_b * flatten(_zeros_for_unused(g_b, params))
    return loss, grad


def _zeros_for_unused(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """A parameter the loss does not depend on has zero gradient and zero Hessian rows."""
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def _batch_hvp(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
               params: Sequence[torch.Tensor], v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """H_b v = d(g_b^T v)/dw with g_b = dL_b/dw kept in the graph (double backprop; PyHessian §3)."""
    loss_b = loss_fn(model(x), y)
    g_b = _zeros_for_unused(torch.autograd.grad(loss_b, params, create_graph=True, allow_unused=True), params)
    # g_b^T v
    g_dot_v = sum((g * u).sum() for g, u in zip(g_b, v))
    if not g_dot_v.requires_grad:  # the loss is at most linear in w: H_b = 0
        return [torch.zeros_like(p) for p in params]
    # H_b v = d(g_b^T v)/dw
    return _zeros_for_unused(torch.autograd.grad(g_dot_v, params, allow_unused=True), params)


def make_hvp(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch],
             params: Sequence[torch.Tensor] | None = None) -> HVPOperator:
    """The map v -> H v for the Hessian H of L(w) = sum_b (n_b/N) L_b(w) on the fixed ``batches`` at the current
    weights (Yao et al., PyHessian, arXiv:1912.07145, §3; Sagun et al., arXiv:1706.04454, §1).

    Args:
        model: any ``nn.Module``; it is put in curvature mode (eval) during each product, then restored.
        loss_fn: ``loss_fn(model(x), y)`` -> scalar batch mean (e.g. ``nn.CrossEntropyLoss()``).
        batches: list of (x, y) pairs, moved to the parameters' device per product. Keep it fixed: H depends on it.
        params: the parameters H is taken over (default: all with ``requires_grad``).
    Returns:
        ``HVPOperator`` ``hvp``: ``hvp(v)`` with v a flat tensor (length n = ``hvp.dim``) returns a flat tensor;
        with v a list of per-parameter tensors, a list. Each call costs about two backward passes per batch.
    """
    params = curvature_params(model) if params is None else list(params)
    weights, device = _batch_weights(batches), _device_of(params)

    def hvp(v: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        as_list = not isinstance(v, torch.Tensor)
        v_parts = [t.to(p) for t, p in zip(v, params)] if as_list else unflatten(v.to(params[0]), params)
        hv = [torch.zeros_like(p) for p in params]
        with curvature_mode(model), torch.enable_grad():
            for (x, y), w_b in zip(batches, weights):
                # H v = sum_b (n_b/N) H_b v
                for acc, h in zip(hv, _batch_hvp(model, loss_fn, x.to(device), y.to(device), params, v_parts)):
                    acc.add_(h, alpha=w_b)
        return hv if as_list else flatten(hv)

    return HVPOperator(hvp, sum(p.numel() for p in params), params[0].dtype, params[0].device)


def matrix_hvp(matrix: torch.Tensor) -> HVPOperator:
    """v -> A v for an explicit symmetric matrix A: lets the spectrum tools run on a known matrix (tests compare
    them with ``torch.linalg.eigh``)."""
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"need a square matrix, got shape {tuple(matrix.shape)}")

    return HVPOperator(lambda v: matrix @ v, matrix.shape[0], matrix.dtype, matrix.device)
