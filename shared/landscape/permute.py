"""Permutation symmetries and their matching: "Git Re-Basin: Merging Models modulo Permutation Symmetries",
Ainsworth, Hayase & Srinivasa, arXiv:2209.04836.

Permuting the hidden units of a layer, with the same permutation P applied to the rows of its weight/bias/norm
entries and to the columns of the next layer, leaves the function unchanged (§2): W_l <- P_l W_l P_{l-1}^T,
b_l <- P_l b_l. A residual stream ties every layer that writes into or reads from it to one permutation.

Weight matching (§3.2, Alg. 1): find pi maximising sum_l <W_l^A, P_l W_l^B P_{l-1}^T>_F by coordinate descent:
for one P_l at a time (random order), with the others fixed, the objective is linear in P_l,

    P_l <- argmax_P <P, sum_{(W, axis) using P_l} W^A_(axis) [pi(W^B) with axis left unpermuted]_(axis)^T>_F

a linear assignment problem (scipy ``linear_sum_assignment``); stop when a sweep improves nothing.
Activation matching (§3.1): P_l <- argmax_P <P, sum_x Z^A_l(x) Z^B_l(x)^T>_F, one assignment problem per
permutation, with Z_l the activations (after the nonlinearity) of the units P_l permutes.

Spec (the reference's ``PermutationSpec``, samuela/git-re-basin ``src/weight_matching.py``): for every
state_dict key, one entry per tensor axis: () when the axis is not permuted, else segments
((perm name, indices), ...): that perm permutes those positions of the axis. Segments are needed by CIFAR ResNets
with option-A shortcuts (``PadShortcut``): the stream of stage s+1 holds the stream of stage s zero-padded, so its
permutation is stage s's on the embedded channels plus a new one on the padded channels. ``sites`` name the modules
whose outputs (channel axis 1) activation matching compares.

Convention (the reference's ``jnp.take``): the permuted tensor's unit i is the original unit perm[p][i].
Reference: samuela/git-re-basin ``src/weight_matching.py`` (``weight_matching``, ``apply_permutation``,
``resnet20_permutation_spec``). Deviations: PyTorch (out, in) layouts; segment axes (above); BN running stats are
permuted by ``apply_permutation`` but not used as matching evidence (the reference matches ``params`` only).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
from scipy.optimize import linear_sum_assignment

from shared.models.mlp import MLP
from shared.models.resnet_cifar import CifarResNet, PadShortcut
from shared.models.vgg import VGG

Segments = tuple[tuple[str, tuple[int, ...]], ...]  # ((perm name, positions on the axis), ...); () = not permuted
Permutation = dict[str, torch.Tensor]
BN_STATS = ("running_mean", "running_var")


@dataclass
class PermutationSpec:
    """sizes: perm name -> units; axes: state_dict key -> Segments per tensor axis; sites: module -> Segments of its
    output's channel axis (for activation matching)."""
    sizes: dict[str, int]
    axes: dict[str, tuple[Segments, ...]]
    sites: dict[str, Segments] = field(default_factory=dict)

    def __post_init__(self):
        self.perm_to_axes: dict[str, list[tuple[str, int, torch.Tensor]]] = {p: [] for p in self.sizes}
        for key, axes in self.axes.items():
            for axis, segments in enumerate(axes):
                for p, ids in segments:
                    if len(ids) != self.sizes[p]:
                        raise ValueError(f"{key} axis {axis}: {len(ids)} positions for {p} of size {self.sizes[p]}")
                    self.perm_to_axes[p].append((key, axis, torch.tensor(ids)))


def _axis_index(segments: Segments, perm: Permutation, n: int) -> torch.Tensor:
    """Gather index for one axis: position ids[i] takes the original position ids[perm[p][i]]."""
    index = torch.arange(n)
    for p, ids in segments:
        ids = torch.tensor(ids)
        index[ids] = ids[perm[p].cpu()]
    return index


