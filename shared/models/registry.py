"""The model registry: configs name a model (``model.name: resnet20``) and ``create_model`` builds it.

Follows timm's ``register_model`` / ``create_model`` (``timm/models/_registry.py``, ``_factory.py``). Each entry's
info records ``task`` ("image_classification" | "language_model"), the paper, and ``smoke_kwargs``: constructor
arguments that make the model cheap enough for CPU tests (tests read them from the entry, never branch on names).
"""
from __future__ import annotations

import torch.nn as nn

from shared.registry import Registry

MODELS = Registry("model")


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model; ``"timm/<name>"`` is shorthand for ``create_model("timm", model_name=<name>)``."""
    if name.lower().startswith("timm/"):
        return MODELS.create("timm", model_name=name.split("/", 1)[1], **kwargs)
    return MODELS.create(name, **kwargs)


def list_models() -> list[str]:
    return MODELS.names()
