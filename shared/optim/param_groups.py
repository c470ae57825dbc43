"""Parameter groups for weight decay and per-group learning-rate multipliers.

Follows timm ``timm/optim/_param_groups.py`` ``param_groups_weight_decay``: with ``no_decay_norm_bias`` on,
every parameter with ``ndim <= 1`` (norm scales and shifts, biases) and every name returned by the model's
``no_weight_decay()`` method (e.g. position embeddings) goes to a group with ``weight_decay=0``.

A third kind, ``"norm_bias"``, exists only when ``lr_mult`` names it: the shifts (``bias``) of normalization layers
(BatchNorm, InstanceNorm, GroupNorm, LayerNorm) then form their own group, with weight decay as their kind would
otherwise get (0 under ``no_decay_norm_bias``). airbench94 trains BatchNorm biases at 64x the lr this way
(its ``bias_scaler``; Jordan, arXiv:2404.00498). Without the key the groups are exactly the two above.

Groups are plain dicts as ``torch.optim.Optimizer`` takes them, plus two keys the optimizer keeps untouched:
``"name"`` (``"decay"``, ``"no_decay"`` or ``"norm_bias"``) and ``"lr_mult"``. ``create_optimizer`` turns
``lr_mult`` into the group's ``"lr" = lr * lr_mult``; schedulers then scale each group's own base lr, so the
ratio persists.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

GROUP_KINDS = ("decay", "no_decay", "norm_bias")
# Normalization layers whose ``bias`` is a "norm_bias" (every norm in shared/models/norms.py subclasses one of these).
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Names from ``model.no_weight_decay()`` (timm's convention: a set of parameter names), or an empty set."""
    fn = getattr(model, "no_weight_decay", None)
    return set(fn()) if callable(fn) else set()


def param_groups(
    model: nn.Module,
    weight_decay: float = 0.0,
    no_decay_norm_bias: bool = False,
    lr_mult: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into ``"decay"`` and ``"no_decay"`` groups.

    Args:
        model: the module; parameters with ``requires_grad=False`` are left out.
        weight_decay: decay of the ``"decay"`` group.
        no_decay_norm_bias: if True, 1-d (and 0-d) parameters and ``model.no_weight_decay()`` names get
            ``weight_decay=0`` in a ``"no_decay"`` group; if False, all parameters form one ``"decay"`` group.
        lr_mult: optional ``{group kind: multiplier}``, e.g. ``{"no_decay": 0.1}``; kinds not listed get 1.0.
            Naming ``"norm_bias"`` splits the biases of normalization layers into their own group.

    Returns groups in the order decay, no_decay, norm_bias, empty ones dropped.
    """
    lr_mult = dict(lr_mult or {})
    unknown = sorted(set(lr_mult) - set(GROUP_KINDS))
    if unknown:
        raise ValueError(f"lr_mult keys must be group kinds {GROUP_KINDS}, got {unknown}")
    skip = no_weight_decay_names(model) if no_decay_norm_bias else set()
    norm_biases = {id(m.bias) for m in model.modules() if isinstance(m, NORM_TYPES) and m.bias is not None}
    split_norm_bias = "norm_bias" in lr_mult
    params: dict[str, list[torch.Tensor]] = {kind: [] for kind in GROUP_KINDS}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = no_decay_norm_bias and (p.ndim <= 1 or name in skip)
        if split_norm_bias and id(p) in norm_biases:
            params["norm_bias"].append(p)
        else:
            params["no_decay" if exempt else "decay"].append(p)
    decay = {"decay": weight_decay, "no_decay": 0.0, "norm_bias": 0.0 if no_decay_norm_bias else weight_decay}
    return [
        {"name": kind, "params": ps, "weight_decay": decay[kind], "lr_mult": float(lr_mult.get(kind, 1.0))}
        for kind, ps in params.items()
        if ps
    ]
