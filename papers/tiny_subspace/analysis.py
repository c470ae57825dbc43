"""Fraction of the gradient in the top-k Hessian eigenspace over training: "Gradient Descent Happens in a Tiny
Subspace", Gur-Ari, Roberts & Dyer, arXiv:1812.04754.

At the steps t where the run kept its weights (``train.keep_weights_at``, ``weights_<t>.pt``) and at its end, on a
fixed subset S of the run's own training images (first n in file order, unaugmented, eval mode), with v_1, v_2, ...
the top Hessian eigenvectors of H = grad^2 L_S (one Lanczos run, ``K_MAX`` Ritz vectors) and g = grad L_S:
    f(k)        = ||P_k g||^2 / ||g||^2,   P_k the orthogonal projector onto span(v_1..v_k)     (§2)
    f_top       = f(C),                    C = number of classes (the paper's k)
    f_random    = ||P_R g||^2 / ||g||^2,   R a random C-dim subspace (Gaussian basis, fixed seed); E = C / n_params
Per run (``derived``), at the end: grad_frac_topk = f_top, grad_frac_random = f_random, grad_subspace_fraction =
f_top for the top-k arms and f_random for the arm ``random_subspace`` (``ARMS``), so that the claim (top-k fraction >
random-subspace fraction) compares independently trained arms with the shared verdict rule; and
top2_share_of_top10 = f(2) / f(10), top5_share_of_top10 = f(5) / f(10): how much of what the top 10 eigenvectors
hold the top 2 (5) already hold. "Equal to the number of classes" predicts that share to be larger when the data
have 2 (5) classes than when they have 10.
Persistence ("mostly preserved over long periods of training"), with V_t the top-C eigenvectors at step t and T the
end:
    p(t)        = ||Q_t^T Q_T||_F^2 / C    (``subspaces_overlap``: 1 if the subspaces coincide, C/n for random ones)
    top_subspace_persistence = p(t0), t0 the first measured step at or after ``PERSIST_FROM`` (10%) of training
(NaN for a run that kept no weights there, e.g. the class-subset arms); and between any two measured steps,
    P[s][t]     = ||Q_s^T Q_t||_F^2 / C    (``details.persistence_matrix``; p(t) = P[t][T]).
Whether a top-C subspace is a well-defined object at all depends on the gap after it:
    eigengap_after_k = lambda_C / lambda_{C+1} at the end (1: no gap, the top-C space can rotate freely among
near-equal eigenvectors; every measured step's top K_MAX + 1 Ritz values are kept in the curve as ``eigenvalues``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from shared.config import for_profile
from shared.landscape.runs import image_batches, load_run, pick_device
from shared.landscape import (curvature_params, make_hvp, subset_loss_and_grad, subspace_overlap,
                              subspaces_overlap, top_eigenpairs)
from shared.train.checkpoint import kept_weights, load_checkpoint

SETTINGS = {  # images of S, Lanczos steps (the weights measured before the end are the run's kept ones)
    "smoke": dict(images=64, lanczos_iters=12),
    "tiny": dict(images=512, lanczos_iters=30),
    "cpu": dict(images=2048, lanczos_iters=60),
    "paper": dict(images=5000, lanczos_iters=80),
}
K_MAX = 10  # f(k) for k = 1..K_MAX at every measured step (K_MAX <= every profile's Lanczos steps)
SHARES = {"top2_share_of_top10": (2, 10), "top5_share_of_top10": (5, 10)}  # metric -> (k, K): f(k) / f(K)
ARMS = {"hessian_top_k": "topk", "random_subspace": "random", "classes2": "topk", "classes5": "topk"}
RANDOM_SEED = 1234
PERSIST_FROM = 0.1  # top_subspace_persistence: the top subspace from this fraction of training on, against the end's


def settings(profile: str) -> dict:
    """``SETTINGS`` of the profile, or of the profile it extends by name (``cpu_early`` -> ``cpu``)."""
    return for_profile(SETTINGS, profile, "analysis settings")


def fractions_at(model, batches, k: int, iters: int, k_max: int = K_MAX) -> dict:
    """f(1..k_max), f_top = f(k) and f_random (module docstring) at the model's current weights."""
    hvp = make_hvp(model, F.cross_entropy, batches)
    # one Ritz pair more than f needs, for the gap after the top k; rows ordered by eigenvalue, largest first
    values, vectors = top_eigenpairs(hvp, k=max(k, k_max) + 1, iters=iters, seed=0)
    loss, grad = subset_loss_and_grad(model, F.cross_entropy, batches)
    grad = grad.cpu()
    by_k = [subspace_overlap(grad, vectors[:j].cpu()) for j in range(1, k_max + 1)]
    gen = torch.Generator().manual_seed(RANDOM_SEED)
    random_basis = torch.randn(k, grad.numel(), generator=gen, dtype=torch.float64)
    return {"topk": subspace_overlap(grad, vectors[:k].cpu()), "random": subspace_overlap(grad, random_basis),
            "loss": loss, "by_k": by_k, "eigenvalues": values.tolist(), "basis": vectors[:k].cpu()}


