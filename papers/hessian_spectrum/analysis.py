"""Hessian spectrum of trained runs (bulk + outliers) and the loss between small- and large-batch solutions:
"Empirical Analysis of the Hessian of Over-Parametrized Neural Networks", Sagun, Evci, Güney, Dauphin & Bottou,
arXiv:1706.04454.

Per run (``derived``), on a fixed subset S of the run's own training images (first n in file order, unaugmented,
model in eval mode), H = grad^2 L_S(theta) (§1: L(w) = 1/N sum_i l(f(w, x_i), y_i)):
    top-K eigenvalues lambda_1 >= ... >= lambda_K of H by Lanczos (shared.landscape.hessian_eigs), K = ``top_k``
    n_outliers = i* = argmax_{1 <= i < P} (log lambda_i - log lambda_{i+1}),  P = #{i <= K: lambda_i > 0}
    bulk_edge  = lambda_{i*+1}: outliers are the eigenvalues above the largest relative gap among the top-K
                 positive eigenvalues (our operational definition; the paper separates bulk and outliers by eye)
    hessian_top_eig = lambda_1
    train_loss = L_S, train_accuracy on S (eval mode): the training loss the spectrum is taken at
and the bulk, from SLQ (Ghorbani et al., arXiv:1901.10159 §2) with the ``slq_probes`` x ``slq_iters`` of the
profile: nodes theta_j and weights w_j (sum_j w_j = 1, the fraction of the P eigenvalues each node stands for)
    hessian_trace      = P sum_j w_j theta_j                (= tr H, the Hutchinson estimate on the same probes)
    slq_mass_near_zero = sum_{|theta_j| <= tau} w_j,   tau = 0.01 lambda_1   (the fraction of the spectrum in the bulk
                         at 0; Sagun et al.: "increasing the number of parameters merely scales the bulk")
    slq_mass_negative  = sum_{theta_j < -tau} w_j
(SLQ resolves the spectrum to about (theta_max - theta_min) / slq_iters, so tau is near that resolution: the two
masses are coarse, comparable between runs of one profile, not exact eigenvalue counts),
and for runs with a partner (``--partner-dir``: the same seed of another variant; rules.smk's
``HESSIAN_SPECTRUM_PARTNERS``), the loss barrier along the segment
    theta(alpha) = (1 - alpha) theta_A + alpha theta_B,  B = max_alpha [L_S(theta(alpha)) - ((1-alpha) L_S(A) + alpha L_S(B))]
(shared.landscape.interpolation_curve; BN statistics, where a model has them, re-estimated on S at each alpha).

Per paper (``section``): the SLQ eigenvalue density (each run's quadrature, broadened) and the top-K eigenvalues
of the first seed of each variant, and the loss along both segments. Sizes per profile: ``SETTINGS``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from shared.config import for_profile
from shared.landscape.runs import image_batches, load_run, pick_device
from shared.landscape import (SpectralQuadrature, evaluate_loss, gaussian_density, hessian_eigs, interpolation_curve,
                              make_hvp, slq)

# images of the fixed subset, K top eigenvalues, Lanczos steps, interpolation points, SLQ probes and steps
SETTINGS = {
    "smoke": dict(images=64, top_k=4, lanczos_iters=8, alphas=5, slq_probes=1, slq_iters=8),
    "tiny": dict(images=512, top_k=20, lanczos_iters=48, alphas=11, slq_probes=3, slq_iters=40),
    "cpu": dict(images=2048, top_k=30, lanczos_iters=90, alphas=21, slq_probes=5, slq_iters=80),
    "paper": dict(images=5000, top_k=30, lanczos_iters=120, alphas=21, slq_probes=10, slq_iters=100),
}


def settings(profile: str) -> dict:
    """``SETTINGS`` of the profile, or of the profile it extends by name (``cpu_early`` -> ``cpu``)."""
    return for_profile(SETTINGS, profile, "analysis settings")


def count_outliers(eigenvalues) -> tuple[int, float]:
    """(n_outliers, bulk_edge): the largest gap in log lambda among the positive eigenvalues, sorted descending
    (module docstring). Fewer than two positive eigenvalues: (that number, nan)."""
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    lam = lam[lam > 0]
    if len(lam) < 2:
        return len(lam), math.nan
    # i* = argmax_i (log lambda_i - log lambda_{i+1}), 1-based: the number of eigenvalues above the gap
    i_star = int(np.argmax(np.log(lam[:-1]) - np.log(lam[1:]))) + 1
    return i_star, float(lam[i_star])


def spectrum_metrics(model, batches, top_k: int, iters: int) -> tuple[dict, list[float]]:
    values, _ = hessian_eigs(model, F.cross_entropy, batches, k=top_k, iters=iters, seed=0)
    values = [float(v) for v in values]
    n_out, edge = count_outliers(values)
    return {"hessian_top_eig": values[0], "n_outliers": n_out, "bulk_edge": edge}, values


def bulk_metrics(model, batches, top_eig: float, probes: int, iters: int) -> tuple[dict, dict]:
    """SLQ trace and spectral masses of the module docstring, and the quadrature (nodes, weights) itself."""
    hvp = make_hvp(model, F.cross_entropy, batches)
    q = slq(hvp, iters=iters, n_probes=probes, seed=0)
    nodes, weights, tau = q.nodes.double(), q.weights.double(), 0.01 * top_eig
    metrics = {"hessian_trace": hvp.dim * float((weights * nodes).sum()),  # P sum_j w_j theta_j
               "slq_mass_near_zero": float(weights[nodes.abs() <= tau].sum()),
               "slq_mass_negative": float(weights[nodes < -tau].sum())}
    return metrics, {"n_params": hvp.dim, "nodes": nodes.tolist(), "weights": weights.tolist()}


def segment(model_a, model_b, batches, n_alphas: int) -> dict:
    """Loss/accuracy along theta(alpha) from A to B on ``batches`` and its loss barrier (BN reset on them)."""
    # clones: state_dict() shares storage with the parameters, which the curve overwrites at each alpha
    state_a, state_b = ({k: v.detach().clone() for k, v in m.state_dict().items()} for m in (model_a, model_b))
    curve = interpolation_curve(model_a, state_a, state_b, np.linspace(0, 1, n_alphas), batches, bn_batches=batches)
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in curve.items()}


def write_derived(run_dir: str | Path, profile: str, out: str | Path, partner: str | Path | None = None,
                  device: str = "auto") -> dict:
    s, run_dir, dev = settings(profile), Path(run_dir), pick_device(device)
    _run = load_run(run_dir, dev)
    model, data, meta = _run.model, _run.data, _run.meta
    batches = image_batches(data, "train", s["images"], dev)
    metrics, eigenvalues = spectrum_metrics(model, batches, s["top_k"], s["lanczos_iters"])
    at = evaluate_loss(model, batches)
    metrics.update(train_loss=at["loss"], train_accuracy=at["accuracy"])
    bulk, quadrature = bulk_metrics(model, batches, metrics["hessian_top_eig"], s["slq_probes"], s["slq_iters"])
    metrics.update(bulk)
    details = {"profile": profile, "settings": s, "eigenvalues": eigenvalues, "variant": meta.get("variant"),
               "slq": quadrature}
    if partner is not None:
        _run = load_run(partner, dev)
        model_b, _, meta_b = _run.model, _run.data, _run.meta
        curve = segment(model, model_b, batches, s["alphas"])
        metrics["pair_loss_barrier"] = curve["loss_barrier"]
        details.update(partner=str(partner), partner_variant=meta_b.get("variant"), segment=curve)
    Path(out).write_text(json.dumps({"metrics": metrics, "details": details}, indent=2))
    return metrics


def _plots(spectra: dict, densities: dict, segments: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the third panel only where some variant has a segment partner
    fig, axes = plt.subplots(1, 3 if segments else 2, figsize=(13, 3.6) if segments else (9, 3.6))
    for name, (grid, density) in densities.items():
        axes[0].semilogy(grid, np.maximum(density, 1e-12), label=name)
    axes[0].set(xlabel="eigenvalue", ylabel="SLQ density (log)", title="spectral density")
    for name, values in spectra.items():
        axes[1].plot(range(1, len(values) + 1), values, "o-", ms=3, label=name)
    axes[1].set(xlabel="index i", ylabel="lambda_i", title="top eigenvalues (Lanczos)")
    for name, curve in segments.items():
        axes[2].plot(curve["alpha"], curve["loss"], label=name)
    if segments:
        axes[2].set(xlabel="alpha", ylabel="train-subset loss", title="loss along the segment")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "spectrum.png", dpi=120)
    plt.close(fig)
    return ["spectrum.png"]


def write_section(run_dirs: dict[str, Path], profile: str, out_dir: str | Path) -> Path:
    """SLQ density, top-K eigenvalues and segments of the first seed of each variant (``run_dirs``: {variant:
    run dir} with derived.json written)."""
    from shared.results.readme import write_section as write_md

    s, out_dir = settings(profile), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spectra, densities, segments, rows = {}, {}, {}, []
    for variant, run_dir in run_dirs.items():
        derived = json.loads((Path(run_dir) / "derived.json").read_text())
        meta = json.loads((Path(run_dir) / "meta.json").read_text())
        # the run's own SLQ quadrature (derived.json), broadened
        q = derived["details"]["slq"]
        nodes, weights = (torch.tensor(q[k], dtype=torch.float64) for k in ("nodes", "weights"))
        grid, density = gaussian_density(SpectralQuadrature(nodes, weights))
        densities[variant] = (grid.numpy(), density.numpy())
        spectra[variant] = derived["details"]["eigenvalues"]
        if "segment" in derived["details"]:
            segments[f"{variant} -> {derived['details']['partner_variant']}"] = derived["details"]["segment"]
        m = derived["metrics"]
        n_above = q["n_params"] * (1 - m["slq_mass_near_zero"] - m["slq_mass_negative"])
        rows.append({"variant": f"`{variant}`", "seed": meta.get("seed"), "params": q["n_params"],
                     "lambda_1": f"{m['hessian_top_eig']:.4g}", "n_outliers": m["n_outliers"],
                     "bulk_edge": f"{m['bulk_edge']:.4g}", "train_loss": f"{m['train_loss']:.3g}",
                     "hessian_trace": f"{m['hessian_trace']:.4g}",
                     "slq_mass_near_zero": f"{m['slq_mass_near_zero']:.5f}",
                     # P (1 - mass near 0 - mass below -0.01 lambda_1): how many eigenvalues lie above 0.01 lambda_1
                     "slq_count_above": f"{n_above:.0f}",
                     "pair_loss_barrier": f"{m.get('pair_loss_barrier', math.nan):.4g}"})
    note = (f"Profile `{profile}`, first seed of each variant; Hessian of the loss on the first {s['images']} "
            f"training images in eval mode. n_outliers: eigenvalues above the largest gap in log lambda among the "
            f"top {s['top_k']} ({s['lanczos_iters']} Lanczos steps); density, trace and mass near 0 (|lambda| <= "
            f"0.01 lambda_1): the run's SLQ with {s['slq_probes']} probes x {s['slq_iters']} steps, the density "
            "Gaussian-broadened; slq_count_above = params x (1 - mass near 0 - mass below -0.01 lambda_1), the SLQ "
            "estimate of the number of eigenvalues above 0.01 lambda_1; train_loss on the same images. Segments: "
            f"{s['alphas']} points, BN statistics (if any) re-estimated at each point.")
    figures = _plots(spectra, densities, segments, out_dir)
    return write_md(out_dir, rows, figures, f"python -m papers.hessian_spectrum.analysis section --profile {profile}",
                    note)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("derived", help="top-K eigenvalues, outliers and pair barrier of one run -> derived.json")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--partner-dir", default=None, help="the run at the other end of the segment, if any")
    p.add_argument("--out", required=True)
    p = sub.add_parser("section", help="density, eigenvalues and segments of one run per variant -> section.md")
    p.add_argument("--run", action="append", required=True, metavar="VARIANT=RUN_DIR")
    p.add_argument("--out-dir", required=True)
    sub.choices["derived"].add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda")
    for p in sub.choices.values():
        p.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    if args.command == "derived":
        write_derived(args.run_dir, args.profile, args.out, args.partner_dir, args.device)
    else:
        write_section(dict(item.split("=", 1) for item in args.run), args.profile, args.out_dir)


if __name__ == "__main__":
    main()
