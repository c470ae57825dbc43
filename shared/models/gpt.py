"""A small decoder-only transformer language model in the style of nanoGPT (karpathy/nanoGPT ``model.py``), which
follows GPT-2 ("Language Models are Unsupervised Multitask Learners", Radford et al. 2019; OpenAI ``gpt-2``
``src/model.py``) and the Transformer decoder ("Attention Is All You Need", arXiv:1706.03762 §3).

Token + learned position embeddings -> n_layer blocks (causal self-attention, then an MLP of width
mlp_ratio * d_model) -> optional final norm -> linear head, tied to the token embedding by default
("Using the Output Embedding to Improve Language Models", arXiv:1608.05859). Attention uses
``F.scaled_dot_product_attention(is_causal=True)``.

Norm placement is a pluggable residual wrapper (``PLACEMENTS``): each sublayer f is applied as
``placement(x, f)``, so a new placement (Peri-LN, ReZero's x + alpha f(x), NormFormer's extra post-sublayer norm)
is one new registered class, not a flag threaded through the blocks. Provided:
- ``pre``: x + f(norm(x)), GPT-2 §2.3 (Xiong et al., arXiv:2002.04745: trains without warm-up). Adds a final norm
  before the head, since the residual stream itself is never normalized.
- ``post``: norm(x + f(x)), the original Transformer (arXiv:1706.03762 §3.1, "LayerNorm(x + Sublayer(x))"). No
  final norm: the last block's output is already normalized, as in the original model.
Init (GPT-2 §2.3, nanoGPT): weights N(0, 0.02), biases 0, and residual output projections (``c_proj``) scaled
by 1/sqrt(2 n_layer) because each of the 2 n_layer sublayers adds to the residual stream.
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
    norm_placement: str = "pre"  # any PLACEMENTS name: "pre" (GPT-2) or "post" (original Transformer)


def _norm(cfg: GPTConfig) -> nn.Module:
    kwargs = {"bias": cfg.bias} if NORMS.info(cfg.norm).get("has_bias") else {}
    return create_norm(cfg.norm, cfg.d_model, layout="nlc", **kwargs)


@PLACEMENTS.register("pre")
class PreNorm(nn.Module):
    """x + f(norm(x))."""

    final_norm = True  # the residual stream is never normalized inside the blocks

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm = _norm(cfg)

    def forward(self, x, f):
        return x + f(self.norm(x))


@PLACEMENTS.register("post")
class PostNorm(nn.Module):
    """norm(x + f(x))."""

    final_norm = False  # each block already ends in a norm

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm = _norm(cfg)

    def forward(self, x, f):
        return self.norm(x + f(x))


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for t in self.c_attn(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True)
        return self.resid_drop(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model, bias=cfg.bias)
        self.act = create_act(cfg.act)
        self.c_proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        placement = PLACEMENTS.get(cfg.norm_placement)
        self.attn_res, self.attn = placement(cfg), CausalSelfAttention(cfg)
        self.mlp_res, self.mlp = placement(cfg), MLP(cfg)

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
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = _norm(config) if PLACEMENTS.get(config.norm_placement).final_norm else nn.Identity()
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # 2 n_layer residual additions: keep the stream's variance O(1)
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
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@MODELS.register("gpt", task="language_model", paper="nanoGPT / GPT-2",
                 smoke_kwargs=dict(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=32))
def gpt(**kwargs) -> GPT:
    """Keyword arguments are GPTConfig fields (unknown ones raise TypeError)."""
    return GPT(GPTConfig(**kwargs))

