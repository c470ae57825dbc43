"""The synthetic online problems of "On the Convergence of Adam and Beyond", Reddi, Kale, Kumar, arXiv:1904.09237
(ICLR 2018), Sec. 3 (Theorem 1's counterexample) and Sec. 5 ("Synthetic Experiments", Fig. 1).

Online linear losses on the feasible set F = [-1, 1], one gradient per step, projected updates:

    f_t(x) = C x   if t mod p == 1,   else  -b x           (stochastic: C x with probability 1/p, else -b x)

Over a period the losses sum to (C - (p - 1) b) x > 0, so the best point is x* = -1 and +1 is the worst. The
large gradient C comes rarely; Adam's v_t forgets it within ~1/(1 - beta2) steps, so the many small -b gradients
take larger steps than the rare C one and Adam drifts to +1. AMSGrad keeps v_hat_t = max(v_hat_{t-1}, v_t) and
converges to -1. Problems reproduced (``PROBLEMS``):

- ``sec3_counterexample``: Theorem 1, p = 3, b = 1, C = 3 (any C > 2), beta1 = 0, beta2 = 1 / (1 + C^2).
- ``sec5_online``: Sec. 5, p = 101, C = 1010, b = 10, beta1 = 0.9, beta2 = 0.99.
- ``sec5_stochastic``: Sec. 5's stochastic version, same constants, f_t = 1010 x with probability 0.01.

Both optimizers are torch's Adam, ``amsgrad=False`` / ``True`` (papers configure AMSGrad as
``optimizer: {name: adam, kwargs: {amsgrad: true}}``), from x_1 = 0, with alpha_t = alpha / sqrt(t) as in the
paper's analysis, and after each step x <- clip(x, -1, 1) (in 1-D the paper's projection Pi_{F, sqrt(V_t)} is the
clip). Differences from the paper: torch's bias correction of m and v (the paper's Algorithms 1-2 have none; it
changes only the first ~1/(1 - beta2) steps), eps = 1e-8, alpha = 0.5, and 20,000 steps where Fig. 1 runs
millions (the stochastic AMSGrad run moves toward -1 far more slowly than Adam moves to +1 and need not arrive).
"""
from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from shared.optim import create_optimizer
from shared.results.readme import write_section

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OnlineProblem:
    """f_t(x) = C x when t mod period == 1 (or with probability 1/period if stochastic), else -b x; x in [-1, 1]."""

    period: int
    C: float
    b: float
    beta1: float
    beta2: float
    stochastic: bool = False

    def coefficient(self, t: int, u: float) -> float:
        """df_t/dx at step t (1-based); u ~ U[0, 1) draws the stochastic case."""
        rare = u < 1 / self.period if self.stochastic else t % self.period == 1
        return self.C if rare else -self.b

    def mean_loss(self, x: float) -> float:
        """E_t f_t(x) = (C - (p - 1) b) / p * x: minimised at x = -1 when C > (p - 1) b."""
        return (self.C - (self.period - 1) * self.b) / self.period * x


PROBLEMS = {
    "sec3_counterexample": OnlineProblem(period=3, C=3.0, b=1.0, beta1=0.0, beta2=1 / (1 + 3.0 ** 2)),
    "sec5_online": OnlineProblem(period=101, C=1010.0, b=10.0, beta1=0.9, beta2=0.99),
    "sec5_stochastic": OnlineProblem(period=101, C=1010.0, b=10.0, beta1=0.9, beta2=0.99, stochastic=True),
}
OPTIMIZERS = {"adam": False, "amsgrad": True}  # name -> torch Adam's amsgrad flag
X_STAR = -1.0


def run(optimizer_name: str, steps: int, problem: OnlineProblem, alpha: float = 0.5, x0: float = 0.0,
        seed: int = 0) -> list[float]:
    """x_1, ..., x_{steps+1} of projected Adam/AMSGrad on ``problem``, alpha_t = alpha / sqrt(t)."""
    x = torch.tensor([x0], requires_grad=True)
    opt = create_optimizer("adam", [x], lr=alpha, betas=(problem.beta1, problem.beta2), eps=1e-8,
                           amsgrad=OPTIMIZERS[optimizer_name])
    draws = torch.rand(steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).tolist()
    x.grad = torch.zeros(1)
    trajectory = [x0]
    for t in range(1, steps + 1):
        opt.param_groups[0]["lr"] = alpha / math.sqrt(t)  # alpha_t = alpha / sqrt(t)
        x.grad.fill_(problem.coefficient(t, draws[t - 1]))  # grad f_t(x) = C or -b, whatever x
        opt.step()
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)  # x_{t+1} = Pi_F(x_t - alpha_t m_t / sqrt(v_hat_t)), F = [-1, 1]
        trajectory.append(x.detach().item())
    return trajectory


def main(out_dir: str | Path, steps: dict[str, int] | None = None) -> list[dict]:
    """Run every problem x optimizer; write ``results.csv``, ``trajectories.png`` and the README section ``section.md`` into ``out_dir``."""
    steps = {"sec3_counterexample": 3_000, "sec5_online": 20_000, "sec5_stochastic": 20_000, **(steps or {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, trajectories = [], {}
    for pname, problem in PROBLEMS.items():
        for oname in OPTIMIZERS:
            traj = run(oname, steps[pname], problem)
            trajectories[pname, oname] = traj
            x = traj[-1]
            rows.append({"problem": pname, "optimizer": oname, "steps": steps[pname], "final_x": round(x, 6),
                         "final_f": round(problem.mean_loss(x), 6),
                         "mean_x_second_half": round(sum(traj[len(traj) // 2:]) / len(traj[len(traj) // 2:]), 6),
                         "optimum_x": X_STAR,
                         "optimum_f": round(problem.mean_loss(X_STAR), 6),
                         "reached_global_min": "yes" if abs(x - X_STAR) < 0.1 else "no"})
            log.info("%s %s: x = %.4f", pname, oname, x)
    _plot(trajectories, out / "trajectories.png")
    write_section(out, rows, ["trajectories.png"], "python -m papers.amsgrad.synthetic",
                  note="One deterministic run per problem and optimizer (no seeds: the online problems have no randomness except `sec5_stochastic`, whose draw is fixed). `reached_global_min`: final x within 0.1 of the optimum x* = -1.")
    return rows


def _plot(trajectories: dict[tuple[str, str], list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PROBLEMS), figsize=(4.5 * len(PROBLEMS), 3.2), sharey=True)
    for ax, pname in zip(axes, PROBLEMS):
        for oname in OPTIMIZERS:
            traj = trajectories[pname, oname]
            stride = max(1, len(traj) // 2000)
            ax.plot(range(0, len(traj), stride), traj[::stride], label=oname)
        ax.axhline(X_STAR, color="gray", lw=0.8, ls="--")
        ax.set(title=pname, xlabel="step t", ylim=(-1.05, 1.05))
        ax.xaxis.set_major_locator(plt.MaxNLocator(4))
    axes[0].set_ylabel("x_t  (optimum -1)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder for results.csv, trajectories.png and section.md")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(parser.parse_args().out)
