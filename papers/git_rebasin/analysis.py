"""Per-pair analysis of "Git Re-Basin: Merging Models modulo Permutation Symmetries", Ainsworth, Hayase &
Srinivasa, arXiv:2209.04836: the loss and error barriers on the segment between two independently trained models,
before (naive) and after permuting model B onto model A by weight matching (§3.2, Alg. 1: ``permuted``) or by
activation matching (§3.1: ``activation``, on the same training images as the train barrier).

    theta(alpha) = (1 - alpha) theta_A + alpha pi(theta_B),   pi = id (naive), weight- or activation-matching
    B = max_alpha [ L(theta(alpha)) - ((1 - alpha) L(theta_A) + alpha L(pi(theta_B))) ]

(barrier of Entezari et al., arXiv:2110.06296, Def. 1, as ``shared.landscape.loss_barrier`` computes it; the
paper's width-ablation script, samuela/git-re-basin ``src/cifar10_resnet20_width_ablation_plot.py``, subtracts the
endpoints' plain mean instead: the two agree when the maximum sits at alpha = 1/2 or the endpoint losses are equal).
Losses are means over a fixed subset of training images (no augmentation) and of test images, each model in eval
mode; networks with BatchNorm get their statistics re-estimated on the training subset at every alpha
(``shared.landscape.reset_bn_stats``, REPAIR's "reset BN"). All the math is ``shared.landscape``'s; this file only
loads runs and writes ``derived.json`` and the README section.

    python -m papers.git_rebasin.analysis derived --run-dir runs/.../mlp_x1/seed0 \
        --partner-dir runs/.../mlp_x1_partner/seed0 --out runs/.../mlp_x1/seed0/derived.json
    python -m papers.git_rebasin.analysis section --runs-root runs/git_rebasin/tiny --out-dir results/...
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from shared.data import ClassificationData, load_data
from shared.data.augment import normalize
from shared.landscape import (activation_matching, apply_permutation, evaluate_loss, interpolate_state_dicts,
                              loss_barrier, permutation_spec, reset_bn_stats, weight_matching)
from shared.landscape.runs import analyse_kept_steps, image_batches, kept_steps, load_run, pair_settings
from shared.models import create_model
from shared.results.tables import values_mean_std
from shared.train.checkpoint import kept_weights

PARTNER_SUFFIX = "_partner"  # variant V's pair partner is V + PARTNER_SUFFIX (config.yaml: seed_offset 1000)
# per profile: images per split for the barrier and the number of alphas on [0, 1]; tiny ≲ 20 s per pair on one core
SETTINGS = {"smoke": {"n_images": 64, "n_alphas": 3}, "tiny": {"n_images": 256, "n_alphas": 5},
            "cpu": {"n_images": 1000, "n_alphas": 11}, "paper": {"n_images": 10000, "n_alphas": 25}}
SPLITS = ("train", "test")
METHODS = ("naive", "permuted", "activation")  # identity, weight matching (Alg. 1), activation matching (§3.1)
LINE_STYLES = dict(zip(METHODS, ("--", "-", ":")))  # one per method in every figure


def interpolation(model: nn.Module, state_a: dict, state_b: dict, alphas, splits: dict[str, list],
                  bn_batches: list) -> dict[str, dict[str, list[float]]]:
    """Loss and accuracy of theta(alpha) = (1 - alpha) theta_A + alpha theta_B on every split (Frankle et al.,
    arXiv:1912.05671 §2), BN statistics reset at each alpha when the model has BN. The model's state is restored."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    curves = {s: {"loss": [], "accuracy": []} for s in splits}
    try:
        for alpha in alphas:
            model.load_state_dict(interpolate_state_dicts(state_a, state_b, alpha))
            reset_bn_stats(model, bn_batches)  # no-op (returns 0) without BatchNorm layers
            for split, batches in splits.items():
                metrics = evaluate_loss(model, batches)
                curves[split]["loss"].append(metrics["loss"])
                curves[split]["accuracy"].append(metrics["accuracy"])
    finally:
        model.load_state_dict(saved)
    return curves


