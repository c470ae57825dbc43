"""CIFAR-10 / CIFAR-100 from the python pickle batches (torchvision's on-disk layout).

Read with a small reader of our own: torchvision's ``CIFAR10`` verifies md5s and so refuses the workspace's
reconstructed copy. Official md5s are taken from torchvision at run time; see ``checksums`` for variants.

Splits (all deterministic, in file order, no RNG):
- ``val_per_class``: the LAST n training images of each class form "val"; taken before subsetting.
- ``subset_per_class``: the FIRST n of each class among the remaining training images. Taking val from the end
  means adding a val split does not change the training subset while subset + val fit in a class.
- ``test_subset``: the first n test images.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from shared.data.checksums import identify_variant
from shared.data.root import missing_error

# Per-channel statistics of the training set in [0, 1] scale. The std is the true per-pixel std
# (not the often-copied 0.2023/0.1994/0.2010, which is a std of per-image means).
STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


@dataclass
class ClassificationData:
    """Images as uint8 N×3×32×32 (normalised on the fly by the batchers), labels int64."""
    train_x: Tensor
    train_y: Tensor
    eval_sets: dict[str, tuple[Tensor, Tensor]]
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    info: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CifarSpec:
    folder: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    num_classes: int
    tv_class: str  # torchvision class holding the official md5s and the download URL


SPECS = {
    "cifar10": CifarSpec("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                         "batches.meta", "labels", 10, "CIFAR10"),
    "cifar100": CifarSpec("cifar-100-python", ("train",), "test", "meta", "fine_labels", 100, "CIFAR100"),
}


def _rel_files(spec: CifarSpec) -> list[str]:
    return [f"{spec.folder}/{name}" for name in (*spec.train, spec.test, spec.meta)]


def official_checksums(dataset: str) -> dict[str, tuple[str, str]]:
    """``{relative path: ("md5", hex)}``: torchvision's own lists (``CIFAR10.train_list``, ``test_list``, ``meta``).

    Read from torchvision's source as literals rather than by importing it: importing torchvision costs seconds,
    and every run would pay them just for these strings. Falls back to the import if the source has changed shape.
    """
    spec = SPECS[dataset]
    try:
        attrs = _class_literals(spec.tv_class)
    except (OSError, ValueError, SyntaxError):
        import torchvision.datasets as tvd
        cls = getattr(tvd, spec.tv_class)
        attrs = {"train_list": cls.train_list, "test_list": cls.test_list, "meta": cls.meta}
    pairs = [*attrs["train_list"], *attrs["test_list"], [attrs["meta"]["filename"], attrs["meta"]["md5"]]]
    return {f"{spec.folder}/{name}": ("md5", md5) for name, md5 in pairs}


def _class_literals(class_name: str) -> dict:
    """train_list, test_list and meta of ``torchvision/datasets/cifar.py``'s class ``class_name``, without importing."""
    import ast
    import importlib.util

    found = importlib.util.find_spec("torchvision")
    if found is None or found.origin is None:
        raise OSError("torchvision is not installed")
    tree = ast.parse((Path(found.origin).parent / "datasets" / "cifar.py").read_text())
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name), None)
    attrs = {t.id: n.value for n in (cls.body if cls else []) if isinstance(n, ast.Assign)
             for t in n.targets if isinstance(t, ast.Name)}
    if not {"train_list", "test_list", "meta"} <= attrs.keys():
        raise ValueError(f"torchvision's {class_name} has no literal train_list/test_list/meta")
    return {k: ast.literal_eval(attrs[k]) for k in ("train_list", "test_list", "meta")}


def download_cifar(root: Path, dataset: str) -> None:
    """The real download path: torchvision fetches and extracts the official archive into ``root``."""
    import torchvision.datasets as tvd
    root.mkdir(parents=True, exist_ok=True)
    getattr(tvd, SPECS[dataset].tv_class)(str(root), train=True, download=True)


def _layout(spec: CifarSpec) -> str:
    return "\n".join(f"    {rel}" for rel in _rel_files(spec))


def ensure_files(root: Path, dataset: str, download: bool) -> None:
    """Raise one DataMissingError if files are absent and cannot be downloaded."""
    spec = SPECS[dataset]
    missing = [root / rel for rel in _rel_files(spec) if not (root / rel).is_file()]
    if not missing:
        return
    if not download:
        raise missing_error(root, missing[0], _layout(spec), "download is disabled (data.download: false).")
    try:
        download_cifar(root, dataset)
    except Exception as exc:  # offline, read-only root, HTTP error: all end the same way for the user
        raise missing_error(root, missing[0], _layout(spec), f"the official download failed: {exc!r}") from exc
    still = [root / rel for rel in _rel_files(spec) if not (root / rel).is_file()]
    if still:
        raise missing_error(root, still[0], _layout(spec), "the download finished but this file is still absent.")


