"""The synthetic experiments papers/amsgrad/synthetic.py (Reddi et al. Sec. 3 / 5) and papers/diffgrad/synthetic.py
(diffGrad's 1-D non-convex functions): the problems' known optima, and the papers' claims as real (small) runs."""
import csv
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # papers/ is not an installed package
from papers.amsgrad import synthetic as ams  # noqa: E402
from papers.diffgrad import synthetic as dg  # noqa: E402


@pytest.mark.parametrize("name", list(ams.PROBLEMS))
def test_amsgrad_problem_optimum_is_minus_one(name):
    problem = ams.PROBLEMS[name]
    assert problem.C > (problem.period - 1) * problem.b  # losses sum to a positive multiple of x
    grid = torch.linspace(-1, 1, 201).tolist()
    assert min(grid, key=problem.mean_loss) == -1.0 and max(grid, key=problem.mean_loss) == 1.0


def test_amsgrad_problem_deterministic_gradients_follow_period():
    problem = ams.PROBLEMS["sec3_counterexample"]
    assert [problem.coefficient(t, 0.0) for t in range(1, 7)] == [3.0, -1.0, -1.0, 3.0, -1.0, -1.0]


def test_amsgrad_sec3_adam_reaches_worst_point_amsgrad_the_optimum():
    """Theorem 1 (beta1 = 0, beta2 = 1 / (1 + C^2)): Adam ends at +1, AMSGrad at -1."""
    problem = ams.PROBLEMS["sec3_counterexample"]
    adam, amsgrad = ams.run("adam", 1500, problem), ams.run("amsgrad", 1500, problem)
    assert len(adam) == 1501 and all(-1.0 <= x <= 1.0 for x in adam + amsgrad)  # the projection holds
    assert adam[-1] > 0.95 and amsgrad[-1] < -0.95


def test_amsgrad_sec5_online_adam_drifts_to_plus_one():
    """Sec. 5 (C = 1010 every 101 steps, else -10; beta1 0.9, beta2 0.99): Adam -> +1, AMSGrad -> -1."""
    problem = ams.PROBLEMS["sec5_online"]
    adam, amsgrad = ams.run("adam", 10_000, problem), ams.run("amsgrad", 10_000, problem)
    assert adam[-1] > 0.9 and amsgrad[-1] < -0.8


def test_amsgrad_run_is_deterministic_in_seed():
    problem = ams.PROBLEMS["sec5_stochastic"]
    assert ams.run("adam", 300, problem, seed=3) == ams.run("adam", 300, problem, seed=3)
    assert ams.run("adam", 300, problem, seed=3) != ams.run("adam", 300, problem, seed=4)


def test_amsgrad_main_writes_results_and_figure(tmp_path):
    rows = ams.main(tmp_path, steps={name: 200 for name in ams.PROBLEMS})
    with open(tmp_path / "results.csv") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(ams.PROBLEMS) * len(ams.OPTIMIZERS) == len(rows)
    assert {r["reached_global_min"] for r in written} <= {"yes", "no"}
    assert (tmp_path / "trajectories.png").stat().st_size > 0


def test_diffgrad_functions_have_their_known_minima():
    grid = torch.linspace(-2, 2, 400_001, dtype=torch.float64)
    for name, f in dg.FUNCTIONS.items():
        assert float(grid[f(grid).argmin()]) == pytest.approx(dg.GLOBAL_MIN_X[name], abs=1e-3)
    x = torch.tensor
    assert float(dg.f1(x(-0.3))) == 0.0 and float(dg.f1(x(0.2))) == pytest.approx(0.05)
    assert float(dg.f2(x(0.0))) == pytest.approx(0.85) and float(dg.f2(x(-1.0))) == pytest.approx(4.85)
    for b, v in ((-0.5, 0.25), (-0.4, 0.35), (0.0, 0.0), (0.4, 0.35), (0.5, 0.25)):  # F3 continuous at its kinks
        assert float(dg.f3(x(b))) == pytest.approx(v) and float(dg.f3(x(b + 1e-6))) == pytest.approx(v, abs=1e-5)
    assert float(dg.f1(x(1e-7))) == pytest.approx(float(dg.f1(x(0.0))), abs=1e-6)  # F1 continuous at 0


def test_diffgrad_f3_gradient_matches_authors_notebook():
    """F3's slopes are the ``calc_grad`` of shivram1987/diffGrad diffGrad_analytical.ipynb."""
    for xv, slope in ((-1.0, -2.0), (-0.45, 1.0), (-0.2, -7 / 8), (0.2, 7 / 8), (0.45, -1.0), (0.8, 1.6)):
        x = torch.tensor(xv, requires_grad=True)
        dg.f3(x).backward()
        assert float(x.grad) == pytest.approx(slope)


def test_diffgrad_reaches_global_minimum_where_adam_overshoots(tmp_path):
    """The paper's claim on F1 and F2 from x0 = -1: diffGrad ends in the global minimum, Adam and AMSGrad in a local
    one; on F3 diffGrad also ends at the global minimum x = 0."""
    rows = dg.main(tmp_path)
    reached = {(r["function"], r["optimizer"]): r["reached_global_min"] for r in rows}
    assert all(reached[f, "diffgrad"] == "yes" for f in ("F1", "F2", "F3"))
    assert all(reached[f, o] == "no" for f in ("F1", "F2") for o in ("adam", "amsgrad"))
    with open(tmp_path / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == len(dg.FUNCTIONS) * len(dg.OPTIMIZERS)
    assert (tmp_path / "trajectories.png").stat().st_size > 0
