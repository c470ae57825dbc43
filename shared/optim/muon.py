"""Muon for hidden matrices, AdamW for the rest: "Muon: An optimizer for hidden layers in neural networks"
(Keller Jordan, 2024, https://kellerjordan.github.io/posts/muon/) and "Muon is Scalable for LLM Training"
(Moonlight, Liu et al., arXiv:2502.16982).

Muon (write-up, section "Definition"; symbols: mu = ``momentum``, eta = ``lr``, lambda = ``weight_decay``):

    B_t = mu B_{t-1} + (1 - mu) G_t                  momentum as an EMA (Keller's muon.py ``lerp_``)
    U_t = (1 - mu) G_t + mu B_t   (nesterov)  or  B_t
    O_t = NS_5(U_t)                                  quintic Newton-Schulz, (a, b, c) = (3.4445, -4.7750, 2.0315):
          X_0 = U_t / ||U_t||_F;  X_{k+1} = a X_k + (b A_k + c A_k^2) X_k,  A_k = X_k X_k^T;  O_t ~ U V^T
    W_t = W_{t-1} (1 - eta lambda) - eta s(A, B) O_t

with s(A, B) = sqrt(max(1, A / B)) ("original", Keller) or 0.2 sqrt(max(A, B)) ("match_rms_adamw", Moonlight
eq. 4: the update then has RMS ~0.2 like AdamW's, so ``lr`` and ``weight_decay`` tuned for AdamW carry over); A x B
is the (flattened) matrix shape. Conv kernels are flattened to out x (in kh kw) (write-up, "Muon for convnets").

The write-up (section "Empirical considerations") and Moonlight (section 2.2) train embeddings, the output head and
every scalar or vector parameter with AdamW. ``route_param_groups`` does this for any module with no model names:
parameters of ``nn.Embedding`` modules and of the model's last ``nn.Linear`` (module order) go to AdamW, every
other parameter with ndim >= 2 to the matrix rule, the rest (ndim < 2) to AdamW. ``create_optimizer`` calls it
when given a module (the optimizer class's ``route_param_groups`` hook); given plain tensors the split is by ndim
only, and a group may carry ``"orthogonalize": True/False`` to choose itself. An AdamW group's lr is
``adamw_lr`` times its ``lr_mult`` (``adamw_lr=None``: the group's lr, Moonlight's single lr).

Reference: ``torch.optim.Muon`` (torch/optim/_muon.py, whose Newton-Schulz and lr adjustment are reused here);
tests/test_optim_orthogonal.py asserts_close against it on matrix params, and the AdamW side against
``torch.optim.AdamW``. Deviations: conv kernels are accepted (flattened), which ``torch.optim.Muon`` rejects.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn
from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS, _adjust_lr, _zeropower_via_newtonschulz

from shared.optim.checks import check_hparams, check_ns_steps
from shared.optim.registry import register_optimizer

ORTHO = "orthogonalize"  # group key: True -> the matrix rule (Muon, AdaGO, SWAN), False -> AdamW
ADJUST_LR_FNS = ("original", "match_rms_adamw", "none")


def adamw_param_ids(model: nn.Module) -> set[int]:
    """ids of the parameters Muon's recipe leaves to AdamW by module: embeddings and the last ``nn.Linear``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    modules = [m for m in model.modules() if isinstance(m, nn.Embedding)] + linears[-1:]
    return {id(p) for m in modules for p in m.parameters(recurse=False)}


def _split(group: dict[str, Any], is_matrix) -> list[dict[str, Any]]:
    """One group -> its matrix part and its AdamW part (other keys copied, empty parts dropped)."""
    parts = []
    for flag in (True, False):
        ps = [p for p in group["params"] if bool(is_matrix(p)) == flag]
        if ps:
            parts.append({**group, "params": ps, ORTHO: flag})
    return parts


