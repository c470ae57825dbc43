"""Layer-wise barriers and their second-order prediction, for "Landscaping Linear Mode Connectivity", Singh,
Adilova, Kamp, Fischer, Schölkopf & Hofmann, arXiv:2406.16300 (its abstract: a theoretical analysis of the barrier
height "extends as a faithful predictor of layer-wise LMC").

For two independently trained models A, B and a set S of layers (parameter groups), interpolate only S:

    theta_S(alpha) = theta_A + alpha P_S (theta_B - theta_A)          (P_S keeps the entries of the layers in S)
    B_S = max_alpha [ L(theta_S(alpha)) - ((1 - alpha) L(theta_S(0)) + alpha L(theta_S(1))) ]

(barrier of Entezari et al., arXiv:2110.06296, Def. 1, via ``shared.landscape.loss_barrier``), for S = {layer l}
(per layer) and S = {layers 1..l} (per depth; l = all is the full model). The prediction is the second-order
Taylor expansion of L about the segment's midpoint m_S = theta_S(1/2), with delta_S = P_S (theta_A - theta_B):

    L(theta_S(0)) + L(theta_S(1)) = 2 L(m_S) + (1/4) delta_S^T H(m_S) delta_S + O(|delta_S|^3)
    => L(m_S) - (L(theta_S(0)) + L(theta_S(1))) / 2  ~=  -(1/8) delta_S^T H(m_S) delta_S

(the gradient terms cancel: a barrier at the midpoint needs negative curvature along the segment there, a ridge).
This is our own derivation of the quantity the abstract names; the paper's equations are not quoted here. H is the
Hessian of the loss on a fixed image subset, restricted to the parameters of S (``shared.landscape.make_hvp``),
in eval mode. Models with BatchNorm get their statistics re-estimated at every point (``reset_bn_stats``).
Layers: an MLP's Linear layers (with any norm after them); other models' top-level children, with ``blocks``
split into its blocks (a CIFAR ResNet: stem, blocks.0 ... blocks.8, fc).

Along training: when both runs kept weights (``train.keep_weights_at``), the same layer-wise analysis runs on the
pair's weights at every step both kept (``over_training`` in derived.json): when, and in which layers, the barrier
between the two runs appears (the abstract's "geometric features ... along the training runs").

    python -m papers.landscaping_lmc.analysis derived --run-dir A --partner-dir B --out A/derived.json
    python -m papers.landscaping_lmc.analysis section --runs-root runs/landscaping_lmc/tiny --out-dir results/...
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr

from shared.data import load_data
from shared.data.augment import normalize
from shared.landscape import evaluate_loss, flatten, interpolate_state_dicts, loss_barrier, make_hvp, reset_bn_stats
from shared.landscape.runs import analyse_kept_steps, image_batches, kept_steps, load_run, pair_settings
from shared.models import create_model
from shared.models.mlp import MLP
from shared.results.tables import values_mean_std
from shared.train.checkpoint import kept_weights

PARTNER_SUFFIX = "_partner"
SETTINGS = {"smoke": {"n_images": 64, "n_alphas": 3}, "tiny": {"n_images": 256, "n_alphas": 5},
            "cpu": {"n_images": 1000, "n_alphas": 9}, "paper": {"n_images": 5000, "n_alphas": 11}}


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Ordered layers -> their state_dict keys (see the module docstring for what a layer is)."""
    keys = list(model.state_dict())
    if isinstance(model, MLP):
        linears = [i for i, m in enumerate(model.net) if isinstance(m, nn.Linear)]
        owner = lambda k: max(i for i in linears if i <= int(k.split(".")[1]))  # noqa: E731 (norm -> its Linear)
        return {f"net.{i}": [k for k in keys if owner(k) == i] for i in linears}
    names = []
    for name, child in model.named_children():
        split = name == "blocks" and len(list(child.children())) > 0
        names += [f"blocks.{i}" for i in range(len(list(child.children())))] if split else [name]
    groups = {n: [k for k in keys if k.startswith(n + ".")] for n in names}
    return {n: ks for n, ks in groups.items() if ks}


def restricted(state_a: dict, state_b: dict, keys: list[str]) -> dict:
    """theta_A with the entries ``keys`` taken from B: the far end theta_S(1) of the segment that moves only S."""
    return {k: (state_b[k] if k in keys else v) for k, v in state_a.items()}


def _evaluate(model: nn.Module, state: dict, batches: list) -> float:
    model.load_state_dict(state)
    reset_bn_stats(model, batches)  # no-op without BatchNorm
    return evaluate_loss(model, batches)["loss"]


