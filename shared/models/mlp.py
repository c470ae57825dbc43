"""Multilayer perceptron on flattened images: Linear -> norm -> act per hidden layer, then a linear classifier.

The usual baseline of optimizer and initialization studies. Unlike the conv nets, ``norm`` defaults to
``"none"``: a plain MLP is the common baseline, and BN-MLPs are then an explicit config choice. Norms are built with
layout ``"nlc"`` (features last), which for (N, F) input normalizes over the F features.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
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


# ---------------------------------------------------------------------------------------------------------------------
# A deep fully connected net with its skip connections by config: ReZero's FC experiments (Bachlechner et al. 2020,
# arXiv:2003.04887, Table 1). Every block is F(x) = act(W x + b), W of shape width x width, wired as
#
#   plain       x_{i+1} = F(x_i)                    (a vanilla deep FC net)
#   residual    x_{i+1} = x_i + F(x_i)              (skip connection, no norm)
#   post_norm   x_{i+1} = LayerNorm(x_i + F(x_i))   (Post-Norm, Table 1)
#   pre_norm    x_{i+1} = x_i + F(LayerNorm(x_i))   (Pre-Norm, Table 1)
#   rezero      x_{i+1} = x_i + alpha_i F(x_i)      (eq. 1; alpha_i a learned scalar, 0 at init)
#
# so a rezero stack is the identity at init (its input-output Jacobian is I: the paper's initial dynamical isometry).
RESIDUAL_BLOCKS = ("plain", "residual", "post_norm", "pre_norm", "rezero")


class FCBlock(nn.Module):
    """One width-preserving layer of :class:`ResidualMLP`; ``kind`` is one of ``RESIDUAL_BLOCKS`` (wiring above)."""

    def __init__(self, width: int, kind: str, act: str = "relu"):
        super().__init__()
        if kind not in RESIDUAL_BLOCKS:
            raise ValueError(f"block must be one of {RESIDUAL_BLOCKS}, got {kind!r}")
        self.kind = kind
        self.linear, self.act = nn.Linear(width, width), create_act(act)
        self.norm = create_norm("layernorm", width, layout="nlc") if kind in ("post_norm", "pre_norm") else None
        self.alpha = nn.Parameter(torch.zeros(())) if kind == "rezero" else None

    def forward(self, x):
        if self.kind == "plain":
            return self.act(self.linear(x))
        if self.kind == "residual":
            return x + self.act(self.linear(x))
        if self.kind == "post_norm":
            return self.norm(x + self.act(self.linear(x)))
        if self.kind == "pre_norm":
            return x + self.act(self.linear(self.norm(x)))
        return x + self.alpha * self.act(self.linear(x))


class ResidualMLP(nn.Module):
    """Flatten -> Linear(in_features, width) -> ``depth`` :class:`FCBlock` s -> Linear(width, num_classes).

    The stem and every block's weight are He-normal (fan-in, ReLU gain: Var W = 2 / width), biases 0, for every
    ``block`` kind, so the kinds differ only in their wiring: with this init a plain ReLU stack keeps the signal's
    scale, a residual one without norm at least doubles its second moment per block (He et al. 2015, Sec. 2.2).
    """

    def __init__(self, num_classes: int = 10, in_features: int = 3 * 32 * 32, width: int = 256, depth: int = 32,
                 block: str = "rezero", act: str = "relu"):
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"depth and width must be >= 1, got depth={depth}, width={width}")
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(in_features, width))
        self.blocks = nn.Sequential(*(FCBlock(width, block, act) for _ in range(depth)))
        self.head = nn.Linear(width, num_classes)
        for linear in [self.stem[1]] + [b.linear for b in self.blocks]:
            nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
            nn.init.zeros_(linear.bias)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


MODELS.add("residual_mlp", ResidualMLP, task="image_classification", paper="arXiv:2003.04887",
           smoke_kwargs={"width": 16, "depth": 3})
