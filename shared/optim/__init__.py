"""Optimizers, parameter groups and learning-rate schedules, all built by name (see docs/design.md).

- ``create_optimizer(name, model_or_params, lr, weight_decay, no_decay_norm_bias, **kw)``: any of
  ``list_optimizers()`` (every ``torch.optim`` optimizer plus ``@register_optimizer`` ones).
- ``param_groups(model, weight_decay, no_decay_norm_bias, lr_mult)``: timm-style "decay" / "no_decay" groups.
- ``create_scheduler(name, optimizer, total_steps, warmup_steps, **kw)``: any of ``list_schedules()``.

Importing this package registers ``sgd_decoupled`` (airbench's Nesterov SGD with lr and weight decay per 1,024
examples) and the ``piecewise_linear`` schedule.
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
from shared.optim import decoupled_sgd, piecewise  # noqa: F401,E402

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
