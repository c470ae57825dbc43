"""Provenance for ``meta.json``: code version, environment and hardware, so every number can be traced."""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_PACKAGES = ("torch", "torchvision", "timm", "numpy", "tokenizers", "snakemake")


# What the workflow itself writes into the tree (result tables, figures, the READMEs' generated sections): edits
# there cannot change a number, and a workflow that rewrote results/ before a job ran must not mark it dirty.
GENERATED_PATHS = (":(exclude)results", ":(exclude,glob)papers/*/README.md", ":(exclude)README.md")


def git_state(root: Path = REPO_ROOT) -> dict:
    """Commit hash and whether tracked files other than ``GENERATED_PATHS`` differ from it (untracked files are
    not counted as dirty)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *GENERATED_PATHS))
    except (OSError, subprocess.CalledProcessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": dirty}


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