def permuted_tensor(spec: PermutationSpec, perm: Permutation, key: str, tensor: torch.Tensor,
                    except_axis: int | None = None) -> torch.Tensor:
    """pi(W) for one state_dict entry, every permuted axis but ``except_axis`` (the reference's get_permuted_param)."""
    for axis, segments in enumerate(spec.axes[key]):
        if segments and axis != except_axis:
            tensor = tensor.index_select(axis, _axis_index(segments, perm, tensor.shape[axis]).to(tensor.device))
    return tensor


def apply_permutation(spec: PermutationSpec, perm: Permutation, state: Mapping[str, torch.Tensor]
                      ) -> dict[str, torch.Tensor]:
    """pi(theta): W_l <- P_l W_l P_{l-1}^T for every entry of a state_dict (§2). Every key must be in the spec."""
    missing = sorted(set(state) - set(spec.axes))
    if missing:
        raise KeyError(f"permutation spec has no entry for {missing}")
    return {key: permuted_tensor(spec, perm, key, t) for key, t in state.items()}


def identity_permutation(spec: PermutationSpec) -> Permutation:
    return {p: torch.arange(n) for p, n in spec.sizes.items()}


def random_permutation(spec: PermutationSpec, generator: torch.Generator | None = None) -> Permutation:
    return {p: torch.randperm(n, generator=generator) for p, n in spec.sizes.items()}


def _solve(cost: torch.Tensor) -> torch.Tensor:
    """argmax_P <P, cost>_F over permutation matrices, as an index array (row i takes column ci[i])."""
    rows, cols = linear_sum_assignment(cost.cpu().numpy(), maximize=True)
    assert (rows == np.arange(len(rows))).all()
    return torch.from_numpy(cols).long()


def _rows(tensor: torch.Tensor, axis: int, ids: torch.Tensor) -> torch.Tensor:
    """The units ``ids`` of ``axis`` as rows of a matrix (one row per unit, everything else flattened)."""
    tensor = tensor.movedim(axis, 0)
    if len(ids) != tensor.shape[0] or not torch.equal(ids, torch.arange(len(ids))):
        tensor = tensor[ids.to(tensor.device)]
    return tensor.reshape(len(ids), -1)


def weight_matching(spec: PermutationSpec, state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor],
                    max_iter: int = 100, init_perm: Permutation | None = None, seed: int = 0,
                    keys: Iterable[str] | None = None) -> Permutation:
    """Permutation pi of B maximising sum_l <W_l^A, pi(W^B)_l>_F (Git Re-Basin §3.2, Alg. 1), so that
    ``apply_permutation(spec, pi, state_b)`` is close to A. ``keys``: the entries used as evidence (default: every
    floating-point entry but BN running statistics, as the reference uses the trainable params)."""
    if keys is None:
        keys = [k for k, t in state_a.items() if torch.is_floating_point(t) and not k.endswith(BN_STATS)]
    keys = set(keys)
    perm = {p: v.clone() for p, v in (init_perm or identity_permutation(spec)).items()}
    names = sorted(spec.sizes)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(max_iter):
        progress = False
        for p in [names[i] for i in torch.randperm(len(names), generator=generator)]:
            n = spec.sizes[p]
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis, ids in spec.perm_to_axes[p]:
                if key not in keys:
                    continue
                w_a = _rows(state_a[key].detach(), axis, ids)
                w_b = _rows(permuted_tensor(spec, perm, key, state_b[key].detach(), except_axis=axis), axis, ids)
                # cost += W^A_(axis) pi(W^B)_(axis)^T (in the weights' dtype: a float32 GEMM is 2-4x faster on CPU)
                cost += (w_a @ w_b.to(w_a.dtype).T).double().cpu()
            new = _solve(cost)
            rows = torch.arange(n)
            # progress when <P_new, cost> > <P_old, cost> (the reference's oldL / newL)
            progress |= bool(cost[rows, new].sum() > cost[rows, perm[p]].sum() + 1e-12)
            perm[p] = new
        if not progress:
            break
    return perm


