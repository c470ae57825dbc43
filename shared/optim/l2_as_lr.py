"""SGD whose L2 on scale-invariant weights is replaced by the learning-rate schedule it is equivalent to.

The matched-effective-learning-rate control of "L2 Regularization versus Batch and Weight Normalization" (van
Laarhoven, arXiv:1706.05350, §3-4): with normalization, L2 changes only the scale of the weights and so the
effective learning rate eta/||w||^2. If that is all it does, training WITHOUT weight decay on those weights, under the
learning rate that gives the same effective learning rate, must do what training with it does. This optimizer makes
that exact, for SGD with momentum and any schedule, in the way Li & Arora prove for a constant rate ("An
Exponential Learning Rate Schedule for Deep Learning", arXiv:1910.07454, Thm 1.1: weight decay + momentum = an
exponentially growing rate).

torch's SGD with momentum gamma, L2 lambda and scheduled lr eta_t, on a weight w:

    b_{t+1} = gamma b_t + grad L(w_t) + lambda w_t,      w_{t+1} = w_t - eta_t b_{t+1}

For w scale invariant (L(a w) = L(w) for a > 0, e.g. a conv followed by BatchNorm, so grad L(a w) = grad L(w) / a),
run instead, with no L2 on w:

    b~_{t+1} = gamma b~_t + grad L(w~_t),                 w~_{t+1} = w~_t - eta~_t b~_{t+1}
    eta~_t = eta_t / (c_t c_{t+1})

where c_t is what L2 alone does to a scalar started at 1 (the same recursion with the gradient left out):

    beta_{t+1} = gamma beta_t + lambda c_t,               c_{t+1} = c_t - eta_t beta_{t+1},   c_0 = 1, beta_0 = 0

Then w_t = c_t w~_t and b_{t+1} = beta_{t+1} w~_t + b~_{t+1} / c_t at every step (induction: the first identity is
the update of the second; the second holds for t = 0 and carries over because c_t - c_{t+1} = eta_t beta_{t+1}), so
both runs compute the same function at every step; in exact arithmetic they are one training run. The run without
L2 has effective learning rate eta~_t / ||w~_t||^2 = (c_t / c_{t+1}) eta_t / ||w_t||^2, the L2 run's up to a factor
1 + O(eta_t lambda), while its weights keep growing (||w~_t|| = ||w_t|| / c_t). Weights that are not scale invariant
(a classifier, biases) keep their plain L2, so the two runs differ only in how they treat the normalized weights.

Which weights are scale invariant: ``route_param_groups`` traces the model with ``torch.fx`` and takes each
bias-free ``Conv``/``Linear`` whose every output path reaches a normalization (BatchNorm, InstanceNorm, GroupNorm,
LayerNorm, RMSNorm) through positively homogeneous modules only (ReLU, pooling, dropout, identity, flatten),
those of ``shared/probes/weights.py``. Those weights of the ``"decay"`` group move to a ``"scale_invariant"``
group. A model ``torch.fx`` cannot trace is refused with the reason. Scale invariance holds for the training loss
(batch statistics) up to BatchNorm's eps, added to the variance, which breaks it by a relative eps / var (1e-5
here; the test checks exactness with eps near 0); evaluation with running statistics is equivalent up to how fast
those statistics follow the changing scale (BatchNorm momentum 0.1 against a scale change of about eta lambda per
step).
Reference: none maintained; tests/test_optim_l2_as_lr.py checks both runs' outputs agree in float64 over many steps,
with momentum and a cosine schedule. Deviations: Nesterov momentum and dampening are not supported (refused).
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from shared.optim.registry import register_optimizer
from shared.probes.weights import HOMOGENEOUS_TYPES, NORM_TYPES, WEIGHT_TYPES

# the module types of the effective_lr probe, plus the functional forms fx records for the homogeneous ones
HOMOGENEOUS_FUNCTIONS = (F.relu, torch.relu, torch.flatten, operator.getitem)


def scale_invariant_weights(model: nn.Module) -> list[str]:
    """Names of the ``weight`` parameters the training loss is invariant to rescaling (see the module docstring)."""
    try:
        graph = fx.symbolic_trace(model)
    except Exception as err:  # fx raises several types (TraceError, TypeError, ...) for untraceable code
        raise ValueError(f"sgd_l2_as_lr finds the scale-invariant weights by tracing the model with torch.fx, which "
                         f"failed for {type(model).__name__}: {err}") from err
    modules = dict(graph.named_modules())

    def only_into_norms(node: fx.Node) -> bool:
        if not node.users:
            return False
        for user in node.users:
            target = modules.get(user.target) if user.op == "call_module" else None
            if isinstance(target, NORM_TYPES):
                continue
            homogeneous = isinstance(target, HOMOGENEOUS_TYPES) or (
                user.op == "call_function" and user.target in HOMOGENEOUS_FUNCTIONS)
            if not (homogeneous and only_into_norms(user)):
                return False
        return True

    names = []
    for node in graph.graph.nodes:
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, WEIGHT_TYPES) and module.bias is None and only_into_norms(node):
            names.append(f"{node.target}.weight")
    return names


@register_optimizer("sgd_l2_as_lr", paper="arXiv:1706.05350")
class SGDL2AsLR(torch.optim.SGD):
    """torch ``SGD`` (momentum, L2 ``weight_decay``), except in groups with ``"scale_invariant": True``: there no L2
    and the lr eta_t / (c_t c_{t+1}) instead (module docstring). Built from a model, the scale-invariant weights of
    the ``"decay"`` group get such a group automatically (``route_param_groups``).

    Args: as ``torch.optim.SGD``; ``weight_decay`` is lambda, applied as L2 to ordinary groups and turned into the
    lr schedule in scale-invariant ones. ``nesterov`` and ``dampening`` must stay off.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False):
        if nesterov or dampening:
            raise ValueError("sgd_l2_as_lr: the equivalence is derived for heavy-ball momentum; nesterov and "
                             "dampening are not supported")
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group.get("scale_invariant"):
            group.setdefault("l2", group["weight_decay"])  # lambda, now carried by the lr schedule
            group["weight_decay"] = 0.0
            group.setdefault("l2_scale", [1.0, 0.0])  # [c_t, beta_t]: saved with the group in state_dict

    @staticmethod
    def route_param_groups(model: nn.Module, groups: list[dict]) -> list[dict]:
        """Move the scale-invariant weights of the ``"decay"`` group into a ``"scale_invariant"`` group."""
        names = set(scale_invariant_weights(model))  # one fx trace
        invariant = {id(p) for n, p in model.named_parameters() if n in names}
        out = []
        for group in groups:
            if group.get("name") == "decay" and group["weight_decay"]:
                inv = [p for p in group["params"] if id(p) in invariant]
                rest = [p for p in group["params"] if id(p) not in invariant]
                if inv:
                    out.append({**group, "name": "scale_invariant", "params": inv, "scale_invariant": True})
                if rest:
                    out.append({**group, "params": rest})
            else:
                out.append(group)
        return out

    def _next_scale(self, group: dict) -> tuple[float, float, float]:
        """(c_t, c_{t+1}, beta_{t+1}) for this step's scheduled lr eta_t = group["lr"]."""
        c, beta = group["l2_scale"]
        beta_next = group["momentum"] * beta + group["l2"] * c  # beta_{t+1} = gamma beta_t + lambda c_t
        c_next = c - group["lr"] * beta_next  # c_{t+1} = c_t - eta_t beta_{t+1}
        if not c_next > 0:
            raise ValueError(f"sgd_l2_as_lr: lr {group['lr']} with weight decay {group['l2']} shrinks the weights' "
                             f"scale to {c_next} <= 0; L2 this strong has no learning-rate equivalent")
        return c, c_next, beta_next

    def applied_lr(self, group: dict) -> float:
        """The lr this step will apply to the group: eta~_t = eta_t / (c_t c_{t+1}) if scale invariant, else eta_t
        (read by the effective_lr probe before the step)."""
        if not group.get("scale_invariant"):
            return group["lr"]
        c, c_next, _ = self._next_scale(group)
        return group["lr"] / (c * c_next)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        scheduled = []
        for group in self.param_groups:
            scheduled.append(group["lr"])
            if group.get("scale_invariant"):
                c, c_next, beta_next = self._next_scale(group)
                group["lr"] = group["lr"] / (c * c_next)  # eta~_t = eta_t / (c_t c_{t+1})
                group["l2_scale"] = [c_next, beta_next]
        try:
            super().step()  # plain SGD with momentum; weight_decay is 0 in the scale-invariant groups
        finally:
            for group, lr in zip(self.param_groups, scheduled):
                group["lr"] = lr  # the scheduler's value back: schedulers scale what they set
        return loss
