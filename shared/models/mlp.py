"""Multilayer perceptron on flattened images: Linear -> norm -> act per hidden layer, then a linear classifier.

The usual baseline of optimizer and initialization studies. Unlike the conv nets, ``norm`` defaults to
``"none"``: a plain MLP is the common baseline, and BN-MLPs are then an explicit config choice. Norms are built with
layout ``"nlc"`` (features last), which for (N, F) input normalizes over the F features.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn as nn

from shared.models.activations import create_act
from shared.models.norms import create_norm
from shared.models.registry import MODELS


class MLP(nn.Module):
    """Args: num_classes; in_features (3*32*32 for CIFAR); hidden widths; act / norm registry names."""

    def __init__(self, num_classes: int = 10, in_features: int = 3 * 32 * 32, hidden: Sequence[int] = (512, 512),
                 act: str = "relu", norm: str = "none"):
        super().__init__()
        layers, c_in = [nn.Flatten()], in_features
        for h in hidden:
            layers += [nn.Linear(c_in, h), create_norm(norm, h, layout="nlc"), create_act(act)]
            c_in = h
        layers.append(nn.Linear(c_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


MODELS.add("mlp", MLP, task="image_classification", paper=None, smoke_kwargs={})
