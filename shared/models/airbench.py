"""airbench94: "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", Keller Jordan, arXiv:2404.00498.

Follows the public script KellerJordan/cifar10-airbench ``legacy/airbench94.py`` (``make_net``, ``ConvGroup``,
``init_whitening_conv``), layer for layer:

    whiten: 2x2 conv 3 -> 24, no padding (32 -> 31), bias; weights frozen, set from the training data (below)
    act
    3 x group: 3x3 conv (same) -> max-pool 2 -> BN -> act -> 3x3 conv (same) -> BN -> act   widths 64 / 256 / 256
    max-pool 3 (3x3 -> 1x1) -> flatten -> linear (no bias) -> x output_scale (1/9)

- Patch whitening (§3.2): with Sigma the covariance of all 2x2x3 patches of the first ``whiten_images`` (5,000)
  normalized training images and Sigma = V diag(lambda) V^T, the 12 filters are v_i / sqrt(lambda_i + eps) and the
  24 are those and their negatives (so the activation that follows keeps both signs). ``init_from_data`` sets
  them; the trainer calls it (docs/design.md "Model hooks"). The bias trains only for the first
  ``whiten_bias_epochs`` (3) epochs: ``on_train_step`` switches its ``requires_grad`` off after that.
- Dirac (identity) init of every conv (§3.3): PyTorch's default init, then the first ``c_in`` filters set to the
  identity (for a square conv, the whole weight).
- BatchNorm: scale frozen at 1 (``weight.requires_grad = False``), eps 1e-12, and airbench's momentum 0.6, i.e.
  torch's ``momentum = 1 - 0.6`` (running = 0.6 running + 0.4 batch).
- The activation goes through ``create_act`` (airbench: GELU), so a paper can swap it.
``width`` multiplies the three group widths (the 24-channel whitening layer is fixed by the 2x2x3 patch size).
Parameter count at width 1 with 10 classes: 1,972,792 (1,971,352 trainable), the same module shapes as airbench94.
Deviations: the patch covariance and its eigendecomposition are computed in float64 (airbench: float32), a
numerical difference only; weights stay float32 (airbench casts the net to fp16; here precision is autocast).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from shared.models.activations import create_act
from shared.models.registry import MODELS


class DiracConv(nn.Conv2d):
    """Conv with PyTorch's default init, then its first ``in_channels`` filters set to the identity (zero bias)."""

    def reset_parameters(self):
        super().reset_parameters()
        if self.bias is not None:
            self.bias.data.zero_()
        w = self.weight.data
        nn.init.dirac_(w[:w.size(1)])


class FrozenScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with the scale frozen at 1; ``momentum`` in airbench's convention (weight of the old statistic)."""

    def __init__(self, num_features: int, momentum: float = 0.6, eps: float = 1e-12):
        super().__init__(num_features, eps=eps, momentum=1 - momentum)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, act: str, bn_momentum: float, bn_eps: float):
        super().__init__()
        self.conv1 = DiracConv(c_in, c_out, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = FrozenScaleBatchNorm(c_out, bn_momentum, bn_eps)
        self.act1 = create_act(act)
        self.conv2 = DiracConv(c_out, c_out, 3, padding="same", bias=False)
        self.norm2 = FrozenScaleBatchNorm(c_out, bn_momentum, bn_eps)
        self.act2 = create_act(act)

    def forward(self, x):
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


def patches(x: Tensor, size: int) -> Tensor:
    """All ``size``x``size`` patches of N×C×H×W images, flattened: (N (H-size+1) (W-size+1)) × (C size size)."""
    c = x.shape[1]
    return x.unfold(2, size, 1).unfold(3, size, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * size * size)


def whitening_filters(x: Tensor, size: int, eps: float) -> Tensor:
    """The 2·C·size² whitening filters of ``x``'s patches: V / sqrt(lambda + eps) and their negatives (float64)."""
    p = patches(x.double(), size)
    cov = p.T @ p / len(p)  # second moment, as airbench (the inputs are normalized to mean ~0)
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)  # largest first
    filters = (eigenvectors / torch.sqrt(eigenvalues + eps)[:, None]).reshape(-1, x.shape[1], size, size)
    return torch.cat((filters, -filters))


class Airbench94(nn.Module):
    """Args: num_classes; width: multiplier of the group widths; act: activation name (registry);
    widths: the three group widths at width 1; bn_momentum, bn_eps: see the module docstring;
    output_scale: logit multiplier (1/9); whiten_eps: eps added to the eigenvalues (5e-4);
    whiten_images: how many training images the whitening is estimated from (5,000);
    whiten_bias_epochs: epochs during which the whitening bias trains (3)."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, act: str = "gelu",
                 widths: tuple[int, int, int] = (64, 256, 256), bn_momentum: float = 0.6, bn_eps: float = 1e-12,
                 output_scale: float = 1 / 9, whiten_eps: float = 5e-4, whiten_images: int = 5000,
                 whiten_bias_epochs: int = 3):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if len(widths) != 3:
            raise ValueError(f"widths must list three group widths, got {widths}")
        if not 0 <= bn_momentum < 1:
            raise ValueError(f"bn_momentum must lie in [0, 1), got {bn_momentum}")
        self.whiten_eps, self.whiten_images, self.whiten_bias_epochs = whiten_eps, whiten_images, whiten_bias_epochs
        self.output_scale = output_scale
        ws = [max(1, round(c * width)) for c in widths]
        self.whiten = DiracConv(3, 2 * 3 * 2 * 2, 2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        self.act = create_act(act)
        self.groups = nn.Sequential(*(ConvGroup(c_in, c_out, act, bn_momentum, bn_eps)
                                      for c_in, c_out in zip([self.whiten.out_channels, *ws[:-1]], ws)))
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(ws[-1], num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, images: Tensor) -> None:
        """Set the whitening filters from the first ``whiten_images`` of the normalized training images."""
        w = whitening_filters(images[:self.whiten_images], self.whiten.kernel_size[0], self.whiten_eps)
        self.whiten.weight.copy_(w.to(self.whiten.weight))

    def on_train_step(self, step: int, epoch: int) -> None:
        """Train the whitening bias only during the first ``whiten_bias_epochs`` epochs."""
        self.whiten.bias.requires_grad_(epoch < self.whiten_bias_epochs)

    def forward(self, x):
        x = self.groups(self.act(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.output_scale


MODELS.add("airbench94", Airbench94, task="image_classification", paper="arXiv:2404.00498",
           smoke_kwargs={"width": 0.125})