def identify_cifar(root: Path, dataset: str) -> tuple[str, dict[str, str]]:
    """(data variant, {file: sha256}) of the CIFAR files under ``root``: ``cifar10`` when they match torchvision's
    official md5s, ``cifar10-recon`` when they match the reconstruction's published checksums (see
    ``shared.data.identify_variant``)."""
    return identify_variant(root, _rel_files(SPECS[dataset]), official_checksums(dataset), dataset, f"{dataset}-recon")


def read_batch(path: Path, label_key: str) -> tuple[Tensor, Tensor]:
    """One pickle batch -> (uint8 N×3×32×32, int64 N). Rows are stored as 1024 R, 1024 G, 1024 B bytes."""
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    x = torch.from_numpy(np.ascontiguousarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    y = torch.as_tensor(np.asarray(d[label_key]), dtype=torch.int64)
    return x, y


def read_split(root: Path, dataset: str, train: bool) -> tuple[Tensor, Tensor]:
    spec = SPECS[dataset]
    parts = [read_batch(root / spec.folder / name, spec.label_key) for name in (spec.train if train else (spec.test,))]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def split_per_class(y: Tensor, subset_per_class: int | None, val_per_class: int,
                    num_classes: int) -> tuple[Tensor, Tensor]:
    """Indices (ascending, i.e. file order) of the training subset and the validation split; disjoint."""
    train_idx, val_idx = [], []
    for c in range(num_classes):
        idx = torch.nonzero(y == c).flatten()
        n_rest = len(idx) - val_per_class
        if n_rest <= 0:
            raise ValueError(f"val_per_class={val_per_class} leaves no training images of class {c} "
                             f"({len(idx)} available)")
        if subset_per_class is not None and subset_per_class > n_rest:
            raise ValueError(f"subset_per_class={subset_per_class} exceeds the {n_rest} training images of "
                             f"class {c} left after val_per_class={val_per_class}")
        val_idx.append(idx[n_rest:])
        train_idx.append(idx[:n_rest] if subset_per_class is None else idx[:subset_per_class])
    return torch.cat(train_idx).sort().values, torch.cat(val_idx).sort().values


def keep_classes(x: Tensor, y: Tensor, classes: list[int]) -> tuple[Tensor, Tensor]:
    """The images of ``classes`` only (file order kept), relabelled by position: ``classes[i]`` -> ``i``."""
    lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.int64)
    lookup[torch.as_tensor(classes, dtype=torch.int64)] = torch.arange(len(classes))
    new_y = lookup[y]
    keep = new_y >= 0
    return x[keep], new_y[keep]


def load_cifar(dataset: str, root: Path, download: bool = True, subset_per_class: int | None = None,
               val_per_class: int = 0, test_subset: int | None = None,
               classes: list[int] | None = None) -> ClassificationData:
    """Load, verify and split CIFAR-10/100 under the data root ``root``.

    ``classes`` keeps only those classes (train, val and test), relabelled 0..k-1 in the order given, so a model
    gets ``num_classes = k``; ``test_subset`` then takes the first n test images of those classes.
    """
    spec = SPECS[dataset]
    if classes is not None:
        bad = [c for c in classes if not 0 <= c < spec.num_classes]
        if bad or len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(f"data.classes={classes}: expected at least 2 distinct class indices in "
                             f"0..{spec.num_classes - 1} for {dataset}")
    ensure_files(root, dataset, download)
    variant, sha = identify_cifar(root, dataset)
    x, y = read_split(root, dataset, train=True)
    tx, ty = read_split(root, dataset, train=False)
    num_classes = spec.num_classes
    if classes is not None:
        (x, y), (tx, ty), num_classes = keep_classes(x, y, classes), keep_classes(tx, ty, classes), len(classes)
    train_idx, val_idx = split_per_class(y, subset_per_class, val_per_class, num_classes)
    eval_sets = {"val": (x[val_idx], y[val_idx])} if val_per_class > 0 else {}
    n_test = len(ty) if test_subset is None else test_subset
    eval_sets["test"] = (tx[:n_test], ty[:n_test])
    mean, std = STATS[dataset]
    info = {"dataset": dataset, "variant": variant, "data_dir": str(root.resolve()), "files": sha,
            "n_train": len(train_idx), "n_eval": {k: len(v[1]) for k, v in eval_sets.items()},
            "subset_per_class": subset_per_class, "val_per_class": val_per_class, "test_subset": test_subset}
    if classes is not None:
        info["classes"] = list(classes)
    return ClassificationData(x[train_idx], y[train_idx], eval_sets, num_classes, mean, std, info)
