"""Atomic checkpoints: a run killed at any moment leaves either the previous or the new checkpoint, never half."""
from __future__ import annotations

import os
from pathlib import Path

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    # weights_only=False: the checkpoint holds python RNG state and plain dicts written by this code, not foreign files
    return torch.load(path, map_location="cpu", weights_only=False)
