"""Optimizers, parameter groups and learning-rate schedules, all built by name (see docs/design.md).

- ``create_optimizer(name, model_or_params, lr, weight_decay, no_decay_norm_bias, **kw)``: any of
  ``list_optimizers()`` (every ``torch.optim`` optimizer plus ``@register_optimizer`` ones).
- ``param_groups(model, weight_decay, no_decay_norm_bias, lr_mult)``: timm-style "decay" / "no_decay" groups.
- ``create_scheduler(name, optimizer, total_steps, warmup_steps, **kw)``: any of ``list_schedules()``.

Importing this package registers ``sgd_decoupled`` (airbench's Nesterov SGD with lr and weight decay per 1,024
examples), the ``piecewise_linear`` schedule, and the optimizer cluster's methods, each in its own module with the
paper's update equations beside the code: ``sgdw`` (arXiv:1711.05101), ``adamp`` / ``sgdp`` (arXiv:2006.08217),
``diffgrad`` (arXiv:1909.11015), ``madgrad`` (arXiv:2101.11075), ``muon_adamw`` (Muon on matrices, AdamW on the
rest; arXiv:2502.16982), ``adago`` (arXiv:2509.02981), ``swan`` (arXiv:2412.13148), ``ademamix``
(arXiv:2409.03050), ``mars_adamw`` (arXiv:2411.10438) and ``spam`` (arXiv:2501.06842). AMSGrad is torch's
``adam`` / ``adamw`` with ``amsgrad=True``. ``sgd_l2_as_lr`` is SGD with L2 on scale-invariant weights replaced by
its equivalent learning-rate schedule (the matched control of arXiv:1706.05350, after arXiv:1910.07454).
"""
from shared.optim.param_groups import no_weight_decay_names, param_groups
from shared.optim.registry import OPTIMIZERS, create_optimizer, list_optimizers, register_optimizer
from shared.optim.schedules import (
    SCHEDULES,
    Schedule,
    create_scheduler,
    list_schedules,
    register_schedule,
    schedule_kwargs,
)

# Imported for their registrations.
from shared.optim import (  # noqa: F401,E402
    adago,
    adamp,
    ademamix,
    decoupled_sgd,
    diffgrad,
    l2_as_lr,
    madgrad,
    mars,
    muon,
    piecewise,
    sgdw,
    spam,
    swan,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Schedule",
    "create_optimizer",
    "create_scheduler",
    "list_optimizers",
    "list_schedules",
    "no_weight_decay_names",
    "param_groups",
    "register_optimizer",
    "register_schedule",
    "schedule_kwargs",
]
