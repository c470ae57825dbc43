"""Norm registry: every model builds its normalization layers with ``create_norm(name, num_features, layout)``,
so a config can swap BatchNorm for GroupNorm or LayerNorm (timm ``layers/create_norm.py`` pattern).

Layouts: ``"nchw"`` is channels-first image input (N, C, H, W); ``"nlc"`` is channels-last, i.e. features in the
last dim with any leading dims ((N, L, C) tokens, or (N, C) for an MLP). What each entry normalizes over
(x: (N, C, H, W) or (..., C); affine parameters are always per channel):

- ``batchnorm`` ("Batch Normalization", arXiv:1502.03167): per channel over the batch and all positions.
  nchw: ``nn.BatchNorm2d``; nlc: ``nn.BatchNorm1d`` applied to the input flattened to (-1, C), i.e. the same
  statistics as transposing to (N, C, L).
- ``groupnorm`` ("Group Normalization", arXiv:1803.08494 §3.1): per sample over (C/G channels, H, W).
  ``num_groups`` defaults to the paper's G=32; layers narrower than G use one group per channel
  (ResNet-20's 16-channel stage), any other C not divisible by G raises.
- ``layernorm`` ("Layer Normalization", arXiv:1607.06450): nlc: ``nn.LayerNorm`` over C. nchw: over (C, H, W)
  per sample by default (``over="chw"``, the "LN" of the GroupNorm paper's Fig. 2, i.e. GroupNorm with G=1),
  or over C at each pixel with ``over="c"`` (ConvNeXt's LayerNorm2d, arXiv:2201.03545).
- ``rmsnorm`` ("Root Mean Square Layer Normalization", arXiv:1910.07467): ``nn.RMSNorm`` over C; for nchw over C
  at each pixel.
- ``identity`` / ``none``: no normalization.

Entry info ``has_bias`` marks norms that accept ``bias=`` (GPT passes its ``bias`` flag only to those).
"""
from __future__ import annotations

import torch.nn as nn

from shared.registry import Registry

NORMS = Registry("norm")
LAYOUTS = ("nchw", "nlc")


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


class BatchNormLast(nn.BatchNorm1d):
    """BatchNorm over the last dim of (..., C): statistics over every leading position, like (N, C, L) BN."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class GroupNormLast(nn.GroupNorm):
    """GroupNorm for (N, ..., C): moves C to dim 1, where ``nn.GroupNorm`` expects it."""

    def forward(self, x):
        return super().forward(x.movedim(-1, 1)).movedim(1, -1)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over C at each pixel of (N, C, H, W)."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class RMSNorm2d(nn.RMSNorm):
    """RMSNorm over C at each pixel of (N, C, H, W)."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


@NORMS.register("batchnorm", batch_dependent=True)
def batchnorm(num_features: int, layout: str = "nchw", **kwargs) -> nn.Module:
    cls = nn.BatchNorm2d if _check_layout(layout) == "nchw" else BatchNormLast
    return cls(num_features, **kwargs)


@NORMS.register("groupnorm")
def groupnorm(num_features: int, layout: str = "nchw", num_groups: int = 32, **kwargs) -> nn.Module:
    groups = min(num_groups, num_features)
    if num_features % groups:
        raise ValueError(f"groupnorm: num_features={num_features} is not divisible by num_groups={num_groups}")
    cls = nn.GroupNorm if _check_layout(layout) == "nchw" else GroupNormLast
    return cls(groups, num_features, **kwargs)


@NORMS.register("layernorm", has_bias=True)
def layernorm(num_features: int, layout: str = "nchw", over: str = "chw", eps: float = 1e-5,
              elementwise_affine: bool = True, bias: bool = True) -> nn.Module:
    if _check_layout(layout) == "nlc" or over == "c":
        cls = nn.LayerNorm if layout == "nlc" else LayerNorm2d
        return cls(num_features, eps=eps, elementwise_affine=elementwise_affine, bias=bias)
    if over != "chw":
        raise ValueError(f"layernorm: over must be 'chw' or 'c', got {over!r}")
    # LN over (C, H, W) with per-channel affine is exactly GroupNorm with one group.
    norm = nn.GroupNorm(1, num_features, eps=eps, affine=elementwise_affine)
    if elementwise_affine and not bias:
        norm.register_parameter("bias", None)
    return norm


@NORMS.register("rmsnorm")
def rmsnorm(num_features: int, layout: str = "nchw", eps: float | None = None,
            elementwise_affine: bool = True) -> nn.Module:
    cls = RMSNorm2d if _check_layout(layout) == "nchw" else nn.RMSNorm
    return cls(num_features, eps=eps, elementwise_affine=elementwise_affine)


def identity(num_features: int, layout: str = "nchw") -> nn.Module:
    _check_layout(layout)
    return nn.Identity()


NORMS.add("identity", identity)
NORMS.add("none", identity)


def create_norm(name: str, num_features: int, layout: str = "nchw", **kwargs) -> nn.Module:
    """``create_norm("groupnorm", 64, num_groups=8)``; kwargs go to the norm's constructor."""
    return NORMS.create(name, num_features, layout=layout, **kwargs)


def list_norms() -> list[str]:
    return NORMS.names()
