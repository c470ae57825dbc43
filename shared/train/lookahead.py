"""Lookahead-style EMA of weights with a warming decay, as airbench's ``LookaheadState`` (Jordan, arXiv:2404.00498;
KellerJordan/cifar10-airbench ``legacy/airbench94.py``), a trainer option (``train.lookahead``) for any model.

Every ``every`` steps, after optimizer step s of T (s counted from 1), with rho = ``decay`` and p = ``power``:

    alpha_s = rho^every (s / T)^p                 warming: ~0 early (the EMA follows the weights), rho^every at the end
    e      <- alpha_s e + (1 - alpha_s) theta     for every floating-point entry of the state dict (BN statistics too)
    theta  <- e                                   lookahead: the model continues from the average

After the last step the model is set to e once more (airbench's final ``update(decay=1.0)``), so the steps since
the last update are discarded, as in airbench. Integer buffers (BatchNorm's ``num_batches_tracked``) are untouched.
Deviations: none (airbench94: every=5, decay=0.95, power=3).
"""
from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    """``update(model, step)`` after each optimizer step, ``finish(model)`` after the last; checkpointable."""

    def __init__(self, model: nn.Module, total_steps: int, every: int, decay: float, power: float):
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"lookahead.every must be an int >= 1, got {every!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"lookahead.decay must lie in [0, 1], got {decay}")
        if not power >= 0:
            raise ValueError(f"lookahead.power must be >= 0, got {power}")
        self.total_steps, self.every, self.decay, self.power = int(total_steps), every, float(decay), float(power)
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def alpha(self, step: int) -> float:
        """alpha_s = rho^every (s / T)^p."""
        return self.decay ** self.every * (step / self.total_steps) ** self.power

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step % self.every:
            return
        alpha = self.alpha(step)
        state = model.state_dict()
        for k, e in self.ema.items():
            e.lerp_(state[k], 1 - alpha)  # e <- alpha e + (1 - alpha) theta
            state[k].copy_(e)  # theta <- e

    @torch.no_grad()
    def finish(self, model: nn.Module) -> None:
        state = model.state_dict()
        for k, e in self.ema.items():
            state[k].copy_(e)

    def state_dict(self) -> dict:
        return {"ema": self.ema}

    def load_state_dict(self, sd: dict) -> None:
        for k, e in self.ema.items():
            e.copy_(sd["ema"][k])