def pair_barriers(model: nn.Module, state_a: dict, state_b: dict, splits: dict[str, list], n_alphas: int,
                  seed: int = 0) -> tuple[dict[str, float], dict]:
    """Naive, weight-matching (Git Re-Basin §3.2, Alg. 1) and activation-matching (§3.1) barriers of the pair
    (A, B) on every split. Activation matching correlates the two models' activations on ``splits["train"]``.

    Returns metrics ``{naive,permuted,activation}_{split}_loss_barrier`` and ``..._error_barrier`` (error =
    1 - accuracy), and the curves behind them.
    """
    spec = permutation_spec(model)
    perm = weight_matching(spec, state_a, state_b, seed=seed)
    model_a, model_b = copy.deepcopy(model), copy.deepcopy(model)
    model_a.load_state_dict(state_a), model_b.load_state_dict(state_b)
    perm_act = activation_matching(spec, model_a, model_b, splits["train"])
    # pi(theta_B): W_l <- P_l W_l P_{l-1}^T, functionally the same network as B
    candidates = {"naive": state_b, "permuted": apply_permutation(spec, perm, state_b),
                  "activation": apply_permutation(spec, perm_act, state_b)}
    alphas = np.linspace(0.0, 1.0, n_alphas).tolist()
    metrics, curves = {}, {"alpha": alphas}
    for method, state in candidates.items():
        curve = interpolation(model, state_a, state, alphas, splits, bn_batches=splits["train"])
        curves[method] = curve
        for split, c in curve.items():
            metrics[f"{method}_{split}_loss_barrier"] = loss_barrier(alphas, c["loss"])
            metrics[f"{method}_{split}_error_barrier"] = loss_barrier(alphas, 1 - np.asarray(c["accuracy"]))
    return metrics, curves


def over_training(model: nn.Module, kept_a: dict[int, Path], kept_b: dict[int, Path], splits: dict[str, list],
                  n_alphas: int, final: tuple, seed: int = 0) -> dict:
    """The pair's barriers at each step both runs kept weights (``kept_*``: ``kept_weights`` of each run, from
    ``train.keep_weights_at``): the "training time" axis of the paper's abstract (barrier vs training step). The
    permutation is found anew at every step, from that step's weights; ``final`` = (final state a, final state b,
    their metrics), reused at a kept step that holds the final weights (``analyse_kept_steps``). Returns
    ``{"step": steps, "metrics": {name: [value per step]}}`` with ``pair_barriers``' metric names."""
    device = next(model.parameters()).device
    barriers = lambda a, b: pair_barriers(model, a, b, splits, n_alphas, seed=seed)[0]  # noqa: E731
    by_step = analyse_kept_steps(kept_a, kept_b, barriers, final, device)
    per_step: dict[str, list[float]] = {}
    for metrics in by_step.values():
        for name, value in metrics.items():
            per_step.setdefault(name, []).append(value)
    return {"step": list(by_step), "metrics": per_step}


def _same_setting(cfg_a: dict, cfg_b: dict) -> bool:
    """The pair must differ only in the seed (a partner variant is an independent replicate)."""
    strip = lambda c: {k: v for k, v in c.items() if k not in ("seed", "device")}  # noqa: E731
    return strip(cfg_a) == strip(cfg_b)


def derived(run_dir: str | Path, partner_dir: str | Path | None, out: str | Path, device: str = "cpu",
            n_images: int | None = None, n_alphas: int | None = None) -> dict:
    """``derived.json`` of one run: the pair's barriers for an A variant, ``{}`` for a partner run (no partner)."""
    result: dict = {"metrics": {}}
    if partner_dir is not None:
        run_a = load_run(run_dir, device)
        run_b = load_run(partner_dir, device, data=run_a.data)
        if not _same_setting(run_a.meta["config"], run_b.meta["config"]):
            raise ValueError(f"{run_dir} and {partner_dir} differ in more than the seed")
        settings = pair_settings(SETTINGS, run_a.meta.get("profile"), n_images, n_alphas)
        splits = {s: image_batches(run_a.data, s, settings["n_images"], device) for s in SPLITS}
        metrics, curves = pair_barriers(run_a.model, run_a.state, run_b.state, splits,
                                        settings["n_alphas"], seed=run_a.meta["config"]["seed"])
        result = {"metrics": metrics, "curves": curves, "n_images": {s: sum(len(y) for _, y in b)
                                                                     for s, b in splits.items()},
                  "partner": str(partner_dir)}
        kept_a, kept_b = kept_weights(run_dir), kept_weights(partner_dir)
        if kept_a.keys() & kept_b.keys():  # weights kept along training: the barriers at each common step too
            result["over_training"] = over_training(run_a.model, kept_a, kept_b, splits, settings["n_alphas"],
                                                    (run_a.state, run_b.state, metrics),
                                                    seed=run_a.meta["config"]["seed"])
    Path(out).write_text(json.dumps(result, indent=2))
    return result


