"""Piecewise-linear learning-rate schedule: straight lines between knots (steps as fractions of the run, values).

airbench94 (Jordan, arXiv:2404.00498, ``legacy/airbench94.py`` ``get_lr``) uses the triangle
``knots_frac: [0, 0.23, 1]``, ``values: [0.2, 1.0, 0.07]``: from 0.2x up to 1x over the first 23% of steps, then
down to 0.07x at the end. With ``n`` post-warm-up steps, knot ``i`` sits at step ``k_i = floor(knots_frac[i] n)``
(floor, as airbench's ``int(total_train_steps * 0.23)``) and for ``k_i <= t <= k_{i+1}``

    f(t) = v_i + (v_{i+1} - v_i) (t - k_i) / (k_{i+1} - k_i)

Before the first knot and after the last, f is the first / last value. Registered as ``piecewise_linear``; it lives
outside ``schedules.py`` only to keep that file to the built-in closed forms.
"""
from __future__ import annotations

import math

from shared.optim.schedules import Schedule, register_schedule


@register_schedule("piecewise_linear")
class PiecewiseLinear(Schedule):
    """Args: knots_frac: increasing fractions of the post-warm-up steps in [0, 1]; values: multipliers >= 0, one per
    knot."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, base_lr: float = 1.0, *,
                 knots_frac: list[float], values: list[float]):
        knots_frac, values = [float(k) for k in knots_frac], [float(v) for v in values]
        if len(knots_frac) < 2 or len(knots_frac) != len(values):
            raise ValueError(f"need >= 2 knots and one value per knot; got {knots_frac=}, {values=}")
        if not all(0.0 <= k <= 1.0 for k in knots_frac) or any(b <= a for a, b in zip(knots_frac, knots_frac[1:])):
            raise ValueError(f"knots_frac must increase strictly within [0, 1], got {knots_frac}")
        if not all(v >= 0 and math.isfinite(v) for v in values):
            raise ValueError(f"values must be finite and >= 0, got {values}")
        super().__init__(total_steps, warmup_steps, base_lr)
        self.knots_frac, self.values = knots_frac, values
        self.knots = [int(k * self.n) for k in knots_frac]

    def main(self, t: int) -> float:
        k, v = self.knots, self.values
        if t <= k[0]:
            return v[0]
        for i in range(len(k) - 1):
            if t <= k[i + 1]:
                span = k[i + 1] - k[i]
                return v[i + 1] if span == 0 else v[i] + (v[i + 1] - v[i]) * (t - k[i]) / span
        return v[-1]
