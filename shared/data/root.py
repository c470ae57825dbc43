"""Where data and caches live, and the two errors every loader raises.

The data root is ``$REPRO_DATA_DIR`` if set, else the config's ``data.data_dir``, else ``data/``; relative paths
are taken from the current directory (the CLI runs from the repo root). Datasets are never copied into the repo:
downloads go to the data root, derived artefacts (BPE tokenizers, encoded ids) to the cache dir.
"""
from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "REPRO_DATA_DIR"
CACHE_ENV = "REPRO_CACHE_DIR"
DEFAULT_DATA_DIR = "data"
REPO_ROOT = Path(__file__).resolve().parents[2]


class DataMissingError(FileNotFoundError):
    """A dataset file is absent and could not be downloaded."""


class ChecksumError(ValueError):
    """A data file is listed in SHA256SUMS but its content differs (corrupt or partial copy)."""

    def __init__(self, path: str, expected: str, actual: str):
        self.path, self.expected, self.actual = path, expected, actual
        super().__init__(f"checksum mismatch for {path}: expected sha256 {expected}, got {actual} "
                         "(corrupt or partial file; re-copy or re-download it)")


def resolve_data_dir(config_value: str | os.PathLike | None = None) -> Path:
    """Data root: ``$REPRO_DATA_DIR`` > ``config_value`` > ``data/``."""
    value = os.environ.get(DATA_ENV) or config_value or DEFAULT_DATA_DIR
    return Path(value).expanduser()


def resolve_cache_dir() -> Path:
    """Cache root: ``$REPRO_CACHE_DIR`` or ``.cache/`` in the repo root (git-ignored). Created on demand."""
    path = Path(os.environ.get(CACHE_ENV) or REPO_ROOT / ".cache").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def missing_error(root: Path, missing: Path, layout: str, reason: str) -> DataMissingError:
    """One actionable message: which file, what layout is expected, and how to point the project at a copy."""
    return DataMissingError(
        f"data file not found: {missing}\n"
        f"  data root: {root.resolve()} (from ${DATA_ENV}, else config data.data_dir, else '{DEFAULT_DATA_DIR}/')\n"
        f"  expected layout under the data root:\n{layout}\n"
        f"  {reason}\n"
        f"  fix: point the project at a copy, e.g. `export {DATA_ENV}=/path/to/datasets` "
        f"(in this workspace: `export {DATA_ENV}=../shared/datasets` from the repo root)")
