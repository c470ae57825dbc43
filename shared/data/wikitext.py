"""WikiText-2 (v1, tokenized) in the standard layout ``wikitext-2/wiki.{train,valid,test}.tokens``.

Merity et al., "Pointer Sentinel Mixture Models", arXiv:1609.07843. Missing files are fetched from the official
S3 zip. The official sha256s below are of the v1 files (identical to pytorch/examples'
``word_language_model/data/wikitext-2/{train,valid,test}.txt``); they never change, so they live in code.
"""
from __future__ import annotations

import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from shared.data.checksums import identify_variant
from shared.data.root import missing_error, resolve_cache_dir
from shared.data.tokens import encode_cached

URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"
FOLDER = "wikitext-2"
SPLIT_FILES = {"train": "wiki.train.tokens", "val": "wiki.valid.tokens", "test": "wiki.test.tokens"}
OFFICIAL_SHA256 = {
    "wikitext-2/wiki.train.tokens": "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f",
    "wikitext-2/wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
    "wikitext-2/wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
}


@dataclass
class LMData:
    """Token streams (1-D int64). ``seq_len`` / ``eval_tokens`` are the config's, used by ``eval_batches``."""
    train: Tensor
    eval_sets: dict[str, Tensor]
    vocab_size: int
    info: dict = field(default_factory=dict)
    seq_len: int = 128
    eval_tokens: int | None = None


def _rel_files() -> list[str]:
    return [f"{FOLDER}/{name}" for name in SPLIT_FILES.values()]


def download_wikitext2(root: Path, timeout: float = 60.0) -> None:
    """Fetch the official zip and extract ``wikitext-2/`` into ``root`` (the zip holds that folder)."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        zip_path = Path(tmp) / "wikitext-2-v1.zip"
        with urllib.request.urlopen(URL, timeout=timeout) as resp, open(zip_path, "wb") as f:
            shutil.copyfileobj(resp, f)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(root, members=[m for m in zf.namelist() if m.startswith(f"{FOLDER}/")])


def ensure_files(root: Path, download: bool) -> None:
    """Raise one DataMissingError if files are absent and cannot be downloaded."""
    layout = "\n".join(f"    {rel}" for rel in _rel_files())
    missing = [root / rel for rel in _rel_files() if not (root / rel).is_file()]
    if not missing:
        return
    if not download:
        raise missing_error(root, missing[0], layout, "download is disabled (data.download: false).")
    try:
        download_wikitext2(root)
    except Exception as exc:  # offline, dead URL, read-only root: all end the same way for the user
        raise missing_error(root, missing[0], layout, f"the official download ({URL}) failed: {exc!r}") from exc
    still = [root / rel for rel in _rel_files() if not (root / rel).is_file()]
    if still:
        raise missing_error(root, still[0], layout, "the download finished but this file is still absent.")


def load_wikitext2(root: Path, download: bool = True, tokenizer: str = "word", bpe_vocab_size: int = 4096,
                   seq_len: int = 128, eval_tokens: int | None = None) -> LMData:
    """Verify and tokenise WikiText-2 under the data root ``root`` (ids cached, see ``tokens``)."""
    ensure_files(root, download)
    rels = _rel_files()
    official = {rel: ("sha256", digest) for rel, digest in OFFICIAL_SHA256.items()}
    variant, sha = identify_variant(root, rels, official, "wikitext2")
    streams, vocab_size, label = encode_cached(resolve_cache_dir(), "wikitext2", tokenizer, bpe_vocab_size,
                                               [root / rel for rel in rels], [sha[rel] for rel in rels])
    train, val, test = streams
    info = {"dataset": "wikitext2", "variant": variant, "data_dir": str(root.resolve()), "files": sha,
            "tokenizer": label, "n_tokens": {"train": len(train), "val": len(val), "test": len(test)},
            "eval_tokens": eval_tokens}
    return LMData(train, {"val": val, "test": test}, vocab_size, info, seq_len, eval_tokens)
