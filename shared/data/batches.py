"""Training batches as pure functions of (seed, step), so resuming a run needs only the step; eval iterators.

Classification: epoch ``e = step // steps_per_epoch`` shuffles with a generator seeded by (seed, "perm", e)
(drop_last); augmentation draws from (seed, "aug", step); alternating flips (``flip_mode: alternate``) use one
bit per training image from (seed, "flip") and the epoch's parity. LM: ``random`` draws B window offsets from
(seed, "lm", step); ``contiguous`` is pytorch/examples' batchify + BPTT, wrapping around at epoch ends.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from shared.data.augment import alternate_flips, check_augment, crop_flip, generator, normalize, sample_params
from shared.data.cifar import ClassificationData
from shared.data.wikitext import LMData

LM_MODES = ("random", "contiguous")


class ClassificationBatches:
    """Shuffled, augmented, normalised float32 batches on ``device``; ``batch(step) -> (x, y)``."""

    def __init__(self, data: ClassificationData, batch_size: int, seed: int, device, augment: dict | None):
        n = len(data.train_y)
        if not 0 < batch_size <= n:
            raise ValueError(f"batch_size must be in [1, {n}] (training set size), got {batch_size}")
        self.padding, self.flip, self.flip_mode, self.pad_mode = check_augment(augment)
        self.batch_size, self.seed, self.device = batch_size, seed, torch.device(device)
        self.x = data.train_x.to(self.device)  # uint8 on device: 4x less memory than float, cast per batch
        self.y = data.train_y.to(self.device)
        self.mean = torch.tensor(data.mean, device=self.device)
        self.std = torch.tensor(data.std, device=self.device)
        self.steps_per_epoch = n // batch_size
        self._epoch, self._perm = None, None
        self.flip_base = None
        if self.flip and self.flip_mode == "alternate":
            self.flip_base = (torch.rand(n, generator=generator(seed, "flip")) < 0.5).to(self.device)

    def permutation(self, epoch: int) -> Tensor:
        if epoch != self._epoch:  # one randperm per epoch, not per step
            perm = torch.randperm(len(self.y), generator=generator(self.seed, "perm", epoch))
            self._epoch, self._perm = epoch, perm.to(self.device)
        return self._perm

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, i = divmod(step, self.steps_per_epoch)
        idx = self.permutation(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        x = self.x[idx]
        if self.padding or self.flip:
            offsets, flips = sample_params(generator(self.seed, "aug", step), len(idx), self.padding, self.flip)
            if self.flip_base is not None:
                flips = alternate_flips(self.flip_base[idx], epoch)
            x = crop_flip(x, offsets, flips, self.padding, self.pad_mode)
        return normalize(x, self.mean, self.std), self.y[idx]


class LMBatches:
    """Next-token batches ``x, y`` (int64 B×T, ``y`` = ``x`` shifted by one) from a 1-D token stream."""

    def __init__(self, tokens: Tensor, batch_size: int, seq_len: int, seed: int, device, mode: str = "random"):
        if mode not in LM_MODES:
            raise ValueError(f"unknown lm_batching mode {mode!r}; known: {sorted(LM_MODES)}")
        if len(tokens) < batch_size * (seq_len + 1):
            raise ValueError(f"{len(tokens)} tokens are too few for batch_size={batch_size}, seq_len={seq_len}")
        self.batch_size, self.seq_len, self.seed, self.mode = batch_size, seq_len, seed, mode
        self.device = torch.device(device)
        self.tokens = tokens.to(self.device)
        if mode == "random":
            self.steps_per_epoch = max(1, len(tokens) // (batch_size * seq_len))
        else:
            # batchify: row b holds the contiguous stream tokens[b*nb:(b+1)*nb]; the tail that does not
            # fill a row or a full window is dropped so every batch has the same shape.
            nb = len(tokens) // batch_size
            self.columns = self.tokens[:nb * batch_size].view(batch_size, nb)
            self.steps_per_epoch = (nb - 1) // seq_len
        self._arange = torch.arange(seq_len + 1, device=self.device)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        t = self.seq_len
        if self.mode == "contiguous":
            start = (step % self.steps_per_epoch) * t
            window = self.columns[:, start:start + t + 1]
        else:
            gen = generator(self.seed, "lm", step)
            offsets = torch.randint(0, len(self.tokens) - t, (self.batch_size,), generator=gen)
            window = self.tokens[offsets.to(self.device)[:, None] + self._arange]
        return window[:, :-1], window[:, 1:]


def eval_batches(data_or_tokens: ClassificationData | LMData | Tensor, split: str | None, batch_size: int,
                 device, seq_len: int | None = None, eval_tokens: int | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """Evaluation batches in order, no augmentation.

    Classification: normalised ``(x, y)`` chunks of ``eval_sets[split]``. LM (``LMData`` or a raw 1-D stream,
    ``split`` ignored for a stream): the first ``eval_tokens`` tokens (default: LMData's, else all) cut into
    non-overlapping windows of ``seq_len`` (default: LMData's), ``batch_size`` windows per batch; the last
    window may be shorter and comes alone. Every token after the first is predicted exactly once, so callers
    should weight each batch's mean loss by ``y.numel()``.
    """
    device = torch.device(device)
    if isinstance(data_or_tokens, ClassificationData):
        return _classification_eval(data_or_tokens, split, batch_size, device)
    tokens = data_or_tokens
    if isinstance(data_or_tokens, LMData):
        tokens = data_or_tokens.eval_sets[split]
        seq_len = seq_len or data_or_tokens.seq_len
        eval_tokens = eval_tokens if eval_tokens is not None else data_or_tokens.eval_tokens
    if seq_len is None:
        raise ValueError("seq_len is required when evaluating a raw token stream")
    return _lm_eval(tokens if eval_tokens is None else tokens[:eval_tokens], batch_size, seq_len, device)


def _classification_eval(data: ClassificationData, split: str, batch_size: int, device) -> Iterator:
    x, y = data.eval_sets[split]
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
    for i in range(0, len(y), batch_size):
        yield normalize(x[i:i + batch_size].to(device), mean, std), y[i:i + batch_size].to(device)


def _lm_eval(tokens: Tensor, batch_size: int, seq_len: int, device) -> Iterator:
    tokens = tokens.to(device)
    n_full = (len(tokens) - 1) // seq_len
    if n_full:
        windows = tokens[:n_full * seq_len + 1]
        idx = torch.arange(n_full, device=device)[:, None] * seq_len + torch.arange(seq_len + 1, device=device)
        for i in range(0, n_full, batch_size):
            w = windows[idx[i:i + batch_size]]
            yield w[:, :-1], w[:, 1:]
    rest = tokens[n_full * seq_len:]
    if len(rest) > 1:
        yield rest[None, :-1], rest[None, 1:]
