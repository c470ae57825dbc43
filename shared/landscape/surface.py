"""Loss and accuracy on a 1-D or 2-D grid of weights: "Visualizing the Loss Landscape of Neural Nets", Li et al.,
arXiv:1712.09913, §3 and §4:

    1-D:  f(alpha)   = L(theta* + alpha delta)                  (§3, "1-Dimensional Linear Interpolation")
    2-D:  f(alpha, beta) = L(theta* + alpha delta + beta eta)   (§3, "Contour Plots & Random Directions")

with delta, eta from ``shared.landscape.directions`` (filter-normalized, §4). The loss at each grid point is the mean
over every example of ``batches`` (batch means weighted by batch size), with the model in eval mode, as the reference
(tomgoldstein/loss-landscape ``evaluation.py``: ``net.eval()``) does: BN uses its running statistics, which the
directions do not move.

Resumable: with ``csv_path`` each grid point is appended to the CSV (and flushed) as soon as it is computed, and
points already in the file are skipped, so a killed job continues where it stopped (the reference does the same
with an HDF5 file). The model's weights are restored afterwards.
Deviations: none in the math; CSV instead of HDF5.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.landscape.directions import Direction, trainable_parameters

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
KEY_DECIMALS = 9  # grid coordinates are matched to the CSV's rows after rounding to this many decimals


@torch.no_grad()
def evaluate_loss(model: nn.Module, batches: Iterable, loss_fn: LossFn = F.cross_entropy
                  ) -> dict[str, float]:
    """Mean loss and accuracy over all examples of ``batches`` (an iterable of (x, y)), in eval mode.

    L = sum_b n_b L_b / sum_b n_b, with L_b the batch mean ``loss_fn(model(x), y)``. Accuracy is NaN unless the
    outputs are (N, classes) logits and y integer labels. The model's train/eval mode is restored.
    """
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    loss_sum, correct, count, classification = 0.0, 0, 0, True
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            out = model(x)
            n = y.shape[0]
            loss_sum += float(loss_fn(out, y)) * n  # n_b L_b
            classification &= out.dim() == 2 and out.shape[1] > 1 and not torch.is_floating_point(y)
            if classification:
                correct += int((out.argmax(dim=1) == y).sum())
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("batches is empty")
    return {"loss": loss_sum / count, "accuracy": correct / count if classification else math.nan}


@torch.no_grad()
def set_weights(model: nn.Module, origin: Mapping[str, torch.Tensor], directions: Sequence[Direction],
                coords: Sequence[float]) -> None:
    """theta <- theta* + sum_k c_k d_k (Li et al. §3), for every trainable parameter."""
    for name, p in trainable_parameters(model).items():
        w = origin[name].clone()
        for c, d in zip(coords, directions):
            w.add_(d[name], alpha=float(c))
        p.copy_(w)


def _grid_key(coords: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(c), KEY_DECIMALS) for c in coords)


def read_rows(csv_path: str | Path) -> list[dict[str, float]]:
    """Every complete row of a surface CSV, values as floats (a partial last row, from a killed job, is skipped)."""
    rows = []
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows.append({k: float(v) for k, v in row.items()})
            except (TypeError, ValueError):
                continue
    return rows


def surface(model: nn.Module, directions: Sequence[Direction], grid: Iterable[Sequence[float]], batches,
            csv_path: str | Path | None = None, loss_fn: LossFn = F.cross_entropy,
            axis_names: Sequence[str] = ("x", "y")) -> list[dict[str, float]]:
    """Loss/accuracy at every point c of ``grid``: f(c) = L(theta* + sum_k c_k d_k) (Li et al. §3).

    ``batches`` must be re-iterable (e.g. a list of (x, y)). Returns one row per grid point, in grid order, with
    the coordinates under ``axis_names`` and "loss", "accuracy". With ``csv_path`` rows are appended as they are
    computed and points already in the file are read back instead of recomputed.
    """
    names = list(axis_names[: len(directions)])
    if len(names) != len(directions):
        raise ValueError(f"need {len(directions)} axis names, got {axis_names}")
    columns = names + ["loss", "accuracy"]
    done: dict[tuple[float, ...], dict[str, float]] = {}
    writer_file = None
    if csv_path is not None:
        csv_path = Path(csv_path)
        if csv_path.exists() and csv_path.stat().st_size > 0:
            with open(csv_path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != columns:
                raise ValueError(f"{csv_path}: columns {header} do not match {columns}")
            text = csv_path.read_text()
            if not text.endswith("\n"):  # a job killed mid-row: drop the partial row before reading
                csv_path.write_text(text[: text.rfind("\n") + 1])
            done = {_grid_key([row[n] for n in names]): row for row in read_rows(csv_path)}
        else:
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            csv_path.write_text(",".join(columns) + "\n")
        writer_file = open(csv_path, "a", newline="")
    origin = {name: p.detach().clone() for name, p in trainable_parameters(model).items()}
    rows = []
    try:
        for coords in grid:
            key = _grid_key(coords)
            if key not in done:
                set_weights(model, origin, directions, coords)
                metrics = evaluate_loss(model, batches, loss_fn)
                done[key] = dict(zip(names, map(float, coords)), **metrics)
                if writer_file is not None:
                    writer_file.write(",".join(repr(float(done[key][c])) for c in columns) + "\n")
                    writer_file.flush()  # a killed job keeps every finished point
            rows.append(done[key])
    finally:
        set_weights(model, origin, [], [])
        if writer_file is not None:
            writer_file.close()
    return rows


def surface_1d(model: nn.Module, direction: Direction, xs: Sequence[float], batches,
               csv_path: str | Path | None = None, loss_fn: LossFn = F.cross_entropy) -> dict[str, np.ndarray]:
    """f(alpha) = L(theta* + alpha delta) for alpha in ``xs`` (Li et al. §3). Returns arrays x, loss, accuracy."""
    rows = surface(model, [direction], [(x,) for x in xs], batches, csv_path, loss_fn)
    return {k: np.array([r[k] for r in rows]) for k in ("x", "loss", "accuracy")}


def surface_2d(model: nn.Module, dx: Direction, dy: Direction, xs: Sequence[float], ys: Sequence[float], batches,
               csv_path: str | Path | None = None, loss_fn: LossFn = F.cross_entropy) -> dict[str, np.ndarray]:
    """f(alpha, beta) = L(theta* + alpha delta + beta eta) on xs x ys (Li et al. §3). Returns x, y and (len(xs),
    len(ys)) arrays loss, accuracy with loss[i, j] at (xs[i], ys[j])."""
    rows = surface(model, [dx, dy], [(x, y) for x in xs for y in ys], batches, csv_path, loss_fn)
    shape = (len(xs), len(ys))
    return {"x": np.asarray(xs, dtype=float), "y": np.asarray(ys, dtype=float),
            **{k: np.array([r[k] for r in rows]).reshape(shape) for k in ("loss", "accuracy")}}


def grid_from_csv(csv_path: str | Path) -> dict[str, np.ndarray]:
    """A 2-D surface CSV as ``surface_2d`` returns it (x and y sorted; points missing from the CSV are NaN)."""
    rows = read_rows(csv_path)
    xs, ys = sorted({r["x"] for r in rows}), sorted({r["y"] for r in rows})
    out = {"x": np.array(xs), "y": np.array(ys)}
    for k in ("loss", "accuracy"):
        grid = np.full((len(xs), len(ys)), np.nan)
        for r in rows:
            grid[xs.index(r["x"]), ys.index(r["y"])] = r[k]
        out[k] = grid
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: cluster nodes and CI have no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    fig.clf()
    _pyplot().close(fig)
    return path


def plot_1d(curve: Mapping[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """Loss (left axis) and accuracy (right axis, if finite) against alpha, as Li et al.'s Fig. 2/3."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.plot(curve["x"], curve["loss"], color="C0")
    ax.set_xlabel("alpha")
    ax.set_ylabel("loss", color="C0")
    if np.isfinite(curve["accuracy"]).any():
        ax.twinx().plot(curve["x"], curve["accuracy"], color="C1", linestyle="--")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_contour(grid: Mapping[str, np.ndarray], path: str | Path, levels: Sequence[float] | int = 20,
                 vmax: float | None = None, title: str = "") -> Path:
    """2-D contour plot of the loss (Li et al. Fig. 5). ``vmax`` clips the loss (the paper's plots use ~10)."""
    plt = _pyplot()
    loss = grid["loss"] if vmax is None else np.minimum(grid["loss"], vmax)
    fig, ax = plt.subplots(figsize=(4.2, 3.6))
    # loss[i, j] is at (x[i], y[j]); contour wants Z[row=y, col=x]
    cs = ax.contour(grid["x"], grid["y"], loss.T, levels=levels, cmap="viridis")
    ax.clabel(cs, inline=True, fontsize=6)
    ax.set_xlabel("delta")
    ax.set_ylabel("eta")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_surface_3d(grid: Mapping[str, np.ndarray], path: str | Path, vmax: float | None = None,
                    title: str = "") -> Path:
    """3-D surface plot of the loss (Li et al. Fig. 1)."""
    plt = _pyplot()
    loss = grid["loss"] if vmax is None else np.minimum(grid["loss"], vmax)
    x, y = np.meshgrid(grid["x"], grid["y"], indexing="ij")
    fig = plt.figure(figsize=(4.8, 4.0))
    ax = fig.add_subplot(projection="3d")
    ax.plot_surface(x, y, loss, cmap="viridis", linewidth=0, antialiased=True)
    ax.set_xlabel("delta")
    ax.set_ylabel("eta")
    ax.set_zlabel("loss")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)
