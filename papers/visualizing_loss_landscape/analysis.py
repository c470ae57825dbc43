"""Sharpness of trained runs and their filter-normalised loss surfaces: "Visualizing the Loss Landscape of Neural
Nets", Li, Xu, Taylor, Studer & Goldstein, arXiv:1712.09913.

Per run (``derived``), on a fixed subset S of the run's own training images (the first n in file order, no
augmentation, model in eval mode as in the reference ``evaluation.py`` and shared.landscape):
    hessian_top_eig   = lambda_max(H),  H = grad^2 L_S(theta)  (Lanczos, shared.landscape.hessian_eigs)
    loss_increase_1d  = 1/(2J) sum_{j=1..J} sum_{s=+-1} [L_S(theta + s a d_j) - L_S(theta)]
                        d_j filter-normalised Gaussian directions (§4: d_{i,j} <- d_{i,j} ||theta_{i,j}|| / ||d_{i,j}||)
    subset_loss       = L_S(theta)
The +-a pairs cancel the first-order term g^T d (runs of the small profiles are not at a minimum), leaving
~ a^2/2 d^T H d: a sharpness proxy along the paper's 1-D plots (§3, Fig. 3-4), in filter-normalised units.

Per paper (``section``): 1-D curves f(alpha) = L(theta + alpha d) (§3) of every variant on one plot, and the 2-D
surface f(alpha, beta) = L(theta + alpha d + beta e) (§3-4, Fig. 1 and 5) as contour and 3-D plots, for the first
seed of each variant. Cost and grid sizes per profile: ``SETTINGS`` (README "How to run").
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.config import for_profile
from shared.data import load_data
from shared.data.augment import normalize
from shared.landscape import (evaluate_loss, hessian_eigs, plot_contour, plot_surface_3d, random_direction,
                              surface_1d, surface_2d)
from shared.landscape.runs import image_batches, load_run, pick_device
from shared.models import create_model

# Analysis sizes per profile: images of the fixed subset for the Hessian and for the losses, Lanczos steps, step
# a and number J of the 1-D directions, points of the 1-D curve, points per side of the 2-D grid (on [-1, 1]).
SETTINGS = {
    "smoke": dict(hessian_images=32, loss_images=32, lanczos_iters=3, alpha=0.5, n_directions=2, points_1d=5,
                  points_2d=3),
    "tiny": dict(hessian_images=128, loss_images=256, lanczos_iters=10, alpha=0.5, n_directions=2, points_1d=21,
                 points_2d=9),
    "cpu": dict(hessian_images=512, loss_images=1024, lanczos_iters=20, alpha=0.5, n_directions=2, points_1d=41,
                points_2d=15),  # 15x15: ~4 min per surface on one AVX2 core
    "paper": dict(hessian_images=2048, loss_images=10000, lanczos_iters=30, alpha=0.5, n_directions=2,
                  points_1d=51, points_2d=51),
}
DIRECTION_SEED = 0  # the same Gaussian draws for every run, each filter-normalised to that run's weights


def settings(profile: str) -> dict:
    """``SETTINGS`` of the profile, or of the profile it extends by name (``cpu_early`` -> ``cpu``)."""
    return for_profile(SETTINGS, profile, "analysis settings")


def directions(model, count: int, seed: int = DIRECTION_SEED) -> list[dict]:
    """``count`` filter-normalised Gaussian directions (Li et al. §4), biases and BN parameters at 0."""
    gen = torch.Generator().manual_seed(seed)
    return [random_direction(model, norm="filter", ignore_bias_bn=True, generator=gen) for _ in range(count)]


def loss_increase_1d(model, batches, dirs: list[dict], alpha: float) -> float:
    """1/(2J) sum_j sum_{s=+-1} [L(theta + s alpha d_j) - L(theta)] (Li et al. §3 1-D plots, §4 directions)."""
    increases = []
    for d in dirs:
        curve = surface_1d(model, d, [-alpha, 0.0, alpha], batches)
        increases += [curve["loss"][0] - curve["loss"][1], curve["loss"][2] - curve["loss"][1]]
    return float(np.mean(increases))


def derived_metrics(model, data, profile: str) -> dict:
    """The per-run metrics of the module docstring for ``profile``'s settings."""
    s = settings(profile)
    hessian_batches = image_batches(data, "train", s["hessian_images"], next(model.parameters()).device)
    loss_batches = image_batches(data, "train", s["loss_images"], next(model.parameters()).device)
    top, _ = hessian_eigs(model, F.cross_entropy, hessian_batches, k=1, iters=s["lanczos_iters"], seed=0)
    dirs = directions(model, s["n_directions"])
    return {"hessian_top_eig": float(top[0]),
            "loss_increase_1d": loss_increase_1d(model, loss_batches, dirs, s["alpha"]),
            "subset_loss": evaluate_loss(model, loss_batches)["loss"]}


