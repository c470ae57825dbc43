"""Output-logit probe: the log-partition function log Z of the model's output logits on the fixed batch.

"Small-scale proxies for large-scale Transformer training instabilities", Wortsman et al., arXiv:2309.14322 §3.1.2
(output logit divergence): with logits z over the vocabulary, the softmax cross-entropy only sees z - log Z with
  log Z = log sum_j exp(z_j),
so nothing in the loss holds log Z itself; without weight decay it can drift far from 0 ("the output logits diverge
from the log probabilities") and the run becomes unstable. The auxiliary z-loss, 1e-4 · log² Z (train.z_loss,
PaLM §5), pulls it back to 0. The probe records, over every position of the fixed batch,
  log_z_mean      mean of log Z
  log_z_abs_mean  mean of |log Z|   (how far the logits sit from being log-probabilities)
  max_abs_logit   max_j |z_j|
It works for any model whose forward returns logits ``(..., n_classes)`` (a classifier as well as a language model).
"""
from __future__ import annotations

import torch

from shared.probes.base import PROBES, Probe


@PROBES.register("output_logits")
class OutputLogits(Probe):
    """``log_z_mean``, ``log_z_abs_mean`` and ``max_abs_logit`` of the output logits on the fixed batch."""

    needs_batch = True

    def on_fixed_batch(self, batch):
        logits = batch.forward(batch.x).float()
        log_z = torch.logsumexp(logits, dim=-1)
        return {"log_z_mean": log_z.mean().item(), "log_z_abs_mean": log_z.abs().mean().item(),
                "max_abs_logit": logits.abs().max().item()}
