"""A small decoder-only transformer language model in the style of nanoGPT (karpathy/nanoGPT ``model.py``), which
follows GPT-2 ("Language Models are Unsupervised Multitask Learners", Radford et al. 2019; OpenAI ``gpt-2``
``src/model.py``) and the Transformer decoder ("Attention Is All You Need", arXiv:1706.03762 §3).

Token + learned position embeddings -> n_layer blocks (causal self-attention, then an MLP of width
mlp_ratio * d_model) -> optional final norm -> linear head, tied to the token embedding by default
("Using the Output Embedding to Improve Language Models", arXiv:1608.05859). Attention uses
``F.scaled_dot_product_attention(is_causal=True)``.

Norm placement is a pluggable residual wrapper (``PLACEMENTS``): each sublayer f is applied as
``placement(x, f)``; a placement is built as ``placement(cfg, layer_idx, sublayer)`` (layer_idx from 0, sublayer
"attn" or "mlp") so depth-dependent variants need no flag threaded through the blocks. Provided (norm = cfg.norm):
- ``pre``: x + f(norm(x)), GPT-2 §2.3 (Xiong et al., arXiv:2002.04745: trains without warm-up). Adds a final norm
  before the head, since the residual stream itself is never normalized.
- ``post``: norm(x + f(x)), the original Transformer (arXiv:1706.03762 §3.1, "LayerNorm(x + Sublayer(x))"). No
  final norm: the last block's output is already normalized, as in the original model.
- ``peri``: x + norm_out(f(norm_in(x))) (Peri-LN, arXiv:2502.02732), ``mix``: Post-LN in the first
  floor(mix_alpha * n_layer) blocks, Pre-LN after (Mix-LN, arXiv:2412.13795), ``normformer``: Pre-LN plus a norm
  after attention, head-wise scaling of attention outputs and a norm after the FFN activation (arXiv:2110.09456),
  ``rezero``: x + alpha f(x), alpha = 0 at init, no norm at all (arXiv:2003.04887). Each class cites its equation.
Flags: ``ln_scaling`` (LayerNorm Scaling, arXiv:2502.05795: every input norm's output times 1/sqrt(l), l = block
index from 1), ``qk_norm`` (LayerNorm on each head's q and k, arXiv:2309.14322 §3.1.1), ``fix_norm`` (unit-length
token embeddings, also as the tied head: FixNorm, arXiv:1910.05895). ``norm="none"`` with ``pre`` is the
normalization-free GPT of ReLU's Revival (arXiv:2410.09637): no norm anywhere, final norm included.
Attention statistics (the contract of shared/probes/attention.py): set ``CausalSelfAttention.record_stats = True``
and the next forward computes softmax(q k^T / sqrt(d_h) + causal mask) explicitly and stores ``last_stats``.
Init (GPT-2 §2.3, nanoGPT): weights N(0, 0.02), biases 0, and residual output projections (``c_proj``) scaled
by 1/sqrt(2 n_layer) because each of the 2 n_layer sublayers adds to the residual stream; ``scaled_init=False``
leaves them at N(0, 0.02), as the Curse of Depth paper (arXiv:2502.05795, latest version) recommends with LayerNorm
Scaling, whose effect it reports diminished by such scaled initialisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.models.activations import ACTS, create_act
from shared.models.norms import NORMS, create_norm
from shared.models.registry import MODELS
from shared.registry import Registry

PLACEMENTS = Registry("norm placement")


@dataclass
class GPTConfig:
    vocab_size: int = 50304  # GPT-2's 50,257 BPE types padded up to a multiple of 64 for speed; set from the tokenizer
    block_size: int = 256  # context length; nanoGPT's "baby GPT" (config/train_shakespeare_char.py), 1024 in GPT-2
    n_layer: int = 6  # baby GPT depth: trains in minutes on one GPU; GPT-2 small has 12
    n_head: int = 6  # head size d_model / n_head = 64, as in GPT-2
    d_model: int = 384
    mlp_ratio: int = 4  # d_ff = 4 d_model, as in arXiv:1706.03762 §3.3 (2048 = 4 x 512) and GPT-2
    dropout: float = 0.0  # nanoGPT: 0 for pretraining on much data, 0.1-0.2 for small data sets
    bias: bool = True  # biases in Linear and LayerNorm like GPT-2; False is a bit better and faster (nanoGPT)
    tie_weights: bool = True  # GPT-2 ties the head to the token embedding: fewer params, better perplexity
    act: str = "gelu"  # GPT-2's GELU (arXiv:1606.08415); any create_act name
    norm: str = "layernorm"  # any create_norm name; "rmsnorm" (arXiv:1910.07467) as in LLaMA
    norm_placement: str = "pre"  # any PLACEMENTS name: "pre" (GPT-2), "post" (original Transformer), "peri", ...
    mix_alpha: float = 0.25  # Mix-LN: share of Post-LN blocks; 0.25 is the paper's choice for most sizes
    ln_scaling: bool = False  # LayerNorm Scaling (Curse of Depth): input-norm output / sqrt(block index from 1)
    qk_norm: bool = False  # qk-layernorm: LayerNorm over head_dim on q and k, against attention-logit growth
    fix_norm: bool = False  # FixNorm: token embedding rows (and the tied head) l2-normalized to length 1
    scaled_init: bool = True  # GPT-2's residual c_proj init, std 0.02 / sqrt(2 n_layer); False: plain 0.02


def _norm(cfg: GPTConfig, width: int | None = None) -> nn.Module:
    kwargs = {"bias": cfg.bias} if NORMS.info(cfg.norm).get("has_bias") else {}
    return create_norm(cfg.norm, width or cfg.d_model, layout="nlc", **kwargs)


class Placement(nn.Module):
    """A residual wrapper: ``forward(x, f)`` applies sublayer f to the stream x. Class attributes say what else the
    model needs: ``final_norm`` (a norm before the head), ``input_norm`` (a norm feeding f, so ``ln_scaling``
    applies), ``head_scale`` / ``ffn_mid_norm`` (NormFormer's extra operations inside the sublayers)."""

    final_norm, input_norm, head_scale, ffn_mid_norm = True, True, False, False

    def __init__(self, cfg: GPTConfig, layer_idx: int, sublayer: str):
        super().__init__()
        # LayerNorm Scaling, arXiv:2502.05795 (LNS): LN(x) -> LN(x) / sqrt(l), l = layer_idx + 1
        self.ln_scale = 1.0 / math.sqrt(layer_idx + 1) if cfg.ln_scaling and self.input_norm else 1.0

    def scaled(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.ln_scale == 1.0 else y * self.ln_scale

    def extra_repr(self) -> str:
        return f"ln_scale={self.ln_scale:.4g}" if self.ln_scale != 1.0 else ""


@PLACEMENTS.register("pre")
class PreNorm(Placement):
    """Pre-LN: x + f(norm(x)) (GPT-2 §2.3; "On Layer Normalization in the Transformer Architecture", Xiong et al.,
    arXiv:2002.04745, Fig. 1(b)). With ``ln_scaling``: x + f(norm(x) / sqrt(l)) ("The Curse of Depth in Large
    Language Models", Sun et al., arXiv:2502.05795, LayerNorm Scaling; l = block index from 1, both sublayers of a block
    share l, the final norm is not scaled)."""

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0, sublayer: str = "attn"):
        super().__init__(cfg, layer_idx, sublayer)
        self.norm = _norm(cfg)

    def forward(self, x, f):
        return x + f(self.scaled(self.norm(x)))


@PLACEMENTS.register("post")
class PostNorm(Placement):
    """Post-LN: norm(x + f(x)) ("Attention Is All You Need", arXiv:1706.03762 §3.1; arXiv:2002.04745 Fig. 1(a))."""

    final_norm, input_norm = False, False  # each block already ends in a norm

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0, sublayer: str = "attn"):
        super().__init__(cfg, layer_idx, sublayer)
        self.norm = _norm(cfg)

    def forward(self, x, f):
        return self.norm(x + f(x))


