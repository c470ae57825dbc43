"""Signal propagation through a stack of blocks: the singular values of its input-output Jacobian.

"ReZero is All You Need: Fast Convergence at Large Depth", Bachlechner et al., arXiv:2003.04887 (abstract; after
Pennington et al.'s dynamical isometry): a deep network propagates signals well when the singular values of its
input-output Jacobian concentrate near 1. For blocks h_{l+1} = B_l(h_l) on one sequence h_0 of shape (T, d),

    J = d vec(h_L) / d vec(h_0)            (a (T d) x (T d) matrix; attention mixes the T positions)

and ReZero's x + alpha F(x) with alpha = 0 at init makes every block the identity, so J = I: every singular value
is 1 ("initial dynamical isometry"). A norm after the residual sum (Post-LN) projects out each token's mean and
rescales, so its J has T singular values near 0; Pre-LN's x + F(LN(x)) adds the branches' Jacobians to I.

``block_jacobian_singular_values`` computes J exactly (one vector-Jacobian product per output entry, in float64
for the decomposition) for any blocks mapping (1, T, d) -> (1, T, d); ``jacobian_stats`` summarises them; the
``jacobian`` probe does both on the first sequence of the fixed batch (``tokens`` positions) at probe steps, for a
model with a ``blocks`` nn.ModuleList (the shared GPT), capturing the blocks' input with a forward pre-hook.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from shared.probes.base import PROBES, Probe

ISOMETRY_BAND = (0.9, 1.1)  # a singular value within 10% of 1 counts as isometric


def block_jacobian_singular_values(blocks: Sequence[nn.Module], h0: Tensor, chunk: int = 128) -> Tensor:
    """Singular values (descending, float64) of d vec(h_L) / d vec(h_0) for one sequence ``h0`` (T, d) passed
    through ``blocks`` in order, each called on a batch of one (1, T, d). The blocks' own mode (train / eval) is
    used as it is; parameters get no gradient; ``chunk`` rows of J per batched backward pass."""
    def stack(h: Tensor) -> Tensor:
        h = h.unsqueeze(0)
        for block in blocks:
            h = block(h)
        return h.squeeze(0)

    x = h0.detach().float().requires_grad_(True)
    with torch.enable_grad():
        out = stack(x).reshape(-1)
        n, rows = out.numel(), []
        eye = torch.eye(n, dtype=out.dtype, device=out.device)
        for start in range(0, n, chunk):  # rows start.. of J: a batch of vector-Jacobian products e_i^T J
            basis = eye[start:start + chunk]
            rows.append(torch.autograd.grad(out, x, basis, retain_graph=start + chunk < n,
                                            is_grads_batched=True)[0].reshape(len(basis), -1))
    return torch.linalg.svdvals(torch.cat(rows).double())


def block_input(model: nn.Module, forward) -> Tensor:
    """The input of ``model.blocks[0]`` (the residual stream h_0) during ``forward()``, a call that runs the model."""
    captured = {}
    handle = model.blocks[0].register_forward_pre_hook(lambda m, args: captured.setdefault("h0", args[0]))
    try:
        forward()
    finally:
        handle.remove()
    return captured["h0"]


def jacobian_stats(sigma: Tensor) -> dict[str, float]:
    """``sigma_max``, ``sigma_median``, ``sigma_min`` and ``isometric_share`` (the share of singular values within
    ``ISOMETRY_BAND`` of 1) of singular values ``sigma``."""
    low, high = ISOMETRY_BAND
    return {"sigma_max": sigma.max().item(), "sigma_median": sigma.median().item(), "sigma_min": sigma.min().item(),
            "isometric_share": ((sigma >= low) & (sigma <= high)).double().mean().item()}


@PROBES.register("jacobian")
class Jacobian(Probe):
    """``jacobian_stats`` of the blocks' input-output Jacobian on the first ``tokens`` positions (kwarg, default 8)
    of the fixed batch's first sequence: a (tokens d)^2 Jacobian, tokens * d vector-Jacobian products."""

    needs_batch = True

    def __init__(self, model, optimizer=None, batch=None, tokens: int = 8):
        super().__init__(model, optimizer, batch)
        if not isinstance(getattr(model, "blocks", None), nn.ModuleList):
            raise ValueError(f"jacobian needs a model with a `blocks` nn.ModuleList; {type(model).__name__} has none")
        if tokens < 1:
            raise ValueError(f"jacobian probe: tokens must be >= 1, got {tokens}")
        self.tokens = tokens

    def on_fixed_batch(self, batch):
        h0 = block_input(self.model, lambda: batch.forward(batch.x[:1, : self.tokens]))
        return jacobian_stats(block_jacobian_singular_values(self.model.blocks, h0[0]))
