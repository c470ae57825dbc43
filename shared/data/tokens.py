"""Tokenizers for the language-modelling streams, with on-disk caches.

- ``word``: pytorch/examples ``word_language_model/data.py`` exactly: each line is ``line.split() + ['<eos>']``;
  ids are assigned in order of first appearance over train, valid, test (WikiText-2: 33,278 types).
- ``bpe``: byte-level BPE (HuggingFace ``tokenizers``) trained on the train split only, saved to
  ``<cache>/<name>-bpe-<vocab>.json``. Lines are encoded with their newline, so the stream is lossless and the
  newline token plays the role of ``<eos>``.
Encoded ids are cached with ``torch.save`` under a key of tokenizer + file sha256s, so reruns skip tokenising.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import Tensor

IDS_FORMAT = 1  # bump when the encoding changes, so stale id caches are not reused


def read_lines(path: Path) -> list[str]:
    """Lines with their newline, split like iterating a text file (universal newlines), as pytorch/examples."""
    with open(path, encoding="utf8") as f:
        return list(f)


def word_encode(paths: list[Path]) -> tuple[list[Tensor], int]:
    """Classic word-level ids for each file; vocabulary grows in order of first appearance across files."""
    vocab: dict[str, int] = {}
    streams = []
    for path in paths:
        ids = [vocab.setdefault(w, len(vocab)) for line in read_lines(path) for w in (*line.split(), "<eos>")]
        streams.append(torch.tensor(ids, dtype=torch.int64))
    return streams, len(vocab)


def train_bpe(train_path: Path, vocab_size: int):
    """Byte-level BPE on the train split. Deterministic: the trainer breaks count ties by pair id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(read_lines(train_path), trainer)
    return tok


def load_or_train_bpe(cache: Path, name: str, train_path: Path, train_sha: str, vocab_size: int):
    """Reuse ``<cache>/<name>-bpe-<vocab>.json`` if it was trained on this exact train file, else (re)train."""
    from tokenizers import Tokenizer
    tok_path = cache / f"{name}-bpe-{vocab_size}.json"
    meta_path = tok_path.with_suffix(".meta.json")  # records which train file the tokenizer came from
    fresh = meta_path.is_file() and json.loads(meta_path.read_text()).get("train_sha256") == train_sha
    if tok_path.is_file() and fresh:
        return Tokenizer.from_file(str(tok_path)), tok_path
    tok = train_bpe(train_path, vocab_size)
    _atomic_write(tok_path, lambda p: tok.save(str(p)))
    _atomic_write(meta_path, lambda p: p.write_text(json.dumps({"train_sha256": train_sha})))
    return tok, tok_path


def bpe_encode(tok, paths: list[Path]) -> list[Tensor]:
    streams = []
    for path in paths:
        enc = tok.encode_batch(read_lines(path))
        streams.append(torch.tensor([i for e in enc for i in e.ids], dtype=torch.int64))
    return streams


def encode_cached(cache: Path, name: str, tokenizer: str, bpe_vocab_size: int, paths: list[Path],
                  shas: list[str]) -> tuple[list[Tensor], int, str]:
    """Token ids per file, the vocabulary size and the tokenizer label (``word-33278``, ``bpe-4096``)."""
    if tokenizer not in ("word", "bpe"):
        raise ValueError(f"unknown tokenizer {tokenizer!r}; known: ['bpe', 'word']")
    key = {"format": IDS_FORMAT, "tokenizer": tokenizer, "files": shas}
    tok = None
    if tokenizer == "bpe":
        tok, tok_path = load_or_train_bpe(cache, name, paths[0], shas[0], bpe_vocab_size)
        key["tokenizer_sha256"] = hashlib.sha256(tok_path.read_bytes()).hexdigest()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    ids_path = cache / f"{name}-ids-{tokenizer}-{digest}.pt"
    if ids_path.is_file():
        blob = torch.load(ids_path, weights_only=True)
        return blob["streams"], blob["vocab_size"], blob["label"]
    if tok is None:
        streams, vocab_size = word_encode(paths)
    else:
        streams, vocab_size = bpe_encode(tok, paths), tok.get_vocab_size()
    label = f"{tokenizer}-{vocab_size}"
    _atomic_write(ids_path, lambda p: torch.save({"streams": streams, "vocab_size": vocab_size, "label": label}, p))
    return streams, vocab_size, label


def _atomic_write(path: Path, write) -> None:
    """Write to a temp name then rename, so parallel runs never read a half-written cache file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(tmp)
    os.replace(tmp, path)
