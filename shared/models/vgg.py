"""VGG with batch norm, CIFAR variant: "Very Deep Convolutional Networks for Large-Scale Image Recognition",
Simonyan & Zisserman, arXiv:1409.1556, Table 1 configurations A (VGG-11) and D (VGG-16), with a norm after every
conv ("Batch Normalization", arXiv:1502.03167).

CIFAR variant as in kuangliu/pytorch-cifar ``models/vgg.py``: the five max-pools take 32x32 inputs to a 1x1x512
map, so the paper's three fully connected layers (4096-4096-1000, sized for 7x7 ImageNet maps) are replaced by one
Linear(512, num_classes). Convs keep their bias as in that repo (and torchvision's vgg*_bn).
VGG-16-BN has 14,728,266 and VGG-11-BN 9,231,114 parameters with 10 classes. ``norm`` swaps the norm ("_bn" names
the default).
"""
from __future__ import annotations

import torch.nn as nn

from shared.models.activations import create_act
from shared.models.norms import create_norm
from shared.models.registry import MODELS

# Conv output channels; "M" is a 2x2 max-pool (Table 1, columns A and D).
CONFIGS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """Args: depth (11 or 16), num_classes, act / norm registry names."""

    def __init__(self, depth: int = 16, num_classes: int = 10, act: str = "relu", norm: str = "batchnorm"):
        super().__init__()
        if depth not in CONFIGS:
            raise ValueError(f"depth must be one of {sorted(CONFIGS)}, got {depth}")
        layers, c_in = [], 3
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), create_norm(norm, v), create_act(act)]
                c_in = v
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


@MODELS.register("vgg11_bn", task="image_classification", paper="arXiv:1409.1556", smoke_kwargs={})
def vgg11_bn(num_classes: int = 10, act: str = "relu", norm: str = "batchnorm") -> VGG:
    return VGG(11, num_classes=num_classes, act=act, norm=norm)


@MODELS.register("vgg16_bn", task="image_classification", paper="arXiv:1409.1556", smoke_kwargs={})
def vgg16_bn(num_classes: int = 10, act: str = "relu", norm: str = "batchnorm") -> VGG:
    return VGG(16, num_classes=num_classes, act=act, norm=norm)
