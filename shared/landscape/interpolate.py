"""Linear mode connectivity: loss along the segment between two trained models, its barrier, and the BatchNorm
statistics reset that the segment's midpoints need.

Interpolation (Frankle et al., "Linear Mode Connectivity and the Lottery Ticket Hypothesis", arXiv:1912.05671 §2):

    theta(alpha) = (1 - alpha) theta_A + alpha theta_B,  alpha in [0, 1]

Barrier (Entezari et al., "The Role of Permutation Invariance in Linear Mode Connectivity of Neural Networks",
arXiv:2110.06296, Def. 1; Ainsworth et al., "Git Re-Basin", arXiv:2209.04836 §2):

    B(theta_A, theta_B) = max_alpha [ L(theta(alpha)) - ((1 - alpha) L(theta_A) + alpha L(theta_B)) ]

BN reset ("REPAIR: REnormalizing Permuted Activations for Interpolation Repair", Jordan et al., arXiv:2211.08403,
the "reset BatchNorm statistics" correction it starts from for BN nets; Git Re-Basin recomputes BN statistics of
interpolated ResNets too): the running mean/var of theta(alpha) are not those of its activations, so they are
recomputed from training batches in train mode, with BN's momentum set to None (a cumulative average over the
batches) after ``reset_running_stats()``. Reference: KellerJordan/REPAIR notebooks, ``reset_bn_stats`` (momentum =
None, reset, forward passes in train mode under no_grad).
Deviations: none. Integer buffers (BN's ``num_batches_tracked``) are taken from theta_A, not interpolated.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.landscape.surface import LossFn, evaluate_loss


def interpolate_state_dicts(state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                            alpha: float) -> dict[str, torch.Tensor]:
    """theta(alpha) = (1 - alpha) theta_A + alpha theta_B for every floating-point entry (Frankle et al. §2).

    ``torch.lerp`` computes theta_A + alpha (theta_B - theta_A), which is exactly theta_A when both are equal.
    Non-float entries (``num_batches_tracked``) are copied from A.
    """
    if set(state_a) != set(state_b):
        raise ValueError(f"state dicts differ in keys: {sorted(set(state_a) ^ set(state_b))}")
    out = {}
    for key, a in state_a.items():
        b = state_b[key]
        if a.shape != b.shape:
            raise ValueError(f"{key}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        # theta(alpha) = (1 - alpha) theta_A + alpha theta_B
        out[key] = torch.lerp(a, b.to(a.dtype), float(alpha)) if torch.is_floating_point(a) else a.clone()
    return out


@torch.no_grad()
def reset_bn_stats(model: nn.Module, batches: Iterable) -> int:
    """Recompute every BatchNorm layer's running mean and variance on ``batches`` (REPAIR's "reset BN", Jordan et
    al., arXiv:2211.08403). Returns the number of BN layers reset.

    With momentum = None, PyTorch keeps the cumulative average over the K forward passes:
        running_mean = (1/K) sum_k mean_k,   running_var = (1/K) sum_k var_k (unbiased, n_k - 1)
    For equal batch sizes the mean is the exact mean over all examples. Inputs only (x of each (x, y)) are used;
    the model's mode and each layer's momentum are restored.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    was_training, device = model.training, next(model.parameters()).device
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = None  # cumulative moving average: every batch counts equally
        m.reset_running_stats()
    model.train()
    try:
        seen = 0
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            seen += 1
        if seen == 0:
            raise ValueError("reset_bn_stats needs at least one batch")
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


def loss_barrier(alphas: Sequence[float], losses: Sequence[float]) -> float:
    """B = max_alpha [L(alpha) - ((1 - alpha) L(0) + alpha L(1))] (Entezari et al., arXiv:2110.06296, Def. 1).

    ``alphas`` must contain 0 and 1; the endpoints' losses are read at those alphas. For an error barrier pass
    errors (1 - accuracy). B >= 0 always, since alpha = 0 contributes 0.
    """
    alphas, losses = np.asarray(alphas, dtype=float), np.asarray(losses, dtype=float)
    if alphas.shape != losses.shape:
        raise ValueError(f"alphas {alphas.shape} and losses {losses.shape} differ in shape")
    at = {a: i for i, a in enumerate(alphas.tolist())}
    if 0.0 not in at or 1.0 not in at:
        raise ValueError("alphas must include 0 and 1 (the endpoints)")
    l0, l1 = losses[at[0.0]], losses[at[1.0]]
    # L(alpha) - ((1 - alpha) L0 + alpha L1)
    return float(np.max(losses - ((1 - alphas) * l0 + alphas * l1)))


def interpolation_curve(model: nn.Module, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                        alphas: Sequence[float], batches, loss_fn: LossFn = F.cross_entropy,
                        bn_batches: Iterable | None = None) -> dict[str, np.ndarray | float]:
    """Loss and accuracy of theta(alpha) for every alpha (Frankle et al. §2), and the loss and error barriers.

    ``model`` supplies the architecture; its state is restored afterwards. With ``bn_batches`` (re-iterable
    training batches) BN statistics are reset at every alpha, endpoints included, before evaluation
    (REPAIR's "reset BN"). Returns arrays alpha, loss, accuracy and floats loss_barrier, error_barrier
    (NaN when accuracy is undefined).
    """
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses, accs = [], []
    try:
        for alpha in alphas:
            model.load_state_dict(interpolate_state_dicts(state_a, state_b, alpha))
            if bn_batches is not None:
                reset_bn_stats(model, bn_batches)
            metrics = evaluate_loss(model, batches, loss_fn)
            losses.append(metrics["loss"])
            accs.append(metrics["accuracy"])
    finally:
        model.load_state_dict(saved)
    alphas = np.asarray(alphas, dtype=float)
    losses, accs = np.array(losses), np.array(accs)
    has_ends = 0.0 in alphas.tolist() and 1.0 in alphas.tolist()
    return {"alpha": alphas, "loss": losses, "accuracy": accs,
            "loss_barrier": loss_barrier(alphas, losses) if has_ends else float("nan"),
            "error_barrier": loss_barrier(alphas, 1 - accs) if has_ends else float("nan")}
