"""Writers for tiny fake datasets in the real on-disk formats (CIFAR pickle batches, WikiText token files)."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np

CIFAR10_FILES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]


def fake_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_class_per_batch: int = 2, test_per_class: int = 3) -> Path:
    """``root/cifar-10-batches-py`` with 5 train batches (labels cycling 0..9) and a test batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        labels = [c for _ in range(per_class_per_batch) for c in range(10)]
        _dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "labels": labels,
                                           "data": fake_images(len(labels), i)})
    labels = [c for _ in range(test_per_class) for c in range(10)]
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": labels,
                                  "data": fake_images(len(labels), 0)})
    _dump(folder / "batches.meta", {"num_cases_per_batch": 10 * per_class_per_batch, "num_vis": 3072,
                                    "label_names": [f"class{c}" for c in range(10)]})
    return folder


def write_cifar100(root: Path, train_per_class: int = 2, test_per_class: int = 1) -> Path:
    """``root/cifar-100-python`` with ``train``, ``test`` (fine + coarse labels) and ``meta``."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, per_class, seed in (("train", train_per_class, 1), ("test", test_per_class, 2)):
        fine = [c for _ in range(per_class) for c in range(100)]
        _dump(folder / name, {"filenames": [f"{i}.png" for i in range(len(fine))], "batch_label": name,
                              "fine_labels": fine, "coarse_labels": [c // 5 for c in fine],
                              "data": fake_images(len(fine), seed)})
    _dump(folder / "meta", {"fine_label_names": [f"f{c}" for c in range(100)],
                            "coarse_label_names": [f"c{c}" for c in range(20)]})
    return folder


WIKI_LINES = {
    "train": [" \n", " = Valkyria Chronicles = \n", " \n", " the game is a <unk> game , the game . \n",
              " it was released in 2011 . \n"],
    "valid": [" \n", " = Homarus = \n", " the lobster is blue . \n"],
    "test": [" \n", " = Robert = \n", " he was an actor , born 1970 . \n"],
}


def write_wikitext2(root: Path, repeat: int = 20) -> Path:
    """``root/wikitext-2/wiki.{train,valid,test}.tokens``: a few lines in the real format, repeated."""
    folder = root / "wikitext-2"
    folder.mkdir(parents=True, exist_ok=True)
    for split, lines in WIKI_LINES.items():
        (folder / f"wiki.{split}.tokens").write_text("".join(lines) * repeat, encoding="utf8")
    return folder


def write_sha256sums(root: Path, rel_paths: list[str]) -> Path:
    """``root/SHA256SUMS`` in ``sha256sum`` output format for the given files."""
    lines = [f"{hashlib.sha256((root / rel).read_bytes()).hexdigest()}  {rel}\n" for rel in rel_paths]
    (root / "SHA256SUMS").write_text("".join(lines))
    return root / "SHA256SUMS"


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official batches are protocol-2 pickles (Python 2 era)


def real_datasets_missing(folders: tuple[str, ...] = ("cifar-10-batches-py", "wikitext-2")) -> str | None:
    """Why the real datasets under $REPRO_DATA_DIR cannot be used (a skip reason), or None when they can."""
    root = os.environ.get("REPRO_DATA_DIR")
    if not root:
        return "REPRO_DATA_DIR is not set (point it at the datasets, e.g. ../shared/datasets)"
    missing = [d for d in folders if not (Path(root) / d).is_dir()]
    return f"datasets missing under REPRO_DATA_DIR={root}: {', '.join(missing)}" if missing else None