@torch.no_grad()
def activation_matching(spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, batches: Iterable
                        ) -> Permutation:
    """P_l <- argmax_P <P, sum_x Z^A_l(x) Z^B_l(x)^T>_F per permutation (Git Re-Basin §3.1), with Z the outputs of
    ``spec.sites`` (channel axis 1, every other axis is a sample) over ``batches`` of (x, y), both models in eval
    mode. A permutation used at several sites (a residual stream) sums their cross-products."""
    unmatched = sorted(set(spec.sizes) - {p for segs in spec.sites.values() for p, _ in segs})
    if unmatched:
        raise ValueError(f"no activation site for permutations {unmatched}")
    cross = {p: torch.zeros(n, n, dtype=torch.float64) for p, n in spec.sizes.items()}
    outputs: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []
    for side, model in enumerate((model_a, model_b)):
        modules = dict(model.named_modules())
        for name in spec.sites:
            hooks.append(modules[name].register_forward_hook(
                lambda _m, _i, out, key=(side, name): outputs.__setitem__(key, out.movedim(1, -1).flatten(0, -2))))
    modes = model_a.training, model_b.training
    model_a.eval(), model_b.eval()
    try:
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model_a(x.to(next(model_a.parameters()).device))
            model_b(x.to(next(model_b.parameters()).device))
            for name, segments in spec.sites.items():
                z_a, z_b = outputs[(0, name)].double().cpu(), outputs[(1, name)].double().cpu()
                for p, ids in segments:
                    ids = list(ids)
                    cross[p] += z_a[:, ids].T @ z_b[:, ids]  # sum_x Z^A(x) Z^B(x)^T
    finally:
        for h in hooks:
            h.remove()
        model_a.train(modes[0]), model_b.train(modes[1])
    return {p: _solve(c) for p, c in cross.items()}


class _SpecBuilder:
    """Collects axes for the spec of one model, reading shapes from its state_dict."""

    def __init__(self, model: nn.Module):
        self.state = model.state_dict()
        self.sizes: dict[str, int] = {}
        self.axes: dict[str, tuple[Segments, ...]] = {}
        self.sites: dict[str, Segments] = {}

    def new(self, name: str, positions: Iterable[int]) -> Segments:
        positions = tuple(positions)
        self.sizes[name] = len(positions)
        return ((name, positions),)

    def layer(self, prefix: str, out: Segments, inp: Segments) -> None:
        """Conv (out, in, k, k) or Linear (out, in) weight and its bias (out,)."""
        weight = self.state[f"{prefix}.weight"]
        self.axes[f"{prefix}.weight"] = (out, inp) + ((),) * (weight.dim() - 2)
        if f"{prefix}.bias" in self.state:
            self.axes[f"{prefix}.bias"] = (out,)

    def elementwise(self, prefix: str, module: nn.Module, segments: Segments, channels: int) -> None:
        """A norm or activation after a layer: its per-channel vectors (scale, shift, running stats) follow the
        channels; anything else (num_batches_tracked, scalars) is not permuted."""
        if isinstance(module, nn.GroupNorm) and 1 < module.num_groups < module.num_channels:
            raise ValueError(f"{prefix}: GroupNorm with {module.num_groups} groups mixes channels across groups; "
                             "channel permutations do not commute with it")
        for name, t in module.state_dict().items():
            per_channel = t.dim() == 1 and t.shape[0] == channels
            self.axes[f"{prefix}.{name}" if prefix else name] = (segments,) if per_channel else ((),) * t.dim()

    def build(self) -> PermutationSpec:
        missing = sorted(set(self.state) - set(self.axes))
        if missing:
            raise ValueError(f"permutation spec misses state_dict entries {missing}")
        return PermutationSpec(self.sizes, self.axes, self.sites)