def collect(runs_root: str | Path) -> dict[str, list[dict]]:
    """derived.json of every A variant's runs under ``runs_root`` (runs/git_rebasin/<profile>), by variant."""
    out: dict[str, list[dict]] = {}
    for path in sorted(Path(runs_root).glob("*/seed*/derived.json")):
        variant = path.parents[1].name
        result = json.loads(path.read_text())
        if not variant.endswith(PARTNER_SUFFIX) and result["metrics"]:
            out.setdefault(variant, []).append(result)
    return out


def barrier_rows(by_variant: dict[str, list[dict]], split: str = "train") -> list[dict]:
    """Per variant: naive, weight-matched ("permuted") and activation-matched loss barriers (mean ± sample std over
    seeds), the paired difference naive - permuted, and in how many seeds the permuted barrier is the lower one (the
    paper's claim, run by run)."""
    rows = []
    for variant, results in by_variant.items():
        naive = [r["metrics"][f"naive_{split}_loss_barrier"] for r in results]
        permuted = [r["metrics"][f"permuted_{split}_loss_barrier"] for r in results]
        rows.append({"variant": f"`{variant}`", "seeds": len(results),
                     f"naive {split} loss barrier": values_mean_std(naive),
                     f"permuted {split} loss barrier": values_mean_std(permuted),
                     "naive − permuted (paired)": values_mean_std([a - b for a, b in zip(naive, permuted)]),
                     "seeds with permuted < naive": sum(b < a for a, b in zip(naive, permuted)),
                     # derived.json from before activation matching was added has none: shown as "–"
                     f"activation-matched {split} loss barrier": values_mean_std(
                         [r["metrics"].get(f"activation_{split}_loss_barrier", np.nan) for r in results]),
                     "naive test error barrier": values_mean_std(
                         [r["metrics"]["naive_test_error_barrier"] for r in results]),
                     "permuted test error barrier": values_mean_std(
                         [r["metrics"]["permuted_test_error_barrier"] for r in results]),
                     "activation-matched test error barrier": values_mean_std(
                         [r["metrics"].get("activation_test_error_barrier", np.nan) for r in results])})
    return rows


def _save(fig, axes, ylabel: str, legend: bool, path: Path) -> None:
    """The figures' shared ending: y label and legend on the first panel, then write and close."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    axes[0][0].set_ylabel(ylabel)
    if legend:
        axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def over_training_rows(by_variant: dict[str, list[dict]], split: str = "train") -> list[dict]:
    """Per variant and kept step (those every seed's pair has): the three loss barriers (mean ± sample std over
    seeds) and in how many seeds weight matching beats naive interpolation at that step."""
    rows = []
    for variant, (kept, steps) in kept_steps(by_variant).items():
        for step in steps:
            at = {m: [k["metrics"][f"{m}_{split}_loss_barrier"][k["step"].index(step)] for k in kept]
                  for m in METHODS}
            rows.append({"variant": f"`{variant}`", "step": step, "seeds": len(kept),
                         f"naive {split} loss barrier": values_mean_std(at["naive"]),
                         f"permuted {split} loss barrier": values_mean_std(at["permuted"]),
                         f"activation-matched {split} loss barrier": values_mean_std(at["activation"]),
                         "seeds with permuted < naive": sum(b < a for a, b in zip(at["naive"], at["permuted"]))})
    return rows


def plot_over_training(by_variant: dict[str, list[dict]], path: Path, split: str = "train") -> None:
    """Loss barrier vs training step (symlog x), naive / permuted / activation-matched, mean ± std over seeds, one
    panel per variant that kept weights along training."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    kept = kept_steps(by_variant)
    fig, axes = plt.subplots(1, max(1, len(kept)), figsize=(3.6 * max(1, len(kept)), 3), squeeze=False)
    for ax, (variant, (runs, steps)) in zip(axes[0], kept.items()):
        for method, style in LINE_STYLES.items():
            values = np.array([[k["metrics"][f"{method}_{split}_loss_barrier"][k["step"].index(t)] for t in steps]
                               for k in runs])
            mean, std = values.mean(axis=0), values.std(axis=0, ddof=1) if len(runs) > 1 else 0 * values[0]
            ax.plot(steps, mean, style, marker="o", ms=3, label=method)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set_xscale("symlog", linthresh=max(1, min([t for t in steps if t > 0], default=1)))
        ax.set_title(variant, fontsize=9)
        ax.set_xlabel("training step (weights kept)")
    _save(fig, axes, f"{split} loss barrier", bool(kept), path)


