"""Learning-rate schedules by name, stepped once per optimizer step.

Every schedule is one ``torch.optim.lr_scheduler.LambdaLR`` whose multiplier ``f(s)`` is a closed form of the
step ``s`` (the number of optimizer steps taken so far; the lr used by step ``s`` is ``base_lr * f(s)``).
With ``W = warmup_steps``, ``T = total_steps``, ``n = T - W`` and ``t = min(s - W, n)``:

    warm-up (s < W)   f = (s + 1) / W                        linear ramp from 1/W, reaching 1 at s = W - 1
    constant          f = 1
    step              f = gamma ** floor(s / step_size)                          (torch StepLR)
    multistep         f = gamma ** #{m in milestones : m <= s}                   (torch MultiStepLR)
    cosine            f = r + (1 - r) (1 + cos(pi t / n)) / 2                    (SGDR, arXiv:1608.03983, no restarts)
    linear            f = 1 + (end_ratio - 1) t / n                              (torch LinearLR)
    wsd               f = 1 for t < n - D, else r + (1 - r) shape(u),  u = (t - n + D) / D,  D = round(decay_frac n)
                      shape: linear 1 - u | sqrt 1 - sqrt(u) | cosine (1 + cos(pi u)) / 2
                      (warmup-stable-decay, MiniCPM arXiv:2404.06395; 1-sqrt from Hägele et al. arXiv:2405.18392)

``step_size`` and ``milestones`` count optimizer steps from the start of training, warm-up included, as papers
quote them ("divide by 10 at 32k and 48k iterations"); ``milestones_frac`` gives them as fractions of ``T``.
The others run over the ``n`` steps after warm-up. ``r`` is ``min_lr_ratio``, or ``eta_min / base_lr`` per
param group. Past ``T`` the multiplier stays at its value for ``t = n``.

Why one LambdaLR and not SequentialLR over CosineAnnealingLR & co.: the closed forms are exact (the chainable
torch forms accumulate rounding from ``group["lr"]``), and SequentialLR calls the deprecated ``step(0)`` at its
milestones. Each multiplier is a ``Schedule`` object holding only numbers and strings, so ``LambdaLR.state_dict``
saves its parameters and ``load_state_dict`` into a freshly built scheduler continues identically.
"""
from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from shared.registry import Registry

SCHEDULES = Registry("schedule")


def register_schedule(name: str, **info: Any) -> Callable[[type], type]:
    """Class decorator for a ``Schedule`` subclass; its keyword-only ``__init__`` args are its kwargs."""

    def deco(cls: type) -> type:
        if not (inspect.isclass(cls) and issubclass(cls, Schedule)):
            raise TypeError(f"register_schedule({name!r}) expects a Schedule subclass, got {cls!r}")
        SCHEDULES.add(name, cls, **info)
        return cls

    return deco


class Schedule:
    """Multiplier ``f(s)``: linear warm-up, then ``main(t)`` for ``t = min(s - W, n)``; subclasses define ``main``."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0):
        self.total_steps, self.warmup_steps, self.base_lr = int(total_steps), int(warmup_steps), float(base_lr)
        self.n = self.total_steps - self.warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.main(min(step - self.warmup_steps, self.n))

    def main(self, t: int) -> float:
        raise NotImplementedError


def _ratio(min_lr_ratio: float | None, eta_min: float | None, base_lr: float) -> float:
    if min_lr_ratio is not None and eta_min is not None:
        raise ValueError(f"give min_lr_ratio or eta_min, not both; got {min_lr_ratio=}, {eta_min=}")
    r = eta_min / base_lr if eta_min is not None else (min_lr_ratio or 0.0)
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"min lr ratio must lie in [0, 1], got {r} ({min_lr_ratio=}, {eta_min=}, {base_lr=})")
    return float(r)


@register_schedule("constant")
class Constant(Schedule):
    def main(self, t: int) -> float:
        return 1.0


@register_schedule("step")
class Step(Schedule):
    """Multiply by ``gamma`` every ``step_size`` steps (counted from step 0)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0, *, step_size: int,
                 gamma: float = 0.1):
        if not (int(step_size) >= 1 and gamma > 0):
            raise ValueError(f"need step_size >= 1 and gamma > 0; got {step_size=}, {gamma=}")
        super().__init__(total_steps, warmup_steps, base_lr)
        self.step_size, self.gamma = int(step_size), float(gamma)

    def main(self, t: int) -> float:
        return self.gamma ** ((t + self.warmup_steps) // self.step_size)


@register_schedule("multistep")
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each milestone: absolute steps ``milestones`` or fractions ``milestones_frac`` of T."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0, *,
                 milestones: list[int] | None = None, milestones_frac: list[float] | None = None, gamma: float = 0.1):
        if (milestones is None) == (milestones_frac is None):
            raise ValueError(f"give exactly one of milestones, milestones_frac; got {milestones=}, {milestones_frac=}")
        if milestones_frac is not None:
            if not all(0.0 <= f <= 1.0 for f in milestones_frac):
                raise ValueError(f"milestones_frac must lie in [0, 1], got {milestones_frac}")
            milestones = [round(f * total_steps) for f in milestones_frac]
        if not (all(int(m) >= 0 for m in milestones) and gamma > 0):
            raise ValueError(f"need milestones >= 0 and gamma > 0; got {milestones=}, {gamma=}")
        super().__init__(total_steps, warmup_steps, base_lr)
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)

    def main(self, t: int) -> float:
        return self.gamma ** sum(m <= t + self.warmup_steps for m in self.milestones)