def _chain_spec(model: nn.Module, seq_name: str, layer_types: tuple[type, ...], head: str | None) -> PermutationSpec:
    """A chain layer -> norm -> act (-> pool) ... (MLP, VGG): one permutation per hidden layer; the site is the
    output of the last module before the next layer (after the nonlinearity, or the pool)."""
    b, seq = _SpecBuilder(model), getattr(model, seq_name)
    layers = [i for i, m in enumerate(seq) if isinstance(m, layer_types)]
    prev: Segments = ()
    for k, i in enumerate(layers):
        is_output = head is None and k == len(layers) - 1
        out = () if is_output else b.new(f"P_{seq_name}.{i}", range(seq[i].weight.shape[0]))
        b.layer(f"{seq_name}.{i}", out, prev)
        end = layers[k + 1] if k + 1 < len(layers) else len(seq)
        for j in range(i + 1, end):
            b.elementwise(f"{seq_name}.{j}", seq[j], out, seq[i].weight.shape[0])
        if not is_output:
            b.sites[f"{seq_name}.{end - 1}"] = out
        prev = out
    if head is not None:
        b.layer(head, (), prev)
    return b.build()


def mlp_permutation_spec(model: MLP) -> PermutationSpec:
    """Hidden units of ``MLP`` (Linear -> norm -> act per layer; Git Re-Basin's MLP spec)."""
    return _chain_spec(model, "net", (nn.Linear,), head=None)


def vgg_permutation_spec(model: VGG) -> PermutationSpec:
    """Conv channels of ``VGG`` (conv -> norm -> act [-> max-pool]); the head Linear reads the last conv's channels
    (the 1x1 map is flattened, so channels stay features). The reference's ``vgg16_permutation_spec``."""
    return _chain_spec(model, "features", (nn.Conv2d,), head="fc")


def resnet_permutation_spec(model: CifarResNet) -> PermutationSpec:
    """``CifarResNet``: one permutation per block's inner channels, one per residual stream (the reference's
    ``resnet20_permutation_spec``). Shortcut kinds: identity (stream unchanged), option B projection (new stream
    permutation, the 1x1 conv maps old stream -> new), option A zero-padding (old stream's segments shifted by the
    padding, plus a new permutation of the padded channels), none (plain nets: a new permutation per block)."""
    b = _SpecBuilder(model)
    stem_conv = model.stem[0]
    stream = b.new("P_stem", range(stem_conv.out_channels))
    b.layer("stem.0", stream, ())
    b.elementwise("stem.1", model.stem[1], stream, stem_conv.out_channels)
    b.sites["stem.2"] = stream
    for i, block in enumerate(model.blocks):
        name, c_mid, c_out = f"blocks.{i}", block.conv1.out_channels, block.conv2.out_channels
        inner = b.new(f"P_{name}.inner", range(c_mid))
        shortcut = block.shortcut
        if isinstance(shortcut, nn.Identity):
            out = stream
        elif isinstance(shortcut, PadShortcut):
            lo, c_in = shortcut.pad // 2, c_out - shortcut.pad
            out = tuple((p, tuple(j + lo for j in ids)) for p, ids in stream)  # old stream at [lo, lo + c_in)
            if shortcut.pad:
                out += b.new(f"P_{name}.pad", [*range(lo), *range(lo + c_in, c_out)])
        else:  # option B projection, or no shortcut (plain net)
            out = b.new(f"P_{name}.out", range(c_out))
            if shortcut is not None:
                b.layer(f"{name}.shortcut.0", out, stream)
                b.elementwise(f"{name}.shortcut.1", shortcut[1], out, c_out)
        b.layer(f"{name}.conv1", inner, stream)
        b.elementwise(f"{name}.norm1", block.norm1, inner, c_mid)
        b.sites[f"{name}.act1"] = inner
        b.layer(f"{name}.conv2", out, inner)
        b.elementwise(f"{name}.norm2", block.norm2, out, c_out)
        b.sites[f"{name}.act2"] = out
        stream = out
    b.layer("fc", (), stream)
    return b.build()


SPEC_BUILDERS = {MLP: mlp_permutation_spec, VGG: vgg_permutation_spec, CifarResNet: resnet_permutation_spec}


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The spec of a supported model (``SPEC_BUILDERS``); other models raise, naming the supported classes."""
    for cls, build in SPEC_BUILDERS.items():
        if isinstance(model, cls):
            return build(model)
    raise ValueError(f"no permutation spec for {type(model).__name__}; supported: "
                     f"{sorted(c.__name__ for c in SPEC_BUILDERS)}")
