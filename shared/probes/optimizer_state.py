"""Optimizer memory: bytes of the tensors an optimizer keeps in ``optimizer.state``, per trained parameter.

The memory cost of an optimizer beyond the weights and gradients, e.g. Adam keeps m and v (2 x 4 bytes per float32
parameter, "Adam: A Method for Stochastic Optimization", arXiv:1412.6980 Algorithm 1) plus one step scalar per
tensor; SGD with momentum 4 bytes; Adafactor and low-memory optimizers less. Counted: every tensor reachable in
``optimizer.state`` (through dicts, lists and tuples), by its ``nbytes``; not counted: state kept elsewhere
(e.g. the trainer's lookahead EMA). The per-parameter figure divides by the number of entries of the distinct
parameters in ``optimizer.param_groups`` (the trained ones).
"""
from __future__ import annotations

import torch

from shared.probes.base import PROBES, Probe


def _tensor_bytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def optimizer_params(optimizer: torch.optim.Optimizer) -> int:
    """Entries of the distinct parameters the optimizer trains."""
    seen = {id(p): p for group in optimizer.param_groups for p in group["params"]}
    return sum(p.numel() for p in seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of state tensors by state key (``exp_avg``, ``momentum_buffer``, ``step``...), summed over params."""
    by_key: dict[str, int] = {}
    for state in optimizer.state.values():
        for key, value in state.items():
            by_key[str(key)] = by_key.get(str(key), 0) + _tensor_bytes(value)
    return by_key


def state_bytes_per_param(optimizer: torch.optim.Optimizer) -> float:
    """sum of state tensor bytes / trained parameter entries (0 for a stateless optimizer such as plain SGD)."""
    n = optimizer_params(optimizer)
    return sum(optimizer_state_bytes(optimizer).values()) / n if n else 0.0


@PROBES.register("optimizer_state")
class OptimizerState(Probe):
    """``total_bytes``, ``bytes_per_param``, ``bytes_by_key`` and ``n_params`` of the optimizer's state."""

    def __init__(self, model, optimizer=None, batch=None):
        super().__init__(model, optimizer, batch)
        if optimizer is None:
            raise ValueError("optimizer_state needs the optimizer")

    def after_step(self, step):
        by_key, n = optimizer_state_bytes(self.optimizer), optimizer_params(self.optimizer)
        total = sum(by_key.values())
        return {"total_bytes": total, "bytes_per_param": total / n if n else 0.0, "bytes_by_key": by_key,
                "n_params": n}
