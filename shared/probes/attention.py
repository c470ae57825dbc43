"""Attention probe: entropy of the attention weights and the largest attention logit, per attention module.

"Small-scale proxies for large-scale Transformer training instabilities", Wortsman et al., arXiv:2309.14322 §3.1.1
(attention logit growth): without qk-layernorm the attention logits z_ij = q_i . k_j / sqrt(d_h) grow in magnitude
and the attention weights p_ij = softmax_j(z_ij) collapse to one-hot, i.e. their entropy
  H_i = - sum_j p_ij log p_ij   (nats)
falls towards 0 ("entropy collapse", Zhai et al., arXiv:2303.06296). Uniform attention over L keys has H = log L.

Contract with the models (shared/models/gpt.py): an attention module exposes a bool attribute ``record_stats``
(default False); when True its forward computes attention explicitly and stores
``self.last_stats = {"entropy": float, "max_logit": float}`` (entropy: mean over heads and queries; max_logit: max
over heads, queries and allowed keys). The probe switches ``record_stats`` on for one forward pass of the fixed
batch only, so training keeps the fused kernel.
"""
from __future__ import annotations

from shared.probes.base import PROBES, Probe


@PROBES.register("attention")
class Attention(Probe):
    """``entropy`` and ``max_logit`` by attention module name."""

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
        return {"entropy": {n: s["entropy"] for n, s in stats.items()},
                "max_logit": {n: s["max_logit"] for n, s in stats.items()}}
