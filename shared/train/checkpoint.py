"""Atomic checkpoints: a run killed at any moment leaves either the previous or the new checkpoint, never half."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def weights_path(run_dir: str | Path, step: int) -> Path:
    """Where ``train.keep_weights_at`` keeps the model's weights after optimizer step ``step`` (0 = at init)."""
    return Path(run_dir) / f"weights_{step}.pt"


def kept_weights(run_dir: str | Path) -> dict[int, Path]:
    """The weights a run kept (``train.keep_weights_at``), by step: ``{t: run_dir/weights_<t>.pt}``, in step order.
    Each file holds ``{"model": state_dict, "step": t, "config_hash": ...}``."""
    found = {int(p.stem.split("_", 1)[1]): p for p in Path(run_dir).glob("weights_*.pt")
             if p.stem.split("_", 1)[1].isdigit()}
    return dict(sorted(found.items()))


def load_checkpoint(path: Path) -> dict:
    # weights_only=False: the checkpoint holds python RNG state and plain dicts written by this code, not foreign files
    return torch.load(path, map_location="cpu", weights_only=False)