def write_derived(run_dir: str | Path, profile: str, out: str | Path, device: str = "auto") -> dict:
    s, run_dir, dev = settings(profile), Path(run_dir), pick_device(device)
    _run = load_run(run_dir, dev)
    model, data, meta = _run.model, _run.data, _run.meta
    variant = meta.get("variant", run_dir.parent.name)
    if variant not in ARMS:
        raise ValueError(f"variant {variant!r} is not an arm of this analysis; known: {sorted(ARMS)}")
    batches, k = image_batches(data, "train", s["images"], dev), data.num_classes
    total = int(meta.get("final_step") or meta["total_steps"])
    states = {t: load_checkpoint(path)["model"] for t, path in kept_weights(run_dir).items() if t < total}
    states[total] = _run.state
    curve = []
    for step, state in sorted(states.items()):
        model.load_state_dict({key: v.to(dev) for key, v in state.items()})
        curve.append({"step": step, **fractions_at(model, batches, k, s["lanczos_iters"])})
    end = curve[-1]
    bases = [c.pop("basis") for c in curve]  # the top-k subspace at every measured step (not saved: k x n each)
    matrix = [[1.0 if a is b else subspaces_overlap(a, b) for b in bases] for a in bases]  # P[s][t], docstring
    for c, row in zip(curve, matrix):
        c["persistence"] = row[-1]  # p(t) = P[t][T]
    persist = [c["persistence"] for c in curve[:-1] if c["step"] >= PERSIST_FROM * total]
    n_params = sum(p.numel() for p in curvature_params(model))
    metrics = {"grad_frac_topk": end["topk"], "grad_frac_random": end["random"],
               "grad_subspace_fraction": end[ARMS[variant]],
               **{name: end["by_k"][j - 1] / end["by_k"][big - 1] for name, (j, big) in SHARES.items()},
               "top_subspace_persistence": persist[0] if persist else float("nan"),
               "eigengap_after_k": end["eigenvalues"][k - 1] / end["eigenvalues"][k]}
    details = {"profile": profile, "settings": s, "k": k, "k_max": K_MAX, "n_params": n_params,
               "k_over_n": k / n_params, "arm": ARMS[variant], "persist_from": PERSIST_FROM, "curve": curve,
               "persistence_matrix": {"steps": [c["step"] for c in curve], "overlap": matrix}}
    Path(out).write_text(json.dumps({"metrics": metrics, "details": details}, indent=2))
    return metrics


