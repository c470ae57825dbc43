"""CIFAR ResNets: "Deep Residual Learning for Image Recognition", He et al., arXiv:1512.03385, §4.2.

6n+2 layers: a 3x3 conv with 16 channels, three stages of n basic blocks (two 3x3 convs each) with 16/32/64
channels on 32/16/8 feature maps (the first conv of stages 2 and 3 has stride 2), global average pooling and a
fully connected layer. n = 3, 5, 7, 9, 18 gives ResNet-20/32/44/56/110.

Shortcuts: option A (§3.3, used for every CIFAR net in §4.2) is the identity; where the shape changes the input is
subsampled with stride 2 and the new channels are zero-padded, so shortcuts add no parameters. Option B (1x1
conv + norm projection where the shape changes) is ``shortcut="B"``.
Parameter counts with 10 classes, option A: 269,722 / 464,154 / 658,586 / 853,018 / 1,727,962 for
ResNet-20/32/44/56/110, matching the paper's 0.27M / 0.46M / 0.66M / 0.85M / 1.7M (Table 6) and
akamaster/pytorch_resnet_cifar10. (272,474 is ResNet-20 with option B.)

Beyond the paper: ``width`` multiplies every channel count (16w/32w/64w) for width studies; ``skip=False``
drops the shortcuts, giving the "plain" nets of §4.2 / Fig. 6 (the "noshort" nets of Li et al.,
"Visualizing the Loss Landscape of Neural Nets", arXiv:1712.09913).
``residual_gate="rezero"`` scales each block's residual branch by a learned scalar initialised to 0, out =
act(shortcut(x) + alpha * F(x)) (ReZero, Bachlechner et al., arXiv:2003.04887, eq. 1; the branch's norms are kept
here), so every block starts as act(shortcut(x)): the identity on the nonnegative activations it receives, and F's
weights get no gradient until alpha has moved.
Init: He normal (fan_out) for convs, as the paper follows "Delving Deep into Rectifiers" (arXiv:1502.01852).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.models.activations import create_act
from shared.models.norms import create_norm
from shared.models.registry import MODELS


class PadShortcut(nn.Module):
    """Option A: subsample by ``stride`` and zero-pad channels c_in -> c_out (split evenly before/after)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride, self.pad = stride, c_out - c_in

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    """conv-norm-act-conv-norm, add shortcut, act (§3.2: the second nonlinearity comes after the addition)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str, norm: str, shortcut: str, skip: bool,
                 residual_gate: str = "none"):
        super().__init__()
        # No conv bias: the following norm's shift makes it redundant.
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = create_norm(norm, c_out)
        self.act1 = create_act(act)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = create_norm(norm, c_out)
        self.act2 = create_act(act)
        if not skip:
            self.shortcut = None
        elif stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(c_in, c_out, stride)
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), create_norm(norm, c_out))
        self.alpha = nn.Parameter(torch.zeros(())) if residual_gate == "rezero" else None

    def forward(self, x):
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.alpha is not None:
            out = self.alpha * out
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act2(out)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 inputs (§4.2). Args:
    depth: 6n+2 (20, 32, 44, 56, 110, ...). num_classes: classifier outputs. act / norm: registry names.
    width: channel multiplier (1.0 = paper). skip: False removes all shortcuts (plain net).
    shortcut: "A" (zero-pad, paper's CIFAR choice) or "B" (1x1 projection where the shape changes).
    residual_gate: "none" (paper) or "rezero" (a zero-initialised scalar on each residual branch; needs skip)."""

    def __init__(self, depth: int = 20, num_classes: int = 10, act: str = "relu", norm: str = "batchnorm",
                 width: float = 1.0, skip: bool = True, shortcut: str = "A", residual_gate: str = "none"):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1, got {depth}")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if residual_gate not in ("none", "rezero"):
            raise ValueError(f"residual_gate must be 'none' or 'rezero', got {residual_gate!r}")
        if residual_gate == "rezero" and not skip:
            raise ValueError("residual_gate='rezero' needs skip=True: a gated branch without a shortcut outputs 0")
        n = (depth - 2) // 6
        widths = [max(1, round(c * width)) for c in (16, 32, 64)]
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), create_norm(norm, widths[0]),
                                  create_act(act))
        blocks, c_in = [], widths[0]
        for stage, c_out in enumerate(widths):
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(c_in, c_out, stride, act, norm, shortcut, skip, residual_gate))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


for _depth in (20, 32, 44, 56, 110):
    MODELS.add(f"resnet{_depth}", partial(CifarResNet, depth=_depth), task="image_classification",
               paper="arXiv:1512.03385", smoke_kwargs={})