@register_schedule("cosine")
class Cosine(Schedule):
    """Half-cosine from 1 to ``r`` over the post-warm-up steps (SGDR without restarts, arXiv:1608.03983)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0, *,
                 min_lr_ratio: float | None = None, eta_min: float | None = None):
        r = _ratio(min_lr_ratio, eta_min, base_lr)
        super().__init__(total_steps, warmup_steps, base_lr)
        self.min_lr_ratio = r

    def main(self, t: int) -> float:
        r = self.min_lr_ratio
        return r + (1 - r) * (1 + math.cos(math.pi * t / self.n)) / 2


@register_schedule("linear")
class Linear(Schedule):
    """Straight line from 1 to ``end_ratio`` over the post-warm-up steps."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0, *, end_ratio: float = 0.0):
        if not 0.0 <= end_ratio:
            raise ValueError(f"end_ratio must be >= 0, got {end_ratio}")
        super().__init__(total_steps, warmup_steps, base_lr)
        self.end_ratio = float(end_ratio)

    def main(self, t: int) -> float:
        return 1 + (self.end_ratio - 1) * t / self.n


_DECAY_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda u: 1 - u,
    "sqrt": lambda u: 1 - math.sqrt(u),
    "cosine": lambda u: (1 + math.cos(math.pi * u)) / 2,
}


@register_schedule("wsd")
class WSD(Schedule):
    """Warmup-stable-decay (MiniCPM, arXiv:2404.06395): constant, then the last ``decay_frac`` of steps decay to r."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0, *, decay_frac: float = 0.1,
                 min_lr_ratio: float | None = None, eta_min: float | None = None, decay_shape: str = "linear"):
        if not 0.0 < decay_frac <= 1.0:
            raise ValueError(f"decay_frac must lie in (0, 1], got {decay_frac}")
        if decay_shape not in _DECAY_SHAPES:
            raise ValueError(f"decay_shape must be one of {sorted(_DECAY_SHAPES)}, got {decay_shape!r}")
        r = _ratio(min_lr_ratio, eta_min, base_lr)
        super().__init__(total_steps, warmup_steps, base_lr)
        self.decay_steps = max(1, round(decay_frac * self.n))  # at least one decay step when n >= 1
        self.min_lr_ratio, self.decay_shape = r, decay_shape

    def main(self, t: int) -> float:
        start = self.n - self.decay_steps
        if t < start:
            return 1.0
        r = self.min_lr_ratio
        return r + (1 - r) * _DECAY_SHAPES[self.decay_shape]((t - start) / self.decay_steps)


def list_schedules() -> list[str]:
    """Sorted names of every registered schedule."""
    return SCHEDULES.names()


def schedule_kwargs(name: str) -> tuple[str, ...]:
    """The keyword arguments schedule ``name`` accepts beyond total_steps / warmup_steps."""
    params = inspect.signature(SCHEDULES.get(name).__init__).parameters.values()
    return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)


def _check_kwargs(name: str, cls: type, kwargs: dict[str, Any]) -> None:
    """Raise TypeError naming the schedule, the unknown or missing keys and the accepted ones."""
    accepted = schedule_kwargs(name)
    bad = sorted(set(kwargs) - set(accepted))
    if bad:
        listed = ", ".join(accepted) or "none"
        raise TypeError(f"schedule {name!r} got unexpected argument(s) {bad}; accepted: {listed}")
    params = inspect.signature(cls.__init__).parameters.values()
    missing = [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in kwargs]
    if missing:
        raise TypeError(f"schedule {name!r} needs argument(s) {missing}; accepted: {', '.join(accepted)}")


def create_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    warmup_frac: float = 0.0,
    **kwargs: Any,
) -> LRScheduler:
    """Build schedule ``name`` (see the module docstring) as a ``LambdaLR``; call ``.step()`` after each optimizer step.

    Args:
        total_steps: T, the number of optimizer steps of the run.
        warmup_steps: W, linear warm-up steps prepended; ``warmup_frac`` (of T, rounded) is the alternative.
        **kwargs: the schedule's own arguments (``schedule_kwargs(name)``); unknown ones raise TypeError.
    """
    cls = SCHEDULES.get(name)
    _check_kwargs(name, cls, kwargs)
    if warmup_steps and warmup_frac:
        raise ValueError(f"give warmup_steps or warmup_frac, not both; got {warmup_steps=}, {warmup_frac=}")
    if not 0.0 <= warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must lie in [0, 1), got {warmup_frac}")
    warmup_steps = int(warmup_steps) or round(warmup_frac * total_steps)
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps; got {warmup_steps=}, {total_steps=}")
    # One multiplier per group: eta_min is absolute, so its ratio depends on each group's base lr.
    lambdas = [cls(total_steps, warmup_steps, g.get("initial_lr", g["lr"]), **kwargs) for g in optimizer.param_groups]
    return LambdaLR(optimizer, lambdas)
