"""Data loading: CIFAR-10/100 and WikiText-2 from the data root, checksummed, with pure-function batchers.

``load_data(cfg["data"])`` returns ``ClassificationData`` or ``LMData``; ``ClassificationBatches`` and
``LMBatches`` give ``batch(step)`` as a pure function of ``(seed, step)``; ``eval_batches`` iterates eval splits.
The data root is ``$REPRO_DATA_DIR`` > ``data.data_dir`` > ``data/`` (see ``root``).
"""
from __future__ import annotations

import copy

from shared.config import default_run_config
from shared.data.batches import ClassificationBatches, LMBatches, eval_batches
from shared.data.checksums import UnverifiedDataWarning, file_hashes, identify_variant
from shared.data.cifar import ClassificationData, load_cifar
from shared.data.root import ChecksumError, DataMissingError, resolve_cache_dir, resolve_data_dir
from shared.data.wikitext import LMData, load_wikitext2

__all__ = [
    "load_data", "ClassificationData", "LMData", "ClassificationBatches", "LMBatches", "eval_batches",
    "DataMissingError", "ChecksumError", "UnverifiedDataWarning", "resolve_data_dir", "resolve_cache_dir",
    "file_hashes", "identify_variant", "DEFAULTS", "DATASETS",
]

# The `data:` defaults of docs/design.md, from the one defaults file every run config is filled from.
DEFAULTS = default_run_config()["data"]
DATASETS = ("cifar10", "cifar100", "wikitext2")


def load_data(data_cfg: dict | None = None) -> ClassificationData | LMData:
    """Load the dataset named by ``data_cfg["dataset"]``; unknown keys raise, missing keys take DEFAULTS."""
    unknown = set(data_cfg or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown data config keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = {**copy.deepcopy(DEFAULTS), **(data_cfg or {})}
    root = resolve_data_dir(cfg["data_dir"])
    if cfg["dataset"] in ("cifar10", "cifar100"):
        return load_cifar(cfg["dataset"], root, cfg["download"], cfg["subset_per_class"], cfg["val_per_class"],
                          cfg["test_subset"], cfg["classes"])
    if cfg["dataset"] == "wikitext2":
        return load_wikitext2(root, cfg["download"], cfg["tokenizer"], cfg["bpe_vocab_size"], cfg["seq_len"],
                              cfg["eval_tokens"])
    raise ValueError(f"unknown dataset {cfg['dataset']!r}; known: {sorted(DATASETS)}")
