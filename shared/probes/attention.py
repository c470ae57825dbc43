"""Attention probe: entropy of the attention weights and the largest attention logit, per attention module.

"Small-scale proxies for large-scale Transformer training instabilities", Wortsman et al., arXiv:2309.14322 §3.1.1
(attention logit growth): without qk-layernorm the attention logits z_ij = q_i . k_j / sqrt(d_h) grow in magnitude
and the attention weights p_ij = softmax_j(z_ij) collapse to one-hot, i.e. their entropy
  H_i = - sum_j p_ij log p_ij   (nats)
falls towards 0 ("entropy collapse", Zhai et al., arXiv:2303.06296). Uniform attention over L keys has H = log L.

Contract with the models (shared/models/gpt.py): an attention module exposes a bool attribute ``record_stats``
(default False); when True its forward computes attention explicitly and stores
``self.last_stats = {"entropy": float, "max_logit": float}`` (entropy: mean over heads and queries; max_logit: max
over heads, queries and allowed keys), optionally with ``"head_entropy_ratio": [float] * n_head`` (each head's
entropy over that of uniform attention, H_i / log(i + 1) for a causal query i, mean over queries: 1 = uniform).
The probe switches ``record_stats`` on for one forward pass of the fixed batch only, so training keeps the fused
kernel.

Per-head entropy is what "ReLU's Revival" (Jha & Reagen, arXiv:2410.09637 §4) looks at: with GELU and no LayerNorm,
many heads of the early layers sit near the maximum entropy ("entropic overload": they attend almost uniformly and
carry little information). The probe records it as ``head_entropy_ratio: {"<module>.h<i>": H / H_uniform}``, a
fraction that does not depend on the context length, so a config can count such heads with ``probe_metrics``
(``reduce: frac_above`` and a ``threshold``, shared/results/probes.py).
"""
from __future__ import annotations

from shared.probes.base import PROBES, Probe


@PROBES.register("attention")
class Attention(Probe):
    """``entropy`` and ``max_logit`` by attention module name; ``head_entropy_ratio`` by ``<module name>.h<head>``."""

    needs_batch = True

    def __init__(self, model, optimizer=None, batch=None):
        super().__init__(model, optimizer, batch)
        self.attention_modules = [(name, m) for name, m in model.named_modules() if hasattr(m, "record_stats")]
        if not self.attention_modules:
            raise ValueError(f"attention probe: no module of {type(model).__name__} has a `record_stats` attribute "
                             "(the attention-stats contract, shared/probes/attention.py)")

    def on_fixed_batch(self, batch):
        for _, m in self.attention_modules:
            m.record_stats, m.last_stats = True, None
        try:
            batch.forward(batch.x)
        finally:
            for _, m in self.attention_modules:
                m.record_stats = False
        stats = {name: m.last_stats for name, m in self.attention_modules if m.last_stats is not None}
        out = {"entropy": {n: s["entropy"] for n, s in stats.items()},
               "max_logit": {n: s["max_logit"] for n, s in stats.items()}}
        heads = {f"{n}.h{i}": h for n, s in stats.items() for i, h in enumerate(s.get("head_entropy_ratio", ()))}
        if heads:
            out["head_entropy_ratio"] = heads
        return out