def write_section(derived_files: dict[str, list[Path]], profile: str, out_dir: str | Path) -> Path:
    """f_top and f_random over training, and f(k) against k at the end, every run of every arm (``derived_files``:
    {variant: [derived.json]})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.results.readme import write_section as write_md

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, (ax, ax_k, ax_p, ax_m) = plt.subplots(1, 4, figsize=(20, 3.8))
    rows, k_over_n, shown = [], {}, None
    for i, (variant, files) in enumerate(derived_files.items()):
        for path in files:
            d = json.loads(Path(path).read_text())["details"]
            k_over_n[d["k"]] = d["k_over_n"]
            steps = [c["step"] for c in d["curve"]]
            first = path == files[0]
            ax.plot(steps, [c["topk"] for c in d["curve"]], "o-", color=f"C{i}", ms=3,
                    label=f"{variant}: top-k" if first else None)
            ax.plot(steps, [c["random"] for c in d["curve"]], "x:", color=f"C{i}", ms=3,
                    label=f"{variant}: random k-dim" if first else None)
            by_k = d["curve"][-1]["by_k"]
            ax_k.plot(range(1, len(by_k) + 1), by_k, "o-", color=f"C{i}", ms=3, alpha=0.8,
                      label=f"{variant} ({d['k']} classes)" if first else None)
            if first:
                ax_k.axvline(d["k"], color=f"C{i}", ls=":", lw=1)
            if len(d["curve"]) > 1 and "persistence" in d["curve"][0]:
                ax_p.plot(steps[:-1], [c["persistence"] for c in d["curve"][:-1]], "o-", color=f"C{i}", ms=3,
                          alpha=0.8, label=variant if first else None)
            if shown is None and len(d.get("persistence_matrix", {}).get("steps", [])) > 1:
                shown = f"{variant}, {Path(path).parent.name}"  # the first run that measured several steps
                pm = d["persistence_matrix"]
                image = ax_m.imshow(pm["overlap"], vmin=0, vmax=1, cmap="viridis")
                ticks = range(len(pm["steps"]))
                ax_m.set_xticks(ticks, pm["steps"], rotation=90, fontsize=6)
                ax_m.set_yticks(ticks, pm["steps"], fontsize=6)
                fig.colorbar(image, ax=ax_m, fraction=0.046)
            rows += [{"variant": f"`{variant}`", "run": Path(path).parent.name, "step": c["step"], "k": d["k"],
                      "f_top": f"{c['topk']:.4g}", "f_random": f"{c['random']:.3g}",
                      **{f"f({j})": f"{c['by_k'][j - 1]:.3g}" for j in (1, 2, 5, 10) if j <= len(c["by_k"])},
                      "p(t)": f"{c['persistence']:.3g}" if "persistence" in c else "",
                      "λ_k/λ_k+1": (f"{c['eigenvalues'][d['k'] - 1] / c['eigenvalues'][d['k']]:.3g}"
                                    if len(c.get("eigenvalues", [])) > d["k"] else ""),
                      "subset loss": f"{c['loss']:.4g}"} for c in d["curve"]]
    for k, ratio in sorted(k_over_n.items()):
        ax.axhline(ratio, color="grey", lw=0.8, label=f"k / n_params (k = {k})")
    ax.set(xscale="log", yscale="log", xlabel="training step", ylabel="fraction of ||g||^2 in subspace",
           title="over training (k = classes)")
    ax.legend(fontsize=6)
    ax_k.set(xlabel="k (top-k Hessian eigenvectors)", ylabel="f(k) at the end", ylim=(0, 1.02),
             title="at the end; dotted: k = classes")
    ax_k.legend(fontsize=7)
    ax_p.set(xscale="log", xlabel="training step", ylabel="||Q_t^T Q_end||_F^2 / k", ylim=(0, 1.02),
             title="top-k subspace at t vs at the end")
    if ax_p.has_data():
        ax_p.legend(fontsize=7)
    ax_m.set(xlabel="step t", ylabel="step s", title=f"||Q_s^T Q_t||_F^2 / k ({shown})" if shown else
             "overlap between steps (no run kept weights)")
    fig.tight_layout()
    fig.savefig(out_dir / "overlap.png", dpi=120)
    plt.close(fig)
    note = (f"Profile `{profile}`: f(k) = ||P_k g||^2/||g||^2 in the top-k Hessian eigenspace, f_top = f(classes), "
            f"f_random in a random k-dim subspace (k = classes; expected k/n_params), on the run's first "
            f"{settings(profile)['images']} training images, at the steps where the run kept its weights "
            "(`train.keep_weights_at`) and at its end; p(t) = ||Q_t^T Q_end||_F^2 / k, the overlap of the top-k "
            "eigenspace at step t with the end's (1: the same subspace, k/n_params: random), and between every two "
            "measured steps in the last panel; λ_k/λ_k+1 is the gap after the top k Ritz values (near 1: no gap, "
            "so the top-k space is not well separated from the next eigenvectors). Shown as a figure and "
            "table; the claims in the Verdict compare the runs' end values, and p at the first measured step from "
            f"{PERSIST_FROM:.0%} of training on.")
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
