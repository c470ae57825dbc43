"""Norm registry: every model builds its normalization layers with ``create_norm(name, num_features, layout)``,
so a config can swap BatchNorm for GroupNorm or LayerNorm (timm ``layers/create_norm.py`` pattern).

Layouts: ``"nchw"`` is channels-first image input (N, C, H, W); ``"nlc"`` is channels-last, i.e. features in the
last dim with any leading dims ((N, L, C) tokens, or (N, C) for an MLP). What each entry normalizes over
(x: (N, C, H, W) or (..., C); affine parameters are always per channel):

- ``batchnorm`` ("Batch Normalization", arXiv:1502.03167): per channel over the batch and all positions.
  nchw: ``nn.BatchNorm2d``; nlc: ``nn.BatchNorm1d`` applied to the input flattened to (-1, C), i.e. the same
  statistics as transposing to (N, C, L).
- ``groupnorm`` ("Group Normalization", arXiv:1803.08494 §3.1): per sample over (C/G channels, H, W).
  ``num_groups`` defaults to the paper's G=32; layers narrower than G use one group per channel
  (ResNet-20's 16-channel stage), any other C not divisible by G raises.
- ``layernorm`` ("Layer Normalization", arXiv:1607.06450): nlc: ``nn.LayerNorm`` over C. nchw: over (C, H, W)
  per sample by default (``over="chw"``, the "LN" of the GroupNorm paper's Fig. 2, i.e. GroupNorm with G=1),
  or over C at each pixel with ``over="c"`` (ConvNeXt's LayerNorm2d, arXiv:2201.03545).
- ``rmsnorm`` ("Root Mean Square Layer Normalization", arXiv:1910.07467): ``nn.RMSNorm`` over C; for nchw over C
  at each pixel.
- ``scalenorm`` ("Transformers without Tears", Nguyen & Salazar, arXiv:1910.05895): one learned scalar g
  per layer, ScaleNorm(x; g) = g x / ||x||_2 over C, g initialised to sqrt(C).
- ``fixnorm`` (same paper, after Nguyen & Chiang 2018): x / ||x||_2 times a *fixed* length (default 1). Meant
  for word embeddings, not the residual stream: GPT's ``fix_norm`` flag applies it to every row of the token
  embedding matrix, i.e. to the input embeddings and, tied, to the output head (logits = g cos(h, w) behind a
  ScaleNorm final norm).
- ``powernorm`` ("PowerNorm: Rethinking Batch Normalization in Transformers", Shen et al., arXiv:2003.07845,
  Alg. 1): per channel over the batch and all positions like ``batchnorm``, but no mean subtraction, the running
  quadratic mean in the forward pass, and the approximate backward pass. See ``PowerNorm``.
- ``identity`` / ``none``: no normalization.

Entry info ``has_bias`` marks norms that accept ``bias=`` (GPT passes its ``bias`` flag only to those).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.registry import Registry

NORMS = Registry("norm")
LAYOUTS = ("nchw", "nlc")


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


class BatchNormLast(nn.BatchNorm1d):
    """BatchNorm over the last dim of (..., C): statistics over every leading position, like (N, C, L) BN."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class GroupNormLast(nn.GroupNorm):
    """GroupNorm for (N, ..., C): moves C to dim 1, where ``nn.GroupNorm`` expects it."""

    def forward(self, x):
        return super().forward(x.movedim(-1, 1)).movedim(1, -1)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over C at each pixel of (N, C, H, W)."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


