"""SPAM: "SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM Training", Huang, Zhu, Jin, Liu, Wang and Liu,
arXiv:2501.06842, Algorithm 1 (dense momentum).

Adam plus three changes. With gradient g_t at step t = 1, 2, ... (per parameter), lr eta, decay lambda:

    if t mod dT == 0:  m_{t-1}, v_{t-1} <- 0                              momentum reset, every dT steps
    spikes = g_t^2 > theta v_{t-1}                                         spike-aware clipping, only when
    g_t[spikes] <- sign(g_t[spikes]) sqrt(theta v_{t-1}[spikes])           (t mod dT) >= K (v is refilled first)
    m_t = beta1 m_{t-1} + (1 - beta1) g_t
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    w_t = 1 - 0.99 (1 + cos(pi r / (N + 1))) / 2  if t >= dT and r < N,  else 1;   r = t mod dT
                                                                           cosine warm-up after each reset
    theta_t = theta_{t-1} - eta w_t (sqrt(1 - beta2^t) / (1 - beta1^t)) m_t / (sqrt(v_t) + eps)
    theta_t <- theta_t - eta lambda theta_t                                decoupled decay (official code)

Symbols: eta = ``lr``, (beta1, beta2) = ``betas``, theta = ``threshold`` (0 disables clipping), dT =
``reset_interval``, N = ``warmup_steps``, K = ``clip_delay``, lambda = ``weight_decay``, eps = ``eps``.
Reference: TianjinYellow/SPAM-Optimizer ``galore_torch/SPAM.py`` (official; the schedule above is its
``total_step``/``current_step`` bookkeeping: reset when (t mod dT) == 0, ``CosineDecay(0.99, N)`` evaluated in
closed form at r, clipping from ``grad_accu_steps`` = K steps after each reset, the bias correction's t never
reset). Tests assert_close against ``pytorch_optimizer.SPAM`` (3.8.2) where it agrees with the official code.
Deviations: (1) eps sits where the official code (and torch Adam) puts it, outside the bias correction; the
paper writes m_hat / (sqrt(v_hat) + eps). (2) The first dT steps have no warm-up (w = 1), as in the official
code, where the training script's own lr warm-up covers them. (3) Sparse momentum (``density`` < 1, random masks
resampled at each reset) is not implemented. (4) ``p.grad`` is left unclipped (the official code clips it in
place); the clipped gradient only enters m and v.
Known reference quirks (not copied): pytorch_optimizer 3.8.2's clipping ``grad[mask].sign_().mul_(...)`` writes
into a copy, so it never clips; its warm-up is one step ahead of the official one (w at r + 1); it skips weight
decay on 2-d parameters (decays a masked copy).
"""
from __future__ import annotations

import math

import torch

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer

_DEATH_RATE = 0.99  # official ``CosineDecay(0.99, N)``: the update starts at 1% after a reset


def warmup_scale(step: int, reset_interval: int, warmup_steps: int) -> float:
    """w_t, SPAM (arXiv:2501.06842) Algorithm 1's CosineWarmup(N, t mod dT) after each momentum reset.

    w_t = 1 - 0.99 (1 + cos(pi r / (N + 1))) / 2 for r = t mod dT < N once a reset has happened (t >= dT); else 1.
    """
    r = step % reset_interval
    if step < reset_interval or r >= warmup_steps:
        return 1.0
    return 1.0 - _DEATH_RATE * (1 + math.cos(math.pi * r / (warmup_steps + 1))) / 2


def clip_spikes(grad: torch.Tensor, exp_avg_sq: torch.Tensor, threshold: float) -> torch.Tensor:
    """Spike-aware clipping, SPAM (arXiv:2501.06842) Algorithm 1; returns a new tensor.

    spikes = g^2 > theta v;  g[spikes] <- sign(g[spikes]) sqrt(theta v[spikes])
    """
    bound = exp_avg_sq.mul(threshold).sqrt_()  # sqrt(theta v)
    return torch.where(grad.square() > threshold * exp_avg_sq, grad.sign() * bound, grad)


@register_optimizer("spam", paper="arXiv:2501.06842")
class SPAM(torch.optim.Optimizer):
    """Args:
        lr (float): eta.
        betas (tuple[float, float]): (beta1, beta2).
        eps (float): added to sqrt(v) (official default 1e-6).
        weight_decay (float): lambda, decoupled, applied after the update with the un-warmed lr (official code).
        threshold (float): theta of the spike test g^2 > theta v (paper: 5000); 0 disables clipping.
        reset_interval (int): dT, steps between momentum resets (paper: 500).
        warmup_steps (int): N, steps of the cosine warm-up after each reset (official scripts: 150).
        clip_delay (int): K, steps after each reset (and at the start) without clipping while v refills
            (official ``grad_accu_steps``: 20).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, threshold: float = 5000.0, reset_interval: int = 500,
                 warmup_steps: int = 150, clip_delay: int = 20):
        check_hparams(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0 (0: no clipping), got {threshold}")
        # clip_delay >= 2: v must hold a squared gradient (at r = 0 it was just reset, at t = 1 it is still 0),
        # or every entry would be clipped to 0
        for name, value, low in (("reset_interval", reset_interval, 1), ("warmup_steps", warmup_steps, 0),
                                 ("clip_delay", clip_delay, 2)):
            if not (isinstance(value, int) and value >= low):
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      threshold=threshold, reset_interval=reset_interval, warmup_steps=warmup_steps,
                                      clip_delay=clip_delay))

    @torch.no_grad()
    def step(self, closure=None):
        """One SPAM step (arXiv:2501.06842, Algorithm 1): reset, clip, Adam moments, warmed-up update, decay."""
        loss = None if closure is None else torch.enable_grad()(closure)()
        for g in self.param_groups:
            (beta1, beta2), lr, theta, interval = g["betas"], g["lr"], g["threshold"], g["reset_interval"]
            for p in (p for p in g["params"] if p.grad is not None):
                if p.grad.is_sparse:
                    raise RuntimeError("SPAM does not support sparse gradients")
                grad, state = p.grad, self.state[p]
                if not state:
                    state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                state["step"] += 1
                t = state["step"]
                m, v = state["exp_avg"], state["exp_avg_sq"]
                # if t mod dT == 0: m, v <- 0
                if t % interval == 0:
                    m.zero_()
                    v.zero_()
                # g_t[spikes] <- sign(g_t) sqrt(theta v_{t-1}), once (t mod dT) >= K
                if theta > 0 and t % interval >= g["clip_delay"]:
                    grad = clip_spikes(grad, v, theta)
                # m_t = beta1 m_{t-1} + (1 - beta1) g_t
                m.mul_(beta1).add_(grad, alpha=1 - beta1)
                # v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
                v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                # theta_t = theta_{t-1} - eta w_t sqrt(1 - beta2^t) / (1 - beta1^t) m_t / (sqrt(v_t) + eps)
                w = warmup_scale(t, interval, g["warmup_steps"])
                step_size = lr * w * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
                p.addcdiv_(m, v.sqrt().add_(g["eps"]), value=-step_size)
                # theta_t <- theta_t - eta lambda theta_t
                if g["weight_decay"]:
                    p.mul_(1 - lr * g["weight_decay"])
        return loss
