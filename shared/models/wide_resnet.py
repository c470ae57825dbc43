"""Wide ResNets: "Wide Residual Networks", Zagoruyko & Komodakis, arXiv:1605.07146.

WRN-d-k (§2, Table 1): a 3x3 stem conv with 16 channels, three groups of n = (d-4)/6 pre-activation B(3,3)
blocks with 16k/32k/64k channels (stride 2 from group 2 on), 1x1 conv shortcuts where the width changes, a final
norm + act, global average pool and a linear classifier. Dropout (§2.4) sits between the two convs of each block,
after the activation; the paper uses 0.3 on CIFAR. Matches xternalz/WideResNet-pytorch: WRN-16-4 has 2,748,890
and WRN-28-10 36,479,194 parameters with 10 classes (paper: 2.7M, 36.5M).
"""
from __future__ import annotations

from shared.models.preact_resnet import PreActResNet
from shared.models.registry import MODELS


class WideResNet(PreActResNet):
    """WRN-depth-widen: a PreActResNet with three stages of n = (depth-4)/6 blocks, widths 16k/32k/64k, stem 16.
    Args: depth (6n+4), widen (k), num_classes, act / norm registry names, dropout."""

    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10, act: str = "relu",
                 norm: str = "batchnorm", dropout: float = 0.0):
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n+4 with n >= 1, got {depth}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        super().__init__((n, n, n), (16 * widen, 32 * widen, 64 * widen), stem_width=16, num_classes=num_classes,
                         act=act, norm=norm, dropout=dropout)


@MODELS.register("wrn16_4", task="image_classification", paper="arXiv:1605.07146", smoke_kwargs={})
def wrn16_4(num_classes: int = 10, act: str = "relu", norm: str = "batchnorm", dropout: float = 0.0) -> WideResNet:
    return WideResNet(16, 4, num_classes=num_classes, act=act, norm=norm, dropout=dropout)


@MODELS.register("wrn28_10", task="image_classification", paper="arXiv:1605.07146", smoke_kwargs={})
def wrn28_10(num_classes: int = 10, act: str = "relu", norm: str = "batchnorm", dropout: float = 0.0) -> WideResNet:
    return WideResNet(28, 10, num_classes=num_classes, act=act, norm=norm, dropout=dropout)
