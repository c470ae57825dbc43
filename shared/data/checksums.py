"""File hashing and data-variant identification.

A variant names which bytes a run trained on, so results tables can say so:
1. every file matches the official checksums            -> ``official_variant`` (e.g. ``cifar10``);
2. else ``<data root>/SHA256SUMS`` (``sha256  relative/path``, as written by ``sha256sum``) lists every file
   and all match                                         -> ``recon_variant`` (e.g. ``cifar10-recon``);
   a listed file that does not match raises ``ChecksumError`` (a corrupt copy must not train silently);
3. otherwise                                             -> ``unverified``, with a loud warning.
SHA256SUMS is read at run time, never copied into code, because the workspace copy gets updated.
"""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from shared.data.root import ChecksumError

SUMS_FILE = "SHA256SUMS"
UNVERIFIED = "unverified"
_CHUNK = 1 << 22
_HASH_CACHE: dict[tuple[str, int, int], dict[str, str]] = {}


class UnverifiedDataWarning(UserWarning):
    """Data files matched no known checksum; results are marked ``unverified``."""


def file_hashes(path: str | Path) -> dict[str, str]:
    """``{"md5", "sha256"}`` of a file in one read, memoised per (path, size, mtime) for this process."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                md5.update(chunk)
                sha.update(chunk)
        _HASH_CACHE[key] = {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}
    return _HASH_CACHE[key]


def read_sha256sums(root: Path) -> dict[str, str] | None:
    """``{relative path: sha256}`` from ``root/SHA256SUMS``, or None if there is no such file."""
    sums_path = Path(root) / SUMS_FILE
    if not sums_path.is_file():
        return None
    sums = {}
    for line in sums_path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*")] = digest.lower()  # '*' marks binary mode in sha256sum output
    return sums


def identify_variant(root: Path, rel_files: list[str], official: dict[str, tuple[str, str]],
                     official_variant: str, recon_variant: str | None = None) -> tuple[str, dict[str, str]]:
    """Return ``(variant, {relative path: sha256})`` for ``rel_files`` under ``root``.

    ``official`` maps each relative path to ``(algorithm, hexdigest)`` with algorithm ``md5`` or ``sha256``.
    """
    root = Path(root)
    hashes = {rel: file_hashes(root / rel) for rel in rel_files}
    sha = {rel: h["sha256"] for rel, h in hashes.items()}
    if all(rel in official and hashes[rel][official[rel][0]] == official[rel][1] for rel in rel_files):
        return official_variant, sha
    sums = read_sha256sums(root)
    if sums is not None:
        for rel in rel_files:
            if rel in sums and sums[rel] != sha[rel]:
                raise ChecksumError(str(root / rel), sums[rel], sha[rel])
        if recon_variant and all(rel in sums for rel in rel_files):
            return recon_variant, sha
    warnings.warn(
        f"\n*** UNVERIFIED DATA: {official_variant} files under {root} match neither the official checksums "
        f"nor {root / SUMS_FILE}. Results will be marked variant '{UNVERIFIED}' and are not comparable "
        f"to published numbers. Files: {', '.join(rel_files)} ***", UnverifiedDataWarning, stacklevel=3)
    return UNVERIFIED, sha
