"""Pre-activation ResNet-18: "Identity Mappings in Deep Residual Networks", He et al., arXiv:1603.05027.

Residual unit (§4.1, Fig. 4(e), "full pre-activation"): x + conv(act(norm(conv(act(norm(x)))))), so the
shortcut path is a clean identity. Where the shape changes, the shortcut is a 1x1 projection applied to the
pre-activated input act(norm(x)) (as in the paper's reference code and kuangliu/pytorch-cifar).
CIFAR variant as in kuangliu/pytorch-cifar ``models/preact_resnet.py``: a 3x3 stride-1 stem conv with 64
channels and no max-pool (32x32 inputs are too small for the ImageNet stem), four stages of two units with
64/128/256/512 channels (stride 2 from stage 2 on), global average pool, linear classifier.
Deviation from kuangliu: we keep the paper's extra norm + act after the last element-wise addition (§4.1; with
pre-activation the last unit's output would otherwise reach the pooling un-normalized): 11,172,170 parameters for
10 classes vs kuangliu's 11,171,146.
"""
from __future__ import annotations

import torch.nn as nn

from shared.models.activations import create_act
from shared.models.norms import create_norm
from shared.models.registry import MODELS


class PreActBlock(nn.Module):
    """norm-act-conv-norm-act-(dropout)-conv plus shortcut; shared with Wide ResNets (arXiv:1605.07146 §2)."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: str, norm: str, dropout: float = 0.0):
        super().__init__()
        self.norm1 = create_norm(norm, c_in)
        self.act1 = create_act(act)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm2 = create_norm(norm, c_out)
        self.act2 = create_act(act)
        # WRN §2.4: dropout between the two convs, after the activation.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        out = self.act1(self.norm1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv2(self.drop(self.act2(self.norm2(self.conv1(out)))))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for 32x32 inputs: a 3x3 stem, stages of PreActBlocks (stride 2 from stage 2 on), a final
    norm + act, global average pool and a linear head. Args: blocks per stage ((2, 2, 2, 2) for ResNet-18), stage
    widths, stem width, num_classes, act / norm registry names, dropout inside each block (Wide ResNets)."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), widths: tuple[int, ...] = (64, 128, 256, 512),
                 stem_width: int = 64, num_classes: int = 10, act: str = "relu", norm: str = "batchnorm",
                 dropout: float = 0.0):
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError(f"need one width per stage; got blocks={blocks}, widths={widths}")
        self.stem = nn.Conv2d(3, stem_width, 3, 1, 1, bias=False)
        layers, c_in = [], stem_width
        for stage, (n, c_out) in enumerate(zip(blocks, widths)):
            for i in range(n):
                layers.append(PreActBlock(c_in, c_out, 2 if stage > 0 and i == 0 else 1, act, norm, dropout))
                c_in = c_out
        self.blocks = nn.Sequential(*layers)
        self.norm = create_norm(norm, c_in)
        self.act = create_act(act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.act(self.norm(self.blocks(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


@MODELS.register("preact_resnet18", task="image_classification", paper="arXiv:1603.05027", smoke_kwargs={})
def preact_resnet18(num_classes: int = 10, act: str = "relu", norm: str = "batchnorm") -> PreActResNet:
    return PreActResNet((2, 2, 2, 2), num_classes=num_classes, act=act, norm=norm)
