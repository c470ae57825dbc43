"""Nesterov SGD with airbench's decoupled hyperparameters: "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
Keller Jordan, arXiv:2404.00498 (hyperparameters after myrtle.ai's "How to train your ResNet 5").

airbench states lr and weight decay per 1,024 examples and divides both by its ``kilostep_scale``
K = 1024 (1 + 1/(1 - mu)), so that step size, decay strength and momentum can be tuned independently. With the
batch's mean-loss gradient g (this repo's loss; airbench sums the loss, i.e. uses B g), batch size B, the group's
scheduled lr eta_t, its lr at construction eta_0 (base lr times the group's ``lr_mult``) and decay lambda:

    d      = g + (lambda / eta_0) theta                         decay through the momentum, as torch SGD's
    b      = mu b + d                                           (b = d at the first step)
    theta <- theta - eta_t (B / K) (d + mu b)                   Nesterov; (d + mu b) -> b without ``nesterov``

so theta shrinks by (eta_t / eta_0) lambda B / K per step whatever the group's ``lr_mult``: airbench's norm-bias
group (64x lr) decays exactly like the others, which is its ``weight_decay=wd/lr_biases`` per group.
Symbols: eta = ``lr``, lambda = ``weight_decay``, mu = ``momentum``, B = ``batch_size`` (the trainer fills it in:
registry info ``needs_batch_size``).
Reference: KellerJordan/cifar10-airbench ``legacy/airbench94.py`` ``main`` (``kilostep_scale``, ``param_configs``,
``torch.optim.SGD(..., nesterov=True)``); tests/test_airbench.py asserts_close against that construction.
Deviations: the momentum buffer holds mean-loss gradients (1/B of airbench's summed-loss buffer); the updates are
equal in exact arithmetic.
"""
from __future__ import annotations

import torch

from shared.optim.checks import check_hparams
from shared.optim.registry import register_optimizer


def kilostep_scale(momentum: float) -> float:
    """airbench's K = 1024 (1 + 1/(1 - mu)): examples per "unit" step, momentum's gain included."""
    return 1024 * (1 + 1 / (1 - momentum))


@register_optimizer("sgd_decoupled", needs_batch_size=True, paper="arXiv:2404.00498")
class DecoupledSGD(torch.optim.Optimizer):
    """Args:
        lr (float): learning rate per 1,024 examples (airbench94: 11.5).
        momentum (float): mu in [0, 1) (airbench94: 0.85).
        weight_decay (float): decay per 1,024 examples, decoupled from lr (airbench94: 0.0153).
        nesterov (bool): Nesterov momentum (airbench: True).
        batch_size (int): examples per step B; the trainer passes ``train.batch_size``.
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.85, weight_decay: float = 0.0,
                 nesterov: bool = True, batch_size: int = 1024):
        check_hparams(lr=lr, momentum=momentum, weight_decay=weight_decay)
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                      batch_size=batch_size))
        for group in self.param_groups:  # eta_0: the lr the decay is decoupled from (before any schedule)
            group.setdefault("decay_lr", group["lr"])

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for g in self.param_groups:
            mu, scale = g["momentum"], g["batch_size"] / kilostep_scale(g["momentum"])
            wd = g["weight_decay"] / g["decay_lr"]
            for p in (p for p in g["params"] if p.grad is not None):
                d = p.grad.add(p, alpha=wd) if wd else p.grad.clone()  # d = g + (lambda / eta_0) theta
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d.clone()  # b = d at the first step
                else:
                    state["momentum_buffer"].mul_(mu).add_(d)  # b = mu b + d
                b = state["momentum_buffer"]
                update = d.add_(b, alpha=mu) if g["nesterov"] else b  # d + mu b
                p.add_(update, alpha=-g["lr"] * scale)  # theta <- theta - eta_t (B / K) update
        return loss
