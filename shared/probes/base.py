"""The probe interface: a diagnostic that reads the model, its gradients or the optimizer at probe steps.

A probe never changes training. The trainer (shared/train/loop.py, through ``ProbeSet``) calls, around optimizer
step t (1-based, the ``step`` of the train record logged after it):
  on_gradients(t, due)  after backward, gradients unscaled, before clipping; at every step when ``every_step``
                        (e.g. grad_spikes' EMA), else only when t is a probe step (``due``)
  before_step(t)        probe steps only, before ``optimizer.step()`` (weights w_{t-1}, the lr used by step t)
  after_step(t)         probe steps only, after ``optimizer.step()`` (weights w_t)
  on_fixed_batch(b)     probe steps only, ``needs_batch`` probes: a fixed held-out batch, model in eval mode,
                        no grad, RNG state restored afterwards
  final_metrics()       once, after training: scalars added to ``final.json``'s metrics
Each hook may return a dict of values; a probe's values of one step become one ``metrics.jsonl`` record
``{"kind": "probe", "probe": name, "step": t, **values}``. Per-layer values are mappings ``{name: value}``; a
mapping over anything else (thresholds, optimizer-state names) is listed in ``NON_LAYER_MAPPINGS``
(shared/results/probes.py, which must not import torch), so that results report each entry as a scalar.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from shared.registry import Registry

PROBES = Registry("probe")


@dataclass
class FixedBatch:
    """The batch that batch probes run on: ``forward(x) -> logits`` applies the run's precision and memory format,
    ``loss(logits, y) -> float`` is the mean cross-entropy (no label smoothing, no z-loss); ``train_batch(t) ->
    (x, y)``, when the trainer gives it, is the training batch of optimizer step t (1-based), as the run saw it."""

    x: Tensor
    y: Tensor
    forward: Callable[[Tensor], Tensor]
    loss: Callable[[Tensor, Tensor], float]
    train_batch: Callable[[int], tuple[Tensor, Tensor]] | None = None


class Probe:
    """Base class: every hook does nothing; a probe overrides the ones it needs (see the module docstring)."""

    every_step = False  # on_gradients at every step, not only at probe steps
    needs_batch = False  # on_fixed_batch needs a FixedBatch

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 batch: FixedBatch | None = None):
        self.model, self.optimizer, self.batch = model, optimizer, batch
        if self.needs_batch and batch is None:
            raise ValueError(f"probe {type(self).__name__} needs a fixed batch (batch=None given)")

    def check_every(self, every: int) -> None:
        """Raise if the probe cannot work when fired every ``every`` steps (called once by ``ProbeSet``)."""
        return None

    def on_gradients(self, step: int, due: bool) -> dict | None:
        return None

    def before_step(self, step: int) -> None:
        return None

    def after_step(self, step: int) -> dict | None:
        return None

    def on_fixed_batch(self, batch: FixedBatch) -> dict | None:
        return None

    def final_metrics(self) -> dict:
        """Scalars for ``final.json``'s metrics at the end of the run (so a claim can name them); none by default."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def named_params(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Parameters by name, each tensor once (a tied weight keeps its first name)."""
    return list(model.named_parameters())


def units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's blocks: ``blocks.i`` for a model with a ``blocks`` nn.ModuleList, else its top-level children."""
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList):
        return [(f"blocks.{i}", b) for i, b in enumerate(blocks)]
    return list(model.named_children())


def unit_of(param_name: str, model: nn.Module) -> str:
    """The unit (as in ``units``) a parameter belongs to: ``blocks.3`` for ``blocks.3.attn.c_attn.weight``."""
    parts = param_name.split(".")
    if parts[0] == "blocks" and isinstance(getattr(model, "blocks", None), nn.ModuleList) and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def first_tensor(output) -> Tensor | None:
    """A module's output tensor (the first one, for modules that return tuples)."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((o for o in output if isinstance(o, Tensor)), None)
    return None


@contextlib.contextmanager
def frozen_forward(model: nn.Module):
    """Eval mode (BN running stats, no dropout), no grad, and every RNG stream restored on exit, so that a probe's
    forward pass leaves the training run exactly as it found it; the train/eval mode is restored too."""
    was_training = model.training
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            yield
    finally:
        model.train(was_training)
