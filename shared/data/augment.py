"""Batched CIFAR augmentation on device tensors: random crop with zero padding, then horizontal flip.

Matches torchvision's ``RandomCrop(32, padding=p)`` (fill 0) followed by ``RandomHorizontalFlip()``, but one
gather for the whole batch instead of a per-image PIL loop. Randomness comes from an explicit generator, so a
batch is a pure function of the seed it was given.

Options beyond torchvision (airbench94, Jordan, arXiv:2404.00498 §3.6 and ``legacy/airbench94.py``):
- ``pad_mode: reflect``: crop from the reflect-padded image (airbench's ``translate``), read directly by mirrored
  indices, so no padded copy is made and any dtype works.
- ``flip_mode: alternate``: derandomized flipping. Each training image i gets one random bit b_i from
  (seed, "flip"); in epoch e it is mirrored iff b_i XOR (e odd). So every image is seen both ways in every pair of
  epochs, where random flipping repeats an orientation with probability 1/2.
"""
from __future__ import annotations

import hashlib
from typing import NamedTuple

import torch
from torch import Tensor

AUGMENT_KEYS = {"crop_padding", "flip", "flip_mode", "pad_mode"}
FLIP_MODES, PAD_MODES = ("random", "alternate"), ("zeros", "reflect")


def derive_seed(seed: int, *tags) -> int:
    """A 63-bit seed from (seed, tags): independent streams for e.g. ("perm", epoch) and ("aug", step)."""
    digest = hashlib.sha256(repr((int(seed), *tags)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, *tags) -> torch.Generator:
    """A CPU generator (same stream on every device) seeded from (seed, tags)."""
    return torch.Generator().manual_seed(derive_seed(seed, *tags))


class Augment(NamedTuple):
    crop_padding: int
    flip: bool
    flip_mode: str
    pad_mode: str


def check_augment(augment: dict | None) -> Augment:
    """The validated augment options; missing keys mean off (``crop_padding`` 0, ``flip`` false) or torchvision's
    behaviour (``flip_mode`` "random", ``pad_mode`` "zeros"); None or {} disables augmentation."""
    augment = dict(augment or {})
    unknown = set(augment) - AUGMENT_KEYS
    if unknown:
        raise ValueError(f"unknown augment keys {sorted(unknown)}; known: {sorted(AUGMENT_KEYS)}")
    padding, flip = augment.get("crop_padding", 0), augment.get("flip", False)
    flip_mode, pad_mode = augment.get("flip_mode", "random"), augment.get("pad_mode", "zeros")
    if not (isinstance(padding, int) and padding >= 0):
        raise ValueError(f"augment.crop_padding must be an int >= 0, got {padding!r}")
    if not isinstance(flip, bool):
        raise ValueError(f"augment.flip must be true or false, got {flip!r}")
    if flip_mode not in FLIP_MODES:
        raise ValueError(f"augment.flip_mode must be one of {FLIP_MODES}, got {flip_mode!r}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"augment.pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    return Augment(padding, flip, flip_mode, pad_mode)


def alternate_flips(base: Tensor, epoch: int) -> Tensor:
    """Derandomized flips: the per-image bits ``base`` in even epochs, their complement in odd ones."""
    return base ^ bool(epoch % 2)


def sample_params(gen: torch.Generator, n: int, padding: int, flip: bool) -> tuple[Tensor, Tensor]:
    """Crop offsets (n×2, in [0, 2·padding]) and flip flags (n,) on CPU. Both drawn always, so the stream
    position does not depend on which augmentations are enabled."""
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=gen)
    flips = torch.rand(n, generator=gen) < 0.5
    return offsets, flips & flip


def _reflect(idx: Tensor, size: int) -> Tensor:
    """Indices into the reflect-padded axis (``F.pad(mode="reflect")``, edge not repeated), shifted to the original."""
    idx = idx.abs()
    return torch.where(idx > size - 1, 2 * (size - 1) - idx, idx)


def crop_flip(x: Tensor, offsets: Tensor, flips: Tensor, padding: int, pad_mode: str = "zeros") -> Tensor:
    """Crop each N×C×H×W image at ``offsets`` (row, col) of its padded copy, mirror where ``flips``.
    ``pad_mode`` "zeros" pads with 0 (torchvision's fill); "reflect" mirrors the border (padding < H, W)."""
    n, c, h, w = x.shape
    offsets, flips = offsets.to(x.device), flips.to(x.device)
    if padding and pad_mode == "reflect":
        rows = _reflect(offsets[:, :1] - padding + torch.arange(h, device=x.device), h)
        cols = _reflect(offsets[:, 1:] - padding + torch.arange(w, device=x.device), w)
    else:
        if padding:
            x = torch.nn.functional.pad(x, (padding,) * 4)  # zero padding, as torchvision's default fill
        rows = offsets[:, :1] + torch.arange(h, device=x.device)  # n×h
        cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # n×w
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # flip after crop = read the crop's columns reversed
    b = torch.arange(n, device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return x[b, ch, rows[:, None, :, None], cols[:, None, None, :]]


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 [0, 255] -> float32 (x/255 - mean) / std, per channel."""
    return (x.float().div_(255.0) - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