def write_derived(run_dir: str | Path, profile: str, out: str | Path, device: str = "auto") -> dict:
    run = load_run(run_dir, pick_device(device))
    model, data, meta = run.model, run.data, run.meta
    result = {"metrics": derived_metrics(model, data, profile),
              "details": {"profile": profile, "settings": settings(profile), "variant": meta.get("variant")}}
    Path(out).write_text(json.dumps(result, indent=2))
    return result


def plot_curves_1d(curves: dict[str, dict], path: Path) -> Path:
    """Every variant's 1-D filter-normalised curve on one axis (Li et al. Fig. 3-4 style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for name, curve in curves.items():
        ax.plot(curve["x"], curve["loss"], label=name)
    ax.set_xlabel("alpha (filter-normalised direction)")
    ax.set_ylabel("train-subset loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_section(run_dirs: dict[str, Path], profile: str, out_dir: str | Path, device: str = "auto") -> Path:
    """1-D curves of all variants and a 2-D contour + 3-D surface per variant, one seed each (``run_dirs``:
    {variant: run dir}); rows of the section table from each run's derived.json and the 2-D grid."""
    from shared.results.readme import write_section as write_md

    s, out_dir = settings(profile), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    xs1 = np.linspace(-1, 1, s["points_1d"])
    xs2 = np.linspace(-1, 1, s["points_2d"])
    curves, rows, figures = {}, [], []
    for variant, run_dir in run_dirs.items():
        run = load_run(run_dir, pick_device(device))
        model, data, meta = run.model, run.data, run.meta
        batches = image_batches(data, "train", s["loss_images"], next(model.parameters()).device)
        d, e = directions(model, 2)
        for stale in (out_dir / f"{variant}_1d.csv", out_dir / f"{variant}_2d.csv"):
            stale.unlink(missing_ok=True)  # grids of an earlier run or profile must not be read back
        curves[variant] = surface_1d(model, d, xs1, batches, csv_path=out_dir / f"{variant}_1d.csv")
        grid = surface_2d(model, d, e, xs2, xs2, batches, csv_path=out_dir / f"{variant}_2d.csv")
        title = f"{variant} seed {meta.get('seed')} ({profile})"
        vmax = max(10.0, 2 * float(np.nanmin(grid["loss"])))  # clip as the paper's plots do (loss <= 10)
        figures += [plot_contour(grid, out_dir / f"{variant}_contour.png", vmax=vmax, title=title).name,
                    plot_surface_3d(grid, out_dir / f"{variant}_surface3d.png", vmax=vmax, title=title).name]
        derived_path = Path(run_dir) / "derived.json"
        derived = json.loads(derived_path.read_text())["metrics"] if derived_path.is_file() else {}
        rows.append({"variant": f"`{variant}`", "seed": meta.get("seed"),
                     "loss at theta": f"{grid['loss'][len(xs2) // 2, len(xs2) // 2]:.4g}",
                     "max loss on grid": f"{np.nanmax(grid['loss']):.4g}",
                     "hessian_top_eig": f"{derived.get('hessian_top_eig', float('nan')):.4g}",
                     "loss_increase_1d": f"{derived.get('loss_increase_1d', float('nan')):.4g}"})
    figures.insert(0, plot_curves_1d(curves, out_dir / "curves_1d.png").name)
    note = (f"Profile `{profile}`, first seed of each variant: train-subset loss ({s['loss_images']} images, eval "
            f"mode) along filter-normalised random directions d, e (Li et al. §4), alpha, beta in [-1, 1] "
            f"({s['points_1d']} points in 1-D, {s['points_2d']}x{s['points_2d']} in 2-D); the same Gaussian draws "
            "for every variant. Sharpness columns: this run's derived.json.")
    return write_md(out_dir, rows, figures, f"python -m papers.visualizing_loss_landscape.analysis section "
                                            f"--profile {profile}", note)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derived", help="sharpness metrics of one run -> derived.json")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("section", help="1-D/2-D surfaces of one run per variant -> section.md")
    p.add_argument("--run", action="append", required=True, metavar="VARIANT=RUN_DIR")
    p.add_argument("--profile", required=True)
    p.add_argument("--out-dir", required=True)
    for p in sub.choices.values():
        p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    args = parser.parse_args(argv)
    if args.command == "derived":
        write_derived(args.run_dir, args.profile, args.out, args.device)
    else:
        write_section(dict(item.split("=", 1) for item in args.run), args.profile, args.out_dir, args.device)


if __name__ == "__main__":
    main()