class RMSNorm2d(nn.RMSNorm):
    """RMSNorm over C at each pixel of (N, C, H, W)."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


@NORMS.register("batchnorm", batch_dependent=True)
def batchnorm(num_features: int, layout: str = "nchw", **kwargs) -> nn.Module:
    cls = nn.BatchNorm2d if _check_layout(layout) == "nchw" else BatchNormLast
    return cls(num_features, **kwargs)


@NORMS.register("groupnorm")
def groupnorm(num_features: int, layout: str = "nchw", num_groups: int = 32, **kwargs) -> nn.Module:
    groups = min(num_groups, num_features)
    if num_features % groups:
        raise ValueError(f"groupnorm: num_features={num_features} is not divisible by num_groups={num_groups}")
    cls = nn.GroupNorm if _check_layout(layout) == "nchw" else GroupNormLast
    return cls(groups, num_features, **kwargs)


@NORMS.register("layernorm", has_bias=True)
def layernorm(num_features: int, layout: str = "nchw", over: str = "chw", eps: float = 1e-5,
              elementwise_affine: bool = True, bias: bool = True) -> nn.Module:
    if _check_layout(layout) == "nlc" or over == "c":
        cls = nn.LayerNorm if layout == "nlc" else LayerNorm2d
        return cls(num_features, eps=eps, elementwise_affine=elementwise_affine, bias=bias)
    if over != "chw":
        raise ValueError(f"layernorm: over must be 'chw' or 'c', got {over!r}")
    # LN over (C, H, W) with per-channel affine is exactly GroupNorm with one group.
    norm = nn.GroupNorm(1, num_features, eps=eps, affine=elementwise_affine)
    if elementwise_affine and not bias:
        norm.register_parameter("bias", None)
    return norm


@NORMS.register("rmsnorm")
def rmsnorm(num_features: int, layout: str = "nchw", eps: float | None = None,
            elementwise_affine: bool = True) -> nn.Module:
    cls = RMSNorm2d if _check_layout(layout) == "nchw" else nn.RMSNorm
    return cls(num_features, eps=eps, elementwise_affine=elementwise_affine)


class ScaleNorm(nn.Module):
    """"Transformers without Tears: Improving the Normalization of Self-Attention", Nguyen & Salazar,
    arXiv:1910.05895: l2 normalization with a single scale parameter,

        ScaleNorm(x; g) = g * x / ||x||_2,   ||x||_2 over the C features of one token (or one pixel),

    g a learned scalar initialised to sqrt(C), so the output starts at unit RMS like LayerNorm's. ``learn_scale=False``
    with ``scale=1`` is FixNorm: every vector projected to a fixed length. ``eps`` clamps ||x|| from below,
    as the authors' code (tnq177/transformers_without_tears) does, so a zero vector maps to zero.
    ``channel_dim``: -1 for (..., C), 1 for (N, C, H, W).
    """

    def __init__(self, num_features: int, scale: float | None = None, learn_scale: bool = True, eps: float = 1e-5,
                 channel_dim: int = -1):
        super().__init__()
        if eps <= 0:
            raise ValueError(f"scalenorm: eps must be > 0, got {eps}")
        g = torch.tensor(float(math.sqrt(num_features) if scale is None else scale))
        if learn_scale:
            self.scale = nn.Parameter(g)
        else:
            self.register_buffer("scale", g)
        self.eps, self.channel_dim = eps, channel_dim

    def forward(self, x):
        # g * x / ||x||_2, ||x||_2 clamped to >= eps
        return self.scale * x / x.norm(dim=self.channel_dim, keepdim=True).clamp(min=self.eps)


class _PowerNormFunction(torch.autograd.Function):
    """PowerNorm's forward and approximate backward (arXiv:2003.07845 Alg. 1) on x of shape (M, C), M = batch x
    positions, given psi_{t-1} (a constant: no gradient flows through the statistics). Updates the buffer ``nu`` in
    place during backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, psi, nu, alpha_bkw):
        # z_hat = x / psi_{t-1}
        z_hat = x / psi
        ctx.save_for_backward(z_hat, psi, weight)
        ctx.nu, ctx.alpha_bkw = nu, alpha_bkw
        # y = gamma * z_hat + beta
        return z_hat * weight + bias

    @staticmethod
    def backward(ctx, grad_y):
        z_hat, psi, weight = ctx.saved_tensors
        nu, a = ctx.nu, ctx.alpha_bkw
        # dL/dz_hat = gamma * dL/dy
        grad_z = grad_y * weight
        # dL/dx = (dL/dz_hat - nu_{t-1} z_hat) / psi_{t-1}: nu stands in for BN's batch mean of z_hat * dL/dz_hat
        grad_x = (grad_z - nu * z_hat) / psi
        # nu_t = nu_{t-1} (1 - (1 - alpha) Gamma) + (1 - alpha) Lambda,
        # Gamma = 1/B sum_i z_hat_i^2, Lambda = 1/B sum_i z_hat_i dL/dz_hat_i
        gamma_stat, lambda_stat = z_hat.pow(2).mean(dim=0), (grad_z * z_hat).mean(dim=0)
        nu.mul_(1 - (1 - a) * gamma_stat).add_((1 - a) * lambda_stat)
        return grad_x, (grad_y * z_hat).sum(dim=0), grad_y.sum(dim=0), None, None, None


