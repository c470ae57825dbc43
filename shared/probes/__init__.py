"""Training probes: diagnostics logged to ``metrics.jsonl`` as ``{"kind": "probe", "probe", "step", ...}``.

Registry ``PROBES`` (shared.registry.Registry); one file per family:
- weights.py: ``weight_norm``, ``effective_step``, ``effective_lr`` (arXiv:1706.05350)
- gradients.py: ``grad_norms``, ``grad_spikes`` (SPAM, arXiv:2501.06842)
- optimizer_state.py: ``optimizer_state`` (bytes of optimizer state per parameter)
- activations.py: ``activations`` (residual-stream scale), ``layer_skip`` (Mix-LN, arXiv:2412.13795)
- attention.py: ``attention`` (entropy and max logit, arXiv:2309.14322)
- logits.py: ``output_logits`` (log Z of the output logits, arXiv:2309.14322 §3.1.2)
- forgetting.py: ``forgetting`` (loss on one training batch over training, AdEMAMix arXiv:2409.03050 §5)
- jacobian.py: ``jacobian`` (singular values of the blocks' input-output Jacobian, ReZero arXiv:2003.04887)
Off by default (``train.probes.every: 0``): nothing is built and training runs exactly as without probes.
"""
from shared.probes.base import PROBES, FixedBatch, Probe, frozen_forward
from shared.probes import (  # noqa: F401 (imported to register their probes)
    activations, attention, forgetting, gradients, jacobian, logits, optimizer_state, weights)
from shared.probes.optimizer_state import optimizer_state_bytes, state_bytes_per_param
from shared.probes.probe_set import ProbeSet, create_probes

__all__ = ["PROBES", "FixedBatch", "Probe", "ProbeSet", "create_probes", "frozen_forward", "list_probes",
           "optimizer_state_bytes", "state_bytes_per_param"]


def list_probes() -> list[str]:
    return PROBES.names()
