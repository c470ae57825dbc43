"""Gradient probes: per-layer gradient norms at probe steps, and gradient spikes.

grad_spikes: "SPAM: Spike-Aware Adam with Momentum Reset for Stable LLM Training", Huang et al., arXiv:2501.06842
(§3 gradient spikes; §4 spike-aware clipping). An entry g_i of the gradient is a spike when it is large against the
running second moment v_i of that entry:
  v_t = beta v_{t-1} + (1 - beta) g_t^2                       (Adam's second moment, beta = 0.999)
  r_t = |g_t| / sqrt(v_hat_{t-1}),  v_hat_{t-1} = v_{t-1} / (1 - beta^{t-1})
SPAM clips entries with g^2 > theta v (theta = 5000, i.e. r > sqrt(5000) ~ 70.7). The probe keeps its own v (so it
works with any optimizer; one float32 copy of the parameters, only when on), updates it at every step, and logs at
probe steps the max of r and the fraction of (entry, step) pairs with r above each threshold since the last record.
Deviations: SPAM's optimizer compares against the uncorrected v (reference ``grad.pow(2) > threshold *
exp_avg_sq``), which makes every entry look like a spike in the first steps; the probe divides by 1 - beta^{t-1}
(``bias_correction=False`` gives SPAM's test). An entry is first tested at its second step, and entries with
v = 0 (no nonzero gradient yet) are not tested.
"""
from __future__ import annotations

import math

import torch

from shared.probes.base import PROBES, Probe, named_params, unit_of


@PROBES.register("grad_norms")
class GradNorms(Probe):
    """||g|| per parameter tensor (``norm``), per block (``block_norm``: blocks.i, or top-level child) and in all
    (``total``), from the training step's gradients, unscaled and before clipping."""

    def on_gradients(self, step, due):
        if not due:
            return None
        norms = {name: torch.linalg.vector_norm(p.grad.detach().float()).item()
                 for name, p in named_params(self.model) if p.grad is not None}
        blocks: dict[str, float] = {}
        for name, v in norms.items():
            unit = unit_of(name, self.model)
            blocks[unit] = blocks.get(unit, 0.0) + v * v  # ||g_block||^2 = sum of its tensors' ||g||^2
        return {"norm": norms, "block_norm": {u: math.sqrt(s) for u, s in blocks.items()},
                "total": math.sqrt(sum(v * v for v in norms.values()))}


@PROBES.register("grad_spikes")
class GradSpikes(Probe):
    """Max of r = |g| / sqrt(v_hat) and fraction of entries with r > each threshold (arXiv:2501.06842).

    Args: beta: EMA factor of v; thresholds: values of r counted as spikes; bias_correction: divide v by
    1 - beta^{t-1} (see the module docstring).
    """

    every_step = True

    def __init__(self, model, optimizer=None, batch=None, beta: float = 0.999,
                 thresholds: tuple[float, ...] = (10.0, 50.0), bias_correction: bool = True):
        super().__init__(model, optimizer, batch)
        if not 0 < beta < 1:
            raise ValueError(f"grad_spikes beta must lie in (0, 1), got {beta}")
        if not thresholds or any(t <= 0 for t in thresholds):
            raise ValueError(f"grad_spikes thresholds must be positive numbers, got {thresholds}")
        self.beta, self.thresholds, self.bias_correction = beta, tuple(float(t) for t in thresholds), bias_correction
        self.v: dict[str, torch.Tensor] = {}  # v_{t-1} per parameter tensor
        self.t: dict[str, int] = {}  # steps folded into v, per tensor (a parameter may get gradients late)
        self._reset()

    def _reset(self):
        self.max_ratio, self.tested, self.steps = None, 0, 0
        self.above = [0] * len(self.thresholds)

    def on_gradients(self, step, due):
        max_r, tested, above = [], [], [[] for _ in self.thresholds]
        for name, p in named_params(self.model):
            if p.grad is None:
                continue
            g = p.grad.detach().float()
            if name in self.v:
                v = self.v[name]
                # v_hat_{t-1} = v_{t-1} / (1 - beta^{t-1})
                v_hat = v / (1 - self.beta ** self.t[name]) if self.bias_correction else v
                ok = v_hat > 0
                # r_t = |g_t| / sqrt(v_hat_{t-1})
                r = torch.where(ok, g.abs() / v_hat.clamp_min(torch.finfo(v.dtype).tiny).sqrt(), 0.0)
                max_r.append(r.max().double())
                tested.append(ok.sum().double())
                for i, th in enumerate(self.thresholds):
                    above[i].append((r > th).sum().double())
                # v_t = beta v_{t-1} + (1 - beta) g_t^2
                v.mul_(self.beta).addcmul_(g, g, value=1 - self.beta)
            else:
                self.v[name] = (1 - self.beta) * g * g
                self.t[name] = 0
            self.t[name] += 1
        if max_r:  # one device sync per step
            m, n, *counts = torch.stack([torch.stack(max_r).max(), torch.stack(tested).sum(),
                                         *(torch.stack(c).sum() for c in above)]).tolist()
            self.max_ratio = m if self.max_ratio is None else max(self.max_ratio, m)
            self.tested += int(n)
            self.above = [a + int(c) for a, c in zip(self.above, counts)]
        self.steps += 1
        if not due:
            return None
        keys = [f"{th:g}" for th in self.thresholds]
        out = {"max_ratio": self.max_ratio, "steps": self.steps,
               "count_above": dict(zip(keys, self.above)),
               "frac_above": {k: (n / self.tested if self.tested else None) for k, n in zip(keys, self.above)}}
        self._reset()
        return out

    def state_dict(self):
        return {"v": {k: v.clone() for k, v in self.v.items()}, "t": dict(self.t), "max_ratio": self.max_ratio,
                "tested": self.tested, "steps": self.steps, "above": list(self.above)}

    def load_state_dict(self, state):
        params = dict(named_params(self.model))
        self.v = {k: v.to(params[k].device) for k, v in state["v"].items()}
        self.t = dict(state["t"])
        self.max_ratio, self.tested, self.steps = state["max_ratio"], state["tested"], state["steps"]
        self.above = list(state["above"])
