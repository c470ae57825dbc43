"""The optimizer registry: every ``torch.optim.Optimizer`` subclass in ``torch.optim``, plus registered ones.

Follows timm ``timm/optim/_optim_factory.py`` (``OptimInfo`` capabilities on the entry, ``create_optimizer_v2``
building weight-decay groups). Torch optimizers are discovered at import, named by lower-cased class name
(``sgd``, ``adamw``, ``lbfgs``, ``sparseadam``, ...). Capabilities on each entry (``OPTIMIZERS.info(name)``):

- ``needs_closure``: ``step()`` has no default closure (LBFGS re-evaluates the loss).
- ``has_betas``, ``accepts_weight_decay``: the constructor takes ``betas`` / ``weight_decay``.
- ``default_lr``: the constructor's default ``lr`` (None if it has none).
- ``args``: the constructor's keyword arguments after ``params``.
- ``sparse_grad_only``: needs sparse gradients (``nn.Embedding(sparse=True)``), rejects dense ones.
- ``matrix_params_only``: takes only 2-d parameters (Muon orthogonalises matrix updates).

New optimizers subclass ``torch.optim.Optimizer`` and register with ``@register_optimizer("name", **info)``;
signature-derived capabilities are filled in, explicit ``info`` wins.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import torch
from torch import nn

from shared.optim.param_groups import param_groups
from shared.registry import Registry

OPTIMIZERS = Registry("optimizer")

# Capabilities the constructor signature cannot show.
_TORCH_EXTRA_INFO: dict[str, dict[str, Any]] = {
    "SparseAdam": {"sparse_grad_only": True},
    "Muon": {"matrix_params_only": True},
}


def _init_args(cls: type) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {k: p for k, p in list(sig.parameters.items())[2:]}  # drop self, params


def _capabilities(cls: type) -> dict[str, Any]:
    args = _init_args(cls)
    closure = inspect.signature(cls.step).parameters.get("closure")
    lr = args.get("lr")
    default_lr = None if lr is None or lr.default is inspect.Parameter.empty else lr.default
    return {
        "needs_closure": closure is not None and closure.default is inspect.Parameter.empty,
        "has_betas": "betas" in args,
        "accepts_weight_decay": "weight_decay" in args,
        "default_lr": float(default_lr) if default_lr is not None else None,
        "args": tuple(k for k, p in args.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)),
        "sparse_grad_only": False,
        "matrix_params_only": False,
    }


def register_optimizer(name: str, **info: Any) -> Callable[[type], type]:
    """Class decorator: ``@register_optimizer("lion", has_betas=True)``; a duplicate name raises."""

    def deco(cls: type) -> type:
        if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)):
            raise TypeError(f"register_optimizer({name!r}) expects a torch.optim.Optimizer subclass, got {cls!r}")
        OPTIMIZERS.add(name, cls, **{**_capabilities(cls), **info})
        return cls

    return deco


def _register_torch_optimizers() -> None:
    seen: set[type] = set()
    for attr in sorted(dir(torch.optim)):
        cls = getattr(torch.optim, attr)
        if attr.startswith("_") or not inspect.isclass(cls) or cls in seen:
            continue
        if issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer:
            seen.add(cls)
            register_optimizer(attr.lower(), source="torch.optim", **_TORCH_EXTRA_INFO.get(attr, {}))(cls)


_register_torch_optimizers()


def list_optimizers() -> list[str]:
    """Sorted names of every registered optimizer."""
    return OPTIMIZERS.names()


def _check_kwargs(name: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise TypeError naming the optimizer, the bad keys and the accepted ones (torch's error names neither)."""
    args = _init_args(cls)
    if any(p.kind is p.VAR_KEYWORD for p in args.values()):
        return
    bad = sorted(set(kwargs) - set(args))
    if bad:
        raise TypeError(
            f"optimizer {name!r} ({cls.__module__}.{cls.__qualname__}) got unexpected argument(s) {bad}; "
            f"accepted: {', '.join(OPTIMIZERS.info(name)['args'])}"
        )


def create_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]],
    lr: float,
    weight_decay: float = 0.0,
    no_decay_norm_bias: bool = False,
    lr_mult: dict[str, float] | None = None,
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """Build optimizer ``name`` by name, as timm's ``create_optimizer_v2``.

    Args:
        name: any of ``list_optimizers()`` (case-insensitive).
        model_or_params: an ``nn.Module`` (groups from ``param_groups``, then split by the optimizer class's
            ``route_param_groups(model, groups)`` if it has one), or parameters / group dicts as torch takes them;
            a group dict with ``"lr_mult"`` and no ``"lr"`` gets ``lr * lr_mult``.
        lr: base learning rate.
        weight_decay: passed only to optimizers that accept it, and always to those (so the default 0.0 overrides
            torch defaults such as AdamW's 0.01); nonzero for an optimizer without it raises ValueError.
        no_decay_norm_bias: no decay on 1-d params and ``no_weight_decay()`` names (needs a module).
        lr_mult: per-group-kind lr multipliers, see ``param_groups`` (needs a module).
        **kwargs: the optimizer's own arguments (momentum, betas, ...); unknown ones raise TypeError.
    """
    cls = OPTIMIZERS.get(name)
    info = OPTIMIZERS.info(name)
    _check_kwargs(name, cls, kwargs)
    if weight_decay and not info["accepts_weight_decay"]:
        raise ValueError(f"optimizer {name!r} takes no weight_decay, got weight_decay={weight_decay}")
    if isinstance(model_or_params, nn.Module):
        params: Any = param_groups(model_or_params, weight_decay, no_decay_norm_bias, lr_mult)
        if not info["accepts_weight_decay"]:
            params = [{k: v for k, v in g.items() if k != "weight_decay"} for g in params]
        route = getattr(cls, "route_param_groups", None)  # hybrid optimizers (muon_adamw): which rule per param
        if route is not None:
            params = route(model_or_params, params)
    elif no_decay_norm_bias or lr_mult:
        raise ValueError("no_decay_norm_bias and lr_mult need an nn.Module to name parameters; got parameters")
    else:
        params = list(model_or_params)
    params = [
        {**g, "lr": lr * g["lr_mult"]} if isinstance(g, dict) and "lr_mult" in g and "lr" not in g else g
        for g in params
    ]
    if info["accepts_weight_decay"]:
        kwargs["weight_decay"] = weight_decay
    return cls(params, lr=lr, **kwargs)
