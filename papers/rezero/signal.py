"""Signal propagation at initialization for "ReZero is All You Need: Fast Convergence at Large Depth",
Bachlechner et al., arXiv:2003.04887: the abstract's "gating each residual connection using a single
zero-initialized parameter satisfies initial dynamical isometry".

For the profile's GPT (its width, heads and context; depth 1x, 2x, 4x and 8x the profile's) with Post-LN, Pre-LN
and ReZero blocks, at initialization and in eval mode, the singular values of the blocks' input-output Jacobian on
one sequence of ``TOKENS`` positions (``shared.probes.jacobian``): J = d vec(h_L) / d vec(h_0), h_0 the blocks'
input (token plus position embedding, N(0, 0.02^2) entries at init). Dynamical isometry is every singular value
near 1. ReZero's blocks are the identity at init (alpha = 0), so its J = I exactly: that row checks the
implementation; the Post-LN and Pre-LN rows are what the comparison is about. Three seeds (initializations) per
cell; no training, so this is not a run of the workflow and judges no claim. The final norm and the output head
are not part of the stack measured (Pre-LN has a final norm; ReZero none).

    python -m papers.rezero.signal --profile cpu --out results/rezero/cpu_jacobian
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from shared.config import load_paper, resolve_paper_run
from shared.config.sweep import profile_variants
from shared.models import create_model
from shared.probes.jacobian import ISOMETRY_BAND, block_input, block_jacobian_singular_values, jacobian_stats
from shared.results.readme import write_section
from shared.results.tables import values_mean_std

log = logging.getLogger("rezero.signal")
PLACEMENTS = {"Post-LN": "post", "Pre-LN": "pre", "ReZero": "rezero"}
DEPTH_FACTORS = (1, 2, 4, 8)
SEEDS = (0, 1, 2)
TOKENS = 8
VOCAB = 256  # the embedding's init (N(0, 0.02^2) rows) does not depend on the vocabulary's size


def profile_model(profile: str) -> dict:
    """The GPT keyword arguments of the profile's (shallow) runs, without the norm placement."""
    cfg = load_paper("rezero")
    variant = next(v for v in profile_variants(cfg, profile) if "deep" not in v)
    kwargs = dict(resolve_paper_run("rezero", variant, profile, cfg["profiles"][profile]["seeds"][0])["model"]["kwargs"])
    kwargs.pop("norm_placement", None)
    return kwargs


def singular_values(kwargs: dict, placement: str, n_layer: int, seed: int, tokens: int = TOKENS) -> torch.Tensor:
    """The Jacobian's singular values for one freshly initialized model (seed) of that placement and depth."""
    torch.manual_seed(seed)
    model = create_model("gpt", **{**kwargs, "vocab_size": VOCAB, "n_layer": n_layer,
                                   "norm_placement": placement}).eval()
    idx = torch.randint(0, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        h0 = block_input(model, lambda: model(idx))
    return block_jacobian_singular_values(model.blocks, h0[0])


def main(profile: str, out_dir: str | Path, factors=DEPTH_FACTORS, seeds=SEEDS, tokens: int = TOKENS) -> list[dict]:
    """Every placement x depth x seed; ``results.csv``, ``jacobian.png`` and ``section.md`` in ``out_dir``."""
    kwargs = profile_model(profile)
    depths = [kwargs["n_layer"] * f for f in factors]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows, sigmas = [], {}
    for name, placement in PLACEMENTS.items():
        for depth in depths:
            stats = []
            for seed in seeds:
                sigma = singular_values(kwargs, placement, depth, seed, tokens)
                sigmas.setdefault((name, depth), []).append(sigma.numpy())
                stats.append(jacobian_stats(sigma))
            log.info("%s, %d layers: median sigma %.3g", name, depth, np.mean([s["sigma_median"] for s in stats]))
            rows.append({"blocks": name, "layers": depth, "seeds": len(seeds),
                         **{k: values_mean_std([s[k] for s in stats]) for k in stats[0]}})
    _plot(sigmas, depths, out / "jacobian.png")
    low, high = ISOMETRY_BAND
    note = (f"The profile's GPT (d = {kwargs['d_model']}, {kwargs['n_head']} heads) at initialization, eval mode, at "
            f"{len(depths)} depths: singular values σ of the blocks' input-output Jacobian on one sequence of "
            f"{tokens} positions ({tokens * kwargs['d_model']} of them per model; `shared.probes.jacobian`), mean ± "
            f"sample std over {len(seeds)} initializations; `isometric_share`: the share of σ in [{low}, {high}]. "
            "ReZero's blocks are the identity at init, so its σ = 1 is a check of the code, not a finding. No "
            "training, no claim: a description of the abstract's 'initial dynamical isometry'.")
    write_section(out, rows, ["jacobian.png"], f"python -m papers.rezero.signal --profile {profile} --out {out}",
                  note=note)
    return rows


def _plot(sigmas: dict, depths: list[int], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    deepest = depths[-1]
    for name in PLACEMENTS:
        values = np.log10(np.clip(np.concatenate(sigmas[name, deepest]), 10 ** -2.1, None))
        left.hist(values, bins=np.linspace(-2.2, 2.2, 89), alpha=0.5, label=name)
        pooled = [np.concatenate(sigmas[name, d]) for d in depths]  # all seeds' singular values at each depth
        line, = right.plot(depths, [np.median(v) for v in pooled], marker="o", label=f"{name}: median")
        right.fill_between(depths, [np.quantile(v, 0.1) for v in pooled], [np.quantile(v, 0.9) for v in pooled],
                           color=line.get_color(), alpha=0.2)
    left.set_yscale("log")
    left.set_xlabel(f"log10 σ ({deepest} layers; σ < 0.01 shown at -2.1)")
    left.set_ylabel("count (all seeds)")
    left.legend(fontsize=8)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("layers")
    right.set_ylabel("σ: median, 10-90% band")
    right.axhline(1.0, color="grey", lw=0.5)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m papers.rezero.signal", description=__doc__.split("\n")[0])
    parser.add_argument("--profile", required=True, help="whose model size to use (its width, heads, context, depth)")
    parser.add_argument("--out", required=True, help="output folder (results/rezero/<profile>_jacobian)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    main(args.profile, args.out)
