"""Activation registry: every model builds its nonlinearities with ``create_act(name)``, so swapping ReLU for Mish
is a config change (``model.kwargs.act: mish``), not a code change (timm ``layers/create_act.py`` pattern).

Entries are the ``torch.nn`` classes themselves, not re-implementations. Aliases are separate entries pointing at
the same class (``swish`` -> ``nn.SiLU``), so ``create_act("swish")`` and ``create_act("silu")`` build equal modules.
Papers: ReLU (Nair & Hinton 2010), ELU arXiv:1511.07289, GELU arXiv:1606.08415, SiLU/Swish arXiv:1702.03118 and
arXiv:1710.05941 (Swish with beta=1 is SiLU), Mish arXiv:1908.08681.
"""
from __future__ import annotations

import torch.nn as nn

from shared.registry import Registry

ACTS = Registry("activation")

for _name, _cls in {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,  # exact erf form, as nanoGPT; pass approximate="tanh" for GPT-2's original
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}.items():
    ACTS.add(_name, _cls)


def create_act(name: str, **kwargs) -> nn.Module:
    """``create_act("leaky_relu", negative_slope=0.2)``; kwargs go to the torch.nn class."""
    return ACTS.create(name, **kwargs)


def list_acts() -> list[str]:
    return ACTS.names()