def segment(model: nn.Module, state_a: dict, state_b: dict, keys: list[str], alphas, batches: list) -> dict:
    """Measured barrier B_S and predicted -(1/8) delta_S^T H(m_S) delta_S for the layers ``keys``."""
    far = restricted(state_a, state_b, keys)
    names = [n for n, p in model.named_parameters() if n in keys and p.requires_grad]
    delta = flatten([state_a[n] - state_b[n] for n in names])  # delta_S = P_S (theta_A - theta_B)
    losses, h_delta = [], None
    for alpha in alphas:
        losses.append(_evaluate(model, interpolate_state_dicts(state_a, far, alpha), batches))
        if alpha == 0.5:  # at the midpoint m_S: H(m_S) delta_S, H restricted to the parameters of S
            params = dict(model.named_parameters())
            h_delta = make_hvp(model, F.cross_entropy, batches, [params[n] for n in names])(delta)
    return {"barrier": loss_barrier(alphas, losses), "predicted": float(-delta @ h_delta / 8),
            "midpoint_excess": losses[len(alphas) // 2] - (losses[0] + losses[-1]) / 2, "losses": losses}


def layerwise(model: nn.Module, state_a: dict, state_b: dict, batches: list, n_alphas: int) -> dict:
    """Per layer (S = {l}), per depth (S = {1..l}) and the full model (S = all); ``n_alphas`` odd (holds 1/2)."""
    if n_alphas % 2 == 0:
        raise ValueError(f"n_alphas must be odd so that alpha = 1/2 is on the grid, got {n_alphas}")
    alphas = np.linspace(0.0, 1.0, n_alphas).tolist()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    groups, rows = layer_groups(model), []
    try:
        first = []
        for name, keys in groups.items():
            first += keys
            rows.append({"layer": name, **{f"layer_{k}": v for k, v in segment(
                model, state_a, state_b, keys, alphas, batches).items()},
                **{f"depth_{k}": v for k, v in segment(model, state_a, state_b, first, alphas, batches).items()}})
    finally:
        model.load_state_dict(saved)
    full, layer_b = rows[-1], [r["layer_barrier"] for r in rows]  # depth = all layers is the full model
    # the prediction is of the midpoint excess (a barrier also counts the endpoints, so it is >= 0)
    excess, predicted = [r["layer_midpoint_excess"] for r in rows], [r["layer_predicted"] for r in rows]
    ranked = len(rows) > 2 and np.ptp(excess) > 0 and np.ptp(predicted) > 0  # Spearman needs non-constant inputs
    rho = spearmanr(excess, predicted).statistic if ranked else float("nan")
    metrics = {"full_loss_barrier": full["depth_barrier"], "full_predicted_midpoint_excess": full["depth_predicted"],
               "full_midpoint_excess": full["depth_midpoint_excess"], "max_layer_barrier": max(layer_b),
               "sum_layer_barrier": float(sum(layer_b)),
               "layer_prediction_spearman": float(rho) if np.isfinite(rho) else float("nan")}
    return {"metrics": metrics, "layers": rows, "alpha": alphas}


OVER_TRAINING_LAYER_KEYS = ("layer_barrier", "layer_midpoint_excess", "layer_predicted", "depth_barrier")


def over_training(model: nn.Module, kept_a: dict[int, Path], kept_b: dict[int, Path], batches: list,
                  n_alphas: int, final: tuple) -> dict:
    """``layerwise`` at each step both runs kept weights (``kept_*``: ``kept_weights`` of each run); ``final`` =
    (final state a, final state b, their ``layerwise`` result), reused at a kept step that holds the final weights
    (``analyse_kept_steps``). Returns ``{"step": steps, "layers": names, "metrics": {name: [value per step]}, key:
    [[value per layer] per step]}`` for the keys in ``OVER_TRAINING_LAYER_KEYS``."""
    device = next(model.parameters()).device
    by_step = analyse_kept_steps(kept_a, kept_b, lambda a, b: layerwise(model, a, b, batches, n_alphas), final, device)
    out: dict = {"step": list(by_step), "layers": list(layer_groups(model)), "metrics": {},
                 **{k: [] for k in OVER_TRAINING_LAYER_KEYS}}
    for at in by_step.values():
        for name, value in at["metrics"].items():
            out["metrics"].setdefault(name, []).append(value)
        for key in OVER_TRAINING_LAYER_KEYS:
            out[key].append([row[key] for row in at["layers"]])
    return out


def derived(run_dir, partner_dir, out, device: str = "cpu", n_images: int | None = None,
            n_alphas: int | None = None) -> dict:
    """``derived.json``: layer-wise barriers of the pair (run, partner); ``{}`` metrics for a partner run."""
    result: dict = {"metrics": {}}
    if partner_dir is not None:
        meta_a, meta_b = (json.loads((Path(d) / "meta.json").read_text()) for d in (run_dir, partner_dir))
        strip = lambda c: {k: v for k, v in c.items() if k not in ("seed", "device")}  # noqa: E731
        if strip(meta_a["config"]) != strip(meta_b["config"]):
            raise ValueError(f"{run_dir} and {partner_dir} differ in more than the seed")
        settings = pair_settings(SETTINGS, meta_a.get("profile"), n_images, n_alphas)
        run_a = load_run(run_dir, device)
        run_b = load_run(partner_dir, device, data=run_a.data)
        model, state_a, state_b = run_a.model, run_a.state, run_b.state
        batches = image_batches(run_a.data, "train", settings["n_images"], device)  # no augmentation
        final = layerwise(model, state_a, state_b, batches, settings["n_alphas"])
        result = {**final, "n_images": sum(len(y) for _, y in batches), "partner": str(partner_dir)}
        kept_a, kept_b = kept_weights(run_dir), kept_weights(partner_dir)
        if kept_a.keys() & kept_b.keys():  # weights kept along training: the same analysis at each common step
            result["over_training"] = over_training(model, kept_a, kept_b, batches, settings["n_alphas"],
                                                    (state_a, state_b, final))
    Path(out).write_text(json.dumps(result, indent=2))
    return result


def over_training_rows(by_variant: dict[str, list[dict]]) -> list[dict]:
    """Per variant and kept step (those every pair has): the full-model barrier, the largest layer's barrier and
    which layer it is (of the mean over seeds), the full model's midpoint excess vs its prediction, and the
    layer-wise rank correlation; mean ± sample std over seeds (no highest layer where every layer's barrier is 0)."""
    rows = []
    for variant, (kept, steps) in kept_steps(by_variant).items():
        layers = kept[0]["layers"]
        for step in steps:
            at = lambda name: [k["metrics"][name][k["step"].index(step)] for k in kept]  # noqa: E731
            per_layer = np.mean([k["layer_barrier"][k["step"].index(step)] for k in kept], axis=0)
            highest = f"`{layers[int(np.argmax(per_layer))]}`" if per_layer.max() > 0 else "–"  # none if all 0
            rows.append({"variant": f"`{variant}`", "step": step, "seeds": len(kept),
                         "full loss barrier": values_mean_std(at("full_loss_barrier")),
                         "max layer barrier": values_mean_std(at("max_layer_barrier")),
                         "highest layer (mean)": highest,
                         "sum layer barrier": values_mean_std(at("sum_layer_barrier")),
                         "full midpoint excess": values_mean_std(at("full_midpoint_excess")),
                         "full predicted": values_mean_std(at("full_predicted_midpoint_excess")),
                         "layer Spearman": values_mean_std(at("layer_prediction_spearman"))})
    return rows


def plot_over_training(by_variant: dict[str, list[dict]], path: Path) -> None:
    """Per variant (a column): each layer's barrier and the full model's vs training step (top), the full model's
    midpoint excess and its second-order prediction vs step (bottom); means over seeds, symlog step axis."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kept = kept_steps(by_variant)
    n = max(1, len(kept))
    fig, axes = plt.subplots(2, n, figsize=(4.5 * n, 6), squeeze=False, sharex="col")
    for col, (variant, (runs, steps)) in enumerate(kept.items()):
        index = [[k["step"].index(t) for t in steps] for k in runs]
        layers = runs[0]["layers"]
        per_layer = np.mean([np.asarray(k["layer_barrier"])[i] for k, i in zip(runs, index)], axis=0)

        def mean(name: str) -> np.ndarray:
            return np.mean([np.asarray(k["metrics"][name])[i] for k, i in zip(runs, index)], axis=0)

        top, bottom = axes[0][col], axes[1][col]
        colours = plt.cm.viridis(np.linspace(0, 0.9, len(layers)))
        for j, (layer, colour) in enumerate(zip(layers, colours)):
            top.plot(steps, per_layer[:, j], color=colour, lw=1, label=layer)
        top.plot(steps, mean("full_loss_barrier"), "k-", lw=2, marker="o", ms=3, label="full model")
        top.set_title(variant, fontsize=9)
        top.legend(fontsize=6, ncol=2)
        bottom.plot(steps, mean("full_midpoint_excess"), "k-", marker="o", ms=3, label="measured L(m) - mean of ends")
        bottom.plot(steps, mean("full_predicted_midpoint_excess"), "r--", marker="s", ms=3, label="-(1/8) δᵀHδ")
        bottom.axhline(0, color="grey", lw=0.5)
        bottom.legend(fontsize=7)
        bottom.set_xlabel("training step (weights kept)")
        for ax in (top, bottom):
            ax.set_xscale("symlog", linthresh=max(1, min([t for t in steps if t > 0], default=1)))
            ax.set_xlim(left=0)
    axes[0][0].set_ylabel("loss barrier (train subset)")
    axes[1][0].set_ylabel("full model, midpoint")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_layers_section(runs_root, out_dir) -> Path:
    """``out_dir/section.md`` + ``layers.png``: per layer and per depth, measured vs predicted barrier, mean ± std
    over seeds, one table per A variant."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from shared.results.readme import write_section  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_variant: dict[str, list[dict]] = {}
    for path in sorted(Path(runs_root).glob("*/seed*/derived.json")):
        result = json.loads(path.read_text())
        if not path.parents[1].name.endswith(PARTNER_SUFFIX) and result["metrics"]:
            by_variant.setdefault(path.parents[1].name, []).append(result)
    rows, n = [], max(1, len(by_variant))
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.2), squeeze=False)
    for ax, (variant, results) in zip(axes[0], by_variant.items()):
        layers = [r["layer"] for r in results[0]["layers"]]
        table = {k: np.array([[r[k] for r in res["layers"]] for res in results]) for k in
                 ("layer_barrier", "layer_midpoint_excess", "layer_predicted", "depth_barrier",
                  "depth_midpoint_excess", "depth_predicted")}
        for i, layer in enumerate(layers):
            rows.append({"variant": f"`{variant}`", "layer": f"`{layer}`", "seeds": len(results),
                         **{k.replace("_", " "): values_mean_std(v[:, i]) for k, v in table.items()}})
        x = np.arange(len(layers))
        ax.bar(x - 0.2, table["layer_midpoint_excess"].mean(0), 0.4, label="L(m) - mean of ends, layer alone")
        ax.bar(x + 0.2, table["layer_predicted"].mean(0), 0.4, label="-(1/8) δᵀHδ, layer alone")
        ax.plot(x, table["depth_barrier"].mean(0), "k.-", label="measured, layers 1..l")
        ax.set_xticks(x, layers, rotation=90, fontsize=7)
        ax.set_title(variant, fontsize=9)
    axes[0][0].set_ylabel("loss barrier (train subset)")
    if by_variant:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "layers.png", dpi=120)
    plt.close(fig)
    note = (f"Runs: `{runs_root}`. When only one layer (\"layer\") or the first l layers (\"depth\") move from "
            "model A to its partner B: the barrier, the midpoint excess L(m) - (L(ends))/2, and its second-order "
            "prediction -(1/8) δᵀH(m)δ; training-subset loss, mean ± sample std over seeds. A description, "
            "not a verdict.")
    figures, extra, steps = ["layers.png"], "", over_training_rows(by_variant)
    if steps:  # a profile that keeps weights along training (train.keep_weights_at)
        from shared.results import tables  # noqa: PLC0415

        plot_over_training(by_variant, out_dir / "over_training.png")
        figures.append("over_training.png")
        extra = ("Along training: the same analysis on the pair's weights kept at each step (both runs from their "
                 "own initialization, so step 0 compares two random inits); the highest layer is the one whose "
                 "barrier, averaged over seeds, is largest at that step; mean ± sample std over seeds.\n\n"
                 + tables.markdown_table(list(steps[0]), [list(r.values()) for r in steps]))
    return write_section(out_dir, rows, figures, note=note, extra=extra,
                         source=f"python -m papers.landscaping_lmc.analysis section --runs-root {runs_root}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.landscaping_lmc.analysis",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derived", help="layer-wise barriers of one run and its partner -> derived.json")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--partner-dir", help="omit for a partner run itself (writes empty metrics)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-images", type=int)
    p.add_argument("--n-alphas", type=int, help="odd; default by the run's profile (SETTINGS)")
    p = sub.add_parser("section", help="README section: per-layer and per-depth barriers")
    p.add_argument("--runs-root", required=True)
    p.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if args.command == "derived":
        derived(args.run_dir, args.partner_dir, args.out, args.device, args.n_images, args.n_alphas)
    else:
        write_layers_section(args.runs_root, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
