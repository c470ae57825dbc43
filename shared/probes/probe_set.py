"""The probes of one run, as the trainer drives them (``train.probes`` in docs/design.md).

``create_probes(cfg, model, optimizer, batch)`` returns None when probes are off (``every: 0`` or no names), so
the trainer registers no hook and runs no extra forward pass; otherwise a ``ProbeSet`` whose methods the trainer
calls around each optimizer step t (1-based; see shared/probes/base.py for the hook order).
"""
from __future__ import annotations

from typing import Callable

from shared.probes.base import PROBES, FixedBatch, Probe, frozen_forward


class ProbeSet:
    """Probes by name, fired every ``every`` steps; ``records(t)`` yields one dict per probe at probe steps."""

    def __init__(self, probes: dict[str, Probe], every: int, model, batch: FixedBatch | None = None):
        if every < 1:
            raise ValueError(f"probes every must be >= 1, got {every}")
        self.probes, self.every, self.model, self.batch = probes, every, model, batch
        for probe in probes.values():
            probe.check_every(every)
        self._pending: dict[str, dict] = {}

    def due(self, step: int) -> bool:
        """Whether step t (1-based) is a probe step."""
        return step % self.every == 0

    def on_gradients(self, step: int) -> None:
        due = self.due(step)
        for name, probe in self.probes.items():
            if due or probe.every_step:
                self._add(name, probe.on_gradients(step, due))

    def before_step(self, step: int) -> None:
        for probe in self.probes.values():
            probe.before_step(step)

    def after_step(self, step: int) -> list[dict]:
        """Values of every probe at probe step t, as ``{"probe": name, "step": t, **values}``."""
        for name, probe in self.probes.items():
            self._add(name, probe.after_step(step))
        batch_probes = [(n, p) for n, p in self.probes.items() if p.needs_batch]
        if batch_probes:
            with frozen_forward(self.model):
                for name, probe in batch_probes:
                    self._add(name, probe.on_fixed_batch(self.batch))
        out = [{"probe": name, "step": step, **self._pending[name]} for name in self.probes if name in self._pending]
        self._pending = {}
        return out

    def _add(self, name: str, values: dict | None) -> None:
        if values:
            self._pending.setdefault(name, {}).update(values)

    def final_metrics(self) -> dict:
        """Every probe's end-of-run scalars (names are the probes' own, e.g. ``final_weight_norm``)."""
        out: dict = {}
        for probe in self.probes.values():
            out.update(probe.final_metrics())
        return out

    def state_dict(self) -> dict:
        return {name: probe.state_dict() for name, probe in self.probes.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, probe in self.probes.items():
            if name in state:
                probe.load_state_dict(state[name])


def create_probes(cfg: dict | None, model, optimizer=None,
                  batch: FixedBatch | Callable[[], FixedBatch] | None = None) -> ProbeSet | None:
    """``cfg``: ``{"every": N, "names": [...], "kwargs": {name: {...}}}`` (``train.probes``); None when off.

    Unknown probe names, in ``names`` or as keys of ``kwargs``, raise listing the known ones, also when off.
    ``batch``: the fixed batch, or a function making it (called only when probes are on).
    """
    cfg = cfg or {}
    names, every, kwargs = list(cfg.get("names") or []), int(cfg.get("every") or 0), dict(cfg.get("kwargs") or {})
    for name in names + list(kwargs):  # kwargs may configure a probe that a variant leaves out of names
        PROBES.get(name)  # UnknownNameError listing the known probes
    if len(set(names)) != len(names):
        raise ValueError(f"train.probes.names lists a probe twice: {names}")
    if every == 0 or not names:
        return None
    if callable(batch):
        batch = batch()
    probes = {name: PROBES.create(name, model, optimizer, batch, **kwargs.get(name, {})) for name in names}
    return ProbeSet(probes, every, model, batch)