class PowerNorm(nn.Module):
    """"PowerNorm: Rethinking Batch Normalization in Transformers", Shen et al., arXiv:2003.07845, Algorithm 1.
    Statistics per channel over every token of the batch (x: (..., C), or (N, C, H, W) with ``channel_dim=1``).

    Training, forward (Alg. 1, forward pass):
        sigma_B^2 = 1/B sum_i x_i^2                      (quadratic mean, no mean subtraction)
        z_hat     = x / psi_{t-1}                        (running statistic, not the batch one)
        y         = gamma * z_hat + beta
        psi_t^2   = alpha psi_{t-1}^2 + (1 - alpha) sigma_B^2
    Training, backward (Alg. 1, approximate backward pass):
        dL/dz_hat = gamma * dL/dy
        dL/dx     = (dL/dz_hat - nu_{t-1} z_hat) / psi_{t-1}
        nu_t      = nu_{t-1} (1 - (1 - alpha) Gamma) + (1 - alpha) Lambda,
                    Gamma = 1/B sum z_hat^2,  Lambda = 1/B sum z_hat * dL/dz_hat
    Eval: y = gamma * x / psi + beta.
    ``alpha_fwd`` / ``alpha_bkw`` = 0.9 as the authors' code (sIncerass/powernorm, ``mask_powernorm.py``);
    psi^2 starts at 1, nu at 0; eps inside the square root.

    Deviations from that reference code: (1) warm-up: it normalizes by the batch statistic for the first
    ``warmup_iters`` steps (default 10,000 there) while psi^2 tracks their cumulative mean; here the default is 1
    step, which only initialises psi^2 to the first batch's sigma_B^2 (psi^2 = 1 would mis-scale a layer whose
    inputs are O(0.02) at init). (2) Its backward divides by the *batch* sqrt(sigma_B^2 + eps); here by the psi
    used in the forward pass, as Algorithm 1 writes it. (3) Its ``GroupScaling1D`` pre-division of each token by its
    own RMS, and the padding mask, are not included.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, alpha_fwd: float = 0.9, alpha_bkw: float = 0.9,
                 warmup_iters: int = 1, affine: bool = True, channel_dim: int = -1):
        super().__init__()
        for name, value in (("alpha_fwd", alpha_fwd), ("alpha_bkw", alpha_bkw)):
            if not 0 <= value < 1:
                raise ValueError(f"powernorm: {name} must lie in [0, 1), got {value}")
        if warmup_iters < 0:
            raise ValueError(f"powernorm: warmup_iters must be >= 0, got {warmup_iters}")
        self.num_features, self.eps, self.channel_dim = num_features, eps, channel_dim
        self.alpha_fwd, self.alpha_bkw, self.warmup_iters = alpha_fwd, alpha_bkw, warmup_iters
        self.weight = nn.Parameter(torch.ones(num_features), requires_grad=affine)
        self.bias = nn.Parameter(torch.zeros(num_features), requires_grad=affine)
        self.register_buffer("running_phi", torch.ones(num_features))  # psi^2
        self.register_buffer("nu", torch.zeros(num_features))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        flat = x.movedim(self.channel_dim, -1)
        shape = flat.shape
        flat = flat.reshape(-1, self.num_features)
        if not self.training:
            # y = gamma * x / psi + beta
            y = flat / (self.running_phi + self.eps).sqrt() * self.weight + self.bias
        else:
            self.num_batches_tracked += 1
            t = int(self.num_batches_tracked)
            with torch.no_grad():
                # sigma_B^2 = 1/B sum_i x_i^2: quadratic mean over the batch, no mean subtraction
                sigma_b2 = flat.pow(2).mean(dim=0)
                warmup = t <= self.warmup_iters
                # psi_{t-1}: the running statistic of the previous steps (the batch one during warm-up)
                psi = ((sigma_b2 if warmup else self.running_phi) + self.eps).sqrt()
                if warmup:  # psi_t^2 = cumulative mean of sigma_B^2 over the warm-up steps (reference code)
                    self.running_phi.mul_((t - 1) / t).add_(sigma_b2 / t)
                else:  # psi_t^2 = alpha psi_{t-1}^2 + (1 - alpha) sigma_B^2
                    self.running_phi.mul_(self.alpha_fwd).add_((1 - self.alpha_fwd) * sigma_b2)
            y = _PowerNormFunction.apply(flat, self.weight, self.bias, psi, self.nu, self.alpha_bkw)
        return y.reshape(shape).movedim(-1, self.channel_dim)


def identity(num_features: int, layout: str = "nchw") -> nn.Module:
    _check_layout(layout)
    return nn.Identity()


@NORMS.register("scalenorm")
def scalenorm(num_features: int, layout: str = "nchw", eps: float = 1e-5) -> nn.Module:
    return ScaleNorm(num_features, eps=eps, channel_dim=1 if _check_layout(layout) == "nchw" else -1)


@NORMS.register("fixnorm")
def fixnorm(num_features: int, layout: str = "nchw", length: float = 1.0, eps: float = 1e-5) -> nn.Module:
    return ScaleNorm(num_features, scale=length, learn_scale=False, eps=eps,
                     channel_dim=1 if _check_layout(layout) == "nchw" else -1)


@NORMS.register("powernorm", batch_dependent=True)
def powernorm(num_features: int, layout: str = "nchw", **kwargs) -> nn.Module:
    return PowerNorm(num_features, channel_dim=1 if _check_layout(layout) == "nchw" else -1, **kwargs)


NORMS.add("identity", identity)
NORMS.add("none", identity)


def create_norm(name: str, num_features: int, layout: str = "nchw", **kwargs) -> nn.Module:
    """``create_norm("groupnorm", 64, num_groups=8)``; kwargs go to the norm's constructor."""
    return NORMS.create(name, num_features, layout=layout, **kwargs)


def list_norms() -> list[str]:
    return NORMS.names()