@PLACEMENTS.register("peri")
class PeriNorm(Placement):
    """Peri-LN: x + norm_out(f(norm_in(x))) ("Peri-LN: Revisiting Layer Normalization in the Transformer
    Architecture", Kim et al., arXiv:2502.02732, its Peri-LN update y_l = x_l + Norm(F(Norm(x_l))))): the norm
    surrounds the sublayer; the residual stream itself stays unnormalized, hence a final norm. Not included: the
    paper's extra norm on the embedding output."""

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0, sublayer: str = "attn"):
        super().__init__(cfg, layer_idx, sublayer)
        self.norm_in, self.norm_out = _norm(cfg), _norm(cfg)

    def forward(self, x, f):
        return x + self.norm_out(f(self.scaled(self.norm_in(x))))


@PLACEMENTS.register("mix")
class MixNorm(Placement):
    """Mix-LN ("Mix-LN: Unleashing the Power of Deeper Layers by Combining Pre-LN and Post-LN", Li et al.,
    arXiv:2412.13795, Mix-LN definition): blocks l < floor(alpha L) are Post-LN, norm(x + f(x)); the others are Pre-LN,
    x + f(norm(x)); alpha = ``cfg.mix_alpha``. The last block is Pre-LN for alpha < 1, hence a final norm."""

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0, sublayer: str = "attn"):
        super().__init__(cfg, layer_idx, sublayer)
        # 1e-9 keeps e.g. 0.29 * 100 = 28.999999999999996 from flooring to 28
        self.post = layer_idx < math.floor(cfg.mix_alpha * cfg.n_layer + 1e-9)
        if self.post:
            self.ln_scale = 1.0  # LayerNorm Scaling only scales input norms
        self.norm = _norm(cfg)

    def forward(self, x, f):
        return self.norm(x + f(x)) if self.post else x + f(self.scaled(self.norm(x)))

    def extra_repr(self) -> str:
        return ", ".join(filter(None, ["post" if self.post else "pre", super().extra_repr()]))


