"""The synthetic non-convex 1-D functions of "diffGrad: An Optimization Method for Convolutional Neural Networks",
Dubey et al., arXiv:1909.11015, its empirical analysis on three synthetic non-convex functions F1, F2, F3:
SGDM, Adam, AMSGrad and diffGrad start from the same point; the claim is that diffGrad's friction coefficient damps
the step near an optimum, so it settles in the global minimum where Adam and AMSGrad overshoot into a local one.

    F1(x) = (x + 0.3)^2                    x <= 0        global min x = -0.3 (F = 0); local min x = 0.2 (F = 0.05)
            (x - 0.2)^2 + 0.05             x > 0
    F2(x) = -40 x - 35.15                  x <= -0.9     global min x ~ -0.6429 (F ~ 1.2e-4);
            x^3 + x sin(8 x) + 0.85        x > -0.9      local minima at x = 0 (F = 0.85) and x ~ 0.588
    F3(x) = x^2                            x <= -0.5     global min x = 0 (F = 0);
            0.75 + x                       -0.5 < x <= -0.4            local minima x = -0.5 and 0.5 (F = 0.25)
            -7 x / 8                       -0.4 < x <= 0
            7 x / 8                        0 < x <= 0.4
            0.75 - x                       0.4 < x <= 0.5
            x^2                            x > 0.5

Provenance of the definitions: F3 is exactly the gradient ``calc_grad`` of the authors' notebook
(shivram1987/diffGrad ``diffGrad_analytical.ipynb``). F1 and F2 are written from memory of the paper and could not
be checked against its text here; F2 as written jumps by 0.015 at x = -0.9 (0.85 from the left, 0.835 from the
right), which only matters as the start region (slope -40). Settings follow that notebook: x_0 = -1, 300 steps,
lr 0.1, betas (0.95, 0.999), eps 1e-8, for all four optimizers (SGDM: torch SGD, momentum 0.9, lr 0.1: the
paper's SGDM settings are not known here; SGD's steps scale with the gradient, 40 on F2's left piece, so its
result is lr-sensitive). Adam and AMSGrad are torch's (``amsgrad=True``); diffGrad is shared/optim/diffgrad.py.
A run reaches the global minimum when |x_T - x*| <= 0.05.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Callable

import torch

import shared.optim.diffgrad  # noqa: F401  (registers "diffgrad" until shared.optim imports it)
from shared.optim import create_optimizer
from shared.results.readme import write_section

log = logging.getLogger(__name__)


def f1(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0, (x + 0.3) ** 2, (x - 0.2) ** 2 + 0.05)


def f2(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= -0.9, -40 * x - 35.15, x ** 3 + x * torch.sin(8 * x) + 0.85)


def f3(x: torch.Tensor) -> torch.Tensor:
    pieces = [(-0.5, x ** 2), (-0.4, 0.75 + x), (0.0, -7 * x / 8), (0.4, 7 * x / 8), (0.5, 0.75 - x)]
    out = x ** 2  # x > 0.5
    for upper, value in reversed(pieces):  # the first piece whose upper bound x does not exceed wins
        out = torch.where(x <= upper, value, out)
    return out


FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"F1": f1, "F2": f2, "F3": f3}
GLOBAL_MIN_X = {"F1": -0.3, "F2": -0.6429, "F3": 0.0}  # F2's from a 1e-5 grid on [-2, 2]
# name -> (registry name, kwargs); all share lr = 0.1
OPTIMIZERS: dict[str, tuple[str, dict]] = {
    "sgdm": ("sgd", {"momentum": 0.9}),
    "adam": ("adam", {"betas": (0.95, 0.999), "eps": 1e-8}),
    "amsgrad": ("adam", {"betas": (0.95, 0.999), "eps": 1e-8, "amsgrad": True}),
    "diffgrad": ("diffgrad", {"betas": (0.95, 0.999), "eps": 1e-8}),
}


def run(optimizer_name: str, steps: int, function: str, lr: float = 0.1, x0: float = -1.0) -> list[float]:
    """x_0, ..., x_steps of ``optimizer_name`` minimising ``FUNCTIONS[function]`` from x0."""
    name, kwargs = OPTIMIZERS[optimizer_name]
    x = torch.tensor([x0], requires_grad=True)
    opt = create_optimizer(name, [x], lr=lr, **kwargs)
    f = FUNCTIONS[function]
    trajectory = [x0]
    for _ in range(steps):
        opt.zero_grad()
        f(x).sum().backward()
        opt.step()
        trajectory.append(x.detach().item())
    return trajectory


def main(out_dir: str | Path, steps: int = 300) -> list[dict]:
    """Run every function x optimizer; write ``results.csv``, ``trajectories.png`` and the README section ``section.md`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, trajectories = [], {}
    for fname, f in FUNCTIONS.items():
        x_star = GLOBAL_MIN_X[fname]
        for oname in OPTIMIZERS:
            traj = run(oname, steps, fname)
            trajectories[fname, oname] = traj
            x = traj[-1]
            rows.append({"function": fname, "optimizer": oname, "steps": steps, "final_x": round(x, 6),
                         "final_f": round(float(f(torch.tensor(x))), 6), "global_min_x": x_star,
                         "global_min_f": round(float(f(torch.tensor(x_star))), 6),
                         "reached_global_min": "yes" if abs(x - x_star) <= 0.05 else "no"})
            log.info("%s %s: x = %.4f", fname, oname, x)
    _plot(trajectories, out / "trajectories.png")
    write_section(out, rows, ["trajectories.png"], "python -m papers.diffgrad.synthetic",
                  note="One deterministic run per function and optimizer from x = -1. `reached_global_min`: final x within 0.05 of the global minimum.")
    return rows


def _plot(trajectories: dict[tuple[str, str], list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(FUNCTIONS), figsize=(4.5 * len(FUNCTIONS), 6.0))
    for col, (fname, f) in enumerate(FUNCTIONS.items()):
        grid = torch.linspace(-1.2, 1.0, 500)
        axes[0, col].plot(grid, f(grid), color="black", lw=1)
        axes[0, col].set(title=f"{fname}(x)", xlabel="x")
        for oname in OPTIMIZERS:
            traj = trajectories[fname, oname]
            axes[1, col].plot(range(len(traj)), traj, label=oname)
            x_end = min(max(traj[-1], -1.2), 1.0)  # a diverged run is drawn at the edge of the plot
            axes[0, col].plot(x_end, float(f(torch.tensor(x_end))), "o", ms=5, label=oname)
        axes[1, col].axhline(GLOBAL_MIN_X[fname], color="gray", lw=0.8, ls="--")
        axes[1, col].set(xlabel="step", ylabel="x_t", ylim=(-1.2, 1.2))
    axes[1, 0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder for results.csv, trajectories.png and section.md")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(parser.parse_args().out)
