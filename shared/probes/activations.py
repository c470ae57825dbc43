"""Forward probes on the fixed batch: the residual stream's scale per block, and each block's share of the loss.

activations: per block output, Var(x) and max |x| over all its entries (population variance, float32). In a
Pre-LN transformer the residual stream's variance grows with depth ("The Curse of Depth in Large Language Models",
arXiv:2502.05795 §3: Var(x_{l+1}) = Var(x_l) + Var(F(LN(x_l))), growing up to exponentially in l); large max |x|
are the outlier features of "Small-scale proxies for large-scale Transformer training instabilities"
(arXiv:2309.14322 §3). Blocks: ``model.blocks`` (an nn.ModuleList), else the model's top-level children.

layer_skip: "Mix-LN: Unleashing the Power of Deeper Layers by Combining Pre-LN and Post-LN", Li et al.,
arXiv:2412.13795 §3 (Fig. 1): the performance drop when layer l is removed,
  Delta L(l) = L(model with block l replaced by the identity) - L(model)
on the fixed batch; a small Delta L for deep blocks marks them as barely used. Needs ``model.blocks`` whose blocks
map x -> x of the same shape (transformer blocks; a block's forward hook returns its input).
"""
from __future__ import annotations

from torch import nn

from shared.probes.base import PROBES, Probe, first_tensor, units


@PROBES.register("activations")
class Activations(Probe):
    """``variance`` and ``max_abs`` of each block's output, by block name."""

    needs_batch = True

    def on_fixed_batch(self, batch):
        variance, max_abs, handles = {}, {}, []

        def hook(name):
            def fn(module, inputs, output):
                out = first_tensor(output)
                if out is not None and out.is_floating_point():
                    x = out.detach().float()
                    variance[name] = x.var(unbiased=False).item()  # Var(x) = mean((x - mean x)^2)
                    max_abs[name] = x.abs().max().item()
            return fn

        for name, module in units(self.model):
            handles.append(module.register_forward_hook(hook(name)))
        try:
            batch.forward(batch.x)
        finally:
            for h in handles:
                h.remove()
        return {"variance": variance, "max_abs": max_abs}


@PROBES.register("layer_skip")
class LayerSkip(Probe):
    """``loss`` of the full model and ``delta_loss`` {blocks.i: L(without block i) - L} (arXiv:2412.13795 §3)."""

    needs_batch = True

    def __init__(self, model, optimizer=None, batch=None):
        super().__init__(model, optimizer, batch)
        if not isinstance(getattr(model, "blocks", None), nn.ModuleList):
            raise ValueError(f"layer_skip needs a model with a `blocks` nn.ModuleList; {type(model).__name__} has none")

    def on_fixed_batch(self, batch):
        loss = batch.loss(batch.forward(batch.x), batch.y)
        delta = {}
        for i, block in enumerate(self.model.blocks):
            # block i -> identity: the hook replaces its output by its input
            handle = block.register_forward_hook(lambda module, inputs, output: inputs[0])
            try:
                # Delta L(i) = L(without block i) - L
                delta[f"blocks.{i}"] = batch.loss(batch.forward(batch.x), batch.y) - loss
            finally:
                handle.remove()
        return {"loss": loss, "delta_loss": delta}
