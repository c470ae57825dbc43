"""Any timm model (huggingface/pytorch-image-models) as a registry entry, adapted to 32x32 inputs.

``create_model("timm", model_name="resnet18", num_classes=10)`` or ``create_model("timm/resnet18")``. Weights are
never downloaded: ``pretrained`` is always False, and asking for True raises.

Small-input stem (``small_input=True``): architectures with an ImageNet stem, a 7x7 stride-2 conv followed by a
max-pool (ResNets, DenseNets, ...), shrink a 32x32 image to 8x8 before the first stage. As in the CIFAR ResNets of
arXiv:1512.03385 §4.2 and kuangliu/pytorch-cifar, the first conv (if it is 7x7 stride 2) becomes a 3x3 stride-1
conv with the same channels and the first max-pool becomes the identity. Other stems (patch embeddings, deep
3x3 stems) are left untouched.
``act`` / ``norm`` (optional): registry names passed to timm as ``act_layer`` / ``norm_layer``, for the models
that accept them; left out, the model keeps timm's defaults.
"""
from __future__ import annotations

import torch.nn as nn

from shared.models.activations import create_act
from shared.models.norms import create_norm
from shared.models.registry import MODELS


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def adapt_stem_for_small_input(model: nn.Module) -> nn.Module:
    """Replace a first 7x7 stride-2 conv with 3x3 stride 1 and the first max-pool with identity (in place)."""
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        return model
    name, conv = convs[0]
    if conv.kernel_size != (7, 7) or conv.stride != (2, 2):
        return model
    stem = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
    nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")  # timm's ResNet conv init
    _set_module(model, name, stem)
    pool = next((n for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)), None)
    if pool is not None:
        _set_module(model, pool, nn.Identity())
    return model


def _timm_layers(act: str | None, norm: str | None) -> dict:
    """timm calls ``act_layer(inplace=True)`` and ``norm_layer(C, device=..., dtype=...)``; adapt our factories."""
    kwargs = {}
    if act is not None:
        def act_layer(inplace: bool = False, **kw):  # not every torch activation takes inplace
            return create_act(act, **kw)
        kwargs["act_layer"] = act_layer
    if norm is not None:
        def norm_layer(num_features: int, device=None, dtype=None, **kw):
            return create_norm(norm, num_features, **kw).to(device=device, dtype=dtype)
        kwargs["norm_layer"] = norm_layer
    return kwargs


@MODELS.register("timm", task="image_classification", paper=None, smoke_kwargs={"model_name": "resnet18"})
def timm_model(model_name: str = "resnet18", num_classes: int = 10, act: str | None = None, norm: str | None = None,
               small_input: bool = True, pretrained: bool = False, **kwargs) -> nn.Module:
    import timm  # imported lazily: building the other models should not pay for timm's import

    if pretrained:
        raise ValueError("pretrained=True is not supported: repro never downloads weights")
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, **_timm_layers(act, norm),
                              **kwargs)
    return adapt_stem_for_small_input(model) if small_input else model