def plot_curves(by_variant: dict[str, list[dict]], path: Path, split: str = "train") -> None:
    """Loss along the segment, naive vs permuted, mean over seeds, one panel per variant."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    n = max(1, len(by_variant))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False)
    if not by_variant:
        axes[0][0].text(0.5, 0.5, "no pair analysed yet", ha="center", va="center")
    for ax, (variant, results) in zip(axes[0], by_variant.items()):
        alphas = results[0]["curves"]["alpha"]
        for method, style in LINE_STYLES.items():
            if any(method not in r["curves"] for r in results):
                continue
            losses = np.mean([r["curves"][method][split]["loss"] for r in results], axis=0)
            ax.plot(alphas, losses, style, marker="o", label=method)
        ax.set_title(variant, fontsize=9)
        ax.set_xlabel("alpha (A → B)")
    _save(fig, axes, f"{split} loss", bool(by_variant), path)


def write_barrier_section(runs_root: str | Path, out_dir: str | Path) -> Path:
    """``out_dir/section.md`` (+ ``curves.png``, ``barriers.json``): the naive vs permuted comparison at every
    width, pair by pair (the config's ``*_permuted_barrier_below_naive`` claims judge the widest model of each
    family with the shared rule's paired form, ``compare: {a, b_metric}``)."""
    from shared.results import tables  # noqa: PLC0415
    from shared.results.readme import write_section  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_variant = collect(runs_root)
    (out_dir / "barriers.json").write_text(json.dumps({v: [r["metrics"] for r in rs] for v, rs in by_variant.items()},
                                                      indent=2))
    plot_curves(by_variant, out_dir / "curves.png")
    note = (f"Runs: `{runs_root}`. Loss barriers of each A variant's runs against their partners (same seed name, "
            "seed + 1000), naive, after weight matching ('permuted') and after activation matching (on the same "
            "training images as the train barrier); mean ± sample std over seeds. The widest model of each family is "
            "judged in the claims table (`*_permuted_barrier_below_naive`, a paired t interval over the pairs); the "
            "paired column shows every width.")
    figures, extra = ["curves.png"], ""
    steps = over_training_rows(by_variant)
    if steps:  # a profile that keeps weights along training (train.keep_weights_at)
        plot_over_training(by_variant, out_dir / "over_training.png")
        figures.append("over_training.png")
        extra = ("Over training: the same barriers between the pair's weights kept at each step (the permutation "
                 "found anew at each), mean ± sample std over seeds.\n\n"
                 + tables.markdown_table(list(steps[0]), [list(r.values()) for r in steps]))
    return write_section(out_dir, barrier_rows(by_variant), figures,
                         source=f"python -m papers.git_rebasin.analysis section --runs-root {runs_root}", note=note,
                         extra=extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m papers.git_rebasin.analysis", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derived", help="barriers of one run and its partner -> derived.json")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--partner-dir", help="the partner run (omit for a partner run itself: writes empty metrics)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--n-images", type=int, help="images per split (default: by the run's profile, SETTINGS)")
    p.add_argument("--n-alphas", type=int, help="alphas on [0, 1] (default: by the run's profile)")
    p = sub.add_parser("section", help="README section: barriers per variant, mean ± std over seeds")
    p.add_argument("--runs-root", required=True, help="runs/git_rebasin/<profile>")
    p.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    if args.command == "derived":
        derived(args.run_dir, args.partner_dir, args.out, args.device, args.n_images, args.n_alphas)
    else:
        write_barrier_section(args.runs_root, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
