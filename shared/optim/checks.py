"""Argument checks shared by the optimizers in this package, so each constructor states its ranges in one line and
every optimizer rejects a bad value with the same message naming the argument (as torch.optim does)."""
from collections.abc import Sequence

_COUNT = {2: "two", 3: "three"}


def check_hparams(*, lr: float | None = None, betas: Sequence[float] | None = None, n_betas: int = 2,
                  momentum: float | None = None, **nonnegative: float) -> None:
    """Raise ValueError unless lr > 0, ``betas`` are ``n_betas`` numbers in [0, 1), momentum lies in [0, 1) and every
    other keyword (eps, weight_decay, gamma, ...) is >= 0. Arguments left as None are not checked."""
    if lr is not None and not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if betas is not None:
        check_betas("betas", betas, n_betas)
    if momentum is not None and not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    for name, value in nonnegative.items():
        if value is not None and not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def check_betas(name: str, betas: Sequence[float], n: int = 2) -> None:
    """Raise ValueError unless ``betas`` holds exactly ``n`` numbers in [0, 1)."""
    if len(betas) != n or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"{name} must be {_COUNT.get(n, n)} numbers in [0, 1), got {betas}")


def check_ns_steps(ns_steps: int) -> None:
    """Newton-Schulz iterations: an int in [1, 100)."""
    if not (isinstance(ns_steps, int) and 1 <= ns_steps < 100):
        raise ValueError(f"ns_steps must be an int in [1, 100), got {ns_steps!r}")