def route_param_groups(model: nn.Module, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split ``param_groups(model, ...)`` groups for a hybrid optimizer (rule in the module docstring)."""
    to_adamw = adamw_param_ids(model)
    return [part for g in groups for part in _split(g, lambda p: p.ndim >= 2 and id(p) not in to_adamw)]


def _as_groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    params = list(params)
    if not params:
        raise ValueError("optimizer got an empty parameter list")
    groups = params if isinstance(params[0], dict) else [{"params": params}]
    out = []
    for g in groups:
        g = {**g, "params": list(g["params"])}
        out += [g] if ORTHO in g else _split(g, lambda p: p.ndim >= 2)  # no module: by ndim only
    return out


def check_adamw_args(adamw_lr, adamw_betas, adamw_eps) -> None:
    if adamw_lr is not None and not adamw_lr > 0:
        raise ValueError(f"adamw_lr must be > 0 or None, got {adamw_lr}")
    if not all(0.0 <= b < 1.0 for b in adamw_betas):
        raise ValueError(f"adamw_betas must lie in [0, 1), got {adamw_betas}")
    if not adamw_eps > 0:
        raise ValueError(f"adamw_eps must be > 0, got {adamw_eps}")


class HybridAdamW(torch.optim.Optimizer):
    """Matrix rule (hook ``matrix_update``) on groups with ``"orthogonalize": True``, AdamW on the others.

    Subclasses validate their own arguments, then call ``__init__`` with their defaults; all state is in
    ``self.state`` and ``param_groups`` (``state_dict`` round-trips).
    """

    route_param_groups = staticmethod(route_param_groups)  # create_optimizer's hook when given a module

    def __init__(self, params, defaults: dict[str, Any], adamw_lr: float | None, adamw_betas: tuple[float, float],
                 adamw_eps: float):
        check_adamw_args(adamw_lr, adamw_betas, adamw_eps)
        groups = _as_groups(params)
        for g in groups:
            if not g[ORTHO]:
                lr = g.get("adamw_lr", adamw_lr)
                if lr is not None:  # the AdamW step size the scheduler scales: adamw_lr x lr_mult
                    g["lr"] = lr * g.get("lr_mult", 1.0)
        super().__init__(groups, {**defaults, "adamw_betas": tuple(adamw_betas), "adamw_eps": adamw_eps})

    def matrix_update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any], state: dict) -> None:
        raise NotImplementedError

    def adamw_update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any], state: dict) -> None:
        """AdamW, "Decoupled Weight Decay Regularization", arXiv:1711.05101, Algorithm 2 (as torch.optim.AdamW)."""
        (b1, b2), lr, eps = group["adamw_betas"], group["lr"], group["adamw_eps"]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        p.mul_(1 - lr * group["weight_decay"])  # theta <- theta (1 - eta lambda)
        m.lerp_(grad, 1 - b1)  # m_t = b1 m_{t-1} + (1 - b1) g_t
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)  # v_t = b2 v_{t-1} + (1 - b2) g_t^2
        # theta <- theta - eta m_t / (1 - b1^t) / (sqrt(v_t / (1 - b2^t)) + eps)
        denom = (v.sqrt() / math.sqrt(1 - b2**t)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / (1 - b1**t))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            update = self.matrix_update if group[ORTHO] else self.adamw_update
            for p in (p for p in group["params"] if p.grad is not None):
                if p.grad.is_sparse:
                    raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
                update(p, p.grad, group, self.state[p])
        return loss


def check_matrix_args(lr, momentum, weight_decay, ns_steps, adjust_lr_fn) -> None:
    check_hparams(lr=lr, momentum=momentum, weight_decay=weight_decay)
    check_ns_steps(ns_steps)
    if adjust_lr_fn not in ADJUST_LR_FNS:
        raise ValueError(f"adjust_lr_fn must be one of {ADJUST_LR_FNS}, got {adjust_lr_fn!r}")


def adjust_lr(lr: float, adjust_lr_fn: str, shape: torch.Size) -> float:
    """eta s(A, B): "original" sqrt(max(1, A/B)) (Keller), "match_rms_adamw" 0.2 sqrt(max(A, B))
    (arXiv:2502.16982 eq. 4), "none" 1 -- torch.optim.Muon's ``_adjust_lr`` for the first two."""
    return lr if adjust_lr_fn == "none" else _adjust_lr(lr, adjust_lr_fn, shape)


def orthogonalize(update: torch.Tensor, group: dict[str, Any]) -> torch.Tensor:
    """O = NS_5(U) on U flattened to 2-D (out x in kh kw), torch.optim.Muon's Newton-Schulz (bfloat16)."""
    return _zeropower_via_newtonschulz(update.reshape(len(update), -1), group["ns_coefficients"],
                                       group["ns_steps"], group["ns_eps"])


@register_optimizer("muon_adamw", paper="kellerjordan.github.io/posts/muon; arXiv:2502.16982")
class MuonAdamW(HybridAdamW):
    """Args:
        lr (float): Muon's eta for matrices (Keller: 0.02 with "original"; Moonlight: AdamW's lr with
            "match_rms_adamw").
        momentum (float): mu in [0, 1) (0.95).
        nesterov (bool): Nesterov momentum (True in the write-up).
        weight_decay (float): decoupled lambda, theta <- theta (1 - eta lambda), for both rules.
        ns_steps (int): Newton-Schulz iterations (5).
        adjust_lr_fn (str): "original", "match_rms_adamw" or "none" (see ``adjust_lr``).
        adamw_lr (float | None): AdamW's lr for embeddings, head, 1-d params; None: ``lr``.
        adamw_betas, adamw_eps: AdamW's betas and eps (Keller's recipe: (0.9, 0.95), 1e-10).
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, adjust_lr_fn: str = "original",
                 adamw_lr: float | None = None, adamw_betas: tuple[float, float] = (0.9, 0.95),
                 adamw_eps: float = 1e-10):
        check_matrix_args(lr, momentum, weight_decay, ns_steps, adjust_lr_fn)
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                                      ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn, ns_eps=EPS,
                                      ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C)),
                         adamw_lr, adamw_betas, adamw_eps)

    def step_size(self, grad: torch.Tensor, group: dict[str, Any], state: dict, lr: float) -> float:
        """Muon's step is the (shape-adjusted) lr; AdaGO overrides this hook."""
        return lr

    def decay_rate(self, group: dict[str, Any], alpha: float) -> float:
        """The factor eta in W <- W (1 - eta lambda): Muon's lr; AdaGO may tie it to its own step (``adago.py``)."""
        return group["lr"]

    def matrix_update(self, p, grad, group, state):
        mu = group["momentum"]
        buf = state.setdefault("momentum_buffer", torch.zeros_like(p))
        buf.lerp_(grad, 1 - mu)  # B_t = mu B_{t-1} + (1 - mu) G_t
        u = grad.lerp(buf, mu) if group["nesterov"] else buf  # U_t = (1 - mu) G_t + mu B_t
        o = orthogonalize(u, group)  # O_t = NS_5(U_t)
        alpha = self.step_size(grad, group, state, adjust_lr(group["lr"], group["adjust_lr_fn"], o.shape))
        p.mul_(1 - self.decay_rate(group, alpha) * group["weight_decay"])  # W <- W (1 - eta lambda)
        p.add_(o.reshape(p.shape), alpha=-alpha)  # W <- W - eta s(A, B) O_t
