"""Weight probes: weight norms, the relative size of one optimizer step, and the effective learning rate.

effective_lr: "L2 Regularization versus Batch and Weight Normalization", van Laarhoven, arXiv:1706.05350 (§2-3).
For a weight w followed by a normalization, the loss is scale invariant, L(a w) = L(w) for a > 0, so
  grad L(w) = grad L(w_hat) / ||w||,  w_hat = w / ||w||
and an SGD step of size eta on w moves the direction w_hat by eta / ||w||^2 times the gradient at w_hat:
  eta_eff = eta / ||w||^2
Which weights are "followed by a normalization" is found by tracing one forward pass of the fixed batch: a conv or
linear weight whose output tensor reaches a norm module (BatchNorm/InstanceNorm, LayerNorm, GroupNorm, RMSNorm)
directly or through positively homogeneous modules (ReLU, max/avg pooling, dropout, identity, flatten), e.g.
ResNet's conv -> BN and airbench's conv -> max-pool -> BN. ``scope="all"`` logs eta/||w||^2 for every weight of
dimension >= 2 instead (when unsure whether the model is scale invariant; then it is only a diagnostic).
Deviations: for adaptive optimizers (Adam) eta/||w||^2 is logged as is; the paper (§4) shows Adam's effective
rate also depends on the second-moment estimate. A conv/linear bias breaks exact invariance under LayerNorm (not
under BatchNorm, whose mean subtraction removes it).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from shared.probes.base import PROBES, Probe, frozen_forward, named_params

NORM_TYPES = (_NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)  # x -> norm(x) is invariant to x -> a x, a > 0
HOMOGENEOUS_TYPES = (nn.ReLU, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                     nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout, nn.Dropout2d,
                     nn.Identity, nn.Flatten)  # f(a x) = a f(x) for a > 0 (dropout in eval mode)
WEIGHT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _norm(t: torch.Tensor) -> float:
    return torch.linalg.vector_norm(t.detach().float()).item()


@PROBES.register("weight_norm")
class WeightNorm(Probe):
    """||w|| (Frobenius) of every parameter tensor after the step, by name, and ||theta|| of all of them."""

    def after_step(self, step):
        norms = {name: _norm(p) for name, p in named_params(self.model)}
        return {"norm": norms, "total": math.sqrt(sum(v * v for v in norms.values()))}

    def final_metrics(self):
        """``final_weight_norm``: ||theta|| over the weight matrices and kernels (dim >= 2) at the end of the run,
        the tensors L2 regularization shrinks (norm scales and biases are usually exempt)."""
        return {"final_weight_norm": math.sqrt(sum(_norm(p) ** 2 for _, p in named_params(self.model)
                                                   if p.dim() >= 2))}


class _MeanOverProbeSteps(Probe):
    """A probe whose end-of-run scalar is the mean over probe steps of each step's mean over weights: a step's
    null values are skipped, a step with none left is not counted; the running sum survives a resume."""

    def __init__(self, model, optimizer=None, batch=None):
        super().__init__(model, optimizer, batch)
        self._sum, self._count = 0.0, 0

    def _add_step(self, values) -> None:
        finite = [v for v in values if v is not None]
        if finite:
            self._sum, self._count = self._sum + sum(finite) / len(finite), self._count + 1

    def _mean(self) -> float | None:
        return self._sum / self._count if self._count else None

    def state_dict(self):
        return {"sum": self._sum, "count": self._count}

    def load_state_dict(self, state):
        self._sum, self._count = state.get("sum", 0.0), state.get("count", 0)


@PROBES.register("effective_step")
class EffectiveStep(_MeanOverProbeSteps):
    """Relative update of one optimizer step per parameter tensor: ||w_t - w_{t-1}|| / ||w_{t-1}||.

    w_{t-1} is copied in ``before_step`` at probe steps only (one copy of the weights, freed after the step).
    A tensor with ||w_{t-1}|| = 0 (e.g. a zero-initialised bias) gets null. ``total``: the same over all weights.
    For a scale-invariant weight this is the angle the step turns w by (for small steps): the effective step
    whatever the optimizer, where eta/||w||^2 (``effective_lr``) is SGD's. Under Adam the update's size does not
    depend on the gradient's scale (grad ~ 1/||w||), so the angle is ~eta/||w||: one factor of ||w|| removed, not
    both (arXiv:1706.05350's abstract: Adam "only partially" eliminates the dependence).

    Args: scope: the weights ``mean_effective_step`` averages over, as in ``effective_lr``: "all" (every parameter
    of dimension >= 2) or "normalized" (weights followed by a norm; needs the fixed batch).
    """

    def __init__(self, model, optimizer=None, batch=None, scope: str = "all"):
        super().__init__(model, optimizer, batch)
        self.names = probed_weights(model, batch, scope, "effective_step")
        self._before: dict[str, torch.Tensor] | None = None

    def before_step(self, step):
        self._before = {name: p.detach().clone() for name, p in named_params(self.model)}

    def after_step(self, step):
        rel, d2, w2 = {}, 0.0, 0.0
        for name, p in named_params(self.model):
            w_prev = self._before[name]
            # ||w_t - w_{t-1}|| / ||w_{t-1}||
            delta, size = _norm(p.detach() - w_prev), _norm(w_prev)
            rel[name] = delta / size if size > 0 else None
            d2, w2 = d2 + delta * delta, w2 + size * size
        self._before = None
        self._add_step(rel[name] for name in self.names)
        return {"relative": rel, "total": math.sqrt(d2 / w2) if w2 > 0 else None}

    def final_metrics(self):
        """``mean_effective_step``: ||w_t - w_{t-1}|| / ||w_{t-1}|| averaged over the scope's weights, then over
        probe steps."""
        return {"mean_effective_step": self._mean()}


def normalized_weights(model: nn.Module, forward, x) -> list[str]:
    """Names of conv/linear modules whose output reaches a norm module through homogeneous modules only.

    One traced forward (the caller provides no_grad / eval mode): each module's output tensor is mapped to the
    weight module it descends from; outputs are kept alive during the pass so that ``id``s are not reused.
    """
    source: dict[int, str] = {}
    alive, found, handles = [], set(), []

    def hook(name):
        def fn(module, inputs, output):
            src = source.get(id(inputs[0])) if inputs and isinstance(inputs[0], torch.Tensor) else None
            if isinstance(module, WEIGHT_TYPES):
                source[id(output)] = name
            elif isinstance(module, NORM_TYPES) and src is not None:
                found.add(src)
            elif isinstance(module, HOMOGENEOUS_TYPES) and src is not None and isinstance(output, torch.Tensor):
                source[id(output)] = src
            alive.append(output)
        return fn

    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_TYPES + NORM_TYPES + HOMOGENEOUS_TYPES):
            handles.append(module.register_forward_hook(hook(name)))
    try:
        forward(x)
    finally:
        for h in handles:
            h.remove()
    return [name for name, _ in model.named_modules() if name in found]


def probed_weights(model: nn.Module, batch, scope: str, probe: str) -> list[str]:
    """Parameter names a weight probe reports on: ``scope`` "all" (every parameter of dimension >= 2) or
    "normalized" (the weights of conv/linear modules followed by a norm, found by tracing ``batch`` once)."""
    if scope not in ("normalized", "all"):
        raise ValueError(f"{probe} scope must be 'normalized' or 'all', got {scope!r}")
    params = dict(named_params(model))
    if scope == "all":
        return [n for n, p in params.items() if p.dim() >= 2]
    if batch is None:
        raise ValueError(f"{probe} scope='normalized' needs a fixed batch to find the normalized weights")
    with frozen_forward(model):
        modules = normalized_weights(model, batch.forward, batch.x)
    return [f"{m}.weight" for m in modules if f"{m}.weight" in params]


@PROBES.register("effective_lr")
class EffectiveLR(_MeanOverProbeSteps):
    """eta / ||w_{t-1}||^2 per weight (arXiv:1706.05350 §3), with eta the lr of w's param group for step t.

    Args: scope: "normalized" (weights followed by a norm, found by tracing the fixed batch once) or "all" (every
    parameter of dimension >= 2).
    """

    def __init__(self, model, optimizer=None, batch=None, scope: str = "normalized"):
        super().__init__(model, optimizer, batch)
        if optimizer is None:
            raise ValueError("effective_lr needs the optimizer (its learning rates)")
        self.names = probed_weights(model, batch, scope, "effective_lr")
        self._lr_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        # the lr the step applies: an optimizer that rescales its scheduled lr (sgd_l2_as_lr) says so
        self._applied_lr = getattr(optimizer, "applied_lr", lambda group: group["lr"])
        self._values: dict[str, float] | None = None

    def before_step(self, step):
        params = dict(named_params(self.model))
        values = {}
        for name in self.names:
            p = params[name]
            group = self._lr_of.get(id(p))
            # eta_eff = eta / ||w||^2
            values[name] = self._applied_lr(group) / _norm(p) ** 2 if group is not None and _norm(p) > 0 else None
        self._values = values

    def after_step(self, step):
        values, self._values = self._values, None
        self._add_step((values or {}).values())
        return {"effective_lr": values}

    def final_metrics(self):
        """``mean_effective_lr``: eta / ||w||^2 averaged over the traced weights, then over probe steps (runs with
        the same lr schedule compare like for like; the schedule's own decay is in every run alike)."""
        return {"mean_effective_lr": self._mean()}
