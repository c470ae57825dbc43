"""Directions in weight space for loss-surface plots: "Visualizing the Loss Landscape of Neural Nets",
Li, Xu, Taylor, Studer & Goldstein, arXiv:1712.09913, §4 ("Filter-Wise Normalization").

A direction is a dict ``{parameter name: tensor}`` with one entry per trainable parameter of the model
(``model.named_parameters()`` order, ``requires_grad`` only), the same shapes as the parameters.

Filter normalization (§4, eq. in the text): draw d ~ N(0, I) with the shape of theta, then for every filter j of
every layer i

    d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||

A "filter" is a slice along dim 0: an output channel of a conv (C_in x k x k weights) and, since "the FC layer is
equivalent to a Conv layer with a 1x1 output feature map", one output neuron (row) of a Linear weight.

BN and bias dims: parameters with one dimension (biases, norm scales and shifts) get a zero direction, as the
reference implementation does with ``--xignore biasbn`` (tomgoldstein/loss-landscape ``net_plotter.py``
``normalize_directions_for_weights``), the setting of the paper's figures. With ``ignore_bias_bn=False`` they copy
theta, as that reference does otherwise. BN running statistics are buffers, not parameters: they are never moved.

Reference: tomgoldstein/loss-landscape ``net_plotter.py`` (``get_random_weights``, ``normalize_direction``: it adds
1e-10 to ||d_{i,j}||, so do we). Deviations: directions are keyed by parameter name instead of a list.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn

Direction = dict[str, torch.Tensor]
NORMALIZATIONS = ("filter", "layer", "none")


def trainable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters a direction moves: ``requires_grad`` ones, in ``named_parameters()`` order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def normalize_direction(direction: Direction, weights: Mapping[str, torch.Tensor], norm: str = "filter",
                        ignore_bias_bn: bool = True) -> Direction:
    """Rescale ``direction`` to the scale of ``weights`` (Li et al., arXiv:1712.09913, §4). Returns a new dict.

    norm="filter": d_{i,j} <- d_{i,j} ||theta_{i,j}|| / ||d_{i,j}|| per slice j along dim 0 (the paper's method);
    norm="layer": d_i <- d_i ||theta_i|| / ||d_i|| per parameter tensor; norm="none": unchanged.
    One-dimensional parameters (biases, BN/LN scales and shifts) become 0 (``ignore_bias_bn``) or a copy of theta.
    """
    if norm not in NORMALIZATIONS:
        raise ValueError(f"norm must be one of {NORMALIZATIONS}, got {norm!r}")
    out = {}
    for name, d in direction.items():
        w = weights[name].detach()
        d = d.detach().clone()
        if d.shape != w.shape:
            raise ValueError(f"direction {name!r} has shape {tuple(d.shape)}, the weight {tuple(w.shape)}")
        if d.dim() <= 1:
            d = torch.zeros_like(w) if ignore_bias_bn else w.clone()
        elif norm == "filter":
            # d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||, one j per output filter / neuron (dim 0)
            w_norms = w.flatten(1).norm(dim=1)
            d_norms = d.flatten(1).norm(dim=1)
            d = d * (w_norms / (d_norms + 1e-10)).view(-1, *([1] * (d.dim() - 1)))
        elif norm == "layer":
            d = d * (w.norm() / (d.norm() + 1e-10))
        out[name] = d
    return out


def random_direction(model: nn.Module, norm: str = "filter", ignore_bias_bn: bool = True,
                     generator: torch.Generator | None = None) -> Direction:
    """A Gaussian direction d ~ N(0, I), filter-normalized to the model's weights (Li et al., arXiv:1712.09913, §4).

    ``generator`` (a CPU ``torch.Generator``) makes it reproducible; draws are made on the CPU in the parameter's
    dtype and moved to the parameter's device, so a seed gives the same direction on any device.
    """
    weights = trainable_parameters(model)
    raw = {name: torch.randn(w.shape, generator=generator, dtype=w.dtype).to(w.device) for name, w in weights.items()}
    return normalize_direction(raw, weights, norm=norm, ignore_bias_bn=ignore_bias_bn)


def direction_from_vector(model: nn.Module, vector: torch.Tensor | Sequence[torch.Tensor] | Mapping[str, torch.Tensor],
                          norm: str = "none", ignore_bias_bn: bool = True) -> Direction:
    """Use a given vector as a direction, e.g. a Hessian eigenvector (the "Hessian axes" of LLA / Li et al. §7).

    ``vector`` is a flat tensor over the trainable parameters concatenated in ``named_parameters()`` order (as
    ``torch.nn.utils.parameters_to_vector`` lays them out), a sequence of per-parameter tensors in that order, or a
    dict by name. ``norm="none"`` (default) keeps it as given, e.g. a unit eigenvector, so grid coordinates are
    Euclidean distances; "filter" / "layer" rescale it as ``normalize_direction`` does.
    """
    weights = trainable_parameters(model)
    if isinstance(vector, Mapping):
        missing = sorted(set(weights) - set(vector))
        if missing:
            raise ValueError(f"vector has no entry for parameters {missing}")
        parts = {name: vector[name] for name in weights}
    elif isinstance(vector, torch.Tensor):
        total = sum(w.numel() for w in weights.values())
        if vector.dim() != 1 or vector.numel() != total:
            raise ValueError(f"flat vector must have {total} entries (trainable parameters), got {tuple(vector.shape)}")
        chunks = torch.split(vector, [w.numel() for w in weights.values()])
        parts = {name: c.view(w.shape) for (name, w), c in zip(weights.items(), chunks)}
    else:
        vector = list(vector)
        if len(vector) != len(weights):
            raise ValueError(f"need {len(weights)} tensors (one per trainable parameter), got {len(vector)}")
        parts = dict(zip(weights, vector))
    parts = {name: t.detach().to(dtype=weights[name].dtype, device=weights[name].device).reshape(weights[name].shape)
             for name, t in parts.items()}
    if norm == "none":
        return {name: t.clone() for name, t in parts.items()}
    return normalize_direction(parts, weights, norm=norm, ignore_bias_bn=ignore_bias_bn)


def direction_between(model_a: nn.Module, model_b: nn.Module) -> Direction:
    """d = theta_B - theta_A, the direction of the 1-D linear interpolation plots (Li et al. §3, after Goodfellow
    et al., arXiv:1412.6544): theta(alpha) = theta_A + alpha d."""
    wa, wb = trainable_parameters(model_a), trainable_parameters(model_b)
    return {name: (wb[name] - w).detach().clone() for name, w in wa.items()}
