"""Models, activations and norms, each built by name from a registry (``create_model``, ``create_act``,
``create_norm``) so configs stay plain strings. Importing this package registers every model."""
from shared.models.activations import ACTS, create_act, list_acts
from shared.models.norms import NORMS, create_norm, list_norms
from shared.models.registry import MODELS, create_model, list_models

# Imported for their registrations (each module registers its entries where they are defined).
from shared.models import airbench, gpt, mlp, preact_resnet, resnet_cifar, timm_wrap, vgg, wide_resnet  # noqa: F401

__all__ = ["ACTS", "MODELS", "NORMS", "create_act", "create_model", "create_norm", "list_acts", "list_models",
           "list_norms"]
