"""Fraction of the gradient in the top-k Hessian eigenspace over training: "Gradient Descent Happens in a Tiny
Subspace", Gur-Ari, Roberts & Dyer, arXiv:1812.04754.

At training steps t (``SETTINGS`` fractions of the run's steps, and its end), on a fixed subset S of the run's own
training images (first n in file order, unaugmented, eval mode), with V_k the top-k eigenvectors of H = grad^2 L_S
(Lanczos; k = number of classes, as the paper) and g = grad L_S (shared.landscape.gradient_overlap):
    f_top(t)    = ||P_k g||^2 / ||g||^2,   P_k the orthogonal projector onto span(V_k)        (§2)
    f_random(t) = ||P_R g||^2 / ||g||^2,   R a random k-dim subspace (Gaussian basis, fixed seed); E = k / n_params
Per run (``derived``): grad_frac_topk = f_top(end), grad_frac_random = f_random(end), and grad_subspace_fraction:
f_top(end) for the arm ``hessian_top_k`` and f_random(end) for the arm ``random_subspace`` (``ARMS``), so that
the claim (top-k fraction > random-subspace fraction) compares two independently trained arms with the shared
verdict rule; every run also reports both fractions.

Intermediate weights: the trainer keeps only the last checkpoint.pt, so the weights at step t are recomputed as the
run with ``train.steps = t`` (shared.train.run in a temporary folder). With a constant learning rate and no warm-up
these are exactly the first t steps of the run (batches are a pure function of (seed, step)); other schedules would
differ, and are refused.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.landscape.runs import image_batches, load_run, pick_device
from shared.landscape import curvature_params, gradient_overlap, subset_loss_and_grad, subspace_overlap
from shared.train import run as train_run

SETTINGS = {  # images of S, Lanczos steps, fractions of the run's steps where f is measured (the end is added)
    "smoke": dict(images=64, lanczos_iters=12, fractions=[0.34]),
    "tiny": dict(images=512, lanczos_iters=30, fractions=[0.02, 0.1, 0.3]),
    "cpu": dict(images=2048, lanczos_iters=60, fractions=[0.01, 0.03, 0.1, 0.3, 0.6]),
    "paper": dict(images=5000, lanczos_iters=80, fractions=[0.005, 0.01, 0.03, 0.1, 0.3, 0.6]),
}
ARMS = {"hessian_top_k": "topk", "random_subspace": "random"}  # variant -> which fraction is its claim metric
RANDOM_SEED = 1234


def settings(profile: str) -> dict:
    if profile not in SETTINGS:
        raise ValueError(f"no analysis settings for profile {profile!r}; known: {sorted(SETTINGS)}")
    return SETTINGS[profile]


def measure_steps(total: int, fractions: list[float]) -> list[int]:
    """Sorted distinct steps max(1, round(f T)) < T, then T itself."""
    return sorted({min(max(1, round(f * total)), total) for f in fractions} | {total})


def prefix_weights(cfg: dict, steps: int, device) -> dict:
    """The model state after the first ``steps`` steps of the run ``cfg`` (constant lr, no warm-up: see docstring)."""
    sc = cfg["schedule"]
    if sc["name"] != "constant" or sc["warmup_steps"] or sc["warmup_frac"]:
        raise ValueError(f"intermediate weights need a constant lr without warm-up, got schedule {sc}")
    cfg = copy.deepcopy(cfg)
    cfg["train"].update(steps=steps, epochs=None, eval_every=0, checkpoint_every=0)
    cfg["device"] = str(device)
    with tempfile.TemporaryDirectory() as tmp:
        train_run(cfg, tmp)
        return torch.load(Path(tmp) / "checkpoint.pt", map_location=device, weights_only=False)["model"]


def fractions_at(model, batches, k: int, iters: int) -> dict:
    """f_top and f_random (module docstring) at the model's current weights."""
    top = gradient_overlap(model, F.cross_entropy, batches, k=k, iters=iters, seed=0)
    _, grad = subset_loss_and_grad(model, F.cross_entropy, batches)
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    random_basis = torch.randn(k, grad.numel(), generator=gen, dtype=torch.float64)
    return {"topk": top.overlap, "random": subspace_overlap(grad.cpu(), random_basis), "loss": top.loss}


