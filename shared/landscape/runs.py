"""Load a finished run for analysis: its model with the final weights, its data, and image batches.

A run directory (docs/design.md) holds ``meta.json`` (the resolved config) and ``checkpoint.pt`` (``"model"``: the
state_dict). Curvature, surfaces and interpolation (the rest of shared/landscape) then work on ``run.model`` with
fixed, unaugmented, normalised batches from ``image_batches``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from shared.config import ConfigError, for_profile
from shared.data import ClassificationData, load_data
from shared.data.augment import normalize
from shared.models import create_model
from shared.train.checkpoint import load_checkpoint


@dataclass
class LoadedRun:
    meta: dict  # meta.json: the resolved "config", paper, variant, profile, seed, ...
    model: nn.Module  # on the requested device, in eval mode, with the run's final weights
    state: dict[str, torch.Tensor]  # the final state_dict, on the same device
    data: ClassificationData


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pair_settings(table: dict, profile: str | None, n_images: int | None, n_alphas: int | None) -> dict:
    """Images and interpolation points of a pair analysis: those given, else ``table``'s entry for the run's profile
    (or the profile it extends by name, ``cpu_early`` -> ``cpu``); a profile without an entry is an error that says
    the fix, never a silent fall-back to another profile's sizes."""
    if n_images and n_alphas:
        return {"n_images": n_images, "n_alphas": n_alphas}
    if profile is None:
        raise ConfigError("the run's meta.json names no profile: give n_images and n_alphas (--n-images, --n-alphas)")
    entry = for_profile(table, profile, default=None)
    if entry is None:
        raise ConfigError(f"no analysis settings for profile {profile!r} (known: {sorted(table)}): add it to the "
                          "paper's analysis SETTINGS, or give n_images and n_alphas (--n-images, --n-alphas)")
    return {"n_images": n_images or entry["n_images"], "n_alphas": n_alphas or entry["n_alphas"]}


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             data: ClassificationData | None = None) -> LoadedRun:
    """A finished run's model (built from meta.json's config, weights from checkpoint.pt) and data; pass ``data``
    to reuse another run's (e.g. the partner of a pair with the same data config)."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    cfg = meta["config"]
    data = data or load_data(cfg["data"])
    model = create_model(cfg["model"]["name"], num_classes=data.num_classes, **cfg["model"]["kwargs"]).to(device)
    state = {k: v.to(device) for k, v in load_checkpoint(run_dir / "checkpoint.pt")["model"].items()}
    model.load_state_dict(state)
    return LoadedRun(meta, model.eval(), state, data)


def image_batches(data: ClassificationData, split: str, n: int, device: str | torch.device = "cpu",
                  batch_size: int = 256) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``n`` images of ``split`` (``"train"``: the run's training subset in file order, no augmentation;
    else an eval split), normalised as in training, as (x, y) batches on ``device``."""
    x, y = (data.train_x, data.train_y) if split == "train" else data.eval_sets[split]
    x, y = x[:n], y[:n]
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
    return [(normalize(x[i:i + batch_size].to(device), mean, std), y[i:i + batch_size].to(device))
            for i in range(0, len(y), batch_size)]


def kept_steps(by_variant: dict[str, list[dict]]) -> dict[str, tuple[list[dict], list[int]]]:
    """For pair analyses whose runs kept weights along training (``train.keep_weights_at``): per variant, the
    ``over_training`` records of its derived.json results and the steps every one of them has (variants without
    any are left out)."""
    out = {}
    for variant, results in by_variant.items():
        kept = [r["over_training"] for r in results if "over_training" in r]
        if kept:
            out[variant] = kept, sorted(set.intersection(*(set(k["step"]) for k in kept)))
    return out


def analyse_kept_steps(kept_a: dict[int, Path], kept_b: dict[int, Path], analyse,
                       final: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], object],
                       device: str | torch.device = "cpu") -> dict:
    """``analyse(state_a, state_b)`` at every step both runs of a pair kept weights (``kept_weights``, from
    ``train.keep_weights_at``), by step in step order. ``final`` = (run a's final weights, run b's, their analysis):
    the last common step reuses that analysis instead of computing it twice when its kept weights are exactly the
    final ones (compared tensor by tensor)."""
    steps = sorted(kept_a.keys() & kept_b.keys())
    state_a, state_b, final_result = final
    out = {}
    for step in steps:
        kept = [load_checkpoint(k[step])["model"] for k in (kept_a, kept_b)]
        if step == steps[-1] and all(_same_weights(k, s) for k, s in zip(kept, (state_a, state_b))):
            out[step] = final_result
        else:
            out[step] = analyse(*({k: v.to(device) for k, v in state.items()} for state in kept))
    return out


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)