@PLACEMENTS.register("normformer")
class NormFormerNorm(Placement):
    """NormFormer ("NormFormer: Improved Transformer Pretraining with Extra Normalization", Shleifer et al.,
    arXiv:2110.09456, Fig. 1): Pre-LN plus three operations,
        attention: x + norm_out(MHA(norm(x))),  MHA = Concat(gamma_1 h_1, ..., gamma_H h_H) W^O   (HeadScale)
        FFN:       x + W_2 norm_mid(act(W_1 norm(x)))
    The post-attention norm lives here; HeadScale (gamma_h = 1 at init) and the FFN mid norm live in
    CausalSelfAttention / MLP, switched on by ``head_scale`` / ``ffn_mid_norm``. Not included: the residual scaling
    (lambda_resid) the paper adds for its smallest models only."""

    head_scale, ffn_mid_norm = True, True

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0, sublayer: str = "attn"):
        super().__init__(cfg, layer_idx, sublayer)
        self.norm = _norm(cfg)
        self.norm_out = _norm(cfg) if sublayer == "attn" else nn.Identity()

    def forward(self, x, f):
        return x + self.norm_out(f(self.scaled(self.norm(x))))


@PLACEMENTS.register("rezero")
class ReZero(Placement):
    """ReZero ("ReZero is All You Need: Fast Convergence at Large Depth", Bachlechner et al., arXiv:2003.04887):
    x_{i+1} = x_i + alpha_i F(x_i), alpha_i a learned scalar initialised to 0, so every block is the identity at
    init; no norm anywhere (cfg.norm is ignored), no final norm. One alpha per sublayer (the paper's Transformer
    shares one per layer)."""

    final_norm, input_norm = False, False

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0, sublayer: str = "attn"):
        super().__init__(cfg, layer_idx, sublayer)
        self.alpha = nn.Parameter(torch.zeros(()))

    def forward(self, x, f):
        return x + self.alpha * f(x)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention (arXiv:1706.03762 §3.2.1: softmax(q k^T / sqrt(d_h)) v per head).

    ``qk_norm``: LayerNorm over d_h on q and k before the dot product ("Scaling Vision Transformers to 22 Billion
    Parameters", Dehghani et al., arXiv:2302.05442; "Small-scale proxies for large-scale Transformer training
    instabilities", Wortsman et al., arXiv:2309.14322 §3.1.1): bounds the logits q . k / sqrt(d_h).
    ``head_scale``: NormFormer's HeadScale (arXiv:2110.09456), head h's output times gamma_h (init 1).
    ``record_stats``: when True, forward uses the explicit path and stores ``last_stats`` (shared/probes/attention.py).
    """

    def __init__(self, cfg: GPTConfig, head_scale: bool = False):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        head_dim = cfg.d_model // cfg.n_head
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)  # q, k, v in one matmul
        self.q_norm = nn.LayerNorm(head_dim, bias=cfg.bias) if cfg.qk_norm else None
        self.k_norm = nn.LayerNorm(head_dim, bias=cfg.bias) if cfg.qk_norm else None
        self.head_scale = nn.Parameter(torch.ones(cfg.n_head)) if head_scale else None
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.record_stats, self.last_stats = False, None

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=2))
        if self.q_norm is not None:  # q <- LN(q), k <- LN(k), per head over d_h
            q, k = self.q_norm(q), self.k_norm(k)
        dropout_p = self.dropout if self.training else 0.0
        if self.record_stats:
            y = self.attention_with_stats(q, k, v, dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        if self.head_scale is not None:  # Concat(gamma_1 h_1, ..., gamma_H h_H)
            y = y * self.head_scale.view(1, -1, 1, 1)
        return self.resid_drop(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))

    def attention_with_stats(self, q, k, v, dropout_p: float) -> torch.Tensor:
        """softmax(z) v with z_ij = q_i . k_j / sqrt(d_h) for j <= i (arXiv:1706.03762 Eq. 1, causal mask), written
        out so the weights can be measured (arXiv:2309.14322 §3.1.1, attention-logit growth / entropy collapse):
            entropy            = mean over batch, heads, queries i of H_i = - sum_j p_ij log p_ij   (nats)
            head_entropy_ratio = per head, the mean over batch and queries i >= 1 of H_i / log(i + 1): its entropy
                                 as a fraction of uniform attention's (1 = uniform); a list of n_head floats
            max_logit          = max over batch, heads, i and allowed j of z_ij."""
        T = q.shape[-2]
        allowed = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        # z_ij = q_i . k_j / sqrt(d_h), -inf where j > i
        logits = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf"))
        probs = logits.softmax(dim=-1)
        with torch.no_grad():
            # H_i = - sum_j p_ij log p_ij, with 0 log 0 = 0 for the masked keys; the weights the model uses, reduced
            # in fp32 (under bf16 autocast they are bf16, and a bf16 sum rounds H to steps of 1/64 nat between 2 and 4)
            p = probs.float()
            entropy = -torch.special.xlogy(p, p).sum(dim=-1)  # (B, n_head, T)
            self.last_stats = {"entropy": entropy.mean().item(), "max_logit": logits.max().item()}
            if T > 1:  # H_i / log(i + 1): query i's entropy over uniform attention's, i >= 1 (query 0 has one key)
                ratio = entropy[..., 1:] / torch.arange(2, T + 1, device=q.device).log()
                self.last_stats["head_entropy_ratio"] = ratio.mean(dim=(0, 2)).tolist()
        return F.dropout(probs, p=dropout_p, training=dropout_p > 0) @ v


class MLP(nn.Module):
    """W_2 act(W_1 x) (arXiv:1706.03762 §3.3, d_ff = mlp_ratio d_model). ``mid_norm``: NormFormer's norm after the
    activation, W_2 norm(act(W_1 x)) (arXiv:2110.09456, "FFN LN")."""

    def __init__(self, cfg: GPTConfig, mid_norm: bool = False):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=cfg.bias)
        self.act = create_act(cfg.act)
        self.mid_norm = _norm(cfg, cfg.mlp_ratio * cfg.d_model) if mid_norm else nn.Identity()
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.c_proj(self.mid_norm(self.act(self.c_fc(x)))))


class Block(nn.Module):
    """x -> mlp_res(attn_res(x, attn), mlp): one transformer layer, layer_idx counted from 0."""

    def __init__(self, cfg: GPTConfig, layer_idx: int = 0):
        super().__init__()
        placement = PLACEMENTS.get(cfg.norm_placement)
        self.attn_res = placement(cfg, layer_idx, "attn")
        self.attn = CausalSelfAttention(cfg, head_scale=placement.head_scale)
        self.mlp_res, self.mlp = placement(cfg, layer_idx, "mlp"), MLP(cfg, mid_norm=placement.ffn_mid_norm)

    def forward(self, x):
        return self.mlp_res(self.attn_res(x, self.attn), self.mlp)


class GPT(nn.Module):
    """forward(idx: LongTensor (B, T)) -> logits (B, T, vocab_size); T <= block_size."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self._validate(config)
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.d_model)
        self.wpe = nn.Embedding(config.block_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = _norm(config) if PLACEMENTS.get(config.norm_placement).final_norm else nn.Identity()
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        # FixNorm (arXiv:1910.05895): w_i <- w_i / ||w_i||, on every embedding row, input and head
        self.fix_norm = create_norm("fixnorm", config.d_model, layout="nlc") if config.fix_norm else None
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if config.scaled_init and name.endswith("c_proj.weight"):  # 2 n_layer additions: stream variance O(1)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _validate(cfg: GPTConfig) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model", "mlp_ratio"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
        if cfg.d_model % cfg.n_head:
            raise ValueError(f"d_model={cfg.d_model} must be divisible by n_head={cfg.n_head}")
        if not 0 <= cfg.dropout < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {cfg.dropout}")
        ACTS.get(cfg.act), NORMS.get(cfg.norm), PLACEMENTS.get(cfg.norm_placement)  # unknown names list known ones
        if not 0 <= cfg.mix_alpha <= 1:
            raise ValueError(f"mix_alpha must lie in [0, 1], got {cfg.mix_alpha}")
        if cfg.ln_scaling and not PLACEMENTS.get(cfg.norm_placement).input_norm:
            raise ValueError(f"ln_scaling scales the norm feeding each sublayer; placement {cfg.norm_placement!r} "
                             f"has none (use one of {[n for n in PLACEMENTS.names() if PLACEMENTS.get(n).input_norm]})")

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.config.block_size}")
        tok = self.wte(idx) if self.fix_norm is None else self.fix_norm(self.wte(idx))
        x = self.drop(tok + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        if self.fix_norm is None:
            return self.lm_head(self.ln_f(x))
        return F.linear(self.ln_f(x), self.fix_norm(self.lm_head.weight))  # logits_i = g cos(h, w_i) under ScaleNorm


@MODELS.register("gpt", task="language_model", paper="nanoGPT / GPT-2",
                 smoke_kwargs=dict(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=32))
def gpt(**kwargs) -> GPT:
    """Keyword arguments are GPTConfig fields (unknown ones raise TypeError)."""
    return GPT(GPTConfig(**kwargs))