def write_derived(run_dir: str | Path, profile: str, out: str | Path, device: str = "auto") -> dict:
    s, run_dir, dev = settings(profile), Path(run_dir), pick_device(device)
    _run = load_run(run_dir, dev)
    model, data, meta = _run.model, _run.data, _run.meta
    variant = meta.get("variant", run_dir.parent.name)
    if variant not in ARMS:
        raise ValueError(f"variant {variant!r} is not an arm of this analysis; known: {sorted(ARMS)}")
    batches, k = image_batches(data, "train", s["images"], dev), data.num_classes
    final_state = {key: v.clone() for key, v in model.state_dict().items()}
    total = int(meta.get("final_step") or meta["total_steps"])
    curve = []
    for step in measure_steps(total, s["fractions"]):
        model.load_state_dict(final_state if step == total else prefix_weights(meta["config"], step, dev))
        curve.append({"step": step, **fractions_at(model, batches, k, s["lanczos_iters"])})
    end = curve[-1]
    n_params = sum(p.numel() for p in curvature_params(model))
    metrics = {"grad_frac_topk": end["topk"], "grad_frac_random": end["random"],
               "grad_subspace_fraction": end[ARMS[variant]]}
    details = {"profile": profile, "settings": s, "k": k, "n_params": n_params, "k_over_n": k / n_params,
               "arm": ARMS[variant], "curve": curve}
    Path(out).write_text(json.dumps({"metrics": metrics, "details": details}, indent=2))
    return metrics


def write_section(derived_files: dict[str, list[Path]], profile: str, out_dir: str | Path) -> Path:
    """f_top and f_random over training, every run of every arm (``derived_files``: {variant: [derived.json]})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.results.readme import write_section as write_md

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    rows, k_over_n = [], None
    for i, (variant, files) in enumerate(derived_files.items()):
        for path in files:
            d = json.loads(Path(path).read_text())["details"]
            k_over_n = d["k_over_n"]
            steps = [c["step"] for c in d["curve"]]
            ax.plot(steps, [c["topk"] for c in d["curve"]], "o-", color=f"C{i}", ms=3,
                    label=f"{variant}: top-k" if path == files[0] else None)
            ax.plot(steps, [c["random"] for c in d["curve"]], "x:", color=f"C{i}", ms=3,
                    label=f"{variant}: random k-dim" if path == files[0] else None)
            rows += [{"variant": f"`{variant}`", "run": Path(path).parent.name, "step": c["step"],
                      "f_top": f"{c['topk']:.4g}", "f_random": f"{c['random']:.3g}", "subset loss": f"{c['loss']:.4g}"}
                     for c in d["curve"]]
    if k_over_n is not None:
        ax.axhline(k_over_n, color="grey", lw=0.8, label="k / n_params")
    ax.set(xscale="symlog", yscale="log", xlabel="training step", ylabel="fraction of ||g||^2 in subspace")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "overlap.png", dpi=120)
    plt.close(fig)
    note = (f"Profile `{profile}`: f_top = ||P_k g||^2/||g||^2 in the top-k Hessian eigenspace (k = classes), f_random "
            f"in a random k-dim subspace (expected k/n_params = {k_over_n:.3g}), on the run's first "
            f"{settings(profile)['images']} training images; weights before the end recomputed by re-running the "
            "first t steps. Shown as a figure and table; the claim in the Verdict compares the two arms' end values.")
    return write_md(out_dir, rows, ["overlap.png"], f"python -m papers.tiny_subspace.analysis section "
                                                    f"--profile {profile}", note)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derived", help="gradient fraction in the top-k eigenspace over training -> derived.json")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    p = sub.add_parser("section", help="curves of every run -> section.md")
    p.add_argument("--derived", action="append", required=True, metavar="VARIANT=DERIVED_JSON")
    p.add_argument("--out-dir", required=True)
    for p in sub.choices.values():
        p.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    if args.command == "derived":
        write_derived(args.run_dir, args.profile, args.out, args.device)
    else:
        files: dict[str, list[Path]] = {}
        for item in args.derived:
            variant, path = item.split("=", 1)
            files.setdefault(variant, []).append(Path(path))
        write_section(files, args.profile, args.out_dir)


if __name__ == "__main__":
    main()
